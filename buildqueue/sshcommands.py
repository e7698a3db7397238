"""`ssh git@host builds ...`: the builds commands over SSH, limited by the access rules.

Seeing a build needs R on its repo, cancel needs W, retry W on the build's ref (SPEC §4, §6).
gitserve.app puts `COMMAND` in the server's ssh command table.
"""

from __future__ import annotations

from gitserve.ssh.cmd import base as ssh_commands

from . import commands


class _Out:
    def __init__(self, ctx: ssh_commands.CommandContext) -> None:
        self.ctx = ctx

    def write(self, text: str) -> int:
        self.ctx.out(text)
        return len(text)

    def flush(self) -> None:
        pass


def cmd_builds(ctx: ssh_commands.CommandContext, args: list[str]) -> int:
    def access(repo: str, perm: str, ref: str = "any") -> bool:
        return ctx.may(repo, perm, ref)

    return commands.run(ctx.settings, args, access, _Out(ctx), user=ctx.user)


COMMAND = ssh_commands.Command("builds", cmd_builds,
                               "list, show, log [--follow], cancel, retry builds")
