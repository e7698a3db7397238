"""`fork`: copy a repo you can read to a new wild repo you create (optional, Gitolite's `fork`)."""

from __future__ import annotations

import shutil

from dulwich.repo import Repo

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, can, repo_name


def cmd_fork(ctx: CommandContext, args: list[str]) -> int:
    if len(args) != 2 or args[0] == "-h":
        ctx.out("Usage:    ssh git@host fork <repo1> <repo2>\n\n"
                "Copy <repo1> to <repo2> (you need read access on one and the right to create\n"
                "the other); you become <repo2>'s creator.\n")
        return 1 if args[:1] != ["-h"] else 0
    src, dest = repo_name(args[0]), repo_name(args[1])
    if not repos.exists(ctx.settings, src) or not can(ctx, src, "R"):
        raise CommandError(f"'{src}' does not exist or you are not allowed to read it")
    if repos.exists(ctx.settings, dest) or not ctx.rules.can_create(dest, ctx.user):
        raise CommandError(f"'{dest}' already exists or you are not allowed to create it")
    try:
        path = repos.create(ctx.settings, dest, creator=ctx.user)
    except repos.RepoError:
        raise CommandError(f"'{dest}' already exists or you are not allowed to create it") \
            from None
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
