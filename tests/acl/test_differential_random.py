"""Random confs, thousands of questions each: our answers must equal gitolite3's, byte for byte."""

from __future__ import annotations

import pytest

from gitserve import acl

from . import confgen
from .ours import ask, normalize_fatal, state_for

SEEDS = range(30)


def _compare(gitolite, files: dict[str, str], queries, gl_user: str = "") -> None:
    r = gitolite.load(files)
    assert r.returncode == 0, r.stderr
    rules = acl.load_files(files)
    theirs = [normalize_fatal(x) for x in gitolite.ask(queries, gl_user=gl_user)]
    ours = ask(rules, state_for(rules, gitolite.existing()), queries, gl_user=gl_user)
    mismatches = [(q, t, o) for q, t, o in zip(queries, theirs, ours) if t != o]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}\n{files}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_conf(gitolite, seed):
    _compare(gitolite, {"gitolite.conf": confgen.conf(seed)}, confgen.queries(seed, 400))
