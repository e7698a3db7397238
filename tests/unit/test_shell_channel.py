"""StdioChannel (gitserve shell's channel over sshd's descriptors): closing it ends a reader
waiting on a stdin that stays open, at once. sshd ends a session only when every copy of its
pipes is closed, so a close that waits is a session that hangs: seen in CI as `ssh ... hello`
through the system sshd still open 30 s after its command ended (the reader held a lock
across 250 ms polls and took it straight back; close() starved waiting for it)."""

from __future__ import annotations

import os
import threading
import time

from gitserve.ssh.shell import StdioChannel


def _pump(chan: StdioChannel, got: list[bytes]) -> None:
    """As ssh/cmd/program.py's stdin pump reads: until EOF."""
    while chunk := chan.recv(4096):
        got.append(chunk)
    got.append(b"<eof>")


def test_close_ends_a_reader_of_an_open_stdin_at_once() -> None:
    took = []
    for _ in range(5):
        r, w = os.pipe()
        chan = StdioChannel(r, os.dup(1), os.dup(2))
        got: list[bytes] = []

        reader = threading.Thread(target=_pump, args=(chan, got), daemon=True)
        reader.start()
        os.write(w, b"data")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.02)  # the reader waits in recv again
        started = time.monotonic()
        chan.close()
        reader.join(5)
        took.append(time.monotonic() - started)
        assert got == [b"data", b"<eof>"]
        os.close(w)
        try:  # the channel's descriptors are closed (its stdin's number is free again)
            os.fstat(r)
            raise AssertionError("stdin still open")
        except OSError:
            pass
    assert max(took) < 0.15, [f"{t:.3f}" for t in took]


def test_a_closed_channel_touches_no_descriptor_again() -> None:
    """The server hands descriptor numbers to the next connection (ssh/handoff.py): a second
    close, or a recv after close, must not write to, poll or close a number it gave up."""
    r, w = os.pipe()
    chan = StdioChannel(r, os.dup(1), os.dup(2))
    chan.close()
    others = [os.pipe() for _ in range(4)]  # take every number the channel freed
    try:
        chan.close()
        assert chan.recv(10) == b""
        for other_r, other_w in others:
            os.set_blocking(other_r, False)
            try:
                leaked = os.read(other_r, 10)
            except BlockingIOError:
                leaked = b""
            assert leaked == b"", leaked
            os.fstat(other_w)  # still open
    finally:
        os.close(w)
        for pair in others:
            for fd in pair:
                os.close(fd)
