"""Faults: the server killed with SIGKILL mid-push, the disk filling up mid-pack, Redis and
workers killed under running builds. After each: refs old-or-new, `git fsck` clean, the
retried operation works, nothing queued is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.server import make_server
from tests.support.tools import IN_CI, require_tool

pytestmark = pytest.mark.timeout(300)

CONF = """
repo gitolite-admin
    RW+ = admin
repo foo
    RW+ = alice
"""


def rev(path: Path, ref: str = "refs/heads/main") -> str | None:
    r = subprocess.run(["git", "--git-dir", str(path), "rev-parse", "--verify", "-q", ref],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip() or None


def all_objects(path: Path) -> set[str]:
    return set(subprocess.run(["git", "--git-dir", str(path), "cat-file", "--batch-all-objects",
                               "--batch-check=%(objectname)"], capture_output=True, text=True,
                              check=True, timeout=60).stdout.split())


def git_fsck(path: Path) -> None:
    r = subprocess.run(["git", "--git-dir", str(path), "fsck", "--strict", "--no-dangling"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def kill9(srv) -> None:
    """SIGKILL the server and everything it started, as a power cut or the OOM killer would."""
    pids = _tree(srv.proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    srv.proc.wait(10)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def big_commit(srv, work: Path, size: int, name: str) -> str:
    (work / name).write_bytes(os.urandom(size))
    srv.git("alice", "add", name, cwd=work)
    srv.git("alice", "commit", "-q", "-m", name, cwd=work)
    return srv.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()


def test_server_killed_during_pushes(gitserve_factory):
    srv = gitserve_factory(users=("alice",), conf=CONF, serve_args=("--workers", "0"))
    repo = srv.repo_path("foo")
    work = srv.clone("alice", "foo")
    srv.commit("alice", work, "README", "base\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    started = time.monotonic()
    big_commit(srv, work, 1_000_000, "probe")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    took = time.monotonic() - started  # how long one such push takes here, now
    faults = outcomes_new = 0
    for i, frac in enumerate([0.2, 0.7, 1.3]):
        delay = frac * took
        old = rev(repo)
        new = big_commit(srv, work, 1_000_000, f"blob{i}")
        push = subprocess.Popen(["git", "push", "-q", "origin", "HEAD:main"], cwd=work,
                                env=srv.client_env("alice"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(delay)
        kill9(srv)
        faults += 1
        push.wait(60)
        now = rev(repo)
        assert now in (old, new), (i, old, new, now)
        outcomes_new += now == new
        git_fsck(repo)
        srv.start(("--workers", "0"))
        # the retried push works (and is a no-op if the killed one had landed)
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        assert rev(repo) == new
        git_fsck(repo)
    r = srv.admin_cli("admin", "fsck", "foo")
    assert "foo: ok (" in r.stdout, r.stdout
    print(f"\nserver kill -9 faults: {faults}, pushes that had landed: {outcomes_new}, lost: 0")


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs: writes past it fail with ENOSPC, as on a full disk."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        msg = f"cannot mount a tmpfs (needs root): {r.stderr.strip()}"
        pytest.fail(msg) if IN_CI else pytest.skip(msg)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill DISK until LEAVE bytes are free."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_disk_full_while_receiving_a_pack(small_disk):
    srv = make_server(small_disk / "srv", users=("alice",), conf=CONF,
                      serve_args=("--workers", "0"))
    try:
        repo = srv.repo_path("foo")
        work = srv.clone("alice", "foo")
        srv.commit("alice", work, "README", "base\n")
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        old = rev(repo)
        objects_before = all_objects(repo)
        new = big_commit(srv, work, 6_000_000, "big.bin")  # the client side is on the disk too
        filler = fill(small_disk, leave=2_000_000)
        r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, check=False)
        assert r.returncode != 0
        assert "No space left on device" in r.stderr or "unpack" in r.stderr, r.stderr
        assert rev(repo) == old  # the repository is unchanged
        assert all_objects(repo) == objects_before  # (a background repack may re-pack them)
        assert not list((repo / "objects").glob("incoming-*"))  # quarantine removed
        git_fsck(repo)
        assert srv.proc.poll() is None  # the server is still up and serving
        assert srv.ssh("alice", "info").returncode == 0
        filler.unlink()  # space is back: the same push now works
        srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        assert rev(repo) == new
        git_fsck(repo)
    finally:
        srv.stop()


# --- builds: Redis and workers killed ---------------------------------------------------

BUILD_CONF = CONF + """
repo q
    RW+ = alice
    option build.enable = 1
    option build.mode = async
