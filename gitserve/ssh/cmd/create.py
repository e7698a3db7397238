"""`create`: create a wild repo (optional, Gitolite's `create`; on with `[server] commands`)."""

from __future__ import annotations

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, repo_name


def _created(ctx: CommandContext, name: str, how: str) -> None:
    ctx.err(repos.initialized_line(ctx.settings, name) + "\n")
    repoconf.apply_one(ctx.settings, ctx.rules, name)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="C", result="created",
                 reason=how)


def cmd_create(ctx: CommandContext, args: list[str]) -> int:
    if len(args) != 1 or args[0] == "-h":
        ctx.out("create -- create a wild repo.\n\nUsage:\n    ssh git@host create <repo>\n")
        return 1 if args[:1] != ["-h"] else 0
    name = repo_name(args[0])
    if repos.exists(ctx.settings, name) or not ctx.rules.can_create(name, ctx.user):
        raise CommandError("repo already exists or you are not authorised to create it")
    try:
        repos.create(ctx.settings, name, creator=ctx.user)
    except repos.RepoError:
        raise CommandError("repo already exists or you are not authorised to create it") from None
    _created(ctx, name, "create")
    return 0


COMMAND = Command("create", cmd_create, "create a wild repo")
