"""`gitserve admin fsck|gc` and the upkeep schedule, checked against `git fsck` as oracle."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from gitserve import repos, settings as settings_mod, upkeep
from gitserve.git.pushhooks import PushContext, RefUpdate
from tests.support.tools import gitserve_cmd, require_tool, subprocess_env

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, **GIT_ENV, HOME=str(cwd or "/tmp"))
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True, timeout=60).stdout


@pytest.fixture
def home(tmp_path: Path) -> settings_mod.Settings:
    require_tool("git")
    s = settings_mod.Settings(home=tmp_path / "home")
    s.repos_dir.mkdir(parents=True)
    return s


def populate(s: settings_mod.Settings, name: str, tmp: Path, pushes: int = 4) -> Path:
    """A repo with several packs and loose objects, as pushes leave it."""
    path = repos.create(s, name)
    work = tmp / f"work-{name.replace('/', '_')}"
    git("init", "-q", "-b", "main", str(work))
    for i in range(pushes):
        for j in range(3 if i % 2 else 120):  # big pushes become packs, small ones loose
            (work / f"f{i}-{j}.txt").write_text(f"{i} {j} {time.monotonic_ns()}\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"c{i}", cwd=work)
        git("push", "-q", str(path), "HEAD:refs/heads/main", cwd=work)
    return path


def counts(path: Path) -> tuple[int, int]:
    packs = len(list((path / "objects" / "pack").glob("*.idx")))
    loose = sum(1 for d in (path / "objects").glob("[0-9a-f][0-9a-f]") for _ in d.iterdir())
    return packs, loose


def cli(s: settings_mod.Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(gitserve_cmd("--home", str(s.home), "admin", *args), text=True,
                          capture_output=True, env=subprocess_env(), timeout=120)


def test_gc_folds_packs_and_keeps_everything(home, tmp_path):
    path = populate(home, "proj", tmp_path)
    before = git("--git-dir", str(path), "rev-list", "--objects", "--all")
    packs, loose = counts(path)
    assert packs >= 2 and loose > 0
    r = cli(home, "gc", "proj")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"proj: packs {packs} -> 1, loose objects {loose} -> 0")
    assert counts(path) == (1, 0)
    assert git("--git-dir", str(path), "rev-list", "--objects", "--all") == before
    git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")
    r = cli(home, "fsck", "proj")
    assert r.returncode == 0 and "proj: ok (" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("use_git", [True, False])
def test_gc_prunes_only_old_unreachable_objects(home, tmp_path, use_git):
    path = populate(home, "proj", tmp_path, pushes=2)
    old = _write_blob(path, b"old dangling\n")
    young = _write_blob(path, b"young dangling\n")
    stale = time.time() - 3 * 86400
    os.utime(path / "objects" / old[:2] / old[2:], (stale, stale))
    report = upkeep.gc_repo(path, "proj", grace_period=86400, use_git=use_git)
    assert report.pruned == 1
    have = set(git("--git-dir", str(path), "cat-file", "--batch-all-objects",
                   "--batch-check=%(objectname)").split())
    assert old not in have and young in have
    git("--git-dir", str(path), "fsck", "--strict")


def test_gc_writes_a_bitmap_and_records_the_covering_pack(home, tmp_path):
    """With git installed gc is git's: one pack with a bitmap (clones count objects from it
    instead of walking every commit) recorded as covering (a full clone is a copy of it).
    Before, dulwich's repack left a pack without a bitmap until the next push's repack."""
    path = populate(home, "proj", tmp_path)
    report = upkeep.gc_repo(path, "proj")
    assert (report.packs_after, report.loose_after) == (1, 0), report.summary()
    pack_dir = path / "objects" / "pack"
    assert len(list(pack_dir.glob("pack-*.bitmap"))) == 1, list(pack_dir.iterdir())
    assert len(list(pack_dir.glob("pack-*.gitserve-tips"))) == 1, list(pack_dir.iterdir())
    git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")
    # and dulwich's gc (a host without git) does not write one: what gc did before
    populate(home, "other", tmp_path)
    upkeep.gc_repo(repos.path(home, "other"), "other", use_git=False)
    assert not list((repos.path(home, "other") / "objects" / "pack").glob("pack-*.bitmap"))


def _write_blob(path: Path, data: bytes) -> str:
    return subprocess.run(["git", "--git-dir", str(path), "hash-object", "-w", "--stdin"],
                          input=data, capture_output=True, check=True).stdout.decode().strip()


def test_gc_removes_only_stale_leftovers_of_dead_pushes(home, tmp_path):
    path = populate(home, "proj", tmp_path, pushes=1)
    dead = path / "objects" / "incoming-dead"
    (dead / "pack").mkdir(parents=True)
    (dead / "pack" / "tmp_pack_x").write_bytes(b"PACK half")
    live = path / "objects" / "incoming-live"
    (live / "pack").mkdir(parents=True)
    stale = time.time() - 2 * upkeep.LEFTOVER_AGE
    for p in (dead / "pack" / "tmp_pack_x", dead / "pack", dead):
        os.utime(p, (stale, stale))
    assert "temporary file" in "\n".join(upkeep.fsck_repo(path).notes)
    orphan = path / "objects" / "pack" / ("pack-" + "ab" * 20 + ".gitserve-tips")
    orphan.write_text("gitserve-tips v1 3\n")
    stale_lock, fresh_lock = path / "refs" / "heads" / "main.lock", path / "refs" / "heads" / "b.lock"
    stale_lock.write_text("x\n")
    fresh_lock.write_text("x\n")
    os.utime(stale_lock, (stale, stale))
    report = upkeep.gc_repo(path, "proj")
    assert report.leftovers_removed == 3 and not orphan.exists()
    assert not stale_lock.exists() and fresh_lock.exists()
    assert not dead.exists() and live.exists()


def test_fsck_finds_corrupt_missing_and_dangling_ref(home, tmp_path):
    path = populate(home, "proj", tmp_path, pushes=2)
    loose = sorted(p for d in (path / "objects").glob("[0-9a-f][0-9a-f]") for p in d.iterdir())
    blobs = [p for p in loose if git("--git-dir", str(path), "cat-file", "-t",
                                     p.parent.name + p.name).strip() == "blob"]
    victim, missing = blobs[0], blobs[1]
    victim.chmod(0o644)
    victim.write_bytes(b"garbage, not zlib")
    missing.unlink()
    (path / "refs" / "heads" / "ghost").write_text("1" * 40 + "\n")
    r = cli(home, "fsck")
    assert r.returncode == 1
    assert "proj: " in r.stdout and "problem(s)" in r.stdout
    assert f"object {victim.parent.name}{victim.name}" in r.stdout
    assert f"missing {missing.parent.name}{missing.name}" in r.stdout
    assert "ref refs/heads/ghost points to missing object 1111" in r.stdout
    assert r.stderr.strip() == "gitserve: 1 of 1 repositories damaged"
    # git agrees the repository is damaged
    assert subprocess.run(["git", "--git-dir", str(path), "fsck"], capture_output=True,
                          timeout=60).returncode != 0


def test_fsck_finds_a_flipped_byte_in_a_pack(home, tmp_path):
    path = populate(home, "proj", tmp_path, pushes=1)
    upkeep.gc_repo(path)
    pack = next((path / "objects" / "pack").glob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    report = upkeep.fsck_repo(path, "proj")
    assert not report.ok
    assert any("pack" in p or "object" in p for p in report.problems), report.problems


@pytest.mark.parametrize("arg, needle", [
    ("../etc", "contains '..'"), ("nope", "no repository named 'nope'"),
    ("/abs/../x", "contains '..'"), ("a\x01b", "control characters"),
])
def test_bad_repo_argument_one_line_error(home, arg, needle):
    from typer.testing import CliRunner

    from gitserve.cli import app

    for cmd in ("fsck", "gc"):
        r = CliRunner().invoke(app, ["--home", str(home.home), "admin", cmd, arg])
        assert r.exit_code == 1
        assert needle in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_lock_lets_one_gc_run_at_a_time(home, tmp_path):
    path = populate(home, "proj", tmp_path, pushes=2)
    with upkeep.repo_lock(path) as held:
        assert held
        assert upkeep.gc_repo(path, "proj", wait=False).skipped
    assert not upkeep.gc_repo(path, "proj", wait=False).skipped


def test_service_runs_gc_after_n_pushes_and_on_its_sweep(home, tmp_path):
    home.upkeep.gc_after_pushes = 3
    home.upkeep.gc_interval = 0.5
    home.upkeep.gc_pack_limit = 3
    a = populate(home, "a", tmp_path, pushes=2)  # 1-2 packs: under the limit
    b = populate(home, "b", tmp_path, pushes=6)  # 3 packs: over it
    svc = upkeep.UpkeepService(home)
    svc.start()
    try:
        ctx = PushContext(settings=home, repo_name="a", repo_path=a, user="u", options={},
                          progress=lambda line: None)
        upd = [RefUpdate("refs/heads/main", "1" * 40, "2" * 40)]
        for _ in range(2):
            svc.after_push(ctx, upd)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and counts(b) != (1, 0):
            time.sleep(0.1)
        assert counts(b) == (1, 0)  # the sweep found b over the pack limit
        assert "a" not in [r.name for r in svc.runs]
        svc.after_push(ctx, upd)  # third push to a
        while time.monotonic() < deadline and "a" not in [r.name for r in svc.runs]:
            time.sleep(0.1)
        assert counts(a) == (1, 0)
    finally:
        svc.stop()
    for p in (a, b):
        git("--git-dir", str(p), "fsck", "--strict")