repo s
    RW+ = alice
    option build.enable = 1
"""


def children_matching(srv, needle: str) -> list[int]:
    found = []
    for pid in _tree(srv.proc.pid)[1:]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmd:
            found.append(pid)
    return found


def build_repo(srv, repo: str, script: str) -> Path:
    work = srv.clone("alice", repo)
    p = work / ".gitserve" / "build"
    p.parent.mkdir()
    p.write_text(script)
    p.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "build", cwd=work)
    return work


def wait_for(pred, timeout: float, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


def build_ids(lines: str) -> list[str]:
    return [line.split()[2] for line in lines.splitlines() if " queued: " in line]


def test_redis_killed_with_builds_queued_loses_none(gitserve_factory):
    require_tool("git")
    srv = gitserve_factory(users=("alice",), conf=BUILD_CONF, serve_args=("--workers", "0"))
    work = build_repo(srv, "q", "#!/bin/sh\necho built $GITSERVE_NEWREV\n")
    queued = []
    for i in range(4):
        srv.commit("alice", work, f"f{i}")
        r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work)
        queued += build_ids(r.stderr)
    assert len(queued) == 4, queued
    (redis_pid,) = children_matching(srv, "redis-server")
    os.kill(redis_pid, signal.SIGKILL)  # Redis dies with 4 builds queued and none run
    srv.commit("alice", work, "late")
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work)  # the push still lands...
    assert "could not be queued" in r.stderr, r.stderr  # ...and the pusher is told
    srv.stop()
    srv.start(("--workers", "1"))
    for build_id in queued:  # every queued build survived in the append-only file and runs
        out = srv.ssh("alice", "builds", "log", build_id, "--follow", timeout=120).stdout
        assert out.startswith("built ") and f"build {build_id} passed" in out, out
    print(f"\nredis kill -9 with {len(queued)} builds queued: lost 0")


def test_worker_killed_mid_build_then_next_build_runs(gitserve_factory):
    srv = gitserve_factory(users=("alice",), conf=BUILD_CONF, serve_args=("--workers", "1"))
    work = build_repo(srv, "s", "#!/bin/sh\necho started\nsleep 60\necho never\n")
    push = subprocess.Popen(["git", "push", "origin", "HEAD:main"], cwd=work,
                            env=srv.client_env("alice"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: "running" in srv.admin_cli("builds", "list").stdout, 60)
    for pid in children_matching(srv, "gitserve worker"):
        for p in _tree(pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _, err = push.communicate(timeout=90)
    assert "worker lost" in err and "never" not in err, err
    listing = srv.admin_cli("builds", "list", "--repo", "s").stdout
    assert "failed" in listing.splitlines()[1], listing
    # the next push builds: the server replaced its dead worker
    (work / ".gitserve" / "build").write_text("#!/bin/sh\necho second build\n")
    srv.git("alice", "commit", "-qam", "fixed", cwd=work)
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=120)
    assert "remote: second build" in r.stderr and " passed in " in r.stderr, r.stderr


def test_serve_killed_alone_restarts_cleanly(gitserve_factory):
    """The OOM killer takes `gitserve serve` only: its Redis and workers must not outlive it
    and block the restart; queued builds still run after it."""
    srv = gitserve_factory(users=("alice",), conf=BUILD_CONF, serve_args=("--workers", "0"))
    work = build_repo(srv, "q", "#!/bin/sh\necho built\n")
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work)
    (build_id,) = build_ids(r.stderr)
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    srv.start(("--workers", "1"))
    out = srv.ssh("alice", "builds", "log", build_id, "--follow", timeout=120).stdout
    assert f"build {build_id} passed" in out, out


def test_ref_lock_left_by_a_killed_server_does_not_block_pushes(gitserve_factory):
    """SIGKILL between taking a ref's lock and renaming it leaves refs/heads/main.lock; git
    and dulwich then refuse every update of main. The next `serve` clears such locks."""
    srv = gitserve_factory(users=("alice",), conf=CONF, serve_args=("--workers", "0"))
    work = srv.clone("alice", "foo")
    srv.commit("alice", work, "README", "base\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    kill9(srv)
    lock = srv.repo_path("foo") / "refs" / "heads" / "main.lock"
    lock.write_text("0" * 40 + "\n")  # what the killed update left behind
    os.utime(lock, (time.time() - 2, time.time() - 2))
    srv.start(("--workers", "0"))
    new = srv.commit("alice", work, "more")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    assert rev(srv.repo_path("foo")) == new and not lock.exists()
