"""A private OpenSSH sshd for tests: 127.0.0.1 on a free port, its own host key and config.

Clients log in as the user running the tests (root in CI, with `PermitRootLogin
forced-commands-only`, so only keys with a forced command get in); the authorized_keys file
is whatever path the test gives (a gitserve block, or Gitolite's ~/.ssh/authorized_keys).
The daemon runs in its own process group and `stop()` kills the whole group.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.tools import free_port, require_tool


class PrivateSshd:
    def __init__(self, work: Path, authorized_keys: Path, set_env: dict[str, str] | None = None) -> None:
        self.sshd = require_tool("sshd")
        require_tool("ssh")
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = Path(authorized_keys)
        self.user = getpass.getuser()
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work / "sshd.log"
        hostkey = self.work / "ssh_host_ed25519_key"
        if not hostkey.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)],
                           check=True, timeout=30)
        self.set_env = set_env or {}
        self.extra: list[str] = []  # more sshd_config lines
        self.config = self.work / "sshd_config"

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.work / 'ssh_host_ed25519_key'}",
            f"PidFile {self.work / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin forced-commands-only",
            "AcceptEnv GIT_PROTOCOL",
            "PrintMotd no",
            "LogLevel VERBOSE",
            # what these tests test starts after the handshake: the post-quantum default
            # (sntrup761x25519) costs the ssh client ~0.1 s of CPU per connection
            "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
        ]
        if self.set_env:
            lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in self.set_env.items()))
        self.config.write_text("\n".join(lines + self.extra) + "\n")

    def start(self) -> PrivateSshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.port = free_port()
        self._write_config()
        subprocess.run([self.sshd, "-t", "-f", str(self.config)], check=True, timeout=30)
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    # --- clients ------------------------------------------------------------------------
    def ssh_command(self, key: Path) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(key),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]

    def url(self, repo: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}/{repo}"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
