"""`D`: delete a wild repo you created (optional, Gitolite's `D`): `rm` after `unlock`, or
`trash` it and `restore` it from the trash can (`list-trash` lists yours).

Gitolite's D is a shell script, so its refusals are plain lines (no `FATAL: `) with exit 1,
and its trash can is `Trash/` under the repositories directory (Gitolite's TRASH_CAN
default), each trashed repo at `Trash/REPO/YYYY-MM-DD_HH:MM:SS` with its gl-creator inside.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from gitserve import audit, repoconf, repos

from .base import Command, CommandContext, ScriptError, owns, repo_name

RM_OK = "gl-rm-ok"  # Gitolite's unlock marker
TRASH_CAN = "Trash"  # Gitolite's TRASH_CAN default, relative to the repositories directory

# the header of Gitolite's D script, which its usage() prints (stdout, exit 1)
D_USAGE = """Usage:    ssh git@host D <subcommand> <argument>

The whimsically named "D" command deletes repos ("D" is a counterpart to the
"C" permission which lets you create repos.  Which also means that, just
like "C", it only works for wild repos).

There are two kinds of deletions: 'rm' removes a repo completely, while
'trash' moves it to a trashcan which can be recovered later (upto a time
limit that your admin will tell you).

The 'rm', 'lock', and 'unlock' subcommands:
    Initially, all repos are "locked" against 'rm'.  The correct sequence is
        ssh git@host D unlock repo
        ssh git@host D rm repo
    Since the initial condition is always locked, the "lock" command is
    rarely used but it is there if you want it.

The 'trash', 'list-trash', and 'restore' subcommands:
    You can 'trash' a repo, which moves it to a special place:
        ssh git@host D trash repo
    You can then 'list-trash'
        ssh git@host D list-trash
    which prints something like
        repo/2012-04-11_05:58:51
    allowing you to restore by saying
        ssh git@host D restore repo/2012-04-11_05:58:51

"""


def _trash(ctx: CommandContext) -> Path:
    return ctx.settings.repos_dir / TRASH_CAN


def cmd_d(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h" or (args[0] != "list-trash" and len(args) < 2):
        ctx.out(D_USAGE)
        return 1
    sub = args[0]
    if sub == "list-trash":
        return _list_trash(ctx)
    if sub == "restore":
        return _restore(ctx, args[1])
    if sub not in ("rm", "lock", "unlock", "trash"):
        raise ScriptError(f"unknown subcommand '{sub}'")
    name = repo_name(args[1])
    if not owns(ctx, name):
        raise ScriptError("You are not authorised")
    path = repos.path(ctx.settings, name)
    if sub == "lock":
        (path / RM_OK).unlink(missing_ok=True)
        ctx.out(f"'{name}' is now locked\n")
    elif sub == "unlock":
        (path / RM_OK).touch()
        ctx.out(f"'{name}' is now unlocked\n")
    elif sub == "trash":
        can = _trash(ctx) / name
        can.mkdir(parents=True, exist_ok=True)
        dest = can / time.strftime("%Y-%m-%d_%H:%M:%S")
        if dest.exists():
            raise ScriptError("try again in a few seconds...")
        path.rename(dest)
        repoconf.remove_listing(ctx.settings, name)
        ctx.out(f"'{name}' moved to trashcan\n")
    else:
        if not (path / RM_OK).exists():
            raise ScriptError(f"'{name}' is locked!")
        # move it aside first so no reader ever sees half a repository
        doomed = path.with_name(f".deleting-{path.name}")
        path.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        repoconf.remove_listing(ctx.settings, name)
        ctx.out(f"'{name}' is now gone!\n")
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op=f"D {sub}",
                 result="updated")
    return 0


def _list_trash(ctx: CommandContext) -> int:
    """Your trashed repos as REPO/TIME, sorted as `find | sort` sorts their gl-creator paths."""
    can = _trash(ctx)
    found = []
    for dirpath, _dirs, files in os.walk(can):
        if "gl-creator" in files:
            rel = Path(dirpath).relative_to(can).as_posix()
            try:
                owner = (Path(dirpath) / "gl-creator").read_text().strip()
            except OSError:
                continue
            if owner == ctx.user:
                found.append(f"./{rel}/gl-creator")
    for entry in sorted(found):
        ctx.out(entry[2:-len("/gl-creator")] + "\n")
    return 0


def _restore(ctx: CommandContext, arg: str) -> int:
    """`D restore REPO/TIME`: back to REPO if it is yours and REPO does not exist again."""
    can = _trash(ctx)
    entry = can / arg
    try:
        inside = entry.resolve().is_relative_to(can.resolve()) and ".." not in Path(arg).parts
        owner = (entry / "gl-creator").read_text().strip() if inside else ""
    except OSError:
        owner = ""
    if not owner or owner != ctx.user:
        raise ScriptError(f"'{arg}' is not yours!")
    name = repo_name(str(Path(arg).parent))
    dest = repos.path(ctx.settings, name)
    if dest.exists():
        raise ScriptError(f"'{name}' already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    entry.rename(dest)
    repoconf.apply_one(ctx.settings, ctx.rules, name)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="D restore",
                 result="updated", reason=arg)
    ctx.out(f"'{arg}' restored to '{name}'\n")
    return 0


COMMAND = Command("D", cmd_d, "delete a wild repo you created (D unlock REPO, then D rm REPO)")
