"""An event that a signal handler may set: what a daemon's main loop waits on.

Why not threading.Event: its set() takes the lock of the Condition inside it. A Python
signal handler runs in the main thread between two bytecodes, so it can run while that
same thread holds the lock in Event.wait() or clear(); set() then waits for a lock its
own thread holds, for good. Seen in CI: `gitserve sites` stopped acting (no process
started, every deploy timed out) after a burst of SIGHUP wake-ups, until it was killed.
Here the handler takes no lock: it sets a flag and writes a byte to a non-blocking pipe,
and waiting is select() on the pipe's other end (interrupted by a signal, Python runs the
handler and retries, PEP 475, so a signal always ends the wait).
"""

from __future__ import annotations

import os
import select


class SignalEvent:
    """set() / is_set() / clear() / wait(timeout) like threading.Event, safe in a signal
    handler; for one waiting thread (a main loop), set from handlers or any thread."""

    def __init__(self) -> None:
        self._flag = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def set(self) -> None:
        self._flag = True
        if self._w < 0:  # closed: its descriptor number may belong to something else now
            return
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:  # the pipe is full: the waiter is woken already
            pass

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        # the flag first: a set() from here on leaves its byte and its flag both
        self._flag = False
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        """Until set() or TIMEOUT seconds; returns whether it is set."""
        if not self._flag:
            select.select([self._r], [], [], timeout)
        return self._flag

    def fileno(self) -> int:
        """Readable once set (until clear()): for a waiter that polls other descriptors too."""
        return self._r

    def close(self) -> None:
        """Close the pipe; set() afterwards only sets the flag."""
        fds, self._r, self._w = (self._r, self._w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
