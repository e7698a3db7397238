"""Protocol v2 and partial clone: gitserve vs native git behind OpenSSH, same repositories.

    python -m tests.bench.bench_protocol [--runs 3] [--refs 50000] [--backend auto]
                                         [--only ls-remote,noop-fetch,clone]

Scenarios (median wall time of --runs; each round runs both servers back to back):
- `ls-remote` of a repository with REFS refs (the small repo plus refs/pull/N/head for
  90% of them and lightweight tags for the rest, packed as a busy forge keeps them),
  with `protocol.version` 0 and 2;
- `noop-fetch`: `git fetch origin` in an up-to-date clone of it (default refspec, tags
  followed), v0 and v2: v2's ls-refs sends only refs/heads/ and refs/tags/;
- `clone`: full clone vs `--filter=blob:none` (no checkout) of the large repository (v2);
  gitserve keeps generated clone packs (packcache.py), so from the second run on a clone
  is a cached copy unless `--cold` empties the cache before each operation.
The client is the real git with OpenSSH ssh. The native sshd accepts GIT_PROTOCOL, so both
servers negotiate the same version.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import repogen
from tests.bench.run import OpFailed, git
from tests.bench.servers import GitserveServer, NativeSshd, Server, make_client_key

SCENARIOS = ("ls-remote", "noop-fetch", "clone")


def add_refs(repo: Path, count: int) -> None:
    """COUNT extra refs on existing commits, packed (packed-refs), as a forge's repository."""
    commits = git("-C", str(repo), "rev-list", "--max-count=1000", "refs/heads/main").split()
    lines = []
    pulls = count * 9 // 10
    for i in range(count):
        sha = commits[i % len(commits)]
        name = f"refs/pull/{i}/head" if i < pulls else f"refs/tags/r{i}"
        lines.append(f"create {name} {sha}\n")
    git("-C", str(repo), "update-ref", "--stdin", input="".join(lines).encode())
    git("-C", str(repo), "pack-refs", "--all")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.results: dict[tuple[str, str], list[float]] = {}
        self.servers: list[Server] = []

    def setup(self) -> None:
        home = self.workdir / "home"
        repos = home / "repositories"
        key = make_client_key(self.workdir)
        names = ["refs", "large"]
        gs = GitserveServer(self.workdir, repos, key, home, names, self.args.backend)
        gs.init_home()
        repos.mkdir(parents=True, exist_ok=True)
        repogen.copy_repo(repogen.ensure("small"), repos / "refs.git")
        add_refs(repos / "refs.git", self.args.refs)
        repogen.copy_repo(repogen.ensure("large"), repos / "large.git")
        for name in names:  # what the native side needs for partial clone
            git("-C", str(repos / f"{name}.git"), "config", "uploadpack.allowFilter", "true")
        gs.set_conf()
        self.servers = [NativeSshd(self.workdir, repos, key), gs]
        for s in self.servers:
            s.start()

    def teardown(self) -> None:
        for s in self.servers:
            s.stop()

    def timed(self, label: str, server: Server, argv: list[str],
              prepare: list[str] | None = None, cleanup: Path | None = None) -> None:
        env = server.git_env()
        if prepare:
            git(*prepare, env=env)
        if self.args.cold and isinstance(server, GitserveServer):
            shutil.rmtree(server.home / "cache" / "packs", ignore_errors=True)
        t0 = time.monotonic()
        try:
            git(*argv, env=env, timeout=self.args.timeout)
        except OpFailed as exc:
            print(f"  {label} {server.name}: FAILED {exc}", file=sys.stderr)
            return
        finally:
            wall = time.monotonic() - t0
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
        self.results.setdefault((label, server.name), []).append(wall)
        print(f"  {label} {server.name}: {wall:.3f}s", file=sys.stderr)

    def run(self) -> None:
        only = self.args.only
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        clients = {}
        if "noop-fetch" in only:
            for s in self.servers:
                dest = tmp / f"client-{s.name}"
                git("clone", "-q", "--no-checkout", s.url("refs"), str(dest), env=s.git_env())
                clients[s.name] = dest
        for i in range(self.args.runs):
            order = self.servers if i % 2 == 0 else list(reversed(self.servers))
            for s in order:
                for v in ("0", "2"):
                    pv = ["-c", f"protocol.version={v}"]
                    if "ls-remote" in only:
                        self.timed(f"ls-remote v{v}", s, [*pv, "ls-remote", s.url("refs")])
                    if "noop-fetch" in only:
                        self.timed(f"noop-fetch v{v}", s,
                                   ["-C", str(clients[s.name]), *pv, "fetch", "-q", "origin"])
                if "clone" in only:
                    dest = tmp / f"clone-{s.name}"
                    self.timed("clone full", s, ["clone", "-q", "--bare", s.url("large"),
                                                 str(dest)], cleanup=dest)
                    self.timed("clone blob:none", s, ["clone", "-q", "--bare",
                                                      "--filter=blob:none", s.url("large"),
                                                      str(dest)], cleanup=dest)

    def table(self) -> str:
        labels = sorted({label for label, _ in self.results},
                        key=lambda x: (SCENARIOS.index(x.split()[0]), x))

        def med(label: str, server: str) -> float | None:
            xs = self.results.get((label, server))
            return statistics.median(xs) if xs else None

        out = ["| scenario | native (s) | gitserve (s) | gitserve/native |",
               "|---|---|---|---|"]
        for label in labels:
            n, g = med(label, "native"), med(label, "gitserve")
            ratio = f"{g / n:.2f}" if n and g else "-"
            out.append(f"| {label} | {n or 0:.3f} | {g or 0:.3f} | {ratio} |")
        extra = []
        for server in ("native", "gitserve"):
            for a, b in (("ls-remote v0", "ls-remote v2"), ("noop-fetch v0", "noop-fetch v2"),
                         ("clone full", "clone blob:none")):
                x, y = med(a, server), med(b, server)
                if x and y:
                    extra.append(f"- {server}: {b} / {a} = {y / x:.2f}")
        return "\n".join(out + [""] + extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--refs", type=int, default=50000)
    p.add_argument("--backend", default="auto", choices=("auto", "git", "dulwich"))
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--only", default=",".join(SCENARIOS))
    p.add_argument("--cold", action="store_true",
                   help="empty gitserve's pack cache before every operation (native has none)")
    args = p.parse_args(argv)
    args.only = [x for x in args.only.split(",") if x]
    workdir = Path(tempfile.mkdtemp(prefix="gitserve-bench-proto-"))
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
