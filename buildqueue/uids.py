"""Each repo's builds run as the repo's own uid (root workers, `[builds] uid_range`).

Why: with one uid for every build, a build could signal or ptrace another repo's build
processes that happen to run at the same moment, and the process limit (RLIMIT_NPROC,
counted per uid) would be shared by every repo. The uid of a repo is chosen once, the first
time it builds, and kept in Redis (every worker, on any host, agrees on it); uids are handed
out in order, so two repos never share one.
"""

from __future__ import annotations

import redis

from gitserve.sandbox import SandboxError, parse_uid_range

from . import keys

# atomic: the repo's uid, or the next free one of the range (-1: the range is used up)
_ALLOCATE = """
local u = redis.call('HGET', KEYS[1], ARGV[1])
if u then return tonumber(u) end
local n = redis.call('INCR', KEYS[2]) - 1
local low, high = tonumber(ARGV[2]), tonumber(ARGV[3])
if low + n > high then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], low + n)
return low + n
"""


def uid_for(r: redis.Redis, repo: str, uid_range: str) -> int | None:
    """REPO's build uid from UID_RANGE ('200000-265535'); None when no range is set."""
    bounds = parse_uid_range(uid_range)
    if bounds is None:
        return None
    low, high = bounds
    uid = int(r.eval(_ALLOCATE, 2, keys.BUILD_UIDS, keys.BUILD_UID_NEXT, repo, low, high))
    if uid < 0:
        raise SandboxError(f"[builds] uid_range {uid_range} is used up: no uid for {repo}")
    if not low <= uid <= high:
        raise SandboxError(f"{repo} builds as uid {uid}, outside [builds] uid_range {uid_range}")
    return uid
