"""`admin access REPO USER ^C` (and R/W/C) for a wild repo nobody created yet, whose pattern
contains CREATOR: gitserve's answer and exit status against gitolite3's, with and without
GL_USER (Gitolite substitutes GL_USER, or nothing, for CREATOR of a missing repo)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.tools import gitserve_cmd, gitserve_in_process, subprocess_env

CONF = """repo gitolite-admin
    RW+ = admin
repo testing
    RW+ = @all
repo foo/CREATOR/..*
    C   = u1 u2
    RW+ = CREATOR
    R   = u3
repo bar/..*
    C   = @all
    RW  = CREATOR
"""
QUERIES = [(repo, user, perm) for repo in ("foo/u1/x", "foo/u2/x", "bar/u1", "foo/u1")
           for user in ("u1", "u2", "u3") for perm in ("^C", "C", "R", "W")]


@pytest.mark.parametrize("gl_user", ["", "u1", "u3"])
def test_missing_wild_repo_matches_gitolite(gitolite, tmp_path: Path, gl_user: str):
    gitolite.load({"gitolite.conf": CONF})
    conf = tmp_path / "gitolite.conf"
    conf.write_text(CONF)
    env = subprocess_env(GL_USER=gl_user) if gl_user else {
        k: v for k, v in subprocess_env().items() if k != "GL_USER"}
    for i, (repo, user, perm) in enumerate(QUERIES):
        theirs = gitolite.access(repo, user, perm, gl_user=gl_user)
        args = ("admin", "access", "--conf", str(conf), repo, user, perm)
        # the CLI's main() in this process (a Python start per query was most of the time);
        # the first query also runs as a real child process, which must answer the same
        ours = gitserve_in_process(*args, env={"GL_USER": gl_user or None})
        if i == 0:
            child = subprocess.run(gitserve_cmd(*args), capture_output=True, text=True, env=env,
                                   timeout=60)
            assert (child.stdout, child.stderr, child.returncode) == (
                ours.stdout, ours.stderr, ours.returncode)
        assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode), \
            (repo, user, perm, gl_user, ours.stderr, theirs.stderr)


# t/wild-2.t: the CREATOR pattern comes in through a repo group
GROUP_CONF = """repo gitolite-admin
    RW+ = admin
@prof       =   u1
@TAs        =   u2 u3
@students   =   u4 u5 u6
@gfoo = foo/CREATOR/a[0-9][0-9]
repo    @gfoo
    C   =   @students
    RW+ =   CREATOR
    RW  =   WRITERS @TAs
    R   =   READERS @prof
"""


@pytest.mark.parametrize("gl_user", ["", "u4", "u1"])
def test_creator_pattern_through_a_repo_group_matches_gitolite(gitolite, tmp_path: Path,
                                                              gl_user: str):
    gitolite.load({"gitolite.conf": GROUP_CONF})
    conf = tmp_path / "gitolite.conf"
    conf.write_text(GROUP_CONF)
    env = subprocess_env(GL_USER=gl_user) if gl_user else {
        k: v for k, v in subprocess_env().items() if k != "GL_USER"}
    for repo in ("foo/u4/a12", "foo/u4/a1234"):
        for user in ("u1", "u4"):
            for perm in ("^C", "W"):
                theirs = gitolite.access(repo, user, perm, gl_user=gl_user)
                ours = subprocess.run(gitserve_cmd("admin", "access", "--conf", str(conf), repo,
                                                   user, perm), capture_output=True, text=True,
                                      env=env, timeout=60)
                assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode), \
                    (repo, user, perm, gl_user, ours.stderr, theirs.stderr)
