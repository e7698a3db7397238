"""`writable`: disable or re-enable pushes to one repo or all (Gitolite's .gitolite.down)."""

from __future__ import annotations

from gitserve import audit, repos
from gitserve.errors import CommandError
from gitserve.fsutil import atomic_write

from .base import Command, CommandContext, owns, repo_name

WRITABLE_USAGE = """Usage:  ssh git@host writable <reponame>|@all on|off|status [message]

Disable/re-enable pushes to all repos or named repo.  Useful to run
non-git-aware backups and so on.

'on' enables, 'off' disables, writes (pushes) to the named repo or all repos.
'status' returns the current status as shell truth (i.e., exit code 0 for
writable, 1 for not writable).

With 'off', any subsequent text is taken to be the message to be shown to
users when their pushes get rejected.  If it is not supplied, it will take it
from STDIN; this allows longer messages.
"""
MESSAGE_MAX = 64 * 1024  # the message read from stdin is cut here


def cmd_writable(ctx: CommandContext, args: list[str]) -> int:
    if len(args) < 2 or args[0] == "-h" or args[1] not in ("on", "off", "status"):
        ctx.out(WRITABLE_USAGE)
        return 1
    target, op, words = args[0], args[1], args[2:]
    is_admin = ctx.may(repos.ADMIN_REPO, "W")
    if target == "@all":
        if not is_admin:
            raise CommandError("you are not authorized")
        dirs = [ctx.settings.home]
    else:
        name = repo_name(target)
        if not repos.exists(ctx.settings, name) or not (
                owns(ctx, name) or is_admin or (op == "status" and ctx.may(name, "W"))):
            raise CommandError("you are not authorized")
        dirs = [repos.path(ctx.settings, name)]
        if op == "status":
            dirs.append(ctx.settings.home)
    if op == "status":
        return 1 if any((d / repos.DOWN_FILE).exists() for d in dirs) else 0
    if op == "on":
        for d in dirs:
            (d / repos.DOWN_FILE).unlink(missing_ok=True)
    else:
        msg = " ".join(words)
        if not msg:
            ctx.err("...please type the message to be shown to users:\n")
            msg = ctx.read_input(MESSAGE_MAX)[:MESSAGE_MAX].decode("utf-8", "replace")
        for d in dirs:
            atomic_write(d / repos.DOWN_FILE, msg)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=target, op="writable",
                 result="updated", reason=op)
    return 0


COMMAND = Command("writable", cmd_writable, "disable/enable pushes to a repo or all repos")
