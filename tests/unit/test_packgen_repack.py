"""Background repack after pushes: one pack again, the covering record, with and without git."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitserve import app
from gitserve.git import pushhooks, repack
from gitserve.settings import Settings
from tests.support.packkit import TINY, commit_on, git, rev_list
from tests.bench import repogen
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("git")
    path = tmp_path_factory.mktemp("src") / "tiny.git"
    repogen.generate(TINY, path)
    return path


def pushed_repo(source: Path, tmp_path: Path, pushes: int = 3) -> Path:
    """A copy of SOURCE with one more pack per simulated push, as receive-pack leaves it."""
    repo = tmp_path / "repo.git"
    repogen.copy_repo(source, repo)
    for _ in range(pushes):
        new = commit_on(repo, "main")
        git(repo, "update-ref", "refs/heads/main", new)
        git(repo, "repack", "-q")  # packs only the loose objects: one more pack
    return repo


def packs(repo: Path) -> list[Path]:
    return sorted((repo / "objects/pack").glob("*.pack"))


def check_single_covering_pack(repo: Path) -> None:
    assert len(packs(repo)) == 1
    assert not [f for d in (repo / "objects").iterdir() if len(d.name) == 2 for f in d.iterdir()]
    r = Repo(str(repo))
    try:
        found = repack.covering_pack(r.object_store)
        assert found is not None
        assert sorted(found[1]) == repack.ref_tips(r)
    finally:
        r.close()
    git(repo, "fsck", "--no-dangling")
    idx = next((repo / "objects/pack").glob("*.idx")).read_bytes()
    shas = {line.split()[1] for line in git(repo, "show-index", input=idx).splitlines()}
    assert shas == rev_list(repo, "--all")


def test_repack_with_git_leaves_one_covering_pack(source: Path, tmp_path: Path) -> None:
    repo = pushed_repo(source, tmp_path)
    assert len(packs(repo)) == 4
    assert repack.repack_now(str(repo))
    check_single_covering_pack(repo)


def test_repack_without_git_copies_entries_into_one_pack(source: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo = pushed_repo(source, tmp_path)
    monkeypatch.setattr(repack.shutil, "which", lambda name: None)
    assert repack.repack_now(str(repo))
    monkeypatch.undo()
    check_single_covering_pack(repo)


def test_unreachable_objects_mean_no_covering_record(source: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    repogen.copy_repo(source, repo)
    r = Repo(str(repo))
    tips = repack.ref_tips(r)
    r.close()
    git(repo, "update-ref", "refs/heads/main", git(repo, "rev-parse", "main~3").strip())
    r = Repo(str(repo))
    try:
        # the pack still holds main's old commits: it is not the closure of the new refs
        assert not repack.record_covering_pack(r, repack.ref_tips(r))
        assert repack.covering_pack(r.object_store) is None
        assert repack.record_covering_pack(r, tips)  # but it is of the old ones
    finally:
        r.close()


def test_covering_check_is_exact_and_flat_in_memory(tmp_path: Path) -> None:
    """The check compares git's sorted object list with the pack index line by line: its
    Python memory does not grow with the repository (two sets of every id, plus rev-list's
    whole output, took 116 MB for 299k objects; here 8.9k objects took ~4 MB)."""
    import tracemalloc

    repo = tmp_path / "small.git"
    repogen.copy_repo(repogen.ensure("small"), repo)
    git(repo, "repack", "-a", "-d", "-q", "-b")
    r = Repo(str(repo))
    try:
        tips = repack.ref_tips(r)
        tracemalloc.start()
        assert repack.record_covering_pack(r, tips)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 512 << 10, peak
        # the pack holds more than these tips reach: no record
        main = git(repo, "rev-parse", "main~5").strip().encode()
        assert not repack.record_covering_pack(r, [main])
    finally:
        r.close()
    loose = git(repo, "hash-object", "-w", "--stdin", input=b"reachable but loose\n").strip()
    tag = git(repo, "mktag", input=(f"object {loose}\ntype blob\ntag loose\n"
                                    "tagger t <t@e> 0 +0000\n\nx\n").encode()).strip()
    r = Repo(str(repo))
    try:  # the closure holds two objects the pack does not
        assert not repack.record_covering_pack(r, [*repack.ref_tips(r), tag.encode()])
    finally:
        r.close()


def test_push_hook_repacks_in_the_background(source: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repack, "DELAY", 0.05)
    monkeypatch.setattr(repack, "MIN_INTERVAL", 0.0)
    repo = pushed_repo(source, tmp_path)
    settings = Settings(home=tmp_path / "home")
    hook = next(h for h in app.push_hooks(settings) if isinstance(h, repack.RepackAfterPush))
    ctx = pushhooks.PushContext(settings=settings, repo_name="repo", repo_path=repo, user="alice",
                                options={}, progress=lambda line: None)
    t0 = time.monotonic()
    hook.after_push(ctx, [pushhooks.RefUpdate("refs/heads/main", "0" * 40, "1" * 40)])
    assert time.monotonic() - t0 < 0.5, "the pusher never waits for upkeep"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(packs(repo)) == 1 and repo.joinpath("objects/pack").glob("*.gitserve-tips"):
            if list(repo.joinpath("objects/pack").glob("*.gitserve-tips")):
                break
        time.sleep(0.1)
    check_single_covering_pack(repo)
