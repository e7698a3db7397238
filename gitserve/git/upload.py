"""upload-pack (clone/fetch, protocol v0/v1) over a pkt-line stream, with dulwich.

dulwich's UploadPackHandler does the have/ack negotiation; gitserve reads the wants itself
(`_Wants`: wants of any object reachable from visible refs, shallow/deepen/deepen-since/
deepen-not/deepen-relative, filter), and the pack comes from `packgen.generate` (git
pack-objects or the stored-entry copy). Protocol v2 is v2.py; both share fetch.py.
"""

from __future__ import annotations

import functools
from typing import Any

from dulwich.errors import GitProtocolError
from dulwich.protocol import (
    CAPABILITY_INCLUDE_TAG,
    CAPABILITY_NO_DONE,
    CAPABILITY_NO_PROGRESS,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_THIN_PACK,
    PEELED_TAG_SUFFIX,
    ack_type,
    extract_want_line_capabilities,
    format_ref_line,
    format_shallow_line,
    format_unshallow_line,
    pkt_line,
    symref_capabilities,
)
from dulwich.refs import Ref
from dulwich.server import Backend, UploadPackHandler

from gitserve._compat import dulwich as dulwich_compat
from gitserve.settings import Settings


from . import fetch, filters, packgen
from .fetch import FetchArgs, FetchError

# beyond dulwich's list: what fetch.py implements for v0 as git's upload-pack advertises it
EXTRA_CAPABILITIES = [b"deepen-since", b"deepen-not", b"deepen-relative",
                      b"allow-tip-sha1-in-want", b"allow-reachable-sha1-in-want"]


class UploadPack(UploadPackHandler):
    """dulwich's upload-pack handler with gitserve's wants and packs; SETTINGS (pack_backend,
    the pack cache under HOME; None: defaults, no cache) come with the constructor."""

    def __init__(self, backend: Backend, args: list[str], proto: Any, *,
                 settings: Settings | None = None, stateless_rpc: bool = False,
                 advertise_refs: bool = False) -> None:
        super().__init__(backend, args, proto, stateless_rpc=stateless_rpc,
                         advertise_refs=advertise_refs)
        self.settings = settings

    def capabilities(self):
        return list(super().capabilities()) + EXTRA_CAPABILITIES

    def set_client_capabilities(self, caps):
        # the filter comes as its own `filter SPEC` line, parsed by _Wants
        super(UploadPackHandler, self).set_client_capabilities(caps)

    def handle(self) -> None:
        try:
            handle_v0(self, self.settings)
        except FetchError as exc:
            self.proto.write_pkt_line(f"ERR {exc}\n".encode())
            raise GitProtocolError(str(exc)) from None


