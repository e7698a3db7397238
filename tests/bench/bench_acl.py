"""Benchmark of the access engine: compile a big conf, then time decisions.

    python tests/bench/bench_acl.py [--repos 10000] [--users 1000]

Targets (issue 2): compile 10,000 repos / 1,000 users in under 1 s; a decision in
microseconds (rules are indexed per repo and user, never rescanned).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gitserve import acl  # noqa: E402


def big_conf(n_repos: int, n_users: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    users = [f"user{i}" for i in range(n_users)]
    lines = ["repo gitolite-admin", "    RW+ = admin"]
    n_groups = max(1, n_users // 20)
    for g in range(n_groups):
        lines.append(f"@team{g} = " + " ".join(users[g * 20:(g + 1) * 20]))
    lines.append("@leads = " + " ".join(rnd.sample(users, 20)))
    for i in range(n_repos):
        g = i % n_groups
        lines += [
            f"repo proj{i}",
            "    RW+ = @leads",
            f"    -   master = @team{g}",
            f"    RW  = @team{g} {rnd.choice(users)}",
            f"    RW+ USER/ = @team{g}",
            "    R   = @all",
        ]
        if i % 10 == 0:
            lines.append("    option build.mode = async")
    lines += ["repo wild/CREATOR/..*", "    C = @all", "    RW+ = CREATOR", "    R = READERS"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=1_000)
    ap.add_argument("--queries", type=int, default=100_000)
    args = ap.parse_args()
    text = big_conf(args.repos, args.users)
    t0, c0 = time.perf_counter(), time.process_time()
    rules = acl.load_files({"gitolite.conf": text})
    t_compile, c_compile = time.perf_counter() - t0, time.process_time() - c0
    print(f"compile: {args.repos} repos, {args.users} users, {text.count(chr(10))} lines: "
          f"{t_compile:.3f} s wall, {c_compile:.3f} s cpu")
    rnd = random.Random(2)
    qs = [(f"proj{rnd.randrange(args.repos)}", f"user{rnd.randrange(args.users)}",
           rnd.choice(["R", "W", "+"]), rnd.choice(["any", "master", "dev", "user3/x"]))
          for _ in range(args.queries)]
    t0, c0 = time.perf_counter(), time.process_time()
    allowed = sum(1 for q in qs if rules.check(*q).allowed)
    t_q, c_q = time.perf_counter() - t0, time.process_time() - c0
    print(f"check: {args.queries} decisions ({allowed} allowed): "
          f"{t_q / args.queries * 1e6:.1f} us wall, {c_q / args.queries * 1e6:.1f} us cpu each")
    t0 = time.perf_counter()
    n = 2000
    for i in range(n):
        rules.check(f"proj{i}", f"user{i % args.users}", "W", "master")
    print(f"check (cold repo/user pairs): {(time.perf_counter() - t0) / n * 1e6:.1f} us each")
    t0 = time.perf_counter()
    names = {f"proj{i}": None for i in range(args.repos)}
    body = rules.info("user5", names)
    print(f"info over {args.repos} repos: {time.perf_counter() - t0:.3f} s, "
          f"{body.count(chr(10))} rows")


if __name__ == "__main__":
    main()
