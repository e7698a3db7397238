"""Build logs as Redis Streams: one XADD per line, readers XREAD BLOCK from their last id.

Why streams: a line is visible to every reader the moment it is written (the pusher's SSH
session, `builds log --follow`, several at once), a reader that reconnects resumes from the
id it last saw, and the same structure is the persisted log once the build ended.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import redis

from . import ending, keys, records

MAX_LINE = 8192
MAX_LINES = 100_000  # per build; beyond that a note is written once and lines are dropped
POLL_MS = 1000


def append(r: redis.Redis, build_id: str, line: str) -> None:
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + " [line truncated]"
    r.xadd(keys.log(build_id), {"l": line})


def _decode(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}


def entries(r: redis.Redis, build_id: str, after: str = "-") -> Iterator[dict[str, str]]:
    """Everything written so far (lines and the end event), in order."""
    start = after if after == "-" else "(" + after
    while True:
        batch = r.xrange(keys.log(build_id), min=start, count=1000)
        if not batch:
            return
        for entry_id, fields in batch:
            yield {"id": entry_id.decode(), **_decode(fields)}
        start = "(" + batch[-1][0].decode()


def follow(
    r: redis.Redis,
    build_id: str,
    emit: Callable[[str], None],
    *,
    log_ttl: int = 0,
    stop: Callable[[], bool] | None = None,
    on_idle: Callable[[], None] | None = None,
) -> records.Build:
    """Relay every line of the build to EMIT as it is written, until it ends.

    Returns the ended build. While nothing arrives it checks that the build's worker is
    still alive, so a killed worker ends the wait with `failed (worker lost)` instead of
    hanging the pusher. STOP lets the caller give up early (the build goes on).
    """
    last = "0-0"
    stream = keys.log(build_id)
    while True:
        batch = r.xread({stream: last}, count=500, block=POLL_MS)
        if batch:
            for entry_id, fields in batch[0][1]:
                last = entry_id.decode()
                data = _decode(fields)
                if data.get("event") == "end":
                    return records.get(r, build_id)
                if "l" in data:
                    emit(data["l"])
            continue
        if stop is not None and stop():
            return records.get(r, build_id)
        if on_idle is not None:
            on_idle()
        build = records.get(r, build_id)
        if build.is_final:
            # the end event expired or was trimmed: nothing more will come
            return build
        ending.reap_if_lost(r, build, log_ttl=log_ttl)


def wait_quietly(r: redis.Redis, build_id: str, timeout: float) -> records.Build:
    """Wait up to TIMEOUT seconds for a build to end, without relaying its log."""
    deadline = time.monotonic() + timeout
    while True:
        build = records.get(r, build_id)
        if build.is_final or time.monotonic() > deadline:
            return build
        ending.reap_if_lost(r, build)
        time.sleep(0.1)
