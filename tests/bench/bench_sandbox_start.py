"""Benchmark: what the sandbox's network namespace adds to a run's start (issue 21).

    python tests/bench/bench_sandbox_start.py [--runs N]

Runs `/bin/true` through gitserve.sandbox.prepare + buildqueue.runner.run_script (what a
build does, from the bwrap command to the reaped namespace) with `[builds] network` = host
(no namespace: what every build did before issue 21), none (own namespace, loopback only) and
outbound (own namespace + slirp4netns/pasta configured before the script starts), each on a
size-capped workspace. Prints medians and the added cost over `host`. Target: outbound under
150 ms over host. As root the run drops to a build uid, as any other user it runs in a user
namespace.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from buildqueue import runner  # noqa: E402
from gitserve import sandbox  # noqa: E402


def one(root: Path, mode: str) -> float:
    policy = sandbox.Policy(network=mode, uid=200999 if os.geteuid() == 0 else None)
    work, _ = sandbox.new_capped_workdir(root, policy.limits.disk)
    try:
        sandbox.hand_over(policy, work)
        start = time.monotonic()
        jail = sandbox.prepare(policy, work, ["/bin/true"], {})
        res = runner.run_script([], work / "src", {}, 60, lambda line: None, jail=jail)
        took = time.monotonic() - start
        assert res.status == "passed", res
        return took
    finally:
        sandbox.remove_workdir(work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = sandbox.work_root(Path(tmp) / "work")
        medians = {}
        for mode in ("host", "none", "outbound"):
            one(root, mode)  # warm-up (probe, page cache)
            times = [one(root, mode) for _ in range(args.runs)]
            medians[mode] = statistics.median(times)
            print(f"{mode:9s} median {medians[mode] * 1000:6.1f} ms  "
                  f"p90 {sorted(times)[int(len(times) * 0.9) - 1] * 1000:6.1f} ms  "
                  f"(+{(medians[mode] - medians['host']) * 1000:5.1f} ms over host)")


if __name__ == "__main__":
    main()
