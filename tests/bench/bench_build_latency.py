"""Benchmark: time from the end of the pack upload to the first build line on the pusher's terminal.

    python tests/bench/bench_build_latency.py [--pushes N]

Starts a real `gitserve serve` (embedded Redis, 2 local workers) and pushes N commits over
OpenSSH with the real git client. GIT_SSH_COMMAND goes through a tiny proxy that timestamps
every byte git sends: the last one is the end of the pack upload. The build script's first
action prints its own wall-clock start, so the total splits into "until the script started"
(queue, worker pickup, fetch, checkout) and "script start -> line on the terminal" (relay).
Target (issue 4): under 200 ms beyond the script's own start.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.server import make_server  # noqa: E402

PROXY = r'''
import os, sys, subprocess, threading, time
log = open(os.environ["BENCH_PROXY_LOG"], "a")
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=sys.stdout.fileno())
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    p.stdin.write(chunk); p.stdin.flush()
    log.write(f"{time.time():.6f}\n"); log.flush()
p.stdin.close()
sys.exit(p.wait())
'''

CONF = """
repo gitolite-admin
    RW+ = admin
repo bench
    RW+ = alice
    option build.enable = 1
"""
PHASES: list[tuple[float, float, float]] = []
SCRIPT = "#!/bin/sh\necho \"script-start $(date +%s.%N)\"\n"


def one_push(srv, work: Path, n: int, proxy_log: Path, env: dict[str, str]) -> tuple[float, float]:
    (work / "n.txt").write_text(f"{n}\n")
    srv.git("alice", "add", "n.txt", cwd=work)
    srv.git("alice", "commit", "-qm", f"push {n}", cwd=work)
    proxy_log.write_text("")
    proc = subprocess.Popen(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fd = proc.stderr.fileno()
    first_at = None
    script_start = None
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            raise RuntimeError("push stalled")
        chunk = os.read(fd, 65536)
        now = time.time()
        if not chunk:
            break
        buf += chunk
        m = re.search(rb"script-start (\d+\.\d+)", buf)
        if m and first_at is None:
            first_at, script_start = now, float(m.group(1))
    proc.wait(30)
    if first_at is None:
        raise RuntimeError(f"no build line in: {buf!r}")
    sends = [float(x) for x in proxy_log.read_text().split()]
    pack_end = sends[-1]
    build_id = re.search(rb"build (\d+) passed", buf).group(1).decode()
    import redis

    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    created, started = (float(x) for x in r.hmget(f"gitserve:build:{build_id}", "created", "started"))
    r.close()
    PHASES.append(((created - pack_end) * 1000, (started - created) * 1000, (script_start - started) * 1000))
    return first_at - pack_end, script_start - pack_end


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pushes", type=int, default=15)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-build-"))
    srv = make_server(tmp / "srv", conf=CONF, users=("alice",))
    try:
        work = srv.clone("alice", "bench")
        (work / ".gitserve").mkdir()
        (work / ".gitserve/build").write_text(SCRIPT)
        (work / ".gitserve/build").chmod(0o755)
        srv.git("alice", "add", "-A", cwd=work)
        srv.git("alice", "commit", "-qm", "build script", cwd=work)
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)  # warm-up
        proxy = tmp / "proxy.py"
        proxy.write_text(PROXY)
        proxy_log = tmp / "proxy.log"
        env = srv.client_env("alice")
        env["GIT_SSH_COMMAND"] = f"{sys.executable} {proxy} " + env["GIT_SSH_COMMAND"]
        env["BENCH_PROXY_LOG"] = str(proxy_log)
        totals, starts = [], []
        for n in range(args.pushes):
            total, start = one_push(srv, work, n, proxy_log, env)
            totals.append(total * 1000)
            starts.append(start * 1000)
        relay = [t - s for t, s in zip(totals, starts)]

        def fmt(xs):
            xs = sorted(xs)
            return (f"median {statistics.median(xs):6.1f} ms  p90 {xs[int(len(xs) * 0.9) - 1]:6.1f} ms  "
                    f"max {xs[-1]:6.1f} ms")

        print(f"{args.pushes} sync pushes, embedded Redis, 2 local workers, {os.cpu_count()} cpus")
        print(f"pack end -> first build line on terminal : {fmt(totals)}")
        print(f"pack end -> script started (queue+fetch)  : {fmt(starts)}")
        print(f"script start -> line on terminal (relay)   : {fmt(relay)}")
        print("breakdown of pack end -> script start:")
        print(f"  server: pack end -> build queued         : {fmt([p[0] for p in PHASES])}")
        print(f"  rq: queued -> job started                : {fmt([p[1] for p in PHASES])}")
        print(f"  worker: job started -> script running    : {fmt([p[2] for p in PHASES])}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
