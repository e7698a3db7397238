"""pkt-line protocol over an SSH channel, with a sideband writer that stays linear.

dulwich's `Protocol.write_sideband` slices `blob[65515:]` for every frame, copying the rest
of the buffer each time: sending one 20 MB object costs ~300 full copies. Here frames are
cut from a memoryview, and small writes (the pack writer emits many) are coalesced into
full 64 KiB frames so the client gets few, large SSH packets.

Writes are serialised by one lock because push hooks report progress from other threads
(a build streaming its log) while the protocol thread is writing.
"""

from __future__ import annotations

import threading
from typing import Callable

from dulwich.protocol import Protocol, pkt_line

# a pkt-line is at most 65520 bytes: 4 length digits + 1 band byte + 65515 payload
MAX_SIDEBAND_PAYLOAD = 65515
BAND_DATA = 1
BAND_PROGRESS = 2
BAND_ERROR = 3


class ChannelReader:
    """Exact and partial reads over a socket-like `recv`, as dulwich wants them."""

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buf = bytearray()
        self.eof = False

    def read(self, size: int) -> bytes:
        """Exactly SIZE bytes unless the peer hung up first (pkt-line parsing needs whole lines)."""
        while len(self._buf) < size and not self.eof:
            chunk = self._recv(max(size - len(self._buf), 65536))
            if not chunk:
                self.eof = True
                break
            self._buf += chunk
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def recv(self, size: int) -> bytes:
        """Whatever is available, at most SIZE bytes (pack streaming)."""
        if self._buf:
            out = bytes(self._buf[:size])
            del self._buf[:size]
            return out
        if self.eof:
            return b""
        chunk = self._recv(size)
        if not chunk:
            self.eof = True
        return chunk


class SidebandProtocol(Protocol):
    """A dulwich Protocol whose sideband output is coalesced, sliced without copies, and locked."""

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], object],
                 recv: Callable[[int], bytes] | None = None) -> None:
        super().__init__(read, write)
        if recv is not None:
            self.recv = recv  # dulwich's add_thin_pack reads the pack with it
        self._lock = threading.RLock()
        self._pending = bytearray()  # band-1 payload waiting to fill a frame
        self.client_gone = False

    # --- writing -------------------------------------------------------
    def _send(self, data: bytes | bytearray | memoryview) -> None:
        self.write(data)

    def _flush_data(self) -> None:
        if self._pending:
            view = memoryview(self._pending)
            for start in range(0, len(view), MAX_SIDEBAND_PAYLOAD):
                chunk = view[start:start + MAX_SIDEBAND_PAYLOAD]
                self._send(b"%04x\x01" % (len(chunk) + 5) + chunk)
            self._pending = bytearray()

    def write_pkt_line(self, line: bytes | None) -> None:
        with self._lock:
            self._flush_data()
            self._send(pkt_line(line))

    def write_sideband(self, channel: int, blob: bytes) -> None:
        with self._lock:
            if channel == BAND_DATA:
                self._pending += blob
                if len(self._pending) >= MAX_SIDEBAND_PAYLOAD:
                    # send whole frames now, keep the tail for the next write
                    whole = len(self._pending) - len(self._pending) % MAX_SIDEBAND_PAYLOAD
                    view = memoryview(self._pending)
                    for start in range(0, whole, MAX_SIDEBAND_PAYLOAD):
                        self._send(b"%04x\x01" % (MAX_SIDEBAND_PAYLOAD + 5)
                                   + view[start:start + MAX_SIDEBAND_PAYLOAD])
                    self._pending = bytearray(view[whole:])
                return
            self._flush_data()
            view = memoryview(blob)
            for start in range(0, len(view), MAX_SIDEBAND_PAYLOAD):
                chunk = view[start:start + MAX_SIDEBAND_PAYLOAD]
                self._send(b"%04x" % (len(chunk) + 5) + bytes([channel]) + chunk)

    def flush(self) -> None:
        with self._lock:
            self._flush_data()

    def progress_line(self, text: str) -> None:
        """One `remote: TEXT` line on band 2; silently dropped once the client has gone."""
        if self.client_gone:
            return
        data = text.rstrip("\n").encode("utf-8", "replace") + b"\n"
        try:
            self.write_sideband(BAND_PROGRESS, data)
        except Exception:  # noqa: BLE001 - a vanished pusher must never fail a build
            self.client_gone = True
