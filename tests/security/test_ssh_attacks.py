"""Issue 21 findings 5 and 6 (ssh side), as a user with a key attacks a running server.

5: `info PATTERN` compiled user text with Python's backtracking `re`: with one 44-character
   wild repo, `info .+.+.+.+.+.+.+.+Z` froze the whole server for 12 s and twelve `.+` never
   ended. Now RE2 matches in linear time.
6: one SSH connection opened 1,000 channels = 1,007 server threads, held until the idle
   timeout. Now `[server] max_channels_per_connection` (10) channels at once; more are refused.

Both failed before the fix (the info call timed out; all 200 channels opened).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest

from tests.support.server import GitServer

pytestmark = pytest.mark.timeout(180)

WILD = "wild/alice/" + "x" * 33  # 44 characters, as in the report


@pytest.fixture(scope="module")
def srv(gitserve_module_factory) -> GitServer:
    conf = """
repo gitolite-admin
    RW+ = admin
repo wild/CREATOR/..*
    C = alice
    RW+ = CREATOR
    R = bob
repo plain
    RW+ = alice
    R = bob
"""
    server = gitserve_module_factory(conf=conf, users=("alice", "bob"))
    server.git("alice", "ls-remote", server.url(WILD))  # C: the first access creates it
    assert (server.home / "repositories" / f"{WILD}.git").is_dir()
    return server


def test_info_pattern_is_matched_in_linear_time(srv):
    answers: list[float] = []

    def bob_logs_in() -> None:
        t = time.monotonic()
        out = srv.ssh("bob", "info", timeout=30).stdout
        answers.append(time.monotonic() - t)
        assert "plain" in out

    started = time.monotonic()
    other = threading.Thread(target=bob_logs_in)
    other.start()
    try:
        res = srv.ssh("alice", "info", ".+" * 12 + "Z", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("info with twelve .+ did not answer in 20 s")
    other.join(30)
    assert time.monotonic() - started < 10
    assert res.returncode == 0 and WILD not in res.stdout, res.stdout
    assert answers and answers[0] < 5, answers
    # Gitolite's meaning is kept: an unanchored regex over the names
    hit = srv.ssh("alice", "info", "a.i.e/x+x").stdout
    assert WILD in hit, hit
    bad = srv.ssh("alice", "info", "a+++")
    assert bad.returncode != 0 and "bad pattern 'a+++'" in bad.stderr + bad.stdout, bad
    assert "Traceback" not in bad.stderr + bad.stdout


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def test_one_connection_cannot_open_unbounded_channels(srv):
    assert srv.proc is not None
    before = _threads(srv.proc.pid)
    transport = paramiko.Transport(("127.0.0.1", srv.port))
    try:
        transport.connect(username="git", pkey=paramiko.Ed25519Key.from_private_key_file(str(srv.key_for("alice"))))
        opened, refused = [], 0
        for _ in range(200):
            try:
                opened.append(transport.open_session(timeout=5))
            except paramiko.ChannelException:
                refused += 1
        assert len(opened) == 10 and refused == 190, (len(opened), refused)
        assert _threads(srv.proc.pid) - before < 40, (before, _threads(srv.proc.pid))
        # a channel that ends frees its place
        opened[0].close()
        deadline = time.monotonic() + 10
        while True:
            try:
                chan = transport.open_session(timeout=5)
                break
            except paramiko.ChannelException:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        chan.exec_command("info")
        assert b"plain" in chan.makefile().read()
    finally:
        transport.close()
    # and others are served meanwhile
    assert "plain" in srv.ssh("bob", "info", timeout=30).stdout
