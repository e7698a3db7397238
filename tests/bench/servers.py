"""The two servers compared, on the same bare repositories.

`NativeSshd` is the physical anchor: Debian's OpenSSH sshd with its own config, host key and
authorized_keys in a temp dir, on 127.0.0.1 and a free port, running as the current user,
with a forced command that execs native `git upload-pack` / `git receive-pack` on the
repository under the gitserve home's repositories/ dir (what Gitolite itself does).
`GitserveServer` is `gitserve serve` of this checkout with the same client key as an admin.
Both are reached with the same ssh client options, so only the server differs.
"""

from __future__ import annotations

import getpass
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.bench.proctree import ProcessTree
from tests.support.tools import find_tool, free_port, gitserve_cmd, subprocess_env

BENCH_USER = "bench"


def make_client_key(workdir: Path) -> Path:
    key = workdir / "client_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench@client",
                        "-f", str(key)], check=True)
    return key


def ssh_command(key: Path, port: int) -> str:
    """GIT_SSH_COMMAND for either server: same cipher defaults, no agent, no known_hosts."""
    return " ".join([
        "ssh", "-F", "/dev/null", "-i", shlex.quote(str(key)), "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "BatchMode=yes", "-p", str(port),
    ])


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s")


class Server:
    name = "?"
    exclude: str | None = None  # helper daemons not counted as serving work
    proc: subprocess.Popen | None = None
    port = 0
    user = ""

    def __init__(self, workdir: Path, repos_dir: Path, key: Path) -> None:
        self.workdir = workdir
        self.repos_dir = repos_dir
        self.key = key

    def url(self, repo: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{repo}.git"

    def git_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_SSH_COMMAND"] = ssh_command(self.key, self.port)
        env.pop("GIT_PROTOCOL", None)
        env["GIT_TERMINAL_PROMPT"] = "0"
        return env

    def tree(self) -> ProcessTree:
        assert self.proc is not None
        return ProcessTree(self.proc.pid, self.exclude)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


FORCED_COMMAND = """#!/bin/sh
# Forced command of the bench sshd: only git's pack and archive services, on repos under ROOT.
set -f
root=%(root)s
case "$SSH_ORIGINAL_COMMAND" in
  "git-upload-pack "*) verb=upload-pack ;;
  "git-receive-pack "*) verb=receive-pack ;;
  "git-upload-archive "*) verb=upload-archive ;;
  *) echo "bench sshd: command not allowed: $SSH_ORIGINAL_COMMAND" >&2; exit 1 ;;
esac
path=${SSH_ORIGINAL_COMMAND#* }
path=${path#\\'}; path=${path%%\\'}; path=${path#/}
case "$path" in *..*) echo "bench sshd: bad path" >&2; exit 1 ;; esac
exec git "$verb" "$root/$path"
"""


class NativeSshd(Server):
    name = "native"

    def start(self) -> None:
        sshd = find_tool("sshd")
        if sshd is None:
            raise RuntimeError("sshd (Debian openssh-server) is not installed")
        d = self.workdir / "sshd"
        d.mkdir(parents=True, exist_ok=True)
        host_key = d / "host_ed25519"
        if not host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                           check=True)
        (d / "authorized_keys").write_text(Path(str(self.key) + ".pub").read_text())
        forced = d / "git-only"
        forced.write_text(FORCED_COMMAND % {"root": shlex.quote(str(self.repos_dir))})
        forced.chmod(0o755)
        self.user = getpass.getuser()
        self.port = free_port()
        config = d / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            f"ForceCommand {forced}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitTTY no",
            "AcceptEnv GIT_PROTOCOL",  # what lets git negotiate protocol v2 over ssh
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "UseDNS no",
            # the key exchange gitserve's paramiko offers, so both sides pay the same handshake
            # (OpenSSH's post-quantum default, sntrup761x25519, costs the client ~0.1 s of CPU)
            "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
            # 50 parallel clones must not hit the default 10:30:100 early-drop
            "MaxStartups 200",
            "MaxSessions 200",
            "LogLevel ERROR",
            "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation dir Debian's sshd wants
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(d / "sshd.log", "ab"))
        _wait_port(self.port, self.proc, "sshd")


class GitserveServer(Server):
    name = "gitserve"
    # embedded redis, build workers and nginx are not part of serving git
    exclude = r"redis-server|rq |worker|nginx"

    def __init__(self, workdir: Path, repos_dir: Path, key: Path, home: Path,
                 repo_names: list[str], backend: str, bench_limits: bool = True) -> None:
        super().__init__(workdir, repos_dir, key)
        self.home = home
        self.repo_names = repo_names
        self.backend = backend
        # False: the shipped admission limits (what a stampede must get through as is)
        self.bench_limits = bench_limits

    def _cli(self, *args: str, stdin: str | None = None) -> None:
        proc = subprocess.run(gitserve_cmd("--home", str(self.home), *args), input=stdin,
                              text=True, capture_output=True, env=subprocess_env(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"gitserve {' '.join(args)} failed: {proc.stderr.strip()}")

    def init_home(self) -> None:
        """`gitserve init` with the bench key as admin, then rules giving it RW+ on the repos."""
        pub = str(self.key) + ".pub"
        self._cli("init", "--admin", BENCH_USER, "--admin-key", pub)
        from gitserve import settings as settings_mod

        s = settings_mod.load(self.home)
        s.server.pack_backend = self.backend
        if self.bench_limits:
            s.server.max_unauth_per_ip = 200
            s.server.max_unauth_connections = 200
            s.server.max_connections = 400
        settings_mod.write(s)

    def set_conf(self) -> None:
        conf = self.workdir / "bench.conf"
        conf.write_text(
            f"repo gitolite-admin\n    RW+ = {BENCH_USER}\n\n"
            f"repo {' '.join(self.repo_names)}\n    RW+ = {BENCH_USER}\n")
        self._cli("admin", "set-conf", str(conf))

    def start(self) -> None:
        self.user = "git"
        self.port = free_port()
        log = open(self.workdir / "gitserve-serve.log", "ab")
        self.proc = subprocess.Popen(
            gitserve_cmd("--home", str(self.home), "serve", "--listen", f"127.0.0.1:{self.port}"),
            stdout=log, stderr=log, env=subprocess_env(), start_new_session=True)
        _wait_port(self.port, self.proc, "gitserve serve", timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
