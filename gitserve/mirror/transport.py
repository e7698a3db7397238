"""Talking to a peer: the system `git` and OpenSSH client with this server's own key.

Why git + OpenSSH and not dulwich's client: a mirror push is `git push --mirror` minus the
hidden refs, and git does it best - it negotiates what the slave already has and sends a
thin pack of only the new objects, prunes deleted refs, and sends push options; it is also
exactly what Gitolite runs, so a gitserve master can feed any slave that speaks git over
ssh. OpenSSH brings connection multiplexing (one TCP+key exchange per peer, reused by every
push: the mirror lag is one ssh channel, not one handshake) and known_hosts handling.

Every command uses HOME/server_key only (IdentitiesOnly, no agent, no ~/.ssh/config) and
HOME/mirror/known_hosts: a peer's host key is accepted on first contact and pinned after
that (StrictHostKeyChecking=accept-new); put the peers' host keys there beforehand to pin
them from the start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import tempfile
import threading
from pathlib import Path

from gitserve import keys
from gitserve.settings import Settings

from .config import MirrorError, Peer, Peers, parse_peers

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10


def ensure_server_key(settings: Settings) -> str:
    """The public half of HOME/server_key (made now if this home predates mirroring)."""
    path = settings.server_key
    pub = Path(f"{path}.pub")
    if not path.exists():
        comment = f"server-{settings.server.hostname}" if settings.server.hostname else "gitserve-server"
        keys.write_keypair(path, "ed25519", comment)
    text = pub.read_text().split()
    name = settings.server.hostname
    return " ".join(text[:2] + ([f"server-{name}"] if name else text[2:3]))


def _mux_dir(settings: Settings) -> Path:
    """A short directory for control sockets (a unix socket path is at most ~100 bytes)."""
    tag = hashlib.sha1(str(settings.home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"gitserve-mux-{os.getuid()}-{tag}"


class Transport:
    """git and ssh commands aimed at the peers of [mirror] peers."""

    def __init__(self, settings: Settings, peers: Peers | None = None,
                 multiplexer: bool = False) -> None:
        """MULTIPLEXER: this transport keeps the per-peer master connections (the server's
        MirrorSyncer, one per process and home); every other one (a session's redirect, the
        CLI) only uses them when they are up."""
        self.settings = settings
        self.multiplexer = multiplexer
        self.peers = peers if peers is not None else parse_peers(settings.mirror.peers)
        self._masters: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def peer(self, name: str) -> Peer:
        return self.peers.get(name)

    def ssh_argv(self, peer: Peer, multiplex: bool = True) -> list[str]:
        s = self.settings
        s.mirror_dir.mkdir(parents=True, exist_ok=True)
        argv = ["ssh", "-F", "/dev/null", "-p", str(peer.port), "-i", str(s.server_key),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"UserKnownHostsFile={s.mirror_dir / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        if multiplex:
            # use the master connection when it is up; without it ssh connects on its own
            argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={self._control_path(peer)}"]
        return argv

    def _control_path(self, peer: Peer) -> Path:
        return _mux_dir(self.settings) / f"{peer.name}.sock"

    def ensure_master(self, peer: Peer) -> None:
        """One multiplexing ssh connection per peer, a child of this process (so it ends
        with the server's process group; no ControlPersist daemon outlives the server)."""
        if not self.multiplexer:
            return
        with self._lock:
            proc = self._masters.get(peer.name)
            if proc is not None and proc.poll() is None:
                return
            directory = _mux_dir(self.settings)
            directory.mkdir(mode=0o700, exist_ok=True)
            sock = self._control_path(peer)
            try:
                sock.unlink()
            except FileNotFoundError:
                pass
            argv = self.ssh_argv(peer, multiplex=False) + [
                "-M", "-N", "-o", "ControlPersist=no", "-o", f"ControlPath={sock}",
                f"{peer.user}@{peer.host}"]
            self._masters[peer.name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)

    def close(self) -> None:
        with self._lock:
            masters, self._masters = dict(self._masters), {}
        for proc in masters.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def env(self, peer: Peer) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_"))}
        env.update({"GIT_SSH_COMMAND": shlex.join(self.ssh_argv(peer)),
                    "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
                    "HOME": str(self.settings.mirror_dir), "LC_ALL": "C"})
        return env

    # --- the operations -------------------------------------------------------------
    def push(self, peer: Peer, repo_dir: Path, repo: str, seq: int,
             timeout: float, empty: bool = False) -> tuple[bool, str]:
        """`git push --mirror` minus hidden refs, with the master's seq as a push option.
        EMPTY (no refs here): git refuses `refs/*` with nothing to match, so the slave's
        refs are listed and deleted by name (nothing to do for a new, empty repo)."""
        if empty:
            ok, out = self._run(["git", "ls-remote", peer.url(repo), "refs/*"], peer, timeout)
            if not ok:
                return ok, out
            doomed = [f":{line.split()[1]}" for line in out.splitlines()
                      if len(line.split()) == 2 and line.split()[1].startswith("refs/")
                      and not line.split()[1].startswith("refs/gitserve/")]
            if not doomed:
                return True, ""
            argv = ["git", "-C", str(repo_dir), "push", "--porcelain",
                    "-o", f"gitserve.mirror-seq={seq}", peer.url(repo), *doomed]
            return self._run(argv, peer, timeout)
        argv = ["git", "-C", str(repo_dir), "push", "--porcelain", "--force", "--prune",
                "-o", f"gitserve.mirror-seq={seq}", peer.url(repo),
                "+refs/*:refs/*", "^refs/gitserve/*"]
        return self._run(argv, peer, timeout)

    def fetch(self, peer: Peer, repo_dir: Path, repo: str, timeout: float) -> tuple[bool, str]:
        """Make REPO_DIR's refs exactly the peer's (promote taking the newest survivor)."""
        argv = ["git", "-C", str(repo_dir), "fetch", "--quiet", "--force", "--prune",
                "--no-write-fetch-head", peer.url(repo), "+refs/*:refs/*", "^refs/gitserve/*"]
        return self._run(argv, peer, timeout)

    def fetch_ref(self, peer: Peer, repo_dir: Path, repo: str, refspec: str,
                  timeout: float) -> tuple[bool, str]:
        argv = ["git", "-C", str(repo_dir), "fetch", "--quiet", "--no-write-fetch-head",
                peer.url(repo), refspec]
        return self._run(argv, peer, timeout)

    def ssh(self, peer: Peer, command: str, stdin: bytes = b"",
            timeout: float = 60) -> tuple[int, bytes, bytes]:
        argv = self.ssh_argv(peer) + [f"{peer.user}@{peer.host}", command]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                                  env=self.env(peer))
        except subprocess.TimeoutExpired:
            return 255, b"", f"ssh to {peer.name}: timed out after {timeout:.0f}s".encode()
        except OSError as exc:
            raise MirrorError(f"cannot run ssh: {exc}") from None
        return done.returncode, done.stdout, done.stderr

    def ssh_file(self, peer: Peer, command: str, path: Path,
                 timeout: float) -> tuple[int, bytes, bytes]:
        """COMMAND on the peer with the file at PATH as its stdin (streamed, not read in)."""
        argv = self.ssh_argv(peer) + [f"{peer.user}@{peer.host}", command]
        try:
            with open(path, "rb") as stdin:
                done = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=timeout,
                                      env=self.env(peer))
        except subprocess.TimeoutExpired:
            return 255, b"", f"ssh to {peer.name}: timed out after {timeout:.0f}s".encode()
        except OSError as exc:
            return 255, b"", str(exc).encode()
        return done.returncode, done.stdout, done.stderr

    def _run(self, argv: list[str], peer: Peer, timeout: float) -> tuple[bool, str]:
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, env=self.env(peer))
        except subprocess.TimeoutExpired:
            return False, f"fatal: git to {peer.name} timed out after {timeout:.0f}s"
        except OSError as exc:
            raise MirrorError(f"cannot run git: {exc}") from None
        out = (done.stdout + done.stderr).decode("utf-8", "replace")
        return done.returncode == 0, out
