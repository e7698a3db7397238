#!/usr/bin/env python3
"""Flood a real `gitserve serve` and print what held: connections, refusals, clone latency
during the flood, server memory and threads.

    python scripts/stress/floods.py [--silent 500] [--idle 100] [--addresses 50] [--clones 5]

Starts its own server (temporary home, free 127.0.0.1 port) with the real git and OpenSSH
clients, and stops it at the end. Silent connections come from 127.0.1.0/24 so the per-IP
and total unauthenticated limits both bite; idle ones authenticate and never open a channel.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.conftest import make_server  # noqa: E402
from tests.hardening import floodkit  # noqa: E402

CONF = "repo gitolite-admin\n    RW+ = admin\nrepo foo\n    RW+ = alice\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--silent", type=int, default=500)
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--addresses", type=int, default=50)
    ap.add_argument("--clones", type=int, default=5)
    args = ap.parse_args()
    limits = {"max_connections": max(400, args.idle + 100), "max_unauth_connections": 50,
              "max_unauth_per_ip": 10, "banner_timeout": 20.0, "auth_timeout": 20.0,
              "idle_timeout": 5.0, "auth_failures_per_minute": 10}
    srv = make_server(Path(tempfile.mkdtemp(prefix="gitserve-flood-")), users=("alice",),
                      conf=CONF, settings={"server": limits, "builds": {"workers": 0}})
    try:
        work = srv.clone("alice", "foo")
        srv.commit("alice", work, "README", "hello\n")
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        pid = srv.proc.pid
        base = floodkit.rss_kb(pid)

        def clone() -> float:
            t = time.monotonic()
            srv.clone("alice", "foo")
            return time.monotonic() - t

        quiet = [clone() for _ in range(args.clones)]
        t0 = time.monotonic()
        flood = [floodkit.connect_from(f"127.0.1.{1 + i % args.addresses}", srv.host, srv.port)
                 for i in range(args.silent)]
        time.sleep(1.5)
        open_now = sum(not floodkit.is_closed_by_peer(s) for s in flood)
        during = [clone() for _ in range(args.clones)]
        peak, threads = floodkit.rss_kb(pid), floodkit.threads(pid)
        for s in flood:
            s.close()
        print(f"silent flood: {args.silent} connections from {args.addresses} addresses opened "
              f"in {time.monotonic() - t0:.1f}s; {open_now} still open after 1.5s "
              f"(limit {limits['max_unauth_connections']} with a slot, the rest queued or "
              "refused)")
        print(f"clone latency: quiet median {sorted(quiet)[len(quiet) // 2]:.2f}s, during flood "
              f"median {sorted(during)[len(during) // 2]:.2f}s max {max(during):.2f}s, "
              f"{len(during)}/{len(during)} succeeded")
        print(f"server memory: {base // 1024} MiB before, {peak // 1024} MiB at peak; "
              f"{threads} threads at peak")

        key = floodkit.load_key(srv.key_for("alice"))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            conns = list(pool.map(lambda _: floodkit.authenticated_transport(
                srv.host, srv.port, key), range(args.idle)))
        held = sum(t.is_active() for t in conns)
        during_idle = clone()
        rss_idle = floodkit.rss_kb(pid)
        t = time.monotonic()
        while any(c.is_active() for c in conns) and time.monotonic() - t < 30:
            time.sleep(0.2)
        print(f"idle flood: {held}/{args.idle} authenticated connections held; clone took "
              f"{during_idle:.2f}s; all closed by the idle timeout after "
              f"{time.monotonic() - t:.1f}s; server memory {rss_idle // 1024} MiB")
        for c in conns:
            c.close()
        after = clone()
        print(f"after: clone took {after:.2f}s; server memory {floodkit.rss_kb(pid) // 1024} MiB")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
