"""Push size limits (#11 suspected hole: no limit on push size, and the push check loaded
each object whole). `[server] max_push_bytes` and `max_blob_bytes` refuse a push whole with
one clear line; nothing of it reaches the repository. Real git over ssh."""

from __future__ import annotations

import os

import pytest

from tests.support.sitekit import rev

pytestmark = pytest.mark.timeout(180)

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(
        users=("alice",), serve_args=("--workers", "0"),
        settings={"server": {"max_push_bytes": 8 * MIB, "max_blob_bytes": 2 * MIB}},
        conf="repo gitolite-admin\n    RW+ = admin\nrepo big\n    RW+ = alice\n")


def _commit_random(srv, work, name: str, size: int) -> str:
    (work / name).write_bytes(os.urandom(size))
    srv.git("alice", "add", name, cwd=work)
    srv.git("alice", "commit", "-q", "-m", name, cwd=work)
    return srv.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()


def _in_repo(srv, work, path: str) -> bool:
    """Is the blob at HEAD:PATH of WORK in the server's repo? (The repo's packs may change
    under a test - upkeep repacks after pushes - so look objects up, do not list files.)"""
    import subprocess

    blob = srv.git("alice", "rev-parse", f"HEAD:{path}", cwd=work).stdout.strip()
    r = subprocess.run(["git", "--git-dir", str(srv.repo_path("big")), "cat-file", "-e", blob],
                       capture_output=True, check=False)
    return r.returncode == 0


def _no_quarantine_left(srv) -> bool:
    return not list((srv.repo_path("big") / "objects").glob("incoming-*"))


def test_push_over_max_push_bytes_is_refused_whole(srv):
    work = srv.clone("alice", "big")
    srv.git("alice", "config", "core.compression", "0", cwd=work)
    for i in range(6):  # 6 x 1.5 MiB: every blob is allowed, the push is not
        _commit_random(srv, work, f"part{i}.bin", 3 * MIB // 2)
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, check=False, timeout=120)
    assert r.returncode != 0
    assert "larger than this server's limit of 8 MiB (max_push_bytes)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert rev(srv, "big", "refs/heads/main") == ""
    assert not any(_in_repo(srv, work, f"part{i}.bin") for i in range(6)) and _no_quarantine_left(srv)


def test_blob_over_max_blob_bytes_is_refused_whole(srv):
    work = srv.clone("alice", "big")
    ok = _commit_random(srv, work, "small.bin", 100_000)
    srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=120)
    assert rev(srv, "big", "refs/heads/main") == ok
    big = _commit_random(srv, work, "big.bin", 3 * MIB)
    r = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, check=False, timeout=120)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if "max_blob_bytes" in line]
    assert lines and "blob of 3 MiB, over this server's limit of 2 MiB (max_blob_bytes)" in lines[0], r.stderr
    assert rev(srv, "big", "refs/heads/main") == ok != big
    assert not _in_repo(srv, work, "big.bin") and _no_quarantine_left(srv)
