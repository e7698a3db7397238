#!/usr/bin/env python3
"""SIGKILL `gitserve serve` at spread-out moments of pushes, N rounds; after each: the ref is
the old or the new commit, `git fsck --strict` is clean, the retried push works.

    python scripts/stress/kill_push.py [--rounds 20] [--size 1000000]

Prints faults injected, pushes that had landed before the kill, and losses (always 0, or
it exits 1 at the first broken invariant).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.conftest import make_server  # noqa: E402
from tests.hardening.test_faults import CONF, big_commit, git_fsck, kill9, rev  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--size", type=int, default=1_000_000, help="bytes of new data per push")
    args = ap.parse_args()
    srv = make_server(Path(tempfile.mkdtemp(prefix="gitserve-kill-")), users=("alice",), conf=CONF,
                      serve_args=("--workers", "0"))
    landed = 0
    try:
        repo = srv.repo_path("foo")
        work = srv.clone("alice", "foo")
        t = time.monotonic()
        big_commit(srv, work, args.size, "probe")
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        took = time.monotonic() - t
        for i in range(args.rounds):
            old = rev(repo)
            new = big_commit(srv, work, args.size, f"blob{i}")
            push = subprocess.Popen(["git", "push", "-q", "origin", "HEAD:main"], cwd=work,
                                    env=srv.client_env("alice"), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(took * (0.1 + 1.4 * i / max(1, args.rounds - 1)))
            kill9(srv)
            push.wait(60)
            now = rev(repo)
            if now not in (old, new):
                print(f"round {i}: ref is {now}, neither old {old} nor new {new}")
                return 1
            landed += now == new
            git_fsck(repo)
            srv.start(("--workers", "0"))
            srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
            assert rev(repo) == new
        git_fsck(repo)
    finally:
        srv.stop()
    print(f"faults injected: {args.rounds} SIGKILLs of the server mid-push "
          f"(one push takes {took:.2f}s here); pushes that had landed: {landed}; "
          f"refs neither old nor new: 0; fsck failures: 0; failed retries: 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
