"""A real gitserve server for end-to-end tests, driven with the real `git` and `ssh`.

`gitserve_factory(**options)` inits a server home in tmp, starts `gitserve serve` on a free
127.0.0.1 port as a child process and returns a `GitServer`; every server it started is
stopped when the test ends. `gitserve_server` is one such server with defaults.

    def test_x(gitserve_server):
        srv = gitserve_server
        srv.add_user("alice")                      # keypair + keydir entry (an admin commit)
        srv.set_conf("repo foo\\n    RW+ = alice\\n")  # replaces conf/gitolite.conf
        work = srv.clone("alice", "foo")           # git clone as alice, with alice's key
        srv.git("alice", "push", "origin", "HEAD:main", cwd=work)
        out = srv.ssh("alice", "info").stdout

Options: `settings={"server": {"idle_timeout": 5.0}}` (merged into gitserve.toml),
`conf="..."`, `users=("alice", "bob")`, `serve_args=[...]` (extra `gitserve serve` args),
`env={...}` (extra environment for the server process).
"""

from __future__ import annotations

import atexit
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from tests.support.tools import free_port, gitserve_cmd, require_tool, subprocess_env

ADMIN = "admin"
START_TIMEOUT = 30.0


@dataclass
class GitServer:
    home: Path
    tmp: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = None
    keys: dict[str, Path] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    # --- server settings and state ----------------------------------------------------
    @property
    def settings(self) -> Any:
        from gitserve import settings as settings_mod

        return settings_mod.load(self.home)

    def admin_cli(self, *args: str, input: str | None = None, check: bool = True,
                  timeout: float = 60) -> subprocess.CompletedProcess:
        """`gitserve --home HOME ARGS...` of this checkout."""
        result = subprocess.run(gitserve_cmd("--home", str(self.home), *args), input=input,
                                capture_output=True, text=True, env=subprocess_env(),
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"gitserve {' '.join(args)} failed: {result.stderr}")
        return result

    def keygen(self, name: str, key_type: str = "ed25519") -> Path:
        """A fresh keypair in tmp (not registered anywhere)."""
        path = self.tmp / "keys" / f"{name}"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            args = ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", name, "-f", str(path)]
            if key_type == "rsa":
                args[4:4] = ["-b", "2048"]
            subprocess.run(args, check=True, timeout=30)
        return path

    def add_user(self, user: str, key_type: str = "ed25519", label: str | None = None) -> Path:
        """Make a keypair for USER and add it to the keydir; returns the private key path."""
        keyname = f"{user}@{label}" if label else user
        key = self.keygen(keyname.replace("/", "_"), key_type)
        from gitserve import adminrepo

        adminrepo.add_key(self.settings, keyname, Path(f"{key}.pub").read_text(), "e2e-test")
        self.keys.setdefault(user, key)
        return key

    def set_conf(self, text: str) -> None:
        from gitserve import adminrepo

        settings = self.settings
        adminrepo.set_conf(settings, text, "e2e-test")
        adminrepo.compile(settings)  # as `gitserve admin set-conf` does: create the named repos

    # --- clients -------------------------------------------------------------------------
    def ssh_command(self, key: Path | str, *extra: str) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(key),
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                *extra]

    def key_for(self, user: str) -> Path:
        if user not in self.keys:
            raise KeyError(f"no key for {user}: call add_user({user!r}) first")
        return self.keys[user]

    def client_env(self, user: str | None = None, key: Path | None = None) -> dict[str, str]:
        key = key or self.key_for(user or ADMIN)
        env = dict(os.environ)
        home = self.tmp / "client-home"
        home.mkdir(exist_ok=True)
        env.update({
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": user or "test", "GIT_AUTHOR_EMAIL": f"{user or 'test'}@example.com",
            "GIT_COMMITTER_NAME": user or "test",
            "GIT_COMMITTER_EMAIL": f"{user or 'test'}@example.com",
            "GIT_SSH_COMMAND": " ".join(self.ssh_command(key)),
        })
        env.pop("SSH_AUTH_SOCK", None)
        return env

    def url(self, repo: str) -> str:
        return f"ssh://git@{self.host}:{self.port}/{repo}"

    def git(self, user: str, *args: str, cwd: Path | str | None = None, check: bool = True,
            timeout: float = 120, key: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run `git ARGS` as USER (their key for ssh); raises with stderr if CHECK and it fails."""
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                env=self.client_env(user, key), timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} as {user} failed "
                                 f"({result.returncode}):\n{result.stderr}")
        return result

    def ssh(self, user: str, *command: str, key: Path | None = None, timeout: float = 60,
            extra: tuple[str, ...] = (), input: str | None = None) -> subprocess.CompletedProcess:
        """`ssh git@server COMMAND` as USER; never raises on a non-zero exit."""
        argv = self.ssh_command(key or self.key_for(user), *extra) + \
            [f"git@{self.host}", *command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              input=input if input is not None else "",
                              env=self.client_env(user, key or self.key_for(user)))

    def clone(self, user: str, repo: str, dest: Path | str | None = None,
              check: bool = True) -> Path:
        dest = Path(dest) if dest else self.tmp / "work" / f"{user}-{repo.replace('/', '_')}-{time.monotonic_ns()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.git(user, "clone", "-q", self.url(repo), str(dest), check=check)
        return dest

    def commit(self, user: str, work: Path, name: str = "file.txt", content: str | None = None,
               message: str | None = None) -> str:
        """Write a file and commit it in WORK; returns the new commit sha."""
        p = Path(work) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content if content is not None else f"{name} {time.monotonic_ns()}\n")
        self.git(user, "add", name, cwd=work)
        self.git(user, "commit", "-q", "-m", message or f"change {name}", cwd=work)
        return self.git(user, "rev-parse", "HEAD", cwd=work).stdout.strip()

    def repo_path(self, repo: str) -> Path:
        return self.home / "repositories" / f"{repo}.git"

    def audit_lines(self) -> list[dict]:
        import json

        path = self.home / "logs" / "audit.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, serve_args: tuple[str, ...] = (), env: dict[str, str] | None = None,
              port: int | None = None) -> None:
        """Start `gitserve serve` on PORT (default: a free one; mirror peers need theirs
        known before they start)."""
        self.port = port or free_port()
        log = open(self.tmp / "serve.log", "w")
        self.proc = subprocess.Popen(
            gitserve_cmd("--home", str(self.home), "serve", "--listen",
                         f"{self.host}:{self.port}", *serve_args),
            stdout=subprocess.PIPE, stderr=log, text=True,
            env=subprocess_env(**(env or {})), start_new_session=True)
        assert self.proc.stdout is not None
        # read the raw fd: a buffered readline() after select() leaves a second line that came
        # in the same chunk in Python's buffer, where select() never sees it
        fd = self.proc.stdout.fileno()
        pending = b""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                # keep every line of the chunk (the banner lines after "listening on" too)
                self.output.extend(raw.decode(errors="replace") + "\n" for raw in lines)
                if any(b"listening on" in raw for raw in lines):
                    return
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("gitserve serve did not start:\n" + "".join(self.output)
                           + (self.tmp / "serve.log").read_text())

    def stop(self) -> None:
        if self.terminate():
            self.wait_stopped()

    def terminate(self) -> bool:
        """SIGTERM to serve's process group; False when it was not running."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    def wait_stopped(self) -> None:
        """Until serve has stopped (SIGKILL to its group after 15 s)."""
        assert self.proc is not None
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop_sites(self) -> None:
        """Stop this home's `gitserve sites` (nginx and site processes): serve never does."""
        from deploy import sitesctl

        sitesctl.stop(self.settings)

    def server_log(self) -> str:
        return (self.tmp / "serve.log").read_text()


def stop_all(servers: Iterable[GitServer]) -> None:
    """Stop SERVERS at once: each takes about a second to stop (its workers' warm stop), so a
    module's three servers stop in one second, not three."""
    stopping = [srv for srv in servers if srv.terminate()]
    for srv in stopping:
        srv.wait_stopped()


def _merge_settings(home: Path, overrides: dict[str, dict[str, Any]]) -> None:
    from gitserve import settings as settings_mod

    s = settings_mod.load(home)
    for section, values in overrides.items():
        for key, value in values.items():
            setattr(getattr(s, section), key, value)
    settings_mod.write(s)


_template: Path | None = None


def _home_template() -> Path:
    """A home the real `gitserve init --admin admin` made, once per test process: init costs
    seconds (a Python start, a 3072-bit RSA host key); a copy costs milliseconds."""
    global _template
    if _template is None:
        base = Path(tempfile.mkdtemp(prefix="gitserve-home-template-"))
        atexit.register(shutil.rmtree, base, True)
        (base / "keys").mkdir()
        key = base / "keys" / ADMIN
        subprocess.run([require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", ADMIN,
                        "-f", str(key)], check=True, timeout=30)
        subprocess.run(gitserve_cmd("--home", str(base / "home"), "init", "--admin", ADMIN,
                                    "--admin-key", f"{key}.pub"),
                       check=True, capture_output=True, env=subprocess_env(), timeout=120)
        _template = base
    return _template


def copy_initialized_home(tmp: Path) -> Path:
    """TMP/home as `gitserve init` leaves it, with the admin's key pair in TMP/keys; returns
    the admin's private key. Each copy gets its own secrets.key, worker key and ed25519 host
    key (what init makes per home); only the RSA host key is the template's."""
    from gitserve import keys

    template = _home_template()
    shutil.copytree(template / "home", tmp / "home", symlinks=True)
    (tmp / "keys").mkdir(exist_ok=True)
    for name in (ADMIN, f"{ADMIN}.pub"):
        shutil.copy2(template / "keys" / name, tmp / "keys" / name)
    home = tmp / "home"
    fd = os.open(home / "secrets.key", os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    for old in (home / "worker_key", home / "host_keys" / "ssh_host_ed25519_key"):
        old.unlink()
        Path(f"{old}.pub").unlink()
    keys.write_keypair(home / "worker_key", "ed25519", "gitserve-builder")
    keys.write_keypair(home / "host_keys" / "ssh_host_ed25519_key", "ed25519", "gitserve-host")
    return tmp / "keys" / ADMIN


def make_server(tmp: Path, settings: dict | None = None, conf: str | None = None,
                users: tuple[str, ...] = (), serve_args: tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> GitServer:
    for tool in ("git", "ssh", "ssh-keygen"):
        require_tool(tool)
    tmp.mkdir(parents=True, exist_ok=True)
    srv = GitServer(home=tmp / "home", tmp=tmp)
    srv.keys[ADMIN] = copy_initialized_home(tmp)
    # one notify worker per test server (each is a process; production's default is 4)
    given = settings or {}
    defaults: dict[str, dict[str, Any]] = {"notify": {"senders": 1}}
    _merge_settings(srv.home, {k: {**defaults.get(k, {}), **given.get(k, {})}
                               for k in {*defaults, *given}})
    for user in users:
        srv.add_user(user)
    if conf is not None:
        srv.set_conf(conf)
    srv.start(serve_args, env)
    return srv


@pytest.fixture
def gitserve_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[GitServer] = []

    def factory(**options: Any) -> GitServer:
        srv = make_server(tmp_path / f"srv{len(started)}", **options)
        started.append(srv)
        return srv

    yield factory
    stop_all(started)


@pytest.fixture(scope="module")
def gitserve_module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Like gitserve_factory, but the servers live for the whole test module (a server
    takes a few seconds to init and start: share one where tests use separate repos)."""
    started: list[GitServer] = []
    base = tmp_path_factory.mktemp("gitserve")

    def factory(**options: Any) -> GitServer:
        srv = make_server(base / f"srv{len(started)}", **options)
        started.append(srv)
        return srv

    yield factory
    stop_all(started)


@pytest.fixture
def gitserve_server(gitserve_factory: Any) -> GitServer:
    return gitserve_factory()


