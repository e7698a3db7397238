"""`fork`: copy a repo you can read to a new wild repo you create (optional, Gitolite's `fork`)."""

from __future__ import annotations

import shutil

from dulwich.repo import Repo

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, ScriptError, repo_name


def _valid(name: str) -> bool:
    """A bad name reads as "does not exist" / "not allowed", as in Gitolite's fork."""
    try:
        repo_name(name)
    except CommandError:
        return False
    return True


# the header of Gitolite's fork script, which its usage() prints (exit 1, -h included)
FORK_USAGE = """Usage:    ssh git@host fork <repo1> <repo2>

Forks repo1 to repo2.  You must have read permissions on repo1, and create
("C") permissions for repo2, which of course must not exist.

A fork is functionally the same as cloning repo1 to a client and pushing it
to a new repo2.  It's just a little more efficient, not just in network
traffic but because it uses git clone's "-l" option to share the object
store also, so it is likely to be almost instantaneous, regardless of how
big the repo actually is.

"""


def cmd_fork(ctx: CommandContext, args: list[str]) -> int:
    if len(args) < 2 or args[0] == "-h":
        ctx.out(FORK_USAGE)
        return 1
    src, dest = args[0], args[1]
    # Gitolite's fork is a shell script: its refusals are plain lines, exit 1
    if not _valid(src) or not repos.exists(ctx.settings, src) or not ctx.may(src, "R"):
        raise ScriptError(f"'{src}' does not exist or you are not allowed to read it")
    if not _valid(dest) or repos.exists(ctx.settings, dest) or \
            not ctx.rules.can_create(dest, ctx.user):
        raise ScriptError(f"'{dest}' already exists or you are not allowed to create it")
    try:
        path = repos.create(ctx.settings, dest, creator=ctx.user)
    except repos.RepoError:
        raise ScriptError(f"'{dest}' already exists or you are not allowed to create it") \
            from None
    # what Gitolite's `git clone --bare -l` says on the way
    ctx.err(f"Cloning into bare repository '{path}'...\ndone.\n")
    try:
        with Repo(str(repos.path(ctx.settings, src))) as s, Repo(str(path)) as d:
            s.fetch(d)  # every object reachable from its refs
            for ref, sha in s.refs.as_dict().items():
                if ref != b"HEAD" and not ref.startswith(b"refs/gitserve/"):
                    d.refs[ref] = sha
            head = s.refs.get_symrefs().get(b"HEAD")
            if head:
                d.refs.set_symbolic_ref(b"HEAD", head)
    except Exception:
        shutil.rmtree(path, ignore_errors=True)
        raise
    (path / "gl-forked-from").write_text(src + "\n")
    ctx.err(f"{src} forked to {dest}\n")
    repoconf.apply_one(ctx.settings, ctx.rules, dest)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=dest, op="C", result="created",
                 reason=f"fork of {src}")
    return 0


COMMAND = Command("fork", cmd_fork, "copy a repo you can read to a new wild repo")
