"""50 parallel clones from one address on a loaded machine: gitserve vs native sshd (#19).

    python -m tests.bench.stampede [--clones 50] [--rounds 2] [--load fork,cpu,mem,io,flood]
                                   [--cpu 8] [--forks 12] [--mem-mb 2048] [--flood 300]
                                   [--limits shipped|bench]

A CI runner behind one NAT address starting 50 clones at once while the machine is busy:
every clone must succeed. The load is what broke them before: shell loops forking short
processes (hostile builds), CPU-bound processes, a memory hog that keeps touching its pages,
writers that fsync, and a flood of connections from another address (127.0.0.2) that connect
and never speak, re-opened as the server closes them. The flood targets the server under
test only. Both servers serve the same `small` repository; rounds alternate their order.
`--limits shipped` (default) runs gitserve with the admission limits a fresh `gitserve init`
writes; `bench` lifts them as the other benchmarks do.

Prints, per server and round: failed clones, wall time, the load average, and the first
error lines, then a summary table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench import repogen
from tests.bench.run import OpFailed, git
from tests.bench.servers import GitserveServer, NativeSshd, Server, make_client_key

LOADS = ("fork", "cpu", "mem", "io", "flood")

FLOOD_WORKER = r"""
import socket, sys, time, select
host, port, n, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []
def one():
    s = socket.socket(); s.setblocking(False); s.bind((src, 0))
    try: s.connect((host, port))
    except BlockingIOError: pass
    except OSError: s.close(); return None
    return s
while True:
    while len(socks) < n:
        s = one()
        if s is None: time.sleep(0.05); break
        socks.append(s)
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r:  # the server sent its banner, or closed us: read; on EOF, replace
        try: data = s.recv(4096)
        except OSError: data = b""
        if not data: socks.remove(s); s.close()
"""

MEM_WORKER = r"""
import sys, time
mb = int(sys.argv[1]); page = 4096
buf = bytearray(mb << 20)
while True:
    for i in range(0, len(buf), page): buf[i] = (buf[i] + 1) & 255
    time.sleep(0.01)
"""

IO_WORKER = r"""
import os, sys
path = sys.argv[1]; chunk = os.urandom(1 << 20)
while True:
    with open(path, "wb") as f:
        for _ in range(64): f.write(chunk)
        f.flush(); os.fsync(f.fileno())
    with open(path, "rb") as f:
        while f.read(1 << 20): pass
"""


class Load:
    """The background load: every process in its own session, killed by group at the end."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.flood: subprocess.Popen | None = None

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self) -> None:
        kinds = self.args.load
        if "fork" in kinds:
            for _ in range(self.args.forks):
                self._spawn(["sh", "-c", "while :; do /bin/true; ls / >/dev/null; done"])
        if "cpu" in kinds:
            for _ in range(self.args.cpu):
                self._spawn([sys.executable, "-c", "while True: pass"])
        if "mem" in kinds:
            self._spawn([sys.executable, "-c", MEM_WORKER, str(self.args.mem_mb)])
        if "io" in kinds:
            for i in range(2):
                self._spawn([sys.executable, "-c", IO_WORKER, str(self.workdir / f"io{i}.bin")])

    def start_flood(self, server: Server) -> None:
        self.stop_flood()
        if "flood" in self.args.load and self.args.flood:
            self.flood = self._spawn([sys.executable, "-c", FLOOD_WORKER, "127.0.0.1",
                                      str(server.port), str(self.args.flood), "127.0.0.2"])

    def stop_flood(self) -> None:
        if self.flood is not None:
            _kill(self.flood)
            self.procs.remove(self.flood)
            self.flood = None

    def stop(self) -> None:
        for p in self.procs:
            _kill(p)
        self.procs.clear()
        for i in range(2):
            (self.workdir / f"io{i}.bin").unlink(missing_ok=True)


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=10)


def stampede(server: Server, n: int, dest: Path, timeout: float) -> tuple[float, list[str]]:
    env = server.git_env()

    def one(i: int) -> str | None:
        try:
            git("clone", "-q", "--bare", server.url("small"), str(dest / str(i)), env=env,
                timeout=timeout)
            return None
        except OpFailed as exc:
            return str(exc)

    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        errors = [e for e in pool.map(one, range(n)) if e]
    return time.monotonic() - t0, errors


def _why(log: Path) -> None:
    """How gitserve turned connections away (its log), counted by reason."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return
    counts: dict[str, int] = {}
    for line in lines:
        for needle in ("refused connection from", "not authenticated", "connection from",
                       "Traceback", "Error"):
            if needle in line:
                key = line.split("] ", 1)[-1][:120]
                key = key.replace("127.0.0.1", "A").replace("127.0.0.2", "F")
                counts[key] = counts.get(key, 0) + 1
                break
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  gitserve log x{n}: {key}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clones", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--load", default=",".join(LOADS))
    p.add_argument("--cpu", type=int, default=8)
    p.add_argument("--forks", type=int, default=12)
    p.add_argument("--mem-mb", type=int, default=2048)
    p.add_argument("--flood", type=int, default=300)
    p.add_argument("--limits", choices=("shipped", "bench"), default="shipped")
    p.add_argument("--servers", default="native,gitserve")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--flood-native", action="store_true",
                   help="flood sshd too (its MaxStartups has no per-address share: it fails)")
    args = p.parse_args(argv)
    args.load = [x for x in args.load.split(",") if x]
    workdir = Path(tempfile.mkdtemp(prefix="gitserve-bench-stampede-"))
    home = workdir / "home"
    repos = home / "repositories"
    key = make_client_key(workdir)
    servers: list[Server] = []
    load = Load(args, workdir)
    results: dict[str, list[tuple[float, int, float]]] = {}
    try:
        gs = GitserveServer(workdir, repos, key, home, ["small"], "auto",
                            bench_limits=args.limits == "bench")
        gs.init_home()
        repos.mkdir(parents=True, exist_ok=True)
        repogen.copy_repo(repogen.ensure("small"), repos / "small.git")
        gs.set_conf()
        servers = [s for s in (NativeSshd(workdir, repos, key), gs)
                   if s.name in args.servers.split(",")]
        for s in servers:
            s.start()
        load.start()
        time.sleep(3)  # let the load build up
        for r in range(args.rounds):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for s in order:
                if s.name == "gitserve" or args.flood_native:
                    load.start_flood(s)
                else:
                    load.stop_flood()
                time.sleep(1)
                dest = workdir / f"clones-{s.name}"
                wall, errors = stampede(s, args.clones, dest, args.timeout)
                shutil.rmtree(dest, ignore_errors=True)
                load1 = os.getloadavg()[0]
                results.setdefault(s.name, []).append((wall, len(errors), load1))
                print(f"round {r + 1} {s.name}: {len(errors)}/{args.clones} failed in "
                      f"{wall:.1f}s (load {load1:.1f})", file=sys.stderr)
                for e in sorted(set(errors))[:3]:
                    print(f"    {e[-300:]}", file=sys.stderr)
            load.stop_flood()
    finally:
        load.stop()
        for s in servers:
            s.stop()
        _why(workdir / "gitserve-serve.log")
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"| server | failed clones (of {args.clones}) per round | median wall (s) | load avg |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        print(f"| {name} | {', '.join(str(f) for _, f, _ in rows)} | "
              f"{statistics.median(w for w, _, _ in rows):.1f} | "
              f"{', '.join(f'{la:.0f}' for _, _, la in rows)} |")
    return 0 if all(f == 0 for rows in results.values() for _, f, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
