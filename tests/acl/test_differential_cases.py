"""Gitolite's own access cases (tests/acl/cases.py): `gitserve admin access` must print what
`gitolite access` prints, with the same exit status, in single, -q and batch (%) modes, and
`info` must list the same rows."""

from __future__ import annotations

import io

import pytest

from gitserve import acl
from gitserve.acl import access_cmd

from .cases import CASES, Case
from .ours import ask, normalize_fatal, state_for


def _run_ours(rules, state, args: list[str], stdin: str = "", gl_user: str = ""):
    quiet = show = False
    while args[0] in ("-q", "-s"):
        quiet, show = quiet or args[0] == "-q", show or args[0] == "-s"
        args = args[1:]
    repo, user, perm, ref = (args + [None, None])[:4]
    out, err = io.StringIO(), io.StringIO()
    code = access_cmd.run_access(rules, state, repo, user, perm, ref, quiet,
                                 io.StringIO(stdin), out, err, gl_user=gl_user, show=show)
    return code, out.getvalue(), err.getvalue()


def _setup(gitolite, case: Case):
    r = gitolite.load(case.files)
    assert r.returncode == 0, r.stderr
    wild = {}
    for name, (creator, roles) in case.wild.items():
        gitolite.create_wild(name, creator, roles)
        wild[name] = acl.WildInfo(creator, {k: list(v) for k, v in roles.items()})
    rules = acl.load_files(case.files)
    return rules, state_for(rules, gitolite.existing(), wild), wild


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gitolite_cases(gitolite, case: Case):
    rules, state, wild = _setup(gitolite, case)
    pairs = "".join(f"{r} {u}\n" for r in case.repos for u in case.users)

    # every repo x user x perm x ref through Gitolite's access() in one process...
    queries = [(r, u, p, f) for r in case.repos for u in case.users for p in case.perms
               for f in case.refs]
    theirs_all = [normalize_fatal(x) for x in gitolite.ask(queries, gl_user=case.gl_user)]
    ours_all = ask(rules, state, queries, gl_user=case.gl_user)
    bad = [(q, t, o) for q, t, o in zip(queries, theirs_all, ours_all) if t != o]
    assert not bad, bad[:5]

    # ...and the real `gitolite access` batch mode (one process per perm/ref) for a sample
    mismatches = []
    combos = [(p, f) for p in case.perms for f in case.refs]
    for perm, ref in combos[:: max(1, len(combos) // 3)]:
        if True:
            theirs = gitolite.access("%", "%", perm, ref, stdin=pairs, gl_user=case.gl_user)
            ours = _run_ours(rules, state, ["%", "%", perm, ref], pairs, case.gl_user)
            if (theirs.returncode, theirs.stdout) != ours[:2]:
                mismatches.append((perm, ref, theirs.stdout, theirs.stderr, ours))
    assert not mismatches, mismatches[0]

    # single mode, with and without -q, defaults for perm and ref
    singles = [[case.repos[0], case.users[0]], ["-q", case.repos[0], case.users[-1], "R"],
               [case.repos[-1], case.users[1 % len(case.users)], case.perms[-1],
                case.refs[-1]],
               ["-s", case.repos[0], case.users[-1], case.perms[-1], case.refs[-1]],
               ["-s", "-q", case.repos[-1], case.users[0], case.perms[0], case.refs[0]]]
    for args in singles:
        theirs = gitolite.access(*args, gl_user=case.gl_user)
        ours = _run_ours(rules, state, args, gl_user=case.gl_user)
        assert (theirs.returncode, theirs.stdout, theirs.stderr) == ours, args

    for user in case.info_users:
        theirs = gitolite.info(user).split("\n", 2)[2]
        repos = {name: wild.get(name) for name in gitolite.existing()}
        ours = rules.info(user, repos)
        # gitolite lists patterns in Perl hash order (twice if named directly and through a
        # group); we list each once, sorted, then the repos sorted, as gitolite does
        assert sorted(set(theirs.splitlines())) == sorted(ours.splitlines()), user
        names = [line.split("\t")[1] for line in ours.splitlines()]
        npat = sum(1 for n in names if n in rules.patterns())
        assert names[:npat] == sorted(names[:npat]) and names[npat:] == sorted(names[npat:])
        pats = set(rules.patterns())
        assert [x for x in theirs.splitlines() if x.split("\t")[1] not in pats] == \
            [x for x in ours.splitlines() if x.split("\t")[1] not in pats], user
