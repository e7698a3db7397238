"""The one-pass ref listing gives dulwich's answer (loose over packed, symrefs resolved,
peeled tags), and ServedRepo hides refs/gitserve/* and symrefs that point there."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dulwich.repo import Repo

from gitserve.git import refscan
from gitserve.git.repo import ServedRepo

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env={**ENV, "HOME": str(cwd)}, check=True,
                          capture_output=True, text=True).stdout.strip()


def make(tmp_path: Path) -> tuple[Path, list[str]]:
    w = tmp_path / "w"
    git(tmp_path, "init", "-q", "-b", "main", str(w))
    shas = []
    for i in range(3):
        (w / "f").write_text(str(i))
        git(w, "add", "f")
        git(w, "commit", "-q", "-m", str(i))
        shas.append(git(w, "rev-parse", "HEAD"))
    git(w, "tag", "-a", "-m", "t", "annotated", shas[0])
    git(w, "tag", "light", shas[1])
    git(w, "branch", "packed-then-moved", shas[0])
    git(w, "update-ref", "refs/gitserve/builds/1", shas[2])
    git(w, "pack-refs", "--all")
    git(w, "update-ref", "refs/heads/packed-then-moved", shas[2])  # loose overrides packed
    git(w, "branch", "loose-only", shas[1])
    git(w, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    git(w, "symbolic-ref", "refs/heads/sneaky", "refs/gitserve/builds/1")
    return w / ".git", shas


def test_scan_matches_dulwich(tmp_path: Path) -> None:
    gitdir, shas = make(tmp_path)
    found = refscan.scan(str(gitdir))
    assert found.refs == Repo(str(gitdir)).get_refs()
    assert found.symrefs == Repo(str(gitdir)).refs.get_symrefs()
    tag = found.refs[b"refs/tags/annotated"]
    assert found.peeled[tag] == shas[0].encode()


def test_served_repo_hides_and_peels(tmp_path: Path) -> None:
    gitdir, shas = make(tmp_path)
    repo = ServedRepo(str(gitdir))
    refs = repo.get_refs()
    assert not any(n.startswith(b"refs/gitserve/") for n in refs)
    assert b"refs/heads/sneaky" not in refs  # its target is hidden
    assert b"refs/heads/sneaky" not in repo.get_symrefs()
    assert refs[b"refs/heads/alias"] == shas[2].encode()
    assert repo.get_peeled(b"refs/tags/annotated") == shas[0].encode()
    assert repo.get_peeled(b"refs/tags/light") == shas[1].encode()
    builder = ServedRepo(str(gitdir))
    builder.show_hidden = True
    assert builder.get_refs()[b"refs/gitserve/builds/1"] == shas[2].encode()
    assert b"refs/heads/sneaky" in builder.get_refs()
