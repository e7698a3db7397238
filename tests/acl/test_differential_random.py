"""Random confs, thousands of questions each: our answers must equal gitolite3's, byte for byte."""

from __future__ import annotations

import random

import pytest

from gitserve import acl

from . import confgen
from .oracle import plant_wild
from .ours import ask, normalize_fatal, state_for

SEEDS = range(16)


def _compare(gitolite, files: dict[str, str], queries, gl_user: str = "",
             wild: dict[str, acl.WildInfo] | None = None) -> None:
    r = gitolite.load(files)
    assert r.returncode == 0, r.stderr
    for name, info in (wild or {}).items():
        plant_wild(gitolite, name, info.creator, info.roles)
    rules = acl.load_files(files)
    theirs = [normalize_fatal(x) for x in gitolite.ask(queries, gl_user=gl_user)]
    ours = ask(rules, state_for(rules, gitolite.existing(), wild), queries, gl_user=gl_user)
    mismatches = [(q, t, o) for q, t, o in zip(queries, theirs, ours) if t != o]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}\n{files}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_conf(gitolite, seed):
    _compare(gitolite, {"gitolite.conf": confgen.conf(seed)}, confgen.queries(seed, 400))


@pytest.mark.parametrize("seed", range(100, 108))
def test_random_conf_with_wild_repos(gitolite, seed):
    """Existing wild repos (creator, READERS/WRITERS incl. groups and @all) and a GL_USER."""
    rnd = random.Random(seed)
    wild = {}
    for name in rnd.sample(confgen.EXTRA_QUERY_REPOS[:5], 3):
        roles = {role: rnd.sample(confgen.USERS + ["@g1", "@all"], rnd.randint(1, 2))
                 for role in rnd.sample(["READERS", "WRITERS"], rnd.randint(0, 2))}
        wild[name] = acl.WildInfo(rnd.choice(confgen.USERS), roles)
    files = {"gitolite.conf": confgen.conf(seed)}
    _compare(gitolite, files, confgen.queries(seed, 400), gl_user=rnd.choice(confgen.USERS),
             wild=wild)
    # `info` over the same state: patterns (directly or through groups), then repos
    rules = acl.load_files(files)
    repos = {name: wild.get(name) for name in gitolite.existing()}
    for user in rnd.sample(confgen.USERS, 2):
        # gitolite prints patterns in hash order, and twice when named directly and through
        # a group; we print each once, sorted
        theirs = sorted(set(gitolite.info(user).split("\n", 2)[2].splitlines()))
        ours = rules.info(user, repos).splitlines()
        assert len(ours) == len(set(ours)) and theirs == sorted(ours), user
