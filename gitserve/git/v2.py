"""Git protocol v2 for upload-pack (`ls-refs`, `fetch`), independent of the transport.

dulwich has no v2 server, so the conversation is here, on dulwich's objects and pkt-line
framing (see gitserve/git/sideband.py) and gitserve's pack generation (packgen.py). The same
want checks, shallow boundaries and filters as v0 apply (fetch.py), and the repository
object decides which refs exist (repo.py hides refs/gitserve/* from normal users).

Transport seam (see ARCHITECTURE.md, "Protocol v2"):
- ssh, stateful: `UploadPackV2(repo, proto, settings).serve()` advertises the capabilities,
  then answers commands until the client sends a flush on its own or hangs up;
- smart HTTP, stateless-rpc: `GET info/refs` answers with `advertise()` (the HTTP layer
  writes `# service=git-upload-pack` and its flush first), each `POST` with exactly one
  `serve_command()` on the request body; the response ends after that command.
`proto` is any dulwich `Protocol` with read/write over the transport's streams; a
`SidebandProtocol` coalesces the pack into full 64 KiB frames.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dulwich.protocol import pkt_line

from gitserve.settings import Settings

from . import fetch, filters, packgen
from .fetch import FetchArgs, FetchError
from .sideband import BAND_DATA, BAND_ERROR, BAND_PROGRESS
from .errors import ProtocolV2Error

log = logging.getLogger(__name__)

FLUSH, DELIM, RESPONSE_END = b"0000", b"0001", b"0002"
AGENT = b"git/2.39-gitserve"


class UploadPackV2:
    """One upload-pack conversation in protocol v2 over PROTO (a dulwich Protocol)."""

    def __init__(self, repo: Any, proto: Any, settings: Settings | None = None) -> None:
        self.repo = repo
        self.proto = proto
        self.settings = settings
        self.server_options: list[bytes] = []
        self.client_agent: bytes | None = None

    # --- framing -----------------------------------------------------------------------
    def _read_pkt(self) -> bytes | None | str:
        """Next pkt-line payload; "flush"/"delim" for the special packets; None at EOF."""
        head = self.proto.read(4)
        if not head:
            return None
        if len(head) < 4:
            raise ProtocolV2Error("truncated pkt-line")
        if head == FLUSH:
            return "flush"
        if head == DELIM:
            return "delim"
        if head == RESPONSE_END:
            return "flush"
        try:
            size = int(head, 16)
        except ValueError:
            raise ProtocolV2Error(f"bad pkt-line length {head!r}") from None
        if size < 4:
            raise ProtocolV2Error(f"bad pkt-line length {head!r}")
        data = self.proto.read(size - 4)
        if len(data) != size - 4:
            raise ProtocolV2Error("truncated pkt-line")
        return data

    def _write(self, line: bytes | None) -> None:
        self.proto.write_pkt_line(line)

    def _raw(self, data: bytes) -> None:
        flush = getattr(self.proto, "flush", None)
        if flush is not None:
            flush()
        self.proto.write(data)

    # --- conversation ------------------------------------------------------------------
    def capabilities(self) -> list[bytes]:
        return [
            b"agent=" + AGENT,
            b"ls-refs=unborn",
            b"fetch=shallow filter wait-for-done",
            b"server-option",
            b"object-format=sha1",
        ]

    def advertise(self) -> None:
        self._write(b"version 2\n")
        for cap in self.capabilities():
            self._write(cap + b"\n")
        self._write(None)

    def serve(self) -> None:
        """Stateful (ssh): advertise, then answer commands until the client is done."""
        self.advertise()
        while self.serve_command():
            pass

    def serve_command(self) -> bool:
        """Read and answer one command; False when the client ended the conversation."""
        first = self._read_pkt()
        if first is None or first == "flush":
            return False
        if not isinstance(first, bytes) or not first.startswith(b"command="):
            self._error("expected command")
            return False
        command = first[len(b"command="):].rstrip(b"\n")
        caps: list[bytes] = []
        args: list[bytes] = []
        target = caps
        while True:
            pkt = self._read_pkt()
            if pkt is None:
                return False
            if pkt == "delim":
                target = args
                continue
            if pkt == "flush":
                break
            assert isinstance(pkt, bytes)
            target.append(pkt.rstrip(b"\n"))
        try:
            self._capabilities(caps)
            if command == b"ls-refs":
                self.ls_refs(args)
            elif command == b"fetch":
                self.fetch(args)
            else:
                raise ProtocolV2Error(f"invalid command '{command.decode('utf-8', 'replace')}'")
        except (ProtocolV2Error, FetchError, filters.FilterError) as exc:
            self._error(str(exc))
            return False
        return True

    def _capabilities(self, caps: list[bytes]) -> None:
        for cap in caps:
            key, _, value = cap.partition(b"=")
            if key == b"agent":
                self.client_agent = value
            elif key == b"server-option":
                self.server_options.append(value)
            elif key == b"object-format":
                if value != b"sha1":
                    raise ProtocolV2Error(f"unknown object format '{value.decode()}'")
            elif key == b"session-id":
                continue
            else:
                raise ProtocolV2Error(f"unknown capability '{cap.decode('utf-8', 'replace')}'")

    def _error(self, message: str) -> None:
        log.info("protocol v2 request refused: %s", message)
        self._write(f"ERR {message}\n".encode("utf-8", "replace"))

    def visible_refs(self) -> dict[bytes, bytes]:
        return dict(self.repo.get_refs())

    # --- ls-refs -----------------------------------------------------------------------
    def ls_refs(self, args: list[bytes]) -> None:
        symrefs = peel = unborn = False
        prefixes: list[bytes] = []
        for arg in args:
            if arg == b"symrefs":
                symrefs = True
            elif arg == b"peel":
                peel = True
            elif arg == b"unborn":
                unborn = True
            elif arg.startswith(b"ref-prefix "):
                prefixes.append(arg[len(b"ref-prefix "):])
            else:
                raise ProtocolV2Error(f"unexpected line: '{arg.decode('utf-8', 'replace')}'")

        def wanted(name: bytes) -> bool:
            return not prefixes or any(name.startswith(p) for p in prefixes)

        listing = getattr(self.repo, "listing", None)
        if listing is not None:  # one scan of the ref storage (repo.py), hidden refs left out
            found = listing()
            refs, all_symrefs = found.refs, found.symrefs
        else:
            refs, all_symrefs = self.repo.get_refs(), self.repo.refs.get_symrefs()
        out = bytearray()
        if wanted(b"HEAD"):
            target = all_symrefs.get(b"HEAD")
            head = refs.get(b"HEAD")
            if head is not None:
                line = head + b" HEAD"
                if symrefs and target is not None:
                    line += b" symref-target:" + target
                out += pkt_line(line + b"\n")
            elif unborn and target is not None and target not in refs:
                out += pkt_line(b"unborn HEAD" +
                                (b" symref-target:" + target if symrefs else b"") + b"\n")
        for name in sorted(refs):
            if name == b"HEAD" or not wanted(name):
                continue
            line = refs[name] + b" " + name
            if symrefs and name in all_symrefs:
                line += b" symref-target:" + all_symrefs[name]
            if peel and name.startswith(b"refs/tags/"):
                try:
                    peeled = self.repo.get_peeled(name)
                except KeyError:  # a tag whose object is missing: listed unpeeled
                    peeled = None
                if peeled is not None and peeled != refs[name]:
                    line += b" peeled:" + peeled
            out += pkt_line(line + b"\n")
            if len(out) >= 65536:
                self._raw(bytes(out))
                out.clear()
        out += FLUSH
        self._raw(bytes(out))

    # --- fetch -------------------------------------------------------------------------
    def fetch(self, lines: list[bytes]) -> None:
        args = FetchArgs(ofs_delta=False)
        done = wait_for_done = sideband_all = False
        for line in lines:
            cmd, _, value = line.partition(b" ")
            if cmd == b"want":
                args.wants.append(_sha(value, line))
            elif cmd == b"have":
                args.haves.append(_sha(value, line))
            elif cmd == b"done":
                done = True
            elif cmd == b"thin-pack":
                args.thin = True
            elif cmd == b"no-progress":
                args.no_progress = True
            elif cmd == b"include-tag":
                args.include_tag = True
            elif cmd == b"ofs-delta":
                args.ofs_delta = True
            elif cmd == b"shallow":
                args.deepen.client_shallow.add(_sha(value, line))
            elif cmd == b"deepen":
                args.deepen.depth = _int(value, line)
            elif cmd == b"deepen-relative":
                args.deepen.relative = True
            elif cmd == b"deepen-since":
                args.deepen.since = _int(value, line)
            elif cmd == b"deepen-not":
                args.deepen_not_names.append(value)
            elif cmd == b"filter":
                args.filter = filters.parse(value)
            elif cmd == b"sideband-all":
                sideband_all = True
            elif cmd == b"wait-for-done":
                wait_for_done = True
            else:
                raise ProtocolV2Error(f"unexpected line: '{line.decode('utf-8', 'replace')}'")
        if not args.wants:
            raise ProtocolV2Error("expected want")
        refs = self.visible_refs()
        walker = fetch.walker_for(self.repo)
        boundary = fetch.prepare(self.repo, refs, args, walker)
        store = self.repo.object_store
        common = [h for h in dict.fromkeys(args.haves) if h in store]
        write = self._write_banded(BAND_DATA) if sideband_all else self._write
        if not done:
            write(b"acknowledgments\n")
            if not common:
                write(b"NAK\n")
            for sha in common:
                write(b"ACK " + sha + b"\n")
            ready = bool(common) and not wait_for_done and self._ready(walker, args.wants, common)
            if not ready:
                self._raw(FLUSH)
                return
            write(b"ready\n")
            self._raw(DELIM)
        if args.deepen.any and boundary is not None:
            write(b"shallow-info\n")
            for sha in sorted(boundary.new_shallow):
                write(b"shallow " + sha + b"\n")
            for sha in sorted(boundary.unshallow):
                write(b"unshallow " + sha + b"\n")
            self._raw(DELIM)
        write(b"packfile\n")
        req = fetch.pack_request(self.repo, refs, args, common, boundary)
        progress: Callable[[bytes], None] | None = None
        if not args.no_progress:
            progress = self._band(BAND_PROGRESS)
        backend = self.settings.server.pack_backend if self.settings is not None else "auto"
        try:
            packgen.generate(self.repo, req, self._band(BAND_DATA), progress, backend=backend,
                             cache=packgen.pack_cache(self.settings))
        except packgen.PackGenError as exc:  # the client gets the one line, not a traceback
            log.error("pack generation failed: %s", exc)
            self._band(BAND_ERROR)(f"{exc}\n".encode())
            self._raw(FLUSH)
            return
        self._raw(FLUSH)

    def _band(self, band: int) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            self.proto.write_sideband(band, data)
        return send

    def _write_banded(self, band: int) -> Callable[[bytes | None], None]:
        def send(line: bytes | None) -> None:
            # sideband-all: each response line is its own band-1 packet
            self._raw(FLUSH if line is None else pkt_line(bytes([band]) + line))
        return send

    @staticmethod
    def _ready(walker: Any, wants: list[bytes], common: list[bytes]) -> bool:
        """git's ok_to_give_up: every wanted commit has a common commit among its ancestors
        (searched back to the oldest common commit's date)."""
        have = set(common)
        commits = fetch.peel_commits(walker, [h for h in common])
        if not commits:
            return False
        floor = min(walker.commit(c)[2] for c in commits)
        for want in fetch.peel_commits(walker, wants):
            seen = {want}
            todo = [want]
            found = False
            while todo and not found:
                sha = todo.pop()
                if sha in have:
                    found = True
                    break
                _tree, parents, when = walker.commit(sha)
                if when < floor:
                    continue
                for p in parents:
                    if p not in seen:
                        seen.add(p)
                        todo.append(p)
            if not found:
                return False
        return True


def _bad_line(line: bytes) -> ProtocolV2Error:
    return ProtocolV2Error(f"unexpected line: '{line.decode('utf-8', 'replace')}'")


_sha = functools.partial(fetch.sha_arg, bad=_bad_line)
_int = functools.partial(fetch.int_arg, bad=_bad_line)


def requested_version(git_protocol: str | None) -> int:
    """The highest version a GIT_PROTOCOL value (`version=2:...`, colon-separated) asks for
    that this server speaks (0, 1 or 2), as git's upload-pack picks it."""
    best = 0
    for part in (git_protocol or "").split(":"):
        if part in ("version=1", "version=2"):
            best = max(best, int(part[-1]))
    return best


def requested(git_protocol: str | None) -> bool:
    """Does a GIT_PROTOCOL value ask for v2?"""
    return requested_version(git_protocol) == 2


class UploadPackV2Handler:
    """The v2 conversation behind dulwich's Handler interface, for the ssh session."""

    def __init__(self, backend: Any, args: list[str], proto: Any, *,
                 settings: Settings | None = None) -> None:
        self.repo = backend.open_repository(args[0])
        self.proto = proto
        self.settings = settings

    def handle(self) -> None:
        UploadPackV2(self.repo, self.proto, self.settings).serve()
