"""Refex expressions (Gitolite's ENABLE 'refex-expr') against Debian's gitolite3.

Gitolite's documented examples (src/VREF/refex-expr) and hand-written `option refex-expr.NAME`
rules are compiled by both; for every (repo, ref, update, user) Gitolite's real update hook
(which runs its refex-expr VREF program with the GL_REFEX_EXPR_* its ACCESS_2 trigger set)
and `Rules.check_update` with gitserve's shipped program must reach the same verdict with the
same FATAL text. The expression evaluator is also compared with Perl's own `eval`.
"""

from __future__ import annotations

import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from dulwich.repo import Repo

from gitserve import acl
from gitserve.acl import refexexpr
from gitserve.acl.inspect_dulwich import DulwichInspector
from gitserve.git import vrefprog
from tests.support.gitwork import commit, git
from tests.support.tools import require_tool

from .oracle import Gitolite

ZERO = "0" * 40

CONF = """repo gitolite-admin
    RW+ = admin
repo testing
    RW+ = @all

# the examples of Gitolite's src/VREF/refex-expr
repo r1
    RW+                                 =   u1 u2   # line 1
    RW+ master                          =   u3 u4   # line 2
    RW+                                 =   u3 u4   # line 3
    RW+ VREF/NAME/Makefile              =   u3 u4   # line 4
    -   master and VREF/NAME/Makefile   =   u3 u4   # line 5

repo r2
    RW+                                     =   u1 u2 u3
    RW+ VREF/NAME/doc/                      =   u2
    RW+ VREF/NAME/src/                      =   u2
    -   VREF/NAME/doc/ and VREF/NAME/src/   =   u2

repo r3
    RW+                         =   u1 u2 u3
    RW+ VREF/NAME/conf/         =   u3
    -   VREF/NAME/conf/ -gt 2   =   u3

# written by hand: options, arithmetic, not/xor, a rule named by no option
repo r4
    RW+ VREF/NAME/a/ = u1 u2
    RW+ dev          = u2 u4
    RW+              = u1 u2 u3 u4
    option refex-expr.few = VREF/NAME/a/ + dev -lt 2
    option refex-expr.one = not VREF/NAME/a/ xor dev
    -   VREF/refex-expr/few     = u1 u4
    -   VREF/refex-expr/one     = u2
    -   VREF/refex-expr/missing = u3
"""
REPOS = {"r1": ["u1", "u2", "u3", "u4"], "r2": ["u1", "u2", "u3"], "r3": ["u1", "u2", "u3"],
         "r4": ["u1", "u2", "u3", "u4"]}
CHANGES = {
    "mk": {"Makefile": b"all:\n"},
    "doc": {"doc/d1": b"d\n"},
    "src": {"src/s1": b"s\n", "src/s2": b"s\n"},
    "docsrc": {"doc/d2": b"d\n", "src/s3": b"s\n"},
    "conf2": {"conf/a": b"a\n", "conf/b": b"b\n"},
    "conf3": {"conf/a": b"a\n", "conf/b": b"b\n", "conf/c": b"c\n"},
    "a1": {"a/x": b"x\n"},
    "a2": {"a/x": b"x\n", "a/y": b"y\n", "Makefile": b"m\n", "doc/z": b"z\n"},
}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Gitolite:
    """A gitolite3 of its own, with refex-expr enabled as its docs say (t/refex-expr-test-1)."""
    require_tool("gitolite")
    g = Gitolite(tmp_path_factory.mktemp("gitolite-refex"))
    rc = g.home / ".gitolite.rc"
    rc.write_text(rc.read_text() + "\npush @{ $RC{ENABLE} }, 'refex-expr';\n")
    return g


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    require_tool("git")
    work = tmp_path_factory.mktemp("work")
    git(work, "init", "-q", "-b", "master")
    c = {"c0": commit(work, {"README": b"hi\n"}, "c0")}
    for name, files in CHANGES.items():
        git(work, "checkout", "-q", "-B", f"b-{name}", c["c0"])
        c[name] = commit(work, files, name)
    return work, c


def test_compile_prints_the_sugar_lines(oracle):
    r = oracle.load({"gitolite.conf": CONF})
    assert r.returncode == 0, r.stderr
    theirs = [line for line in r.stderr.splitlines() if line.startswith(">>>> ")]
    ours = acl.load_files({"gitolite.conf": CONF}, refex_expr=True).notices
    assert ours == theirs and len(ours) == 3


