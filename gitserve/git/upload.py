"""upload-pack (clone/fetch) and upload-archive over an SSH channel, with dulwich.

dulwich's UploadPackHandler does the negotiation; this subclass only changes where the
pack comes from (`packgen.handle_upload_pack`: see gitserve/git/packgen.py) and drops
partial-clone filters, which the fast generators do not implement.
"""

from __future__ import annotations

from dulwich.protocol import CAPABILITY_FILTER
from dulwich.server import UploadArchiveHandler, UploadPackHandler

from . import packgen


class UploadPack(UploadPackHandler):
    def capabilities(self):  # type: ignore[override]
        return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

    settings = None  # the server's Settings (pack_backend, cache dir), set by the session

    def handle(self) -> None:
        # dulwich's negotiation, gitserve's pack generation (pack-objects or stored-entry copy)
        packgen.handle_upload_pack(self, self.settings)


class UploadArchive(UploadArchiveHandler):
    """dulwich's upload-archive, unchanged: listed here so all three services live together."""
