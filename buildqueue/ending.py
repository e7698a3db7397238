"""Ending a build: record the end (records), then send its notification (notify).

records only stores builds and must not need rq or the network; notify reads records to
build its message. So neither calls the other: every place that ends a build calls this
module, which does both, in that order (a notification only for the call that ended it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from gitserve.secrets.crypt import seal_result

from . import keys, records
from .notify import events as notify

SEAL_FIELD = "seal"


def finish(r: redis.Redis, build_id: str, status: str, reason: str = "", *,
           key_file: Path | None = None, **kw: Any) -> bool:
    """records.finish (same arguments); True when this call ended the build, which then
    gets its notification. KEY_FILE (a worker's secrets.key): a pass is sealed with it
    first, since a gate opens only on a sealed pass (crypt.result_sealed)."""
    if status == "passed" and key_file is not None and key_file.is_file():
        commit = r.hget(keys.build(build_id), "new")
        if commit is not None:
            r.hset(keys.build(build_id), SEAL_FIELD,
                   seal_result(key_file, build_id, status, commit.decode()))
    ended = records.finish(r, build_id, status, reason, **kw)
    if ended:
        notify.build_ended(r, build_id)
    return ended


def reap_if_lost(r: redis.Redis, build: records.Build, log_ttl: int = 0) -> bool:
    """records.reap_if_lost, notifying when it ended the build."""
    ended = records.reap_if_lost(r, build, log_ttl=log_ttl)
    if ended:
        notify.build_ended(r, build.id)
    return ended
