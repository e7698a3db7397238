"""Big objects, many clients at once, racing pushes, and broken packs."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

CONF = """
repo gitolite-admin
    RW+ = admin
repo big many race
    RW+ = alice
    RW+ = bob
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(users=("alice", "bob"), conf=CONF)


def _fsck(path) -> None:
    res = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_twenty_megabyte_file_round_trip(srv):
    work = srv.clone("alice", "big")
    blob = os.urandom(20 * 1024 * 1024)
    (work / "big.bin").write_bytes(blob)
    srv.git("alice", "add", "big.bin", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "big", cwd=work)
    t0 = time.monotonic()
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    push_s = time.monotonic() - t0
    t0 = time.monotonic()
    dest = srv.clone("bob", "big")
    clone_s = time.monotonic() - t0
    assert (dest / "big.bin").read_bytes() == blob
    _fsck(srv.repo_path("big"))
    # generous bounds: the quadratic sideband writer took far longer than this
    assert push_s < 30 and clone_s < 30, (push_s, clone_s)


def test_twenty_parallel_clones_and_ten_parallel_pushes(srv):
    work = srv.clone("alice", "many")
    for i in range(5):
        srv.commit("alice", work, f"f{i}.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    head = srv.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()

    def clone(i: int) -> subprocess.CompletedProcess:
        return srv.git("bob", "clone", "-q", srv.url("many"), str(srv.tmp / f"pc{i}"),
                       check=False, timeout=120)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(clone, range(20)))
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "reset" not in res.stderr.lower()
    for i in range(20):
        assert srv.git("bob", "rev-parse", "HEAD", cwd=srv.tmp / f"pc{i}").stdout.strip() == head

    # 10 pushes at once, each to its own branch: all must land
    def push(i: int) -> tuple[str, subprocess.CompletedProcess]:
        w = srv.tmp / f"pc{i}"
        sha = srv.commit("bob", w, f"p{i}.txt")
        return sha, srv.git("bob", "push", "-q", "origin", f"HEAD:refs/heads/b{i}", cwd=w,
                            check=False, timeout=120)

    with ThreadPoolExecutor(10) as pool:
        pushed = list(pool.map(push, range(10)))
    ls = srv.git("bob", "ls-remote", srv.url("many")).stdout
    for i, (sha, res) in enumerate(pushed):
        assert res.returncode == 0, res.stderr
        assert f"{sha}\trefs/heads/b{i}" in ls
    _fsck(srv.repo_path("many"))


def test_racing_pushes_on_one_branch_lose_nothing(srv):
    work = srv.clone("alice", "race")
    srv.commit("alice", work, "base.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    clones = [srv.clone("bob", "race") for _ in range(8)]
    shas = [srv.commit("bob", w, f"r{i}.txt") for i, w in enumerate(clones)]

    def push(i: int) -> subprocess.CompletedProcess:
        return srv.git("bob", "push", "origin", "HEAD:main", cwd=clones[i], check=False)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(push, range(8)))
    accepted = [shas[i] for i, r in enumerate(results) if r.returncode == 0]
    assert len(accepted) >= 1
    for r in results:
        if r.returncode != 0:  # lost the race: told so, nothing half-done
            assert "rejected" in r.stderr or "failed" in r.stderr, r.stderr
    final = srv.git("bob", "ls-remote", srv.url("race"), "refs/heads/main").stdout.split()[0]
    assert final in accepted
    _fsck(srv.repo_path("race"))


def test_corrupt_pack_is_refused_and_changes_nothing(srv, tmp_path):
    work = srv.clone("alice", "race", dest=tmp_path / "w")
    before = srv.git("alice", "ls-remote", srv.url("race")).stdout
    srv.commit("alice", work, "bad.txt", "x" * 1000)
    # a pack whose bytes were flipped in the middle: rebuild it by hand and send it raw
    new = srv.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()
    old = srv.git("alice", "rev-parse", "HEAD~1", cwd=work).stdout.strip()
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work,
                          input=f"{new}\n^{old}\n".encode(), capture_output=True, check=True).stdout
    broken = bytearray(pack)
    broken[len(broken) // 2] ^= 0xFF
    cmd = f"{old} {new} refs/heads/main\x00report-status".encode()
    req = b"%04x" % (len(cmd) + 4) + cmd + b"0000" + bytes(broken)
    res = subprocess.run(srv.ssh_command(srv.key_for("alice")) +
                         ["git@127.0.0.1", "git-receive-pack 'race'"], input=req,
                         capture_output=True, timeout=60)
    assert b"unpack " in res.stdout and b"unpack ok" not in res.stdout
    assert b"ng refs/heads/main" in res.stdout
    assert srv.git("alice", "ls-remote", srv.url("race")).stdout == before
    incoming = list((srv.repo_path("race") / "objects").glob("incoming-*"))
    assert incoming == []
    _fsck(srv.repo_path("race"))
