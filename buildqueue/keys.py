"""Redis key names, in one place so server, workers and CLI can never disagree.

Every key starts with `gitserve:` (ARCHITECTURE.md); a build's keys share the
`gitserve:build:ID` prefix so one build's state can be found and deleted together.
"""

from __future__ import annotations

PREFIX = "gitserve:"
SEQUENCE = PREFIX + "build:seq"          # INCR counter: build ids are 1, 2, 3 ...
ALL_BUILDS = PREFIX + "builds"           # zset id -> id, every build still in history
REPLICATION_PROBE = PREFIX + "replication:probe"  # written before WAIT (rqconn.confirm_replicated)


def build_job(build_id: str) -> str:
    """RQ job id of a build's run on a build worker (one job per build, so a retry is a new build)."""
    return f"gitserve-build-{build_id}"


def deploy_job(build_id: str) -> str:
    """RQ job id of the deploy that follows a passed build of a site repo."""
    return f"gitserve-deploy-{build_id}"


def build(build_id: str) -> str:
    """Hash with the build's record (repo, ref, status, times ...)."""
    return f"{PREFIX}build:{build_id}"


def log(build_id: str) -> str:
    """Stream of log lines (`l` field) ending with one `event=end` entry."""
    return f"{PREFIX}build:{build_id}:log"


def heartbeat(build_id: str) -> str:
    """Short-TTL key the job process refreshes; missing while running means the worker is gone."""
    return f"{PREFIX}build:{build_id}:alive"


def cancel(build_id: str) -> str:
    """Set by `builds cancel`; the job polls it and kills the script's process group."""
    return f"{PREFIX}build:{build_id}:cancel"


def artifact(build_id: str) -> str:
    """tar.gz of the deploy.dir output, handed from the build worker to the deploy worker."""
    return f"{PREFIX}build:{build_id}:artifact"


def repo_builds(repo: str) -> str:
    """zset of the build ids of one repo (history, newest last)."""
    return f"{PREFIX}repo:{repo}:builds"


def lane(repo: str, ref: str) -> str:
    """zset of unfinished builds of one repo+ref: they run one at a time, in push order."""
    return f"{PREFIX}lane:{repo}:{ref}"


# --- build uids and per-repo concurrency (issue 21) ---
BUILD_UIDS = PREFIX + "build:uids"          # hash repo -> the uid its builds run as (root workers)
BUILD_UID_NEXT = PREFIX + "build:uid-next"  # INCR counter: the next uid offset in [builds] uid_range


def repo_waiting(repo: str) -> str:
    """zset of one repo's builds waiting for a [builds] per_repo slot (score: build id)."""
    return f"{PREFIX}repo:{repo}:waiting"


def repo_running(repo: str) -> str:
    """set of one repo's builds holding a [builds] per_repo slot."""
    return f"{PREFIX}repo:{repo}:running"
