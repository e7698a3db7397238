"""The pieces of a fetch request that are pure logic: filter specs, shallow boundaries over
a merge graph, and reachability of wants (hidden tips excluded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from dulwich.repo import Repo

from gitserve.git import filters, reach, shallow
from gitserve.git.fetch import walker_for
from gitserve.git.shallow import DeepenRequest


@pytest.mark.parametrize("spec,normal", [
    ("blob:none", "blob:none"), ("blob:limit=0", "blob:limit=0"),
    ("blob:limit=2k", "blob:limit=2048"), ("blob:limit=1m", "blob:limit=1048576"),
    ("tree:0", "tree:0"), ("tree:3", "tree:3"),
    ("combine:blob:none+tree:2", "combine:blob:none+tree:2"),
    ("combine:blob%3Alimit%3D1k+tree:1", "combine:blob:limit=1024+tree:1"),
])
def test_filter_specs(spec: str, normal: str) -> None:
    assert filters.parse(spec).spec == normal


@pytest.mark.parametrize("spec", ["", "blob:some", "blob:limit=", "blob:limit=1q", "tree:",
                                  "tree:-1", "sparse:oid=HEAD:x", "sparse:path=/etc/passwd",
                                  "combine:", "combine:combine:blob:none"])
def test_bad_filter_specs(spec: str) -> None:
    with pytest.raises(filters.FilterError):
        filters.parse(spec)


def _git(cwd: Path, *args: str, when: int = 1_600_000_000) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin", "HOME": str(cwd),
           "GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def graph(tmp_path: Path) -> tuple[Repo, dict[str, str]]:
    """  a - b - c - m - e        (m merges c and x; x branches off a)
              \\- x -/            commit times increase with the letters' order of creation"""
    w = tmp_path / "w"
    _git(tmp_path, "init", "-q", "-b", "main", str(w))
    shas: dict[str, str] = {}
    t = 1_600_000_000

    def commit(name: str) -> None:
        nonlocal t
        t += 100
        (w / f"{name}.txt").write_text(name)
        _git(w, "add", "-A")
        _git(w, "commit", "-q", "-m", name, when=t)
        shas[name] = _git(w, "rev-parse", "HEAD")

    for n in "abc":
        commit(n)
    _git(w, "checkout", "-q", "-b", "side", shas["a"])
    commit("x")
    _git(w, "checkout", "-q", "main")
    t += 100
    _git(w, "merge", "-q", "--no-ff", "-m", "m", "side", when=t)
    shas["m"] = _git(w, "rev-parse", "HEAD")
    commit("e")
    _git(w, "tag", "hide-me", shas["x"])
    return Repo(str(w)), shas


def test_depth_takes_the_shortest_path(graph) -> None:
    repo, s = graph
    wk = walker_for(repo)
    res = shallow.compute(wk.commit, wk.contains, [s["e"].encode()], DeepenRequest(depth=3))
    # e=1, m=2, c and x = 3 (boundary); b, a not sent
    assert res.new_shallow == {s["c"].encode(), s["x"].encode()}
    assert not res.unshallow


def test_deepen_relative_and_unshallow(graph) -> None:
    repo, s = graph
    wk = walker_for(repo)
    req = DeepenRequest(client_shallow={s["c"].encode(), s["x"].encode()}, depth=1,
                        relative=True)
    res = shallow.compute(wk.commit, wk.contains, [s["e"].encode()], req)
    assert res.unshallow == {s["c"].encode(), s["x"].encode()}
    assert res.new_shallow == {s["b"].encode(), s["a"].encode()}
    assert res.extra_wants == {s["b"].encode(), s["a"].encode()}
    full = shallow.compute(wk.commit, wk.contains, [s["e"].encode()],
                           DeepenRequest(client_shallow={s["c"].encode()},
                                         depth=shallow.INFINITE_DEPTH))
    assert full.unshallow == {s["c"].encode()} and not full.new_shallow


def test_deepen_since_and_not(graph) -> None:
    repo, s = graph
    wk = walker_for(repo)
    since = wk.commit(s["c"].encode())[2]
    res = shallow.compute(wk.commit, wk.contains, [s["e"].encode()],
                          DeepenRequest(since=since))
    assert res.new_shallow == {s["c"].encode(), s["x"].encode()}
    res = shallow.compute(wk.commit, wk.contains, [s["e"].encode()],
                          DeepenRequest(not_refs=[s["b"].encode()]))
    assert res.new_shallow == {s["c"].encode(), s["x"].encode()}
    with pytest.raises(shallow.ShallowError):
        shallow.compute(wk.commit, wk.contains, [s["e"].encode()],
                        DeepenRequest(since=since + 10**6))
    with pytest.raises(shallow.ShallowError):
        shallow.compute(wk.commit, wk.contains, [s["e"].encode()],
                        DeepenRequest(depth=1, since=since))


def test_reachability_of_wants(graph) -> None:
    repo, s = graph
    wk = walker_for(repo)
    store = repo.object_store
    b_tree = store[s["b"].encode()].tree
    b_blob = store[b_tree][b"b.txt"][1]
    tips = [s["e"].encode()]
    assert reach.unreachable(wk, tips, [s["a"].encode(), b_tree, b_blob]) == []
    # from c's tip alone, x (the other side of the merge) and its blob are out of reach
    x_blob = store[store[s["x"].encode()].tree][b"x.txt"][1]
    assert reach.unreachable(wk, [s["c"].encode()], [s["x"].encode(), x_blob]) == \
        sorted([s["x"].encode(), x_blob])
    assert reach.unreachable(wk, tips, [b"f" * 40]) == [b"f" * 40]