class _Wants(dulwich_compat.ProtocolGraphWalker):
    """dulwich's protocol walker with gitserve's advertisement and want/shallow parsing."""

    args: FetchArgs
    deepen_result: Any = None

    def determine_wants(self, heads, depth=None):
        self.args = FetchArgs()
        if self.advertise_refs or not self.stateless_rpc:
            self._advertise(heads)
            if self.advertise_refs:
                return []
        line = self.proto.read_pkt_line()
        if not line:
            return []
        line, caps = extract_want_line_capabilities(line)
        self.handler.set_client_capabilities(caps)
        self.set_ack_type(ack_type(caps))
        args = self.args
        while line:
            cmd, _, value = line.rstrip(b"\n").partition(b" ")
            if cmd == b"want":
                args.wants.append(_sha(value, line))
            elif cmd == b"shallow":
                args.deepen.client_shallow.add(_sha(value, line))
            elif cmd == b"deepen":
                args.deepen.depth = _int(value, line)
            elif cmd == b"deepen-since":
                args.deepen.since = _int(value, line)
            elif cmd == b"deepen-not":
                args.deepen_not_names.append(value)
            elif cmd == b"deepen-relative":
                args.deepen.relative = True
            elif cmd == b"filter":
                try:
                    args.filter = filters.parse(value)
                except filters.FilterError as exc:
                    raise FetchError(str(exc)) from None
            else:
                raise GitProtocolError(f"unexpected line from client: {line!r}")
            line = self.proto.read_pkt_line()
        if not args.wants:
            return []
        if b"deepen-relative" in caps:  # v0 says it as a capability of the first want
            args.deepen.relative = True
        repo = self.handler.repo
        self.deepen_result = fetch.prepare(repo, heads, args)
        if args.deepen.deepens:
            result = self.deepen_result
            for sha in sorted(result.new_shallow):
                self.proto.write_pkt_line(format_shallow_line(sha))
            for sha in sorted(result.unshallow):
                self.proto.write_pkt_line(format_unshallow_line(sha))
            self.proto.write_pkt_line(None)
        self.set_wants(args.wants)
        if self.stateless_rpc and self.proto.eof():
            return []
        return args.wants

    def _advertise(self, heads: dict[bytes, bytes]) -> None:
        """git's v0 ref advertisement, written in large chunks (50,000 refs are 50,000
        pkt-lines: one channel write each would dominate a no-op fetch)."""
        symrefs = self.get_symrefs()
        caps = list(self.handler.capabilities()) + symref_capabilities(symrefs.items())
        out = bytearray()
        first = True
        for ref, sha in sorted(heads.items()):
            try:
                peeled = self.get_peeled(Ref(ref))
            except KeyError:
                continue  # its object is missing: not advertised (as dulwich)
            out += pkt_line(format_ref_line(ref, sha, caps if first else None))
            first = False
            if peeled is not None and peeled != sha:
                out += pkt_line(format_ref_line(Ref(ref + PEELED_TAG_SUFFIX), peeled))
            if len(out) >= 65536:
                self._send(out)
        if first:  # an empty repository still says what it can do
            out += pkt_line(format_ref_line(b"capabilities^{}", b"0" * 40, caps))
        out += pkt_line(None)
        self._send(out)

    def _send(self, out: bytearray) -> None:
        flush = getattr(self.proto, "flush", None)
        if flush is not None:
            flush()
        self.proto.write(bytes(out))
        out.clear()


def _bad_line(line: bytes) -> GitProtocolError:
    return GitProtocolError(f"invalid line from client: {line!r}")


_sha = functools.partial(fetch.sha_arg, bad=_bad_line)
_int = functools.partial(fetch.int_arg, bad=_bad_line)


def handle_v0(handler: UploadPack, settings: Settings | None = None) -> None:
    """Body of the v0/v1 upload-pack conversation: dulwich's acks, gitserve's pack."""
    repo = handler.repo
    dulwich_compat.begin_have_lines(handler)
    symrefs = getattr(repo, "get_symrefs", None) or repo.refs.get_symrefs
    walker = _Wants(handler, repo.object_store, repo.get_peeled, symrefs)
    store = repo.object_store
    refs = repo.get_refs()
    wants = walker.determine_wants(refs, None)
    if not wants:
        return
    boundary = walker.deepen_result
    haves = store.find_common_revisions(walker)
    if not walker.handle_done(not handler.has_capability(CAPABILITY_NO_DONE),
                              dulwich_compat.done_received(handler)):
        return
    dulwich_compat.start_pack_send_phase(handler)
    args = walker.args
    args.thin = handler.has_capability(CAPABILITY_THIN_PACK)
    args.ofs_delta = handler.has_capability(CAPABILITY_OFS_DELTA)
    args.include_tag = handler.has_capability(CAPABILITY_INCLUDE_TAG)
    req = fetch.pack_request(repo, refs, args, list(haves), boundary)
    progress = None if handler.has_capability(CAPABILITY_NO_PROGRESS) else handler.progress
    backend = settings.server.pack_backend if settings is not None else "auto"
    packgen.generate(repo, req, handler.write_pack_data, progress, backend=backend,
                     cache=packgen.pack_cache(settings))
    handler.proto.write_pkt_line(None)
