"""`git clone` of a repo with a few thousand commits: gitserve vs OpenSSH sshd + native git.

    python -m tests.bench.clone_vs_sshd [--commits 3000] [--runs 5]

Both servers serve the same packed bare repository on 127.0.0.1 to the same client (real `git`
with OpenSSH `ssh`, one key). The native side is a private sshd (own config, host key and
port, forced protocol v0 like gitserve) running the system's git-upload-pack. Rounds alternate
which server goes first; the table shows medians of wall time per full bare clone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.tools import find_tool, free_port


def make_repo(dest: Path, commits: int) -> None:
    """A bare repo of COMMITS commits, each editing a few of 60 text files (fast-import)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(dest)], check=True)
    lines = {f"src/m{i % 6}/f{i}.txt": [f"line {j} of file {i}\n" for j in range(40)]
             for i in range(60)}
    stream: list[bytes] = []
    for n in range(commits):
        msg = f"change {n}\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(f"committer Bench <b@example.com> {1_700_000_000 + n * 60} +0000\n".encode())
        stream.append(b"data %d\n" % len(msg) + msg)
        names = list(lines) if n == 0 else [list(lines)[(n * 7 + k) % 60] for k in range(3)]
        for name in names:
            body = lines[name]
            body[(n * 13) % len(body)] = f"edit {n} of {name}\n"
            data = "".join(body).encode()
            stream.append(f"M 100644 inline {name}\n".encode() + b"data %d\n" % len(data) + data)
        stream.append(b"\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=dest, input=b"".join(stream), check=True)
    subprocess.run(["git", "gc", "-q", "--aggressive"], cwd=dest, check=True)


class NativeSshd:
    def __init__(self, work: Path, client_pub: Path) -> None:
        self.work, self.port = work, free_port()
        sshd = find_tool("sshd")
        if sshd is None:
            raise SystemExit("sshd is not installed (apt-get install openssh-server)")
        hostkey = work / "sshd_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)], check=True)
        auth = work / "authorized_keys"
        auth.write_text(client_pub.read_text())
        auth.chmod(0o600)
        cfg = work / "sshd_config"
        cfg.write_text(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\n"
                       f"AuthorizedKeysFile {auth}\nPidFile {work}/sshd.pid\nUsePAM no\n"
                       "StrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n"
                       "KbdInteractiveAuthentication no\nAcceptEnv none\nMaxStartups 100\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)],
                                     stderr=open(work / "sshd.log", "w"))
        time.sleep(0.5)
        self.user = os.environ.get("USER") or subprocess.run(
            ["id", "-un"], capture_output=True, text=True).stdout.strip()

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def timed_clone(url: str, dest: Path, env: dict[str, str]) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(["git", "-c", "protocol.version=0", "clone", "-q", "--bare", url, str(dest)],
                   env=env, check=True, timeout=600)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=3000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)

    from tests.support.server import make_server

    work = Path(tempfile.mkdtemp(prefix="ssh-clonebench-"))
    native = srv = None
    try:
        repo = work / "bench.git"
        t0 = time.perf_counter()
        make_repo(repo, args.commits)
        objects = subprocess.run(["git", "count-objects", "-v"], cwd=repo, capture_output=True,
                                 text=True).stdout
        print(f"repo: {args.commits} commits, made in {time.perf_counter() - t0:.1f}s; "
              + " ".join(ln.replace(": ", "=") for ln in objects.splitlines()
                         if ln.startswith(("in-pack", "size-pack"))))
        srv = make_server(work / "gitserve", conf="repo bench\n    RW+ = admin\n")
        shutil.rmtree(srv.repo_path("bench"))
        shutil.copytree(repo, srv.repo_path("bench"))
        key = srv.key_for("admin")
        native = NativeSshd(work, Path(f"{key}.pub"))
        env = srv.client_env("admin")
        # the same ssh options for both servers, with the port taken from each URL
        env["GIT_SSH_COMMAND"] = " ".join(a for a in srv.ssh_command(key)
                                          if a not in ("-p", str(srv.port)))
        runs: dict[str, list[float]] = {"native": [], "gitserve": []}
        for i in range(args.runs):
            order = [("native", native.url(repo)), ("gitserve", srv.url("bench"))]
            for name, url in order if i % 2 == 0 else reversed(order):
                runs[name].append(timed_clone(url, work / f"clone-{name}", env))
        nat, gs = statistics.median(runs["native"]), statistics.median(runs["gitserve"])
        print("| server | median s | runs |\n|---|---|---|")
        for name, values in runs.items():
            print(f"| {name} | {statistics.median(values):.2f} | "
                  + " ".join(f"{v:.2f}" for v in values) + " |")
        print(f"gitserve/native: {gs / nat:.2f}x")
    finally:
        if native:
            native.stop()
        if srv:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