def test_update_hook_with_refex_expressions(oracle, history, tmp_path):
    work, c = history
    r = oracle.load({"gitolite.conf": CONF})
    assert r.returncode == 0, r.stderr
    rules = acl.load_files({"gitolite.conf": CONF}, refex_expr=True)
    updates = [("refs/heads/master", ZERO, "mk")]
    updates += [(ref, "c0", name) for ref in ("refs/heads/master", "refs/heads/dev")
                for name in CHANGES]
    mismatches, denied = [], 0
    for repo, users in REPOS.items():
        bare = oracle.repo_base / f"{repo}.git"
        git(bare, "fetch", "-q", str(work), "+refs/heads/*:refs/tmp/*")
        for ref in git(bare, "for-each-ref", "--format=%(refname)", "refs/tmp").split():
            git(bare, "update-ref", "-d", ref)
        for ref, old_k, new_k in updates:
            old, new = c.get(old_k, ZERO), c[new_k]
            for other in ("refs/heads/master", "refs/heads/dev"):
                subprocess.run(["git", "update-ref", "-d", other], cwd=bare, check=False,
                               capture_output=True)
            if old != ZERO:
                git(bare, "update-ref", ref, old)

            def hook(user: str, ref: str = ref, old: str = old, new: str = new,
                     repo: str = repo, bare=bare) -> subprocess.CompletedProcess:
                env = oracle.env(GL_USER=user, GL_REPO=repo,
                                 GL_REPO_BASE=str(oracle.repo_base))
                return subprocess.run([str(bare / "hooks" / "update"), ref, old, new], cwd=bare,
                                      env=env, capture_output=True, text=True, timeout=60)

            with ThreadPoolExecutor(4) as pool:
                ran = list(pool.map(hook, users))
            with Repo(str(bare)) as dul:
                for user, h in zip(users, ran):
                    theirs = (h.returncode == 0, h.stderr)
                    program = vrefprog.runner(tmp_path, oracle.repo_base, repo, bare, user)
                    d = rules.check_update(repo, user, ref, old, new, DulwichInspector(dul),
                                           program=program)
                    # everything the pusher reads: the notes, then the FATAL line
                    text = "".join(n + "\n" for n in d.notes)
                    text += "" if d.allowed else f"FATAL: {d.message}\n"
                    ours = (d.allowed, text)
                    denied += not d.allowed
                    if theirs != ours:
                        mismatches.append((repo, ref, new_k, user, theirs, ours))
    assert not mismatches, "\n".join(map(str, mismatches[:8]))
    # the examples deny what their comments say (u3 Makefile on master; u2 doc+src; ...)
    assert denied >= 10


def test_documented_denials(history, tmp_path):
    """The three documented examples, spelled out (not only "same as Gitolite")."""
    work, c = history
    rules = acl.load_files({"gitolite.conf": CONF}, refex_expr=True)
    bare = tmp_path / "r.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))

    def check(repo: str, user: str, ref: str, change: str) -> acl.Decision:
        with Repo(str(bare)) as dul:
            program = vrefprog.runner(tmp_path, tmp_path, repo, bare, user)
            return rules.check_update(repo, user, ref, c["c0"], c[change],
                                      DulwichInspector(dul), program=program)

    d = check("r1", "u3", "refs/heads/master", "mk")
    assert not d.allowed and d.message == (
        "W VREF/refex-expr/sugar1 r1 u3 DENIED by VREF/refex-expr/sugar1\n"
        "('master and VREF/NAME/Makefile' -> '1 and 1')\n")
    assert check("r1", "u3", "refs/heads/m2", "mk").allowed
    assert check("r1", "u1", "refs/heads/master", "mk").allowed
    assert not check("r2", "u2", "refs/heads/master", "docsrc").allowed
    assert check("r2", "u2", "refs/heads/master", "src").allowed
    assert check("r2", "u1", "refs/heads/master", "docsrc").allowed
    assert check("r3", "u3", "refs/heads/master", "conf2").allowed
    d = check("r3", "u3", "refs/heads/master", "conf3")
    assert not d.allowed and "('VREF/NAME/conf/ -gt 2' -> '3 > 2')" in d.message
    # off (Gitolite's default rc): the expression line is three plain refexes, and a
    # refex-expr VREF refuses with Gitolite's message
    off = acl.load_files({"gitolite.conf": CONF})
    assert off.notices == []
    with Repo(str(bare)) as dul:
        d = off.check_update("r4", "u3", "refs/heads/master", c["c0"], c["a1"],
                             DulwichInspector(dul),
                             program=vrefprog.runner(tmp_path, tmp_path, "r4", bare, "u3"))
    assert not d.allowed and d.message == "VREF/refex-expr/missing: helper program exit status 65280"
    assert "FATAL: GL_REFEX_EXPR_ doesn't exist" in "\n".join(d.notes)


