"""Check #2 against Gitolite's real update hook (and its VREF helpers) on real git history.

For every (ref, old, new, user) the oracle's bare repo is put in the state receive-pack
leaves it in (objects present, ref still at OLD), `hooks/update REF OLD NEW` runs as
gitolite runs it, and `Rules.check_update` with the dulwich inspector must reach the same
verdict with the same FATAL message.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from dulwich.repo import Repo

from gitserve import acl
from gitserve.acl.inspect_dulwich import DulwichInspector
from tests.support.gitwork import commit, git
from tests.support.tools import require_tool

ZERO = "0" * 40

CONF = """repo gitolite-admin
    RW+ = admin
repo testing
    RW+ = @all
repo v1
    RW+CDM  = u1
    RW+M    master = u2
    RWC     = u2
    -   VREF/NAME/secret/ = u2 u3
    RW+     NAME/docs/   = u3
    -       NAME/        = u3
    RW+C    = u3
    -   VREF/COUNT/3/NEWFILES = u4
    -   VREF/MAX_NEWBIN_SIZE/1000 = u4
    RW+CD   = u4
    -   refs/tags/ = u5
    RW+     = u5
    RW      = u6
    -   VREF/MERGE-CHECK/master = u6
repo w/..*
    C       = @all
    RW+     = CREATOR
    RW      = WRITERS
    -   VREF/COUNT/2 = WRITERS
"""
USERS = ["u1", "u2", "u3", "u4", "u5", "u6"]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A small history with every kind of update: ff, rewind, merge, paths, binaries."""
    require_tool("git")
    work = tmp_path_factory.mktemp("work")
    git(work, "init", "-q", "-b", "master")
    c = {}
    c["c1"] = commit(work, {"README": b"hi\n", "docs/a.txt": b"a\n", "src/b.py": b"b\n"}, "c1")
    c["c2"] = commit(work, {"src/b.py": b"b2\n"}, "c2")
    git(work, "checkout", "-q", "-b", "side", c["c1"])
    c["c3"] = commit(work, {"secret/key": b"k\n", "docs/x.txt": b"x\n"}, "c3")
    c["docs"] = commit(work, {"docs/y.txt": b"y\n"}, "docs only")
    git(work, "checkout", "-q", "master")
    git(work, "merge", "-q", "--no-ff", "-m", "merge", c["c3"])
    c["m"] = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "rw", c["c1"])
    c["c4"] = commit(work, {"src/b.py": b"rewritten\n"}, "c4")
    c["bin"] = commit(work, {"bin/big.dat": b"\0" * 5000, "bin/small.dat": b"\0\1" * 10,
                              "notes-with-long-name.txt": b"text\n"}, "binaries")
    git(work, "checkout", "-q", "-b", "many", c["c1"])
    c["many"] = commit(work, {f"n{i}.txt": f"{i}\n".encode() for i in range(5)}, "many")
    c["two"] = commit(work, {"n0.txt": b"changed\n", "README": b"changed\n"}, "two")
    for name, target in (("t1", "c1"), ("t2", "many")):
        git(work, "tag", "-a", "-m", f"tag {name}", name, c[target])
        c[name] = git(work, "rev-parse", name)
    return work, c


UPDATES = [
    ("refs/heads/master", ZERO, "c1"),      # create
    ("refs/heads/master", "c1", "c2"),      # fast-forward
    ("refs/heads/master", "c2", "c4"),      # rewind
    ("refs/heads/master", "c2", ZERO),      # delete
    ("refs/heads/master", "c2", "m"),       # merge
    ("refs/heads/dev", "c1", "c3"),         # secret/ path
    ("refs/heads/dev", "c1", "docs"),       # secret/ and docs/ paths
    ("refs/heads/dev", "c1", "bin"),        # binaries
    ("refs/heads/dev", "c1", "many"),       # 5 new files
    ("refs/heads/dev", "many", "two"),      # 2 changed files
    ("refs/tags/v1", ZERO, "c1"),           # tag create
    ("refs/tags/v1", "c1", "c2"),           # tag overwrite
    ("refs/tags/v2", ZERO, "t2"),           # annotated tag create (5 new files)
    ("refs/heads/dev", "c1", "t2"),         # a branch set to a tag object
]


def _fatal(stderr: str) -> str:
    i = stderr.find("FATAL: ")
    # exactly die's own newline off: a deny message ending in a newline (a VREF's line) leaves
    # the blank line Gitolite shows, and ours must say the same
    return stderr[i + len("FATAL: "):].removesuffix("\n") if i >= 0 else ""


@pytest.mark.parametrize("repo,creator,roles", [
    ("v1", None, None),
    ("w/one", "u1", {"WRITERS": ["u2", "u3"]}),
])
def test_update_hook(gitolite, history, repo, creator, roles):
    work, c = history
    r = gitolite.load({"gitolite.conf": CONF})
    assert r.returncode == 0, r.stderr
    wild = None
    if creator:
        gitolite.create_wild(repo, creator, roles)
        wild = acl.WildInfo(creator, roles or {})
    bare = gitolite.repo_base / f"{repo}.git"
    git(bare, "fetch", "-q", str(work), "+refs/heads/*:refs/tmp/*", "+refs/tags/*:refs/tmp/t/*")
    for ref in git(bare, "for-each-ref", "--format=%(refname)", "refs/tmp").split():
        git(bare, "update-ref", "-d", ref)
    git(bare, "update-ref", "refs/heads/base", c["c1"])
    rules = acl.load_files({"gitolite.conf": CONF})
    mismatches = []
    for ref, old_k, new_k in UPDATES:
        old = c.get(old_k, ZERO)
        new = c.get(new_k, ZERO)
        for other in ("refs/heads/master", "refs/heads/dev", "refs/tags/v1", "refs/tags/v2"):
            subprocess.run(["git", "update-ref", "-d", other], cwd=bare, check=False,
                           capture_output=True)
        if old != ZERO:
            git(bare, "update-ref", ref, old)
        def run_hook(user: str, ref: str = ref, old: str = old, new: str = new) -> subprocess.CompletedProcess:
            env = gitolite.env(GL_USER=user, GL_REPO=repo, GL_REPO_BASE=str(gitolite.repo_base))
            return subprocess.run([str(bare / "hooks" / "update"), ref, old, new], cwd=bare,
                                  env=env, capture_output=True, text=True, timeout=60)

        users = USERS if wild is None else ["u1", "u2", "u4"]
        with ThreadPoolExecutor(4) as pool:
            hooks = list(pool.map(run_hook, users))
        with Repo(str(bare)) as dul:
            for user, hook in zip(users, hooks):
                theirs = (hook.returncode == 0, "" if hook.returncode == 0 else _fatal(hook.stderr))
                d = rules.check_update(repo, user, ref, old, new, DulwichInspector(dul), wild=wild)
                ours = (d.allowed, "" if d.allowed else d.message)
                if theirs != ours:
                    mismatches.append((ref, old_k, new_k, user, theirs, ours, hook.stderr))
    assert not mismatches, "\n".join(map(str, mismatches[:8]))
