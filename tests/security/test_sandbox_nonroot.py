"""The server run by an ordinary user (not root): `gitserve init` + `serve` as a user made for
the test, a push with the real git and ssh, and a build that is sandboxed the unprivileged way
(a user namespace as that user): it runs, cannot read the server home or the user's ~/.ssh,
and leaves no daemon. CI runs as root, so the test creates the user (useradd) and removes it.
"""

from __future__ import annotations

import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.tools import REPO_ROOT, free_port, require_tool

pytestmark = pytest.mark.timeout(300)


def _blocking_ancestors(paths: list[str]) -> list[str]:
    """Directories above PATHS that others cannot search (e.g. /root above a pyenv Python)."""
    found: list[str] = []
    for p in paths:
        for d in reversed(Path(p).resolve().parents):
            if str(d) != "/" and not os.stat(d).st_mode & 0o001 and str(d) not in found:
                found.append(str(d))
    return found


@pytest.fixture
def user(tmp_path):
    """A fresh unprivileged user with a private home; removed afterwards. As a non-root
    tester, the tester's own account plays that part."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.getuid())
        home = tmp_path / "user"
        home.mkdir(mode=0o700)
        yield entry.pw_name, home, []
        return
    useradd = require_tool("useradd")
    require_tool("userdel")
    require_tool("runuser")
    name = f"gs{uuid.uuid4().hex[:10]}"
    home = Path(f"/tmp/{name}-home")
    subprocess.run([useradd, "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                    "--user-group", name], check=True, capture_output=True, timeout=30)
    opened: list[tuple[str, int]] = []
    try:
        home.mkdir(mode=0o700)
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        # the interpreter and this checkout must be usable by the user: search permission
        # on the directories above them, given back afterwards
        for d in _blocking_ancestors([sys.executable, sys.prefix, REPO_ROOT]):
            mode = os.stat(d).st_mode
            opened.append((d, mode))
            os.chmod(d, mode | 0o001)
        yield name, home, opened
    finally:
        for d, mode in reversed(opened):
            os.chmod(d, mode & 0o7777)
        subprocess.run([require_tool("userdel"), name], capture_output=True, timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def as_user(name: str, argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", name, "--", *argv]


def test_server_as_an_ordinary_user_builds_sandboxed(user, tmp_path):
    require_tool("bwrap")
    git = require_tool("git")
    require_tool("ssh")
    name, home, _ = user
    entry = pwd.getpwnam(name)
    gs_home = home / "gitserve"
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("USER-SSH-KEY-CANARY\n")
    key = home / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    for p in (home / ".ssh", home / ".ssh" / "id_ed25519", key, Path(f"{key}.pub")):
        os.chown(p, entry.pw_uid, entry.pw_gid)
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
           "PYTHONPATH": REPO_ROOT, "LANG": "C.UTF-8"}
    gs = [sys.executable, "-m", "gitserve", "--home", str(gs_home)]

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(as_user(name, ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *gs, *args]),
                              capture_output=True, text=True, timeout=120, **kw)

    res = run("init", "--admin", "admin", "--admin-key", f"{key}.pub")
    assert res.returncode == 0, res.stderr
    conf = home / "conf"
    conf.write_text("repo gitolite-admin\n    RW+ = admin\nrepo r\n    RW+ = admin\n"
                    "    option build.enable = 1\n")
    os.chown(conf, entry.pw_uid, entry.pw_gid)
    res = run("admin", "set-conf", str(conf))
    assert res.returncode == 0, res.stderr
    port = free_port()
    proc = subprocess.Popen(as_user(name, ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *gs,
                                           "serve", "--listen", f"127.0.0.1:{port}"]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    break
                out.append(line)
                if "listening on" in line:
                    break
        assert any("listening on" in ln for ln in out), "".join(out)
        assert any("builds sandboxed" in ln and f"as uid {entry.pw_uid}" in ln for ln in out), "".join(out)
        # the server processes really are the user's
        assert os.stat(f"/proc/{proc.pid}").st_uid in (entry.pw_uid, 0)  # runuser, then the user
        client_key = tmp_path / "client-key"
        shutil.copy(key, client_key)
        os.chmod(client_key, 0o600)
        ssh = (f"ssh -F /dev/null -p {port} -i {client_key} -o IdentitiesOnly=yes -o BatchMode=yes "
               "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
        cenv = dict(os.environ, GIT_SSH_COMMAND=ssh, HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1",
                    GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="a",
                    GIT_COMMITTER_EMAIL="a@x")
        work = tmp_path / "work"
        subprocess.run([git, "clone", "-q", f"ssh://git@127.0.0.1:{port}/r", str(work)], env=cenv,
                       check=True, capture_output=True, timeout=60)
        tag = f"{time.time_ns() % 1000000}"
        build = work / ".gitserve" / "build"
        build.parent.mkdir()
        build.write_text("#!/bin/sh\necho \"uid=$(id -u)\"\n"
                         f"cat {gs_home}/secrets.key {gs_home}/worker_key {home}/.ssh/id_ed25519 2>/dev/null"
                         " && echo READ-SOMETHING\n"
                         f"ls -A {home} {home}/.ssh {gs_home} 2>/dev/null | grep -v '^/' | grep . "
                         "| sed 's/^/LISTED /'\n"
                         f"setsid sh -c 'exec sleep 321.{tag}' >/dev/null 2>&1 < /dev/null &\n"
                         "echo BUILD-RAN\n")
        build.chmod(0o755)
        subprocess.run([git, "add", "-A"], cwd=work, env=cenv, check=True, timeout=30)
        subprocess.run([git, "commit", "-q", "-m", "b"], cwd=work, env=cenv, check=True, timeout=30)
        push = subprocess.run([git, "push", "origin", "HEAD:main"], cwd=work, env=cenv,
                              capture_output=True, text=True, timeout=180)
        text = push.stderr
        assert push.returncode == 0 and "BUILD-RAN" in text and " passed in " in text, text
        assert f"uid={entry.pw_uid}" in text, text
        assert "READ-SOMETHING" not in text and "CANARY" not in text, text
        # only the way to the repo's own object store (bound read-only for git) is there
        listed = {ln.split("LISTED ", 1)[1].strip() for ln in text.splitlines() if "LISTED " in ln}
        assert listed <= {"gitserve", "repositories"}, text
        time.sleep(1)
        leftover = subprocess.run(["pgrep", "-f", f"^sleep 321.{tag}$"], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", "a daemon of the build survived"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
