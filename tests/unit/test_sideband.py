"""The sideband writer: correct pkt-line framing, coalescing, and linear cost."""

from __future__ import annotations

import threading
import time

from dulwich.protocol import Protocol

from gitserve.git.sideband import MAX_SIDEBAND_PAYLOAD, ChannelReader, SidebandProtocol


def _frames(data: bytes) -> list[tuple[int | None, bytes]]:
    """Parse pkt-lines: (band, payload), (None, b'') for a flush-pkt."""
    out, i = [], 0
    while i < len(data):
        size = int(data[i:i + 4], 16)
        if size == 0:
            out.append((None, b""))
            i += 4
            continue
        assert size <= 65520
        out.append((data[i + 4], data[i + 5:i + size]))
        i += size
    return out


def _proto() -> tuple[SidebandProtocol, bytearray, list[int]]:
    sink = bytearray()
    writes: list[int] = []

    def write(b) -> None:
        writes.append(len(b))
        sink.extend(b)

    return SidebandProtocol(lambda n: b"", write), sink, writes


def test_small_writes_coalesce_into_full_frames():
    proto, sink, writes = _proto()
    payload = bytes(range(256)) * 1000  # 256000 bytes in 1000 writes
    for i in range(0, len(payload), 256):
        proto.write_sideband(1, payload[i:i + 256])
    proto.write_pkt_line(None)
    frames = _frames(bytes(sink))
    assert b"".join(p for band, p in frames if band == 1) == payload
    assert frames[-1] == (None, b"")
    data_frames = [p for band, p in frames if band == 1]
    assert all(len(p) == MAX_SIDEBAND_PAYLOAD for p in data_frames[:-1])
    assert len(writes) <= len(data_frames) + 1  # one socket write per frame, not per call


def test_progress_flushes_pending_data_first_and_keeps_order():
    proto, sink, _ = _proto()
    proto.write_sideband(1, b"pack-part-1")
    proto.progress_line("building...")
    proto.write_sideband(1, b"pack-part-2")
    proto.flush()
    assert _frames(bytes(sink)) == [(1, b"pack-part-1"), (2, b"building...\n"),
                                    (1, b"pack-part-2")]


def test_one_huge_write_is_linear():
    proto, sink, _ = _proto()
    big = b"x" * (8 * 1024 * 1024)
    t0 = time.perf_counter()
    proto.write_sideband(1, big)
    proto.flush()
    ours = time.perf_counter() - t0
    assert sum(len(p) for _, p in _frames(bytes(sink))) == len(big)
    # dulwich's slicing copy (blob = blob[65515:]) on the same input, for comparison
    slow_sink = bytearray()
    t0 = time.perf_counter()
    Protocol(lambda n: b"", slow_sink.extend).write_sideband(1, big)
    theirs = time.perf_counter() - t0
    assert ours < theirs, (ours, theirs)


def test_progress_is_thread_safe_and_never_raises_after_the_client_left():
    proto, sink, _ = _proto()

    def spam(tag: str) -> None:
        for i in range(200):
            proto.progress_line(f"{tag} {i}")

    threads = [threading.Thread(target=spam, args=(t,)) for t in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [p for band, p in _frames(bytes(sink)) if band == 2]
    assert len(lines) == 800 and all(p.endswith(b"\n") for p in lines)

    def broken(_b) -> None:
        raise OSError("client gone")

    gone = SidebandProtocol(lambda n: b"", broken)
    gone.progress_line("still fine")
    gone.progress_line("still fine")
    assert gone.client_gone


def test_channel_reader_exact_and_partial_reads():
    chunks = [b"00", b"0a", b"hello", b"", b"tail"]

    def recv(n: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    r = ChannelReader(recv)
    assert r.read(4) == b"000a"
    assert r.recv(100) == b"hello"
    assert r.read(10) == b""  # empty recv is EOF
    assert r.eof
