"""`help`: the greeting and every command of the table (what this server offers)."""

from __future__ import annotations

from .base import Command, CommandContext
from .info import greeting


def cmd_help(ctx: CommandContext, args: list[str]) -> int:
    ctx.out(greeting(ctx))
    ctx.out("list of remote commands available:\n\n")
    for name in sorted(ctx.commands):
        if ctx.commands[name].listed:
            ctx.out(f"\t{name}\n")
    ctx.out("\n")
    host, port = ctx.settings.public_ssh()
    user = ctx.settings.server.ssh_user
    where = f"{user}@{host}:REPO" if port == 22 else f"ssh://{user}@{host}:{port}/REPO"
    ctx.out(f"git commands: git clone / fetch / push / archive --remote with {where}\n")
    return 0


COMMAND = Command("help", cmd_help, "list commands")
