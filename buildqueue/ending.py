"""Ending a build: record the end (records), then send its notification (notify).

records only stores builds and must not need rq or the network; notify reads records to
build its message. So neither calls the other: every place that ends a build calls this
module, which does both, in that order (a notification only for the call that ended it).
"""

from __future__ import annotations

from typing import Any

import redis

from . import records
from .notify import events as notify


def finish(r: redis.Redis, build_id: str, status: str, reason: str = "", **kw: Any) -> bool:
    """records.finish (same arguments); True when this call ended the build, which then
    gets its notification."""
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
