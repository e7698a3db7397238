"""upload-pack (clone/fetch) and upload-archive over an SSH channel, with dulwich.

dulwich's UploadPackHandler does the negotiation; this subclass only changes where the
pack comes from (`packgen.write_pack`, so a faster generator can be plugged in) and drops
partial-clone filters, which the pluggable generators do not implement.
"""

from __future__ import annotations

from dulwich.protocol import CAPABILITY_FILTER, CAPABILITY_NO_DONE
from dulwich.server import UploadArchiveHandler, UploadPackHandler, _ProtocolGraphWalker

from . import packgen


class UploadPack(UploadPackHandler):
    def capabilities(self):  # type: ignore[override]
        return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

    def handle(self) -> None:
        self._processing_have_lines = True
        walker = _ProtocolGraphWalker(self, self.repo.object_store, self.repo.get_peeled,
                                      self.repo.refs.get_symrefs)
        wants: list[bytes] = []

        def determine_wants(refs, depth=None):
            wants.extend(walker.determine_wants(refs, depth))
            return wants

        missing = self.repo.find_missing_objects(determine_wants, walker, self.progress,
                                                 get_tagged=self.get_tagged)
        if not wants or missing is None:
            return  # ls-remote, or nothing to send
        object_ids = list(missing)
        if not walker.handle_done(not self.has_capability(CAPABILITY_NO_DONE),
                                  self._done_received):
            return
        self._start_pack_send_phase()
        self.progress(f"counting objects: {len(object_ids)}, done.\n".encode("ascii"))
        packgen.write_pack(self.write_pack_data, self.repo, object_ids)
        self.proto.write_pkt_line(None)


class UploadArchive(UploadArchiveHandler):
    """dulwich's upload-archive, unchanged: listed here so all three services live together."""
