"""Pushes: gitserve vs native `git receive-pack` behind OpenSSH, same data, same machine (#19).

    python -m tests.bench.bench_push [--only new-small,push100,blobs,parallel20,after200]
                                     [--runs 3] [--blob-mb 256] [--blobs 4] [--pushes 200]
    python -m tests.bench.bench_push --only new-large --runs 1     # >= 200k objects, slow

Scenarios (each round runs both servers back to back, order alternating; medians of --runs):
- `new-small` / `new-large`: push a whole repository (all branches and tags of the bench's
  `small` 8.9k-object or `large` 299k-object repository) into a new, empty repository;
- `push100`: 100 new commits onto an existing branch;
- `blobs`: one commit with BLOBS random files of BLOB_MB MiB each into a new repository (the
  client packs with compression 0, as git does for big files); the table's RSS is the peak of
  the server's whole process tree (sshd + receive-pack + index-pack; serve + index-pack), and
  `serve RSS` is gitserve's Python process alone;
- `parallel20`: 20 pushes at once, one new commit each, to 20 branches of one repository;
- `after200`: PUSHES one-commit pushes to a copy of `small`, then a full clone right away,
  then a full clone again after `git repack -adb` of the repository (the fast path: one pack
  with a bitmap). gitserve repacks in the background after pushes; native git runs
  `gc --auto` after a push.
gitserve runs with its push limits lifted (max_blob_bytes, max_push_bytes = 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from tests.bench import repogen
from tests.bench.proctree import Meter, _cmdline
from tests.bench.run import OpFailed, add_commits, git, rev
from tests.bench.servers import GitserveServer, NativeSshd, Server, make_client_key

SCENARIOS = ("new-small", "push100", "blobs", "parallel20", "after200", "new-large")
MIB = 1 << 20


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def refs_of(repo: Path) -> dict[str, str]:
    out = git("-C", str(repo), "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def check(repo: Path, want: dict[str, str]) -> None:
    """The push really happened: the server's repository has exactly these ref values."""
    have = refs_of(repo)
    wrong = {r: (v, have.get(r)) for r, v in want.items() if have.get(r) != v}
    if wrong:
        raise SystemExit(f"{repo.name}: refs not as pushed: {list(wrong.items())[:3]}")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
        self.extra: dict[tuple[str, str], list[float]] = {}
        self.servers: list[Server] = []
        self.serial = 0

    # --- set-up -------------------------------------------------------------------------
    def target_names(self) -> list[str]:
        names = []
        for s in ("native", "gitserve"):
            for i in range(max(self.args.runs, 1)):
                for sc in ("new-small", "new-large", "blobs"):
                    names.append(f"{sc}-{s}-{i}")
            names += [f"push100-{s}", f"parallel20-{s}", f"after200-{s}"]
        return names

    def setup(self) -> None:
        home = self.workdir / "home"
        self.repos = home / "repositories"
        key = make_client_key(self.workdir)
        names = self.target_names()
        gs = GitserveServer(self.workdir, self.repos, key, home, names, self.args.backend)
        gs.init_home()
        from gitserve import settings as settings_mod

        s = settings_mod.load(home)
        s.server.max_push_bytes = 0
        s.server.max_blob_bytes = 0
        settings_mod.write(s)
        self.repos.mkdir(parents=True, exist_ok=True)
        small = repogen.ensure("small")
        for name in names:
            if name.startswith(("push100-", "parallel20-", "after200-")):
                repogen.copy_repo(small, self.repos / f"{name}.git")
            else:
                git("init", "-q", "--bare", str(self.repos / f"{name}.git"))
        gs.set_conf()
        self.servers = [NativeSshd(self.workdir, self.repos, key), gs]
        for srv in self.servers:
            srv.start()

    def teardown(self) -> None:
        for s in self.servers:
            s.stop()

    # --- measuring ----------------------------------------------------------------------
    def quiesce(self, server: Server, limit: float = 600) -> None:
        """Wait for gitserve's background repack of an earlier push to end, so each push is
        measured alone (its memory and CPU are upkeep's, niced, reported by `after200`)."""
        if isinstance(server, GitserveServer):
            time.sleep(1.5)  # repack.DELAY: a repack asked for by the last push starts after it
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(
                " repack " in _cmdline(pid) for pid in server.tree().pids()):
            time.sleep(0.5)

    def timed(self, label: str, server: Server, op: Callable[[], None]) -> None:
        self.quiesce(server)
        serve_pid = server.proc.pid if isinstance(server, GitserveServer) and server.proc else 0
        peak_serve = [0]
        by_proc: dict[str, int] = {}
        try:
            with Meter(server.tree()) as m:
                t0 = time.monotonic()
                if serve_pid:
                    import threading

                    stop = threading.Event()

                    def sample() -> None:
                        while not stop.wait(0.05):
                            peak_serve[0] = max(peak_serve[0], _status_kb(serve_pid, "VmRSS"))
                            for pid in server.tree().pids():  # who holds the memory
                                kb = _status_kb(pid, "RssAnon")
                                what = " ".join(w for w in _cmdline(pid).split()
                                                if not w.startswith(("-", "/")))[:60]
                                by_proc[what] = max(by_proc.get(what, 0), kb)
                    th = threading.Thread(target=sample, daemon=True)
                    th.start()
                try:
                    op()
                finally:
                    wall = time.monotonic() - t0
                    if serve_pid:
                        stop.set()
                        th.join()
        except OpFailed as exc:
            print(f"  {label} {server.name}: FAILED {exc}", file=sys.stderr)
            return
        self.results.setdefault((label, server.name), []).append((wall, m.cpu, m.peak_rss))
        if serve_pid:
            self.extra.setdefault((label, "serve-rss"), []).append(peak_serve[0] * 1024)
        more = f" serve {peak_serve[0] / 1024:.0f}MB" if serve_pid else ""
        if by_proc:
            top = sorted(by_proc.items(), key=lambda kv: -kv[1])[:3]
            more += " (anon: " + ", ".join(f"{w or '?'} {kb / 1024:.0f}MB" for w, kb in top) + ")"
        print(f"  {label} {server.name}: {wall:.2f}s cpu {m.cpu:.1f}s rss "
              f"{m.peak_rss / MIB:.0f}MB{more}", file=sys.stderr)

    def each_round(self, runs: int, fn: Callable[[Server, int], None]) -> None:
        for i in range(runs):
            for s in (self.servers if i % 2 == 0 else list(reversed(self.servers))):
                fn(s, i)

    # --- scenarios ------------------------------------------------------------------------
    def run(self) -> None:
        self.tmp = self.workdir / "tmp"
        self.tmp.mkdir(exist_ok=True)
        for name in self.args.only:
            if name in ("new-small", "new-large"):
                self.new_repo(name)
            else:
                getattr(self, name.replace("-", "_"))()

    def push(self, s: Server, client: Path, *args: str) -> None:
        git("-C", str(client), *args, env=s.git_env(), timeout=self.args.timeout)

    def new_repo(self, name: str) -> None:
        src = repogen.ensure(name.split("-")[1])
        runs = self.args.runs if name == "new-small" else self.args.large_runs

        def one(s: Server, i: int) -> None:
            url = s.url(f"{name}-{s.name}-{i}")
            self.timed(name, s, lambda: self.push(s, src, "push", "-q", url,
                                                  "refs/heads/*:refs/heads/*",
                                                  "refs/tags/*:refs/tags/*"))
            check(self.repos / f"{name}-{s.name}-{i}.git", refs_of(src))
        self.each_round(runs, one)

    def clients(self, prefix: str) -> dict[str, Path]:
        out = {s.name: self.tmp / f"{prefix}-client-{s.name}.git" for s in self.servers}
        for s in self.servers:
            git("clone", "-q", "--bare", str(self.repos / f"{prefix}-{s.name}.git"),
                str(out[s.name]))
        return out

    def push100(self) -> None:
        clients = self.clients("push100")

        def one(s: Server, i: int) -> None:
            client = clients[s.name]
            tip = add_commits(client, rev(self.repos / f"push100-{s.name}.git"), 100)
            self.timed("push100", s, lambda: self.push(
                s, client, "push", "-q", s.url(f"push100-{s.name}"), f"{tip}:refs/heads/main"))
            check(self.repos / f"push100-{s.name}.git", {"refs/heads/main": tip})
        self.each_round(self.args.runs, one)

    def blobs(self) -> None:
        client = self.tmp / "blobs-client"
        self.make_blobs(client)
        head = rev(client, "HEAD")

        def one(s: Server, i: int) -> None:
            self.timed("blobs", s, lambda: self.push(
                s, client, "-c", "pack.compression=0", "-c", "core.bigFileThreshold=1m", "push",
                "-q", s.url(f"blobs-{s.name}-{i}"), "HEAD:refs/heads/main"))
            check(self.repos / f"blobs-{s.name}-{i}.git", {"refs/heads/main": head})
        self.each_round(self.args.runs, one)

    def parallel20(self) -> None:
        clients = self.clients("parallel20")

        def one(s: Server, i: int) -> None:
            client = clients[s.name]
            base = rev(self.repos / f"parallel20-{s.name}.git")
            tips = [add_commits(client, base, 1) for _ in range(20)]

            def push(j: int) -> str | None:
                try:
                    self.push(s, client, "push", "-q", s.url(f"parallel20-{s.name}"),
                              f"{tips[j]}:refs/heads/b{i}-{j}")
                    return None
                except OpFailed as exc:
                    return str(exc)

            def op() -> None:
                with ThreadPoolExecutor(20) as pool:
                    errors = [e for e in pool.map(push, range(20)) if e]
                if errors:
                    raise OpFailed(f"{len(errors)}/20 failed; first: {errors[0]}")
            self.timed("parallel20", s, op)
            check(self.repos / f"parallel20-{s.name}.git",
                  {f"refs/heads/b{i}-{j}": tips[j] for j in range(20)})
        self.each_round(self.args.runs, one)

    def clone(self, label: str, s: Server, repo: str) -> None:
        dest = self.tmp / "clone"
        self.timed(label, s, lambda: git("clone", "-q", "--bare", s.url(repo), str(dest),
                                         env=s.git_env(), timeout=self.args.timeout))
        shutil.rmtree(dest, ignore_errors=True)

    def after200(self) -> None:
        a = self.args
        for s in self.servers:  # one server at a time: 200 pushes each
            repo = self.repos / f"after200-{s.name}.git"
            client = self.tmp / f"a200-client-{s.name}.git"
            git("clone", "-q", "--bare", str(repo), str(client))
            tip = rev(repo)
            t0 = time.monotonic()
            for _ in range(a.pushes):
                tip = add_commits(client, tip, 1)
                self.push(s, client, "push", "-q", s.url(f"after200-{s.name}"),
                          f"{tip}:refs/heads/main")
            pushed = time.monotonic() - t0
            check(repo, {"refs/heads/main": tip})
            packs = len(list((repo / "objects" / "pack").glob("*.pack")))
            bitmaps = len(list((repo / "objects" / "pack").glob("*.bitmap")))
            print(f"  after200 {s.name}: {a.pushes} pushes in {pushed:.1f}s; {packs} packs, "
                  f"{bitmaps} bitmaps", file=sys.stderr)
            self.clone("clone after pushes", s, f"after200-{s.name}")
            self.clone("clone after pushes (2)", s, f"after200-{s.name}")
            git("-C", str(repo), "repack", "-adbq")
            if isinstance(s, GitserveServer):
                shutil.rmtree(s.home / "cache" / "packs", ignore_errors=True)
            self.clone("clone after repack -adb", s, f"after200-{s.name}")

    def make_blobs(self, client: Path) -> None:
        git("init", "-q", str(client))
        for n in range(self.args.blobs):
            with open(client / f"blob{n}.bin", "wb") as f:
                left = self.args.blob_mb * MIB
                while left:
                    chunk = os.urandom(min(left, 8 * MIB))
                    f.write(chunk)
                    left -= len(chunk)
        git("-C", str(client), "-c", "core.bigFileThreshold=1m", "add", "-A", timeout=900)
        git("-C", str(client), "-c", "user.name=b", "-c", "user.email=b@e", "commit", "-q",
            "-m", "blobs", timeout=900)
        for n in range(self.args.blobs):
            (client / f"blob{n}.bin").unlink()  # the objects are in .git; free the disk

    def table(self) -> str:
        out = ["| scenario | native (s) | gitserve (s) | gitserve/native | native peak RSS | "
               "gitserve peak RSS (tree / serve) |", "|---|---|---|---|---|---|"]
        labels = list(dict.fromkeys(label for label, _ in self.results))
        for label in labels:
            n = self.results.get((label, "native"), [])
            g = self.results.get((label, "gitserve"), [])
            nw = statistics.median(x[0] for x in n) if n else 0.0
            gw = statistics.median(x[0] for x in g) if g else 0.0
            ratio = f"{gw / nw:.2f}" if nw and gw else "-"
            nr = max((x[2] for x in n), default=0) / MIB
            gr = max((x[2] for x in g), default=0) / MIB
            sr = max(self.extra.get((label, "serve-rss"), [0])) / MIB
            runs = f" ({len(n)}/{len(g)} runs: " + " ".join(
                f"{x[0]:.2f}" for x in n) + " | " + " ".join(f"{x[0]:.2f}" for x in g) + ")"
            out.append(f"| {label}{runs} | {nw:.2f} | {gw:.2f} | {ratio} | {nr:.0f} MB | "
                       f"{gr:.0f} / {sr:.0f} MB |")
        return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="new-small,push100,blobs,parallel20,after200")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--large-runs", type=int, default=1)
    p.add_argument("--blobs", type=int, default=4)
    p.add_argument("--blob-mb", type=int, default=256)
    p.add_argument("--pushes", type=int, default=200)
    p.add_argument("--backend", default="auto", choices=("auto", "git", "dulwich"))
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    args.only = [x for x in args.only.split(",") if x]
    for x in args.only:
        if x not in SCENARIOS:
            p.error(f"unknown scenario {x!r}")
    workdir = Path(tempfile.mkdtemp(prefix="gitserve-bench-push-"))
    bench = Bench(args, workdir)
    try:
        bench.setup()
        bench.run()
    finally:
        bench.teardown()
        shutil.rmtree(workdir, ignore_errors=True)
    print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
