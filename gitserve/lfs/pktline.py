"""pkt-lines as git-lfs's pure SSH protocol uses them: git's framing plus the delim-pkt
(0001) of protocol v2. Reads are bounded: a length over 65520 or a malformed header ends the
session (ProtocolError), so a client cannot make the server buffer more than one packet."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from gitserve.errors import GitserveError

MAX_PKT = 65520
MAX_DATA = MAX_PKT - 4
FLUSH = b"0000"
DELIM = b"0001"


class ProtocolError(GitserveError):
    """The client broke the framing; the session ends."""


class Flush:
    pass


class Delim:
    pass


FLUSH_PKT = Flush()
DELIM_PKT = Delim()
Packet = bytes | Flush | Delim


class PktReader:
    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._read(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def read(self) -> Packet:
        head = self._exactly(4)
        try:
            size = int(head, 16)
        except ValueError as exc:
            raise ProtocolError(f"bad pkt-line header {head!r}") from exc
        if size == 0:
            return FLUSH_PKT
        if size == 1:
            return DELIM_PKT
        if size < 4 or size > MAX_PKT:
            raise ProtocolError(f"bad pkt-line length {size}")
        return self._exactly(size - 4)

    def text(self, pkt: Packet) -> str:
        if not isinstance(pkt, bytes):
            raise ProtocolError("expected a text packet")
        try:
            return pkt.decode("utf-8").removesuffix("\n")
        except UnicodeDecodeError as exc:
            raise ProtocolError("text packet is not UTF-8") from exc

    def data(self) -> Iterator[bytes]:
        """Binary packets up to the flush."""
        while True:
            pkt = self.read()
            if isinstance(pkt, Flush):
                return
            if isinstance(pkt, Delim):
                raise ProtocolError("unexpected delim-pkt in data")
            yield pkt


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def text(line: str) -> bytes:
    return pkt(line.encode("utf-8") + b"\n")
