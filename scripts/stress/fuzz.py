#!/usr/bin/env python3
"""Long fuzz run of the hardening targets; prints how many inputs each ran and their outcomes.

    python scripts/stress/fuzz.py [--examples N]      # N per target, default 5000

Same targets and invariants as tests/hardening/test_fuzz.py (tests/hardening/fuzzkit.py):
conf parser, SSH exec-command line, receive-pack byte stream. Exits 1 on the first
invariant broken, printing the falsifying input.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from tests.hardening import fuzzkit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5000, help="inputs per target")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    conf = settings(max_examples=args.examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
    seen: collections.Counter = collections.Counter()
    tmp = Path(tempfile.mkdtemp(prefix="gitserve-fuzz-"))
    home = fuzzkit.make_home(tmp / "h")
    fx = fuzzkit.make_push_fixture(tmp / "p")

    @conf
    @given(fuzzkit.conf_text, fuzzkit.conf_text)
    def conf_target(main, extra):
        seen["conf:" + fuzzkit.check_conf(main, extra)] += 1

    @conf
    @given(fuzzkit.command_line, st.sampled_from(["alice", "bob", "carol"]))
    def command_target(command, user):
        seen["command:" + fuzzkit.check_command(home, command, user)] += 1

    @conf
    @given(fuzzkit.push_input(fx))
    def push_target(data):
        seen["push:" + fuzzkit.check_push(fx, tmp / "w", data)] += 1

    for name, target in (("conf parser", conf_target), ("exec commands", command_target),
                         ("receive-pack input", push_target)):
        started = time.monotonic()
        before = sum(seen.values())
        if args.seed is not None:
            target = __import__("hypothesis").seed(args.seed)(target)
        target()
        print(f"{name}: {sum(seen.values()) - before} inputs in "
              f"{time.monotonic() - started:.1f}s, no invariant broken", flush=True)
    print(f"total: {sum(seen.values())} inputs; outcomes: {dict(sorted(seen.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
