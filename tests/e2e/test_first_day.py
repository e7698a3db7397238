"""A newcomer's first day (issue 24): what the server console shows must never be a traceback
or a raw value, and what it prints must work as printed.

One server with http on, `public_port` set, and builds that wait for a worker (none runs
until the Ctrl-C test starts one): `ssh-keyscan` for every key type, a push whose build waits
and is interrupted (Ctrl-C), the banner's clone line and the loud warning that `R = @all`
repos are anonymous over http.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.support.sentinel import start_workers, stop_workers
from tests.support.server import make_server
from tests.support.tools import free_port, require_tool

pytestmark = pytest.mark.timeout(240)

CONF = """repo gitolite-admin
    RW+     =   admin

repo testing
    RW+     =   @all

repo waits
    RW+     =   @all
    option build.enable = 1
    option build.mode = sync
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first-day")
    server = make_server(tmp / "srv", settings={
        "server": {"public_port": 2299},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "builds": {"workers": 0},  # nobody takes the build: the push waits for a worker
    }, conf=CONF, users=("alice",))
    yield server
    server.stop()


def more_output(srv, needle: str, timeout: float = 30) -> str:
    """serve's stdout past "listening on" (GitServer.start stops reading there)."""
    import select

    assert srv.proc is not None and srv.proc.stdout is not None
    fd = srv.proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    pending = b""
    while needle not in "".join(srv.output) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            srv.output.extend(x.decode(errors="replace") + "\n" for x in lines)
    return "".join(srv.output)


def test_the_banner_names_the_public_port_and_warns_about_anonymous_repos(srv):
    out = more_output(srv, "WITHOUT LOGIN")
    assert "gitserve: clone with git clone ssh://git@127.0.0.1:2299/REPO" in out, out
    warning = [line for line in srv.output if "WITHOUT LOGIN" in line]
    assert len(warning) == 1 and "testing" in warning[0] and "waits" in warning[0], out
    assert "gitolite-admin" not in warning[0]


def test_ssh_keyscan_of_every_key_type_leaves_no_traceback(srv):
    keyscan = require_tool("ssh-keyscan")
    for kind in ("ed25519", "rsa", "ecdsa"):
        subprocess.run([keyscan, "-T", "10", "-t", kind, "-p", str(srv.port), "127.0.0.1"],
                       capture_output=True, timeout=60, check=False)
    got = subprocess.run([keyscan, "-T", "10", "-p", str(srv.port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert "ssh-ed25519" in got.stdout
    deadline = time.monotonic() + 5
    while "Exception (server)" not in srv.server_log() and time.monotonic() < deadline:
        time.sleep(0.1)  # the ecdsa attempt's failure reaches the console
    console = srv.server_log()
    assert "Incompatible" in console and "Traceback" not in console, console
    # the scans that hung up after reading the host key are routine: log file only (they
    # showed as `ERROR paramiko.transport: Socket exception: Connection reset by peer`)
    assert "Socket exception" not in console and "ERROR" not in console, console
    # a scanner or probe that leaves before the SSH banner: log file only too
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as probe:
        probe.recv(100)
    deadline = time.monotonic() + 15
    log_file = srv.home / "logs" / "server.log"
    while "Error reading SSH protocol banner" not in log_file.read_text() \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Error reading SSH protocol banner" in log_file.read_text()
    assert "Error reading SSH protocol banner" not in srv.server_log()


def test_a_users_typo_stays_off_the_console(srv):
    """The user reads their own refusal; the admin's console is for the server's problems,
    the log file keeps it (as a WARNING with the user)."""
    assert srv.ssh("alice", "no-such-command").returncode == 25
    log_file = srv.home / "logs" / "server.log"
    deadline = time.monotonic() + 15
    while "refused alice: unknown git/gitolite command" not in log_file.read_text() \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "WARNING" in next(line for line in log_file.read_text().splitlines()
                             if "refused alice: unknown git/gitolite command" in line)
    assert "no-such-command" not in srv.server_log()


def test_ctrl_c_of_a_push_waiting_for_a_worker_leaves_no_traceback(srv):
    work = srv.clone("alice", "waits")
    (work / ".gitserve").mkdir()
    (work / ".gitserve" / "build").write_text("#!/bin/sh\necho built\n")
    (work / ".gitserve" / "build").chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-qm", "build", cwd=work)
    # SIGINT at its default: a shell's background job (`.ci/run &`) inherits it ignored, and
    # the Ctrl-C below would do nothing (the push then ended only when the server gave up)
    push = subprocess.Popen(["env", "--default-signal=INT", "git", "push", "--progress", "origin",
                             "HEAD:main"], cwd=work,
                            env=srv.client_env("alice"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert push.stderr is not None
    seen = []
    for line in push.stderr:
        seen.append(line)
        if "waits for a worker" in line:
            break
    time.sleep(0.5)
    os.killpg(push.pid, signal.SIGINT)  # Ctrl-C: git and its ssh go
    assert push.wait(30) == -signal.SIGINT, seen
    # a worker now runs the build, so the server streams its log into the channel the client
    # left: the moment a traceback would come from (without one the session just waits)
    workers = start_workers(srv.home, 1)
    try:
        log_file = srv.home / "logs" / "server.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tail = log_file.read_text()
            if "ended early" in tail or "exit " in tail.split("run git-receive-pack")[-1]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the session of the interrupted push never ended: " + tail)
    finally:
        stop_workers(workers)
    console = srv.server_log()  # serve's stderr: what the admin watching it sees
    assert "Traceback" not in console and "Socket is closed" not in console, (seen, console)
