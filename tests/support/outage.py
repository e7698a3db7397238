"""Pushes during a Redis outage longer than a push waits (issue 22): one repo per build mode,
pushed at once while Redis is down, then what ran once it came back. Shared by
tests/cluster/test_redis_outage.py (one plain Redis) and test_sentinel_outage.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from tests.support.pushes import new_work, remote, timed_push
from tests.support.server import GitServer

LINES = 3
SCRIPT = "#!/bin/sh\nfor i in 1 2 3; do echo \"line $i of $GITSERVE_REPO\"; done\n"
MODES = {"s": "sync", "a": "async", "g": "gate"}
CONF = "repo gitolite-admin\n    RW+ = admin\n" + "".join(
    f"repo {repo}\n    RW+ = alice\n    option build.enable = 1\n    option build.mode = {mode}\n"
    for repo, mode in MODES.items())
# [redis] outage_wait the servers run with: shorter than its default with a Redis of one's own
# (30 s), so the outage that outlasts it takes seconds, not a minute; what is proved is the same:
# every push is answered within WAIT + 10 s (the wait, one socket timeout, the push itself),
# while Redis is still down (OUTAGE = that bound), and what was held runs once after.
WAIT = 8.0
OUTAGE = WAIT + 10.0
SETTINGS = {"outage_wait": WAIT}


def works(srv: GitServer) -> dict[str, Path]:
    return {repo: new_work(srv, repo, SCRIPT) for repo in MODES}


def push_through_outage(srv: GitServer, work: dict[str, Path], down: Callable[[], None],
                        up: Callable[[], None], outage: float = OUTAGE) -> dict[str, tuple]:
    """DOWN, then one push per repo at once; UP after OUTAGE seconds. Returns per repo
    (exit code, lines, seconds the push took)."""
    results: dict[str, tuple] = {}

    def push(repo: str) -> None:
        t0 = time.monotonic()
        code, lines = timed_push(srv, "alice", work[repo], "origin", "HEAD:main",
                                 timeout=outage + 60)
        results[repo] = (code, lines, time.monotonic() - t0)

    down()
    t0 = time.monotonic()
    threads = [threading.Thread(target=push, args=(repo,)) for repo in MODES]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(max(0.0, t0 + outage - time.monotonic()))
        assert time.monotonic() - t0 < outage or not any(t.is_alive() for t in threads), \
            "a push hangs through the whole outage"
    finally:
        time.sleep(max(0.0, t0 + outage - time.monotonic()))
        up()
    for t in threads:
        t.join(30)
    return results


def check_answers(results: dict[str, tuple], bound: float) -> None:
    """Each push answered within BOUND with one clear line, no traceback; gate rejected."""
    for repo, (code, lines, took) in results.items():
        said = remote(lines)
        text = "\n".join(line for _, line in lines)
        assert "Traceback" not in text and "internal server error" not in text, text
        assert took < bound, (repo, took, text)
        held = [m for m in said if m.startswith("build of refs/heads/main could not be queued: "
                                                  "Redis unreachable")]
        if MODES[repo] == "gate":
            assert code != 0, text
            rejected = [line for _, line in lines if "[remote rejected]" in line]
            assert len(rejected) == 1 and "(build could not be queued: Redis unreachable" in \
                rejected[0], text
            assert not held, text
        else:
            assert code == 0, text
            assert len(held) == 1, text
            assert held[0].endswith("it is kept and queued when Redis is back "
                                    "(`builds list` shows it then)"), text


def builds_after(url: str, timeout: float = 60) -> dict[str, list]:
    """Per repo, the builds Redis has once every one of them ended."""
    from buildqueue import records, rqconn

    r = rqconn.connect(url)
    deadline = time.monotonic() + timeout
    while True:
        found = {repo: [records.get(r, i) for i in records.list_ids(r, repo)] for repo in MODES}
        done = all(b.is_final for bs in found.values() for b in bs)
        if (done and found["s"] and found["a"]) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def check_ran_once(url: str, srv: GitServer, work: dict[str, Path]) -> dict[str, list]:
    """sync and async: the held build ran exactly once, for the pushed commit, every line of
    its log once; gate: nothing ran (its ref was rejected)."""
    from buildqueue import logs, rqconn

    found = builds_after(url)
    r = rqconn.connect(url)
    for repo, mode in MODES.items():
        if mode == "gate":
            assert found[repo] == [], found[repo]
            continue
        head = srv.git("alice", "rev-parse", "HEAD", cwd=work[repo]).stdout.strip()
        (build,) = found[repo]
        assert (build.status, build.new) == ("passed", head), build
        body = [e["l"] for e in logs.entries(r, build.id) if e.get("l", "").startswith("line ")]
        assert body == [f"line {n} of {repo}" for n in range(1, LINES + 1)], body
    return found
