"""Side-by-side benchmark: gitserve vs OpenSSH sshd + native git, on the same repositories.

    python -m tests.bench [--repos small,large] [--runs 5] [--backend auto|git|dulwich]
                          [--only clone,fetch1,...] [--servers native,gitserve] [--json FILE]

Every figure is a median of --runs runs; within a round both servers run the same operation
back to back (their order alternates round by round), so the gitserve/native ratio of a row
comes from one run of this command on one machine state. Server CPU is the CPU seconds of the
server's whole process tree for the operation, RSS the peak of the tree's summed resident
memory (sampled every 50 ms). The client is the real `git` with OpenSSH `ssh`, protocol v0
for both servers (a stock sshd does not accept GIT_PROTOCOL).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.bench import repogen
from tests.bench.proctree import Meter
from tests.bench.servers import GitserveServer, NativeSshd, Server, make_client_key

ALL_SCENARIOS = ("ls-remote", "noop-fetch", "fetch1", "fetch100", "clone", "parallel50", "push1",
                 "push50mb")
# refspec that mirrors branches and tags into a bare client repository
MIRROR = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]


class OpFailed(Exception):
    pass


def git(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
        input: bytes | None = None) -> str:
    try:
        proc = subprocess.run(["git", "-c", "gc.auto=0", *args], env=env, input=input,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise OpFailed(f"timeout after {timeout:.0f}s: git {' '.join(args[:3])}") from exc
    if proc.returncode != 0:
        raise OpFailed(f"git {' '.join(args[:3])}: {proc.stderr.decode(errors='replace').strip()[-400:]}")
    return proc.stdout.decode()


def rev(repo: Path, ref: str = "refs/heads/main") -> str:
    return git("-C", str(repo), "rev-parse", ref).strip()


_serial = 0


def add_commits(repo: Path, base: str, count: int, blob_bytes: int = 0) -> str:
    """COUNT new commits on top of BASE in REPO (not on any ref); returns the new tip.
    Every call writes content never seen before, so the other side really lacks it."""
    global _serial
    _serial += 1
    rng = random.Random(f"bench-add-{_serial}-{base}")
    ref = f"refs/bench/tmp{_serial}"
    out: list[bytes] = []
    for n in range(count):
        msg = f"bench change {_serial}.{n}\n".encode()
        out.append(f"commit {ref}\ncommitter Bench <b@example.com> {1_700_000_000 + n} +0000\n"
                   f"data {len(msg)}\n".encode() + msg)
        if n == 0:
            out.append(f"from {base}\n".encode())
        if blob_bytes:
            per = 1 << 20
            for i in range(0, blob_bytes, per):
                data = rng.randbytes(min(per, blob_bytes - i))
                out.append(f"M 100644 inline bench/{_serial}/blob{i // per:04d}.bin\n"
                           f"data {len(data)}\n".encode() + data + b"\n")
        else:
            data = f"change {_serial}.{n} {rng.random()}\n".encode() * 20
            out.append(f"M 100644 inline bench/{_serial}-{n % 7}.txt\ndata {len(data)}\n".encode()
                       + data + b"\n")
        out.append(b"\n")
    out.append(b"done\n")
    git("-C", str(repo), "fast-import", "--quiet", "--done", input=b"".join(out))
    tip = rev(repo, ref)
    git("-C", str(repo), "update-ref", "-d", ref)
    return tip


@dataclass
class Sample:
    wall: float
    cpu: float
    rss: int


@dataclass
class Row:
    scenario: str
    repo: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def med(self, server: str, attr: str) -> float | None:
        xs = [getattr(s, attr) for s in self.samples.get(server, [])]
        if not xs:
            return None
        return max(xs) if attr == "rss" else statistics.median(xs)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rows: list[Row] = []
        self.servers: list[Server] = []

    # --- set-up ---------------------------------------------------------------
    def setup(self) -> None:
        home = self.workdir / "home"
        repos_dir = home / "repositories"
        key = make_client_key(self.workdir)
        self.sources = {name: repogen.ensure(name) for name in self.args.repos}
        wanted = self.args.servers
        gitserve = None
        if "gitserve" in wanted:
            gitserve = GitserveServer(self.workdir, repos_dir, key, home, list(self.sources),
                                      self.args.backend)
            gitserve.init_home()
        repos_dir.mkdir(parents=True, exist_ok=True)
        for name, src in self.sources.items():
            repogen.copy_repo(src, repos_dir / f"{name}.git")
        if gitserve is not None:
            gitserve.set_conf()
        self.repos_dir = repos_dir
        if "native" in wanted:
            self.servers.append(NativeSshd(self.workdir, repos_dir, key))
        if gitserve is not None:
            self.servers.append(gitserve)
        for s in self.servers:
            s.start()
        # one client repository per server and repo, so fetches never share state
        self.clients: dict[tuple[str, str], Path] = {}
        for s in self.servers:
            for name in self.sources:
                dest = self.workdir / "clients" / f"{s.name}-{name}.git"
                git("clone", "-q", "--bare", str(repos_dir / f"{name}.git"), str(dest))
                self.clients[(s.name, name)] = dest

    def teardown(self) -> None:
        for s in self.servers:
            s.stop()

    # --- measuring ------------------------------------------------------------
    def measure(self, row: Row, server: Server, op: Callable[[], None],
                prepare: Callable[[], None] | None = None,
                cleanup: Callable[[], None] | None = None) -> None:
        if len(row.failures.get(server.name, [])) >= 2:
            return  # a server that timed out twice is not made to time out again
        if prepare:
            prepare()
        try:
            with Meter(server.tree()) as m:
                t0 = time.monotonic()
                op()
                wall = time.monotonic() - t0
        except OpFailed as exc:
            row.failures.setdefault(server.name, []).append(str(exc))
            print(f"  {row.scenario}/{row.repo} {server.name}: FAILED {exc}", file=sys.stderr)
            return
        finally:
            if cleanup:
                cleanup()
        row.samples.setdefault(server.name, []).append(Sample(wall, m.cpu, m.peak_rss))
        print(f"  {row.scenario}/{row.repo} {server.name}: {wall:.3f}s cpu {m.cpu:.2f}s "
              f"rss {m.peak_rss / 2**20:.0f}MB", file=sys.stderr)

    def rounds(self, row: Row, runs: int, one: Callable[[Server], tuple]) -> None:
        for i in range(runs):
            order = self.servers if i % 2 == 0 else list(reversed(self.servers))
            for server in order:
                self.measure(row, server, *one(server))
        self.rows.append(row)

    # --- scenarios --------------------------------------------------------------
    def scenario(self, name: str, repo: str) -> None:
        a = self.args
        runs = a.runs
        timeout = a.timeout
        src = self.repos_dir / f"{repo}.git"
        row = Row(name, repo)
        tmp = self.workdir / "tmp"

        def env(s: Server) -> dict[str, str]:
            return s.git_env()

        if name == "ls-remote":
            self.rounds(row, runs, lambda s: (
                lambda: git("ls-remote", s.url(repo), env=env(s), timeout=timeout),))
        elif name == "clone":
            if repo == "large":
                runs = a.large_runs
                timeout = a.large_timeout

            def clone(s: Server) -> tuple:
                dest = tmp / f"clone-{s.name}"

                def prepare() -> None:
                    shutil.rmtree(dest, ignore_errors=True)
                    if a.cold_clones and isinstance(s, GitserveServer):
                        shutil.rmtree(s.home / "cache" / "packs", ignore_errors=True)
                return (lambda: git("clone", "-q", "--bare", s.url(repo), str(dest), env=env(s),
                                    timeout=timeout),
                        prepare,
                        lambda: shutil.rmtree(dest, ignore_errors=True))
            self.rounds(row, runs, clone)
        elif name == "noop-fetch":
            self.rounds(row, runs, lambda s: (
                lambda: git("-C", str(self.clients[(s.name, repo)]), "fetch", "-q", s.url(repo),
                            *MIRROR, env=env(s), timeout=timeout),))
        elif name in ("fetch1", "fetch100"):
            count = 1 if name == "fetch1" else 100

            def fetch(s: Server) -> tuple:
                client = self.clients[(s.name, repo)]
                base = rev(src)

                def prepare() -> None:
                    git("-C", str(src), "update-ref", "refs/heads/main", add_commits(src, base, count))

                def cleanup() -> None:
                    git("-C", str(src), "update-ref", "refs/heads/main", base)
                    git("-C", str(client), "update-ref", "refs/heads/main", base)
                return (lambda: git("-C", str(client), "fetch", "-q", s.url(repo), *MIRROR,
                                    env=env(s), timeout=timeout), prepare, cleanup)
            self.rounds(row, runs, fetch)
        elif name in ("push1", "push50mb"):
            def push(s: Server) -> tuple:
                client = self.clients[(s.name, repo)]
                base = rev(src)
                tip: list[str] = []

                def prepare() -> None:
                    if name == "push1":
                        tip.append(add_commits(client, base, 1))
                    else:
                        tip.append(add_commits(client, base, 1, blob_bytes=50 << 20))

                def cleanup() -> None:
                    git("-C", str(src), "update-ref", "refs/heads/main", base)

                return (lambda: git("-C", str(client), "push", "-q", s.url(repo),
                                    f"{tip[-1]}:refs/heads/main", env=env(s), timeout=timeout),
                        prepare, cleanup)
            self.rounds(row, runs, push)
        elif name == "parallel50":
            runs = max(1, min(runs, a.parallel_runs))
            n = a.parallel

            def parallel(s: Server) -> tuple:
                dest = tmp / f"par-{s.name}"

                def op() -> None:
                    def one(i: int) -> str | None:
                        try:
                            git("clone", "-q", "--bare", s.url(repo), str(dest / str(i)),
                                env=env(s), timeout=timeout)
                            return None
                        except OpFailed as exc:
                            return str(exc)
                    with ThreadPoolExecutor(n) as pool:
                        errors = [e for e in pool.map(one, range(n)) if e]
                    if errors:
                        raise OpFailed(f"{len(errors)}/{n} clones failed; first: {errors[0]}")
                return (op, lambda: shutil.rmtree(dest, ignore_errors=True),
                        lambda: shutil.rmtree(dest, ignore_errors=True))
            self.rounds(row, runs, parallel)
        else:
            raise SystemExit(f"unknown scenario {name!r}")

    def run(self) -> None:
        for repo in self.args.repos:
            for name in self.args.only:
                if name == "parallel50" and repo != "small":
                    continue
                if name == "push50mb" and repo != self.args.repos[0]:
                    continue  # 50 MB of new objects cost the same on any repository
                print(f"== {name} on {repo}", file=sys.stderr)
                self.scenario(name, repo)

    # --- output ------------------------------------------------------------------
    def table(self) -> str:
        names = [s.name for s in self.servers]

        def sec(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        def mb(x: float | None) -> str:
            return "-" if x is None else f"{x / 2**20:.0f}"

        head = ["scenario", "repo"]
        for n in names:
            head += [f"{n} wall s"]
        if len(names) == 2:
            head.append("ratio")
        head.append(f"{names[-1]} 1st s")  # cold run: before any cache or repack helped
        for n in names:
            head += [f"{n} CPU s", f"{n} RSS MB"]
        head.append("failures")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.scenario, r.repo]
            walls = [r.med(n, "wall") for n in names]
            cells += [sec(w) for w in walls]
            if len(names) == 2:
                cells.append(f"{walls[1] / walls[0]:.2f}x" if walls[0] and walls[1] else "-")
            first = r.samples.get(names[-1])
            cells.append(sec(first[0].wall) if first else "-")
            for n in names:
                cells += [sec(r.med(n, "cpu")), mb(r.med(n, "rss"))]
            fails = [f"{n} {len(r.failures[n])}" for n in names if r.failures.get(n)]
            cells.append(", ".join(fails) or "0")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "args": {k: v for k, v in vars(self.args).items()},
            "rows": [{"scenario": r.scenario, "repo": r.repo,
                      "samples": {k: [vars(s) for s in v] for k, v in r.samples.items()},
                      "failures": r.failures} for r in self.rows],
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repos", default="small,large", help="small,large")
    p.add_argument("--only", default=",".join(ALL_SCENARIOS),
                   help="comma list of " + ",".join(ALL_SCENARIOS))
    p.add_argument("--servers", default="native,gitserve")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--large-runs", type=int, default=3, help="runs of the large full clone")
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--parallel-runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300, help="per git command")
    p.add_argument("--large-timeout", type=float, default=600, help="large clone time box")
    p.add_argument("--backend", default="auto", choices=["auto", "git", "dulwich"],
                   help="gitserve [server] pack_backend")
    p.add_argument("--cold-clones", action="store_true",
                   help="empty gitserve's pack cache before every clone (measure generation)")
    p.add_argument("--json", help="also write all samples to this file")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--table-from", metavar="JSON", help="only print the table of a --json file")
    args = p.parse_args(argv)
    args.repos = [x for x in args.repos.split(",") if x]
    args.only = [x for x in args.only.split(",") if x]
    args.servers = [x for x in args.servers.split(",") if x]
    for x in args.only:
        if x not in ALL_SCENARIOS:
            p.error(f"unknown scenario {x!r}")
    for x in args.repos:
        if x not in repogen.SPECS:
            p.error(f"unknown repo {x!r}")
    return args


def table_from(path: str) -> str:
    data = json.loads(Path(path).read_text())
    bench = Bench(parse_args([]), Path("."))
    names = data["args"]["servers"]
    bench.servers = [type("S", (), {"name": n})() for n in names]  # type: ignore[misc]
    for r in data["rows"]:
        row = Row(r["scenario"], r["repo"], failures=r["failures"])
        row.samples = {k: [Sample(**x) for x in v] for k, v in r["samples"].items()}
        bench.rows.append(row)
    a = data["args"]
    return (f"gitserve pack_backend={a['backend']}; medians of {a['runs']} runs (large clone "
            f"{a['large_runs']}, parallel {a['parallel_runs']})\n" + bench.table())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table_from:
        print(table_from(args.table_from))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="gitserve-bench-"))
    bench = Bench(args, workdir)
    try:
        bench.setup()
        bench.run()
    finally:
        bench.teardown()
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ngitserve pack_backend={args.backend}; medians of {args.runs} runs "
          f"(large clone {args.large_runs}, parallel {args.parallel_runs}); "
          f"RSS = peak of the server process tree")
    print(bench.table())
    if args.json:
        Path(args.json).write_text(json.dumps(bench.as_json(), indent=1))
    return 0
