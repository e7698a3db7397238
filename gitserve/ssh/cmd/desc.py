"""`desc`: show a repo's description, or set it (the owner, or a writer with writer-is-owner)."""

from __future__ import annotations

from gitserve import audit, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, owns, repo_name, wild


def cmd_desc(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        ctx.out("Usage:  ssh git@host desc <repo>\n"
                "        ssh git@host desc <repo> <description string>\n\n"
                "Show or set the description of a repo (setting it needs ownership).\n")
        return 0 if args else 1
    name = repo_name(args[0])
    text = " ".join(args[1:])
    if not repos.exists(ctx.settings, name):
        raise CommandError("you are not authorized")
    if not text:
        if not ctx.may(name, "R"):
            raise CommandError("you are not authorized")
        try:  # the file as it is, as Gitolite prints it (no newline added)
            ctx.out((repos.path(ctx.settings, name) / "description").read_text(errors="replace"))
        except FileNotFoundError:
            pass
        return 0
    writer_owns = ctx.rules.options(name, wild=wild(ctx, name)).get("writer-is-owner")
    if not (owns(ctx, name) or (writer_owns and ctx.may(name, "W"))):
        raise CommandError("you are not authorized")
    repos.set_description(ctx.settings, name, text)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="desc", result="updated")
    return 0


COMMAND = Command("desc", cmd_desc, "show or set a repo's description")