def test_a_bad_expression_refuses_the_push(history, tmp_path):
    work, c = history
    conf = "repo r\n    RW+ = u1\n    option refex-expr.bad = 1 and\n    - VREF/refex-expr/bad = u1\n"
    rules = acl.load_files({"gitolite.conf": conf}, refex_expr=True)
    bare = tmp_path / "r.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    with Repo(str(bare)) as dul:
        d = rules.check_update("r", "u1", "refs/heads/master", c["c0"], c["mk"],
                               DulwichInspector(dul))
    assert not d.allowed and d.message.startswith("eval '1 and' -> 'syntax error")


def _expressions(seed: int, count: int) -> list[str]:
    """Well-formed and broken expressions over what convert() can produce (numbers and the
    operator words), never a `<` where Perl expects a term (it would read a glob there)."""
    rnd = random.Random(seed)
    binary = ["and", "or", "xor", "+", "-", "==", "<", ">", "<=", ">=", "!="]
    out = []
    for _ in range(count):
        toks: list[str] = []
        for i in range(rnd.randint(1, 5)):
            if i:
                toks.append(rnd.choice(binary))
            toks.extend(rnd.choice([[], ["not"], ["-"], ["not", "-"]]))
            toks.append(str(rnd.choice([0, 1, 2, 3, -1])))
        if rnd.random() < 0.1:
            toks.insert(rnd.randrange(len(toks) + 1), rnd.choice(["and", "not", "+", "5"]))
        out.append(" ".join(toks))
    return out


def test_evaluation_is_perls():
    require_tool("perl")
    exprs = _expressions(7, 4000)
    perl = ('$SIG{__WARN__} = sub {}; while (<STDIN>) { chomp; my $r = eval $_; '
            'print $@ ? "ERR\\n" : ($r ? "T\\n" : "F\\n") }')
    out = subprocess.run(["perl", "-e", perl], input="\n".join(exprs) + "\n",
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert len(out) == len(exprs)
    wrong = []
    for e, theirs in zip(exprs, out):
        try:
            ours = "T" if refexexpr.evaluate(e) not in (0, "", "0") else "F"
        except Exception:  # noqa: BLE001 - the evaluator's syntax error
            ours = "ERR"
        if ours != theirs:
            wrong.append((e, theirs, ours))
    assert not wrong, wrong[:10]
    assert out.count("ERR") > 50 and out.count("T") > 500 and out.count("F") > 500


def test_admin_access_with_a_conf_file_compiles_as_the_home_does(oracle, tmp_path):
    """`gitserve admin access --conf FILE` on a home with `[server] refex_expr = true` gives
    what `gitolite access` gives on a Gitolite with refex-expr enabled (the expression line
    is one sugared VREF rule there, three plain deny rules without the feature)."""
    from tests.support.tools import gitserve_cmd, subprocess_env

    assert oracle.load({"gitolite.conf": CONF}).returncode == 0
    conf = tmp_path / "conf" / "gitolite.conf"
    conf.parent.mkdir()
    conf.write_text(CONF)
    home = tmp_path / "home"
    home.mkdir()
    (home / "gitserve.toml").write_text("[server]\nrefex_expr = true\n")
    asked = [("r1", "u3", "W", "master"), ("r1", "u3", "W", "refs/heads/and"),
             ("r1", "u3", "W", "VREF/refex-expr/sugar1"), ("r2", "u2", "W", "VREF/NAME/doc/x")]
    for args in asked:
        theirs = oracle.access(*args)
        ours = subprocess.run(gitserve_cmd("admin", "access", "--conf", str(conf), "--home",
                                           str(home), *args), capture_output=True, text=True,
                              env=subprocess_env(), timeout=60)
        assert (ours.returncode, ours.stdout, ours.stderr) == \
            (theirs.returncode, theirs.stdout, theirs.stderr), args
    off = subprocess.run(gitserve_cmd("admin", "access", "--conf", str(conf), "--home",
                                      str(tmp_path / "none"), "r1", "u3", "W",
                                      "VREF/refex-expr/sugar1"),
                         capture_output=True, text=True, env=subprocess_env(), timeout=60)
    assert "allowed by fallthru" in off.stdout, off  # off: no sugar, so no such rule
