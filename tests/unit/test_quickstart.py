"""scripts/quickstart end to end: it makes a home and a demo key, starts the server, and the
exact git commands it prints work with the real git and OpenSSH client."""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.support.tools import REPO_ROOT, free_port, require_tool, subprocess_env

QUICKSTART = os.path.join(REPO_ROOT, "scripts", "quickstart")


def read_until(proc: subprocess.Popen, needle: str, out: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if needle in line:
                return
        elif proc.poll() is not None:
            break
    pytest.fail(f"quickstart never printed {needle!r}:\n{''.join(out)}")


@pytest.fixture
def quickstart(tmp_path):
    require_tool("ssh-keygen")
    port = free_port()
    env = subprocess_env(
        HOME=str(tmp_path / "user"),
        GITSERVE_HOME=str(tmp_path / "gs"),
        GITSERVE_LISTEN=f"127.0.0.1:{port}",
        GITSERVE_HTTP=f"127.0.0.1:{free_port()}",
        GITSERVE_SKIP_INSTALL="1",  # the suite already installed it; never repoint pip here
        PYTHON=sys.executable,
    )
    (tmp_path / "user").mkdir()
    procs: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, list[str]]:
        proc = subprocess.Popen(["bash", QUICKSTART], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(proc)
        out: list[str] = []
        read_until(proc, "gitserve: listening on", out, timeout=60)
        return proc, out

    yield start, tmp_path, port, env
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_quickstart_prints_working_clone_and_push(quickstart):
    git = require_tool("git")
    require_tool("ssh")
    start, tmp, port, env = quickstart
    proc, out = start()
    text = "".join(out)
    # the demo private key lives in the user's ~/.ssh (0700), never in the checkout
    demo_key = tmp / "user" / ".ssh" / "gitserve-demo"
    assert demo_key.is_file() and (tmp / "gs" / "gitserve.toml").is_file()
    assert (demo_key.parent.stat().st_mode & 0o777) == 0o700
    assert os.path.join(REPO_ROOT, "keys") not in text
    # one story: the quickstart starts the server, so nothing tells the reader to start it,
    # and init's report sits under its step
    assert "start the server with" not in text and "gitserve serve" not in text
    assert f"\n    initialised gitserve home {tmp / 'gs'}\n" in text
    assert text.index("==> starting gitserve on") < text.index("gitserve: listening on")
    ssh_cmd = re.search(r'export GIT_SSH_COMMAND="([^"]+)"', text).group(1)
    known_hosts = tmp / "gs" / "known_hosts"
    assert ssh_cmd == (f"ssh -i {demo_key} -o IdentitiesOnly=yes -o UserKnownHostsFile="
                       f"{known_hosts} -p {port}")
    clone = re.search(r"^  (git clone .+)$", text, re.M).group(1)
    assert clone == "git clone git@127.0.0.1:demo"
    # the printed command works from a shell with no terminal to answer ssh's host key
    # question: the known_hosts file it names pins the server's real keys
    assert sorted(known_hosts.read_text().split("\n")[:-1]) == sorted(
        f"[127.0.0.1]:{port} " + " ".join(p.read_text().split()[:2])
        for p in (tmp / "gs" / "host_keys").glob("*.pub"))
    ssh_cmd = ssh_cmd.replace("ssh ", "ssh -o StrictHostKeyChecking=yes -o BatchMode=yes ", 1)
    user_env = dict(env, GIT_SSH_COMMAND=ssh_cmd, GIT_AUTHOR_NAME="Demo", GIT_AUTHOR_EMAIL="d@x",
                    GIT_COMMITTER_NAME="Demo", GIT_COMMITTER_EMAIL="d@x")
    work = tmp / "work"
    work.mkdir()
    # run the printed lines exactly, in one shell, as a user would paste them
    lines = text[text.index("  git clone"):text.index("The push prints")].strip().splitlines()
    script = "set -e\n" + "\n".join(ln.strip() for ln in lines) + "\n"
    r = subprocess.run(["bash", "-c", script], cwd=work, env=user_env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    if importlib.util.find_spec("buildqueue.embedded") is not None:  # once builds are merged
        assert "remote: hello from the build of refs/heads/main" in r.stderr, r.stderr
        assert re.search(r"remote: build \S+ passed in \d", r.stderr), r.stderr
    server_repo = tmp / "gs" / "repositories" / "demo.git"
    head = subprocess.run([git, "--git-dir", str(server_repo), "rev-parse", "refs/heads/main"],
                          capture_output=True, text=True, timeout=30)
    local = subprocess.run([git, "rev-parse", "HEAD"], cwd=work / "demo", capture_output=True,
                           text=True, timeout=30)
    assert head.returncode == 0 and head.stdout == local.stdout
    # a second run reuses the home (never re-inits) and starts again
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)
    _, out2 = start()
    assert "using the existing server home" in "".join(out2)


def test_readme_quickstart_deploy_goes_live(quickstart):
    """README's "The quickstart" deploy block, run as written after the printed lines (only
    its ports swapped for free ones), puts the pushed commit live behind nginx."""
    git = require_tool("git")
    require_tool("ssh")
    require_tool("curl")
    require_tool("nginx")
    from deploy import nginx, sitesctl
    from gitserve import settings as gs_settings

    start, tmp, port, env = quickstart
    proc, out = start()
    text = "".join(out)
    assert "README.md's \"The quickstart\"" in text and "run/sites.lock" in text
    readme = open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"<!-- quickstart-deploy -->\n```sh\n(.*?)```", readme, re.S).group(1)
    live, preview = free_port(), free_port()
    block = block.replace("8001", str(preview)).replace("8000", str(live))
    ssh_cmd = re.search(r'export GIT_SSH_COMMAND="([^"]+)"', text).group(1)
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text("".join(f"[127.0.0.1]:{port} {p.read_text()}"
                                   for p in sorted((tmp / "gs" / "host_keys").glob("*.pub"))))
    ssh_cmd = ssh_cmd.replace("ssh ", f"ssh -o UserKnownHostsFile={known_hosts} "
                              "-o StrictHostKeyChecking=yes -o BatchMode=yes ", 1)
    user_env = dict(env, GIT_SSH_COMMAND=ssh_cmd, GIT_AUTHOR_NAME="Demo", GIT_AUTHOR_EMAIL="d@x",
                    GIT_COMMITTER_NAME="Demo", GIT_COMMITTER_EMAIL="d@x")
    work = tmp / "work"
    work.mkdir()
    printed = text[text.index("  git clone"):text.index("The push prints")].strip().splitlines()
    script = ("set -e\n" + "\n".join(ln.strip() for ln in printed) + "\ncd ..\n" + block)
    home = gs_settings.load(tmp / "gs")
    try:
        r = subprocess.run(["bash", "-c", script], cwd=work, env=user_env, capture_output=True,
                           text=True, timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "remote: deploy demo: done: live is blue" in r.stderr, r.stderr
        sha = subprocess.run([git, "rev-parse", "HEAD"], cwd=work / "demo", capture_output=True,
                             text=True, timeout=30).stdout.strip()
        assert r.stdout.strip().splitlines()[-1] == f"hello from {sha}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        sitesctl.stop(home)  # serve never stops `gitserve sites`: the README says so
        nginx.stop_embedded(home)
