"""upload-pack (clone/fetch) and upload-archive over an SSH channel, with dulwich.

dulwich's UploadPackHandler does the negotiation; this subclass only changes where the
pack comes from (`packgen.handle_upload_pack`: see gitserve/git/packgen.py) and drops
partial-clone filters, which the fast generators do not implement.
"""

from __future__ import annotations

from dulwich.archive import tar_stream
from dulwich.objects import Commit, Tag
from dulwich.protocol import CAPABILITY_FILTER, SIDE_BAND_CHANNEL_DATA
from dulwich.server import UploadArchiveHandler, UploadPackHandler

from . import packgen


class UploadPack(UploadPackHandler):
    def capabilities(self):
        return [c for c in super().capabilities() if c != CAPABILITY_FILTER]

    settings = None  # the server's Settings (pack_backend, cache dir), set by the session

    def handle(self) -> None:
        # dulwich's negotiation, gitserve's pack generation (pack-objects or stored-entry copy)
        packgen.handle_upload_pack(self, self.settings)


class UploadArchive(UploadArchiveHandler):
    """`git archive --remote`: a tar (or tar.gz) of a branch or tag, as git's upload-archive.

    dulwich's handler takes git's `--format=tar` for a ref name and only accepts full ref
    names, so the argument parsing is ours. Like git without uploadArchive.allowUnreachable,
    only names of (visible) refs are accepted, never a bare sha.
    """

    FORMATS = {"tar": "", "tgz": "gz", "tar.gz": "gz"}

    def handle(self) -> None:
        args = []
        for pkt in self.proto.read_pkt_seq():
            key, _, value = pkt.rstrip(b"\n").partition(b" ")
            if key != b"argument":
                return self._nack(f"unknown command {key.decode('utf-8', 'replace')!r}")
            args.append(value.decode("utf-8", "surrogateescape"))
        fmt, prefix, treeish = "tar", "", None
        for arg in args:
            if arg.startswith("--format="):
                fmt = arg.split("=", 1)[1]
            elif arg.startswith("--prefix="):
                prefix = arg.split("=", 1)[1]
            elif arg.startswith("-") and arg[1:].isdigit():
                continue  # compression level: dulwich picks its own
            elif arg.startswith("-"):
                return self._nack(f"unsupported option {arg!r}")
            elif treeish is None:
                treeish = arg
            else:
                return self._nack("path filters are not supported")
        if fmt not in self.FORMATS:
            return self._nack(f"unsupported archive format {fmt!r} (use tar or tar.gz)")
        if treeish is None:
            return self._nack("no tree-ish given")
        tree = self._resolve(treeish)
        if tree is None:
            return self._nack(f"no such ref: {treeish}")
        self.proto.write_pkt_line(b"ACK")
        self.proto.write_pkt_line(None)
        for chunk in tar_stream(self.repo.object_store, tree, mtime=self._mtime,
                                prefix=prefix.encode(), format=self.FORMATS[fmt]):
            self.proto.write_sideband(SIDE_BAND_CHANNEL_DATA, chunk)
        self.proto.write_pkt_line(None)

    def _resolve(self, name: str):
        refs = self.repo.get_refs()
        for candidate in (name, f"refs/heads/{name}", f"refs/tags/{name}"):
            sha = refs.get(candidate.encode())
            if sha is None and candidate == "HEAD":
                continue
            if sha is not None:
                obj = self.repo[sha]
                while isinstance(obj, Tag):
                    obj = self.repo[obj.object[1]]
                if isinstance(obj, Commit):
                    self._mtime = obj.commit_time
                    return self.repo[obj.tree]
        return None

    _mtime = 0

    def _nack(self, message: str) -> None:
        self.proto.write_pkt_line(f"NACK {message}\n".encode())
        self.proto.write_pkt_line(None)
