"""`D`: delete a wild repo you created, after unlocking it (optional, Gitolite's `D`)."""

from __future__ import annotations

import shutil

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, owns, repo_name

RM_OK = "gl-rm-ok"  # Gitolite's unlock marker

D_USAGE = """Usage:    ssh git@host D <subcommand> <argument>

The "rm" command deletes repos (only wild repos you created).  "rm" needs the
repo to be unlocked first; "lock" locks it again:

    ssh git@host D unlock repo
    ssh git@host D rm repo
    ssh git@host D lock repo
"""


def cmd_d(ctx: CommandContext, args: list[str]) -> int:
    if len(args) != 2 or args[0] == "-h":
        ctx.out(D_USAGE)
        return 1
    sub, name = args[0], repo_name(args[1])
    if sub not in ("rm", "lock", "unlock"):
        raise CommandError(f"unknown subcommand '{sub}'")
    if not owns(ctx, name):
        raise CommandError("You are not authorised")
    path = repos.path(ctx.settings, name)
    if sub == "lock":
        (path / RM_OK).unlink(missing_ok=True)
        ctx.out(f"'{name}' is now locked\n")
    elif sub == "unlock":
        (path / RM_OK).touch()
        ctx.out(f"'{name}' is now unlocked\n")
    else:
        if not (path / RM_OK).exists():
            raise CommandError(f"'{name}' is locked!")
        # move it aside first so no reader ever sees half a repository
        doomed = path.with_name(f".deleting-{path.name}")
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        repoconf.remove_listing(ctx.settings, name)
        ctx.out(f"'{name}' is now gone!\n")
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op=f"D {sub}",
                 result="updated")
    return 0


COMMAND = Command("D", cmd_d, "delete a wild repo you created (D unlock REPO, then D rm REPO)")
