"""Benchmark: mirror lag - from `git push` acknowledged on the master to a slave having it.

    python -m tests.bench.bench_mirror_lag [--pushes 200]

Three real gitserve servers on 127.0.0.1 (frodo the master, sam and gollum its slaves; the
same setup as tests/cluster). For each of N pushes (one new commit on main, the real git
client over OpenSSH) the clock starts when `git push` exits 0 and stops when the slave's
repository on disk has the new sha (polled every millisecond: refs read straight from the
slave's home, no protocol in between). Reported: median and p99 of the lag to the first
slave and to both, for `mirror.sync = 0` (Gitolite's asynchronous mirroring); and the push
time itself with `mirror.sync = 0` and `mirror.sync = 1` (what waiting for one slave costs
the pusher; with sync = 1 the lag to the first slave is 0 by construction and is checked).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.cluster import disk_refs, make_cluster, wait_for  # noqa: E402

CONF = """\
repo gitolite-admin
    RW+ = admin
repo lag lagsync
    RW+ = alice
repo gitolite-admin lag lagsync
    option mirror.master = frodo
    option mirror.slaves = sam gollum
repo lagsync
    option mirror.sync = 1
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(pushes: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"push_async": [], "first": [], "both": [], "push_sync": [],
                                   "sync_first": []}
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as tmp:
        cluster = make_cluster(Path(tmp), ["frodo", "sam", "gollum"], CONF, users=("alice",))
        try:
            frodo, slaves = cluster["frodo"], [cluster["sam"], cluster["gollum"]]
            wait_for(lambda: all(disk_refs(s, "gitolite-admin") == disk_refs(frodo, "gitolite-admin")
                                 for s in slaves), timeout=60, what="admin on the slaves")
            for repo, sync in (("lag", False), ("lagsync", True)):
                work = frodo.clone("alice", repo)
                env = frodo.client_env("alice")
                for _ in range(pushes):
                    sha = frodo.commit("alice", work)
                    start = time.monotonic()
                    done = subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"],
                                          cwd=work, env=env, capture_output=True)
                    acked = time.monotonic()
                    assert done.returncode == 0, done.stderr
                    have: dict[int, float] = {}
                    while len(have) < len(slaves):
                        for i, s in enumerate(slaves):
                            if i not in have and disk_refs(s, repo).get("refs/heads/main") == sha:
                                have[i] = time.monotonic() - acked
                        if time.monotonic() - acked > 60:
                            raise AssertionError("a slave did not get a push within 60 s")
                        time.sleep(0.001)
                    if sync:
                        out["push_sync"].append(acked - start)
                        out["sync_first"].append(min(have.values()))
                    else:
                        out["push_async"].append(acked - start)
                        out["first"].append(min(have.values()))
                        out["both"].append(max(have.values()))
        finally:
            cluster.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=200)
    args = parser.parse_args()
    res = run(args.pushes)
    print(f"mirror lag over {args.pushes} pushes (ms)      median      p99")
    for key, label in (("first", "ack -> first slave (sync=0)"), ("both", "ack -> both slaves (sync=0)"),
                       ("sync_first", "ack -> first slave (sync=1)"),
                       ("push_async", "git push, sync=0"), ("push_sync", "git push, sync=1")):
        vals = res[key]
        print(f"  {label:<32} {1000 * statistics.median(vals):8.1f} {1000 * pct(vals, 0.99):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
