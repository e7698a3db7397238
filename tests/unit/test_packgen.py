"""packgen: both routes produce packs the real `git index-pack` accepts, holding exactly the
objects native git would send (checked against `git rev-list --objects`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitserve.git import packgen, repack
from gitserve.git.packcache import PackCache
from gitserve.git.packformat import encode_ofs, ofs_distance
from tests.bench import repogen
from tests.support.packkit import TINY, commit_on, git, rev_list
from tests.support.tools import require_tool

@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("git")
    path = tmp_path_factory.mktemp("src") / "tiny.git"
    repogen.generate(TINY, path)
    return path


@pytest.fixture()
def repo(source: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "repo.git"
    repogen.copy_repo(source, dest)
    return dest


def make_pack(repo: Path, req: packgen.PackRequest, backend: str,
              cache: PackCache | None = None) -> bytes:
    chunks: list[bytes] = []
    r = Repo(str(repo))
    try:
        packgen.generate(r, req, chunks.append, None, backend=backend, cache=cache)
    finally:
        r.close()
    assert all(len(c) <= 65515 for c in chunks), "every write fits one side-band frame"
    return b"".join(chunks)


def index_objects(pack: bytes, tmp_path: Path, base: Path | None = None) -> set[str]:
    """Objects in PACK after `git index-pack` (with --fix-thin against a copy of BASE)."""
    dest = tmp_path / f"client{len(list(tmp_path.iterdir()))}.git"
    if base is not None:
        repogen.copy_repo(base, dest)
        args = ["index-pack", "--stdin", "--fix-thin"]
    else:
        subprocess.run(["git", "init", "-q", "--bare", str(dest)], check=True)
        args = ["index-pack", "--stdin"]
    name = git(dest, *args, input=pack).split()[-1]
    out = git(dest, "show-index", input=(dest / "objects/pack" / f"pack-{name}.idx").read_bytes())
    return {line.split()[1] for line in out.splitlines()}


def refs_tips(repo: Path) -> list[bytes]:
    out = git(repo, "for-each-ref", "--format=%(objectname)")
    return sorted({line.encode() for line in out.split()})


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_full_clone_pack_holds_exactly_the_closure(repo: Path, tmp_path: Path, backend: str) -> None:
    pack = make_pack(repo, packgen.PackRequest(wants=refs_tips(repo)), backend)
    assert index_objects(pack, tmp_path) == rev_list(repo, "--all")


@pytest.mark.parametrize("backend", ["git", "dulwich"])
@pytest.mark.parametrize("depth", [1, 25])
def test_incremental_fetch_sends_what_the_client_lacks(repo: Path, tmp_path: Path,
                                                       backend: str, depth: int) -> None:
    old = git(repo, "rev-parse", f"main~{depth}").strip().encode()
    new = git(repo, "rev-parse", "main").strip().encode()
    req = packgen.PackRequest(wants=[new], haves=[old], thin=True)
    pack = make_pack(repo, req, backend)
    # the client is a repository holding exactly what `old` reaches
    client = tmp_path / "old.git"
    subprocess.run(["git", "init", "-q", "--bare", str(client)], check=True)
    subprocess.run(["git", "--git-dir", str(client), "fetch", "-q", str(repo),
                    f"{old.decode()}:refs/heads/main"], check=True)
    got = index_objects(pack, tmp_path, base=client)
    missing = rev_list(repo, new.decode(), "--not", old.decode())
    assert missing <= got
    if backend == "dulwich":
        assert got == missing  # never more than the walk says (no thin-pack bases either)
    # the result is a complete repository at the new tip
    dest = sorted(tmp_path.glob("client*.git"))[-1]
    git(dest, "update-ref", "refs/heads/main", new.decode())
    git(dest, "fsck", "--connectivity-only", "--no-dangling")


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_shallow_boundary_stops_history(repo: Path, tmp_path: Path, backend: str) -> None:
    head = git(repo, "rev-parse", "main").strip()
    boundary = git(repo, "rev-parse", "main~2").strip()
    req = packgen.PackRequest(wants=[head.encode()], shallow={boundary.encode()})
    got = index_objects(make_pack(repo, req, backend), tmp_path)
    commits = {c for c in git(repo, "rev-list", "main", "-n", "5").split()}
    sent_commits = commits & got
    assert sent_commits == set(git(repo, "rev-list", "main", "-n", "3").split())


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_include_tag_adds_annotated_tags_of_sent_commits(repo: Path, tmp_path: Path,
                                                        backend: str) -> None:
    target = git(repo, "rev-parse", "main~3").strip()
    subprocess.run(["git", "--git-dir", str(repo), "-c", "user.name=T", "-c", "user.email=t@e",
                    "tag", "-a", "-m", "release", "rel", target], check=True)
    tag = git(repo, "rev-parse", "refs/tags/rel").strip()
    head = git(repo, "rev-parse", "main").strip().encode()
    req = packgen.PackRequest(wants=[head], include_tag=True,
                              tagged={target.encode(): tag.encode()})
    assert tag in index_objects(make_pack(repo, req, backend), tmp_path)


def test_covering_pack_is_sent_whole(repo: Path, tmp_path: Path) -> None:
    r = Repo(str(repo))
    assert repack.record_covering_pack(r, repack.ref_tips(r))
    stored = next((repo / "objects/pack").glob("*.pack")).read_bytes()
    r.close()
    pack = make_pack(repo, packgen.PackRequest(wants=refs_tips(repo)), "dulwich")
    assert pack == stored  # byte for byte: a copy, no recompression
    # a new commit on top: stored pack whole plus the new objects
    git(repo, "update-ref", "refs/heads/main", commit_on(repo, "main"))
    pack = make_pack(repo, packgen.PackRequest(wants=refs_tips(repo)), "dulwich")
    assert pack[12:len(stored) - 20] == stored[12:-20]
    assert index_objects(pack, tmp_path) == rev_list(repo, "--all")


def test_covering_pack_not_used_when_a_tip_is_unreachable_from_wants(repo: Path,
                                                                     tmp_path: Path) -> None:
    r = Repo(str(repo))
    assert repack.record_covering_pack(r, repack.ref_tips(r))
    r.close()
    # rewind main: the recorded tip is no longer wanted nor an ancestor of what is wanted
    git(repo, "update-ref", "refs/heads/main", git(repo, "rev-parse", "main~5").strip())
    pack = make_pack(repo, packgen.PackRequest(wants=refs_tips(repo)), "dulwich")
    assert index_objects(pack, tmp_path) == rev_list(repo, "--all")


@pytest.mark.parametrize("backend", ["git", "dulwich"])
def test_cache_serves_the_same_pack_for_the_same_wants(repo: Path, tmp_path: Path,
                                                       backend: str) -> None:
    cache = PackCache(tmp_path / "cache")
    req = packgen.PackRequest(wants=refs_tips(repo))
    first = make_pack(repo, req, backend, cache)
    assert len(list((tmp_path / "cache").glob("*/*.pack"))) == 1
    # a cache hit never runs the generator
    orig = packgen._generate
    packgen._generate = lambda *a, **k: pytest.fail("generated again")  # type: ignore
    try:
        assert make_pack(repo, req, backend, cache) == first
    finally:
        packgen._generate = orig
    # fetches (with haves) are not cached
    old = git(repo, "rev-parse", "main~1").strip().encode()
    make_pack(repo, packgen.PackRequest(wants=refs_tips(repo), haves=[old]), backend, cache)
    assert len(list((tmp_path / "cache").glob("*/*.pack"))) == 1


def test_cache_keeps_nothing_from_a_failed_stream(repo: Path, tmp_path: Path) -> None:
    cache = PackCache(tmp_path / "cache")
    req = packgen.PackRequest(wants=refs_tips(repo))

    def broken(_data: bytes) -> None:
        raise BrokenPipeError("client went away")

    r = Repo(str(repo))
    with pytest.raises(BrokenPipeError):
        packgen.generate(r, req, broken, None, backend="dulwich", cache=cache)
    r.close()
    assert not list((tmp_path / "cache").glob("*/*.pack"))
    assert not list((tmp_path / "cache").glob("*/*.tmp*"))


def test_bad_backend_setting_is_refused() -> None:
    with pytest.raises(packgen.PackGenError, match="pack_backend must be one of"):
        packgen.choose_backend("fast")


def test_ofs_encoding_roundtrip() -> None:
    for n in (1, 127, 128, 16383, 16384, 2**21, 2**35 + 7):
        data = encode_ofs(n)
        assert ofs_distance(data, 0) == (n, len(data))


def test_covering_pack_used_when_an_unwanted_tip_is_behind_a_wanted_one(repo: Path,
                                                                        tmp_path: Path) -> None:
    # a hidden ref (refs/gitserve/...) at main~2 is recorded with the pack but never wanted
    git(repo, "update-ref", "refs/gitserve/builds/1", git(repo, "rev-parse", "main~2").strip())
    r = Repo(str(repo))
    assert repack.record_covering_pack(r, repack.ref_tips(r))
    stored = next((repo / "objects/pack").glob("*.pack")).read_bytes()
    r.close()
    wants = [t for t in refs_tips(repo)
             if t.decode() != git(repo, "rev-parse", "refs/gitserve/builds/1").strip()
             or t.decode() == git(repo, "rev-parse", "main").strip()]
    pack = make_pack(repo, packgen.PackRequest(wants=wants), "dulwich")
    assert pack == stored
