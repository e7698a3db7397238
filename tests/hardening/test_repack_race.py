"""Upkeep racing a push: between the moment a push's pack is moved into the repository and
the moment its ref moves (check #2, and a whole gate build, run in between), the pushed
objects are unreachable. A repack or gc in that window must not drop them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitserve import upkeep
from tests.support.tools import require_tool

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **ENV, HOME="/tmp"),
                          check=True, capture_output=True, input=input, timeout=60).stdout.decode()


@pytest.fixture
def pushed_but_unreferenced(tmp_path):
    """A bare repo whose main is C1, holding a pack with C2 (child of C1) that no ref names
    yet: the state of a push waiting for its gate build."""
    require_tool("git")
    work, bare = tmp_path / "work", tmp_path / "repo.git"
    git("init", "-q", "-b", "main", str(work))
    for i in range(2):
        (work / f"f{i}").write_text(f"{i}\n" * 100)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"c{i}", cwd=work)
    c2 = git("rev-parse", "HEAD", cwd=work).strip()
    git("init", "-q", "--bare", str(bare))
    git("push", "-q", str(bare), "HEAD~1:refs/heads/main", cwd=work)
    pack = subprocess.run(["git", "pack-objects", "--revs", "--stdout"], cwd=work,
                          input=f"{c2}\n^{c2}~1\n".encode(), check=True, capture_output=True,
                          timeout=60).stdout
    subprocess.run(["git", "--git-dir", str(bare), "index-pack", "--stdin", "--fix-thin"],
                   input=pack, check=True, capture_output=True, timeout=60)
    return bare, c2


def _finish_push(bare: Path, c2: str) -> None:
    git("--git-dir", str(bare), "update-ref", "refs/heads/main", c2)
    r = subprocess.run(["git", "--git-dir", str(bare), "fsck", "--strict"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("use_git", [True, False])
def test_gc_keeps_a_pending_pushs_objects(pushed_but_unreferenced, use_git):
    bare, c2 = pushed_but_unreferenced
    upkeep.gc_repo(bare, grace_period=3600, use_git=use_git)
    _finish_push(bare, c2)


@pytest.mark.parametrize("with_git", [True, False])
def test_background_repack_keeps_a_pending_pushs_objects(pushed_but_unreferenced, monkeypatch,
                                                         with_git):
    repack = pytest.importorskip("gitserve.git.repack")
    if not with_git:  # the pure-dulwich route of a host without a git binary
        monkeypatch.setattr(repack.shutil, "which", lambda name: None)
    bare, c2 = pushed_but_unreferenced
    repack.repack_now(str(bare))
    monkeypatch.undo()
    _finish_push(bare, c2)
