"""`perms`: list or set the READERS/WRITERS (roles) of a wild repo, as Gitolite's `perms`."""

from __future__ import annotations

import re
from typing import Any

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError
from gitserve.fsutil import atomic_write
from gitserve.names import REPONAME_PATT, USERNAME_PATT

from .base import Command, CommandContext, owns, repo_name, wild

GENERIC_ERROR = "repo does not exist, or you are not authorised"
# Gitolite's usage(): the `=for usage` block of its perms script, a blank line before (the
# rest of the `=for usage` line) and after (say's newline)
PERMS_USAGE = """
perms -- list or set permissions for user-created ("wild") repo.

Usage summary:
    ssh git@host perms <repo> -l
        # list current permissions on repo
    ssh git@host perms <repo> -lr
        # list available roles and their access rights

    ssh git@host perms <repo> + <rolename> <username>
        # change permissions: add a user to a role
    ssh git@host perms <repo> - <rolename> <username>
        # change permissions: remove a user from a role

Examples:
    ssh git@host perms my/repo + READERS alice
    ssh git@host perms my/repo + WRITERS bob

----
There is also a batch mode useful for scripting and bulk loading; see the
source code of the perms command for details.

"""


def _repo(arg: str) -> str:
    """Gitolite's check of the repo argument: `perms -l REPO` (the old order) is an invalid
    repo '-l' there, and so here."""
    if not REPONAME_PATT.match(arg):
        raise CommandError(f"invalid repo '{arg}'")
    return repo_name(arg)


def list_roles(ctx: CommandContext, name: str) -> str:
    """Gitolite's `perms REPO -lr` table: the rules that name a role, in conf order."""
    rules = ctx.rules.role_rules(name, wild(ctx, name), repos.ROLES)
    refs = []
    for _seq, _perm, refex, _role in rules:
        ref = refex.removeprefix("refs/heads/")
        refs.append("--any--" if refex == "refs/.*" else ref)
    width = max((len(r) for r in refs), default=0)
    out = f"\t{'perm'}\t{'ref':<{width}}\t \t{'role'}\n"
    out += f"\t{'----'}\t{'---':<{width}}\t \t{'----'}\n"
    for (_seq, perm, _refex, role), ref in zip(rules, refs):
        out += f"\t{perm}\t{ref:<{width}}\t=\t{role}\n"
    return out


def cmd_perms(ctx: CommandContext, args: list[str]) -> int:
    if len(args) < 2 or args[0] == "-h":
        ctx.out(PERMS_USAGE)
        return 1  # Gitolite's usage() exits 1, -h included
    if args[1] == "-l":
        name = _repo(args[0])
        if not owns(ctx, name):
            raise CommandError(GENERIC_ERROR)
        pf = repos.path(ctx.settings, name) / "gl-perms"
        if pf.exists():
            ctx.out(pf.read_text())
        return 0
    if args[0] == "-c":  # create the wild repo first if it is missing (and the user may)
        name = _repo(args[1])
        if not repos.exists(ctx.settings, name):
            if not ctx.rules.can_create(name, ctx.user):
                raise CommandError(GENERIC_ERROR)
            repos.create(ctx.settings, name, creator=ctx.user)
            ctx.err(repos.initialized_line(ctx.settings, name) + "\n")
            repoconf.apply_one(ctx.settings, ctx.rules, name)
            audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="C",
                         result="created", reason="perms-c")
        args = args[1:]
    name = _repo(args[0])
    rest = args[1:]
    if rest[:1] == ["-lr"]:  # anyone may ask, as in Gitolite
        ctx.out(list_roles(ctx, name))
        return 0
    if not owns(ctx, name):
        raise CommandError(GENERIC_ERROR)
    pf = repos.path(ctx.settings, name) / "gl-perms"
    if not rest:
        return _perms_batch(ctx, name, pf)
    if len(rest) != 3 or rest[0] not in ("+", "-"):
        raise CommandError("Invalid syntax.  Please re-run with '-h' for detailed usage")
    op, role, member = rest
    if not USERNAME_PATT.match(member.lstrip("@")):
        raise CommandError(f"Invalid user '{member}'")
    lines = pf.read_text().splitlines(keepends=True) if pf.exists() else []
    entry = f"{role} {member}\n"
    if op == "-":
        if entry not in lines:
            ctx.err(f"WARNING: '{role} {member}' was not present in file\n")
            return 0
        lines = [x for x in lines if x != entry]
    else:
        if role not in {r for _s, _p, _x, r in ctx.rules.role_rules(name, wild(ctx, name),
                                                                       repos.ROLES)}:
            ctx.err(f"Invalid role '{role}'; valid roles for this repo:\n")
            ctx.err(list_roles(ctx, name))
            return 1
        if entry in lines:
            ctx.err(f"WARNING: '{role} {member}' already present in file\n")
            return 0
        lines = sorted(lines + [entry])
    atomic_write(pf, "".join(lines))
    repoconf.apply_one(ctx.settings, ctx.rules, name)  # daemon/gitweb may be READERS now
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="perms",
                 result="updated", reason=f"{op} {role} {member}")
    return 0


PERMS_BATCH_MAX = 64 * 1024  # a gl-perms file is a few lines; refuse to buffer more


def _perms_batch(ctx: CommandContext, name: str, pf: Any) -> int:
    """`perms REPO` with the whole gl-perms on stdin (Gitolite's batch mode, e.g. restoring a
    backup): every line must start with a role; `cancel` aborts; nothing is written on error."""
    ctx.err("'batch' mode started, waiting for input (run with '-h' for details).\n")
    ctx.err("Please enter 'cancel' to abort if you did not intend to do this.\n")
    data = ctx.read_input(PERMS_BATCH_MAX)
    if len(data) > PERMS_BATCH_MAX:
        raise CommandError(f"perms input larger than {PERMS_BATCH_MAX} bytes")
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    for line in lines:
        if re.fullmatch(r"\s*cancel\s*", line, re.IGNORECASE):
            raise CommandError("CANCELLED")
        words = line.split()
        if words and words[0] not in repos.ROLES:
            ctx.err(f"Invalid role '{words[0]}'; valid roles for this repo:\n")
            ctx.err(list_roles(ctx, name))
            return 1
        if len(words) > 1 and not all(USERNAME_PATT.match(w.lstrip("@")) for w in words[1:]):
            raise CommandError(f"Invalid user in '{line.strip()}'")
    atomic_write(pf, "".join(x if x.endswith("\n") else x + "\n" for x in lines))
    repoconf.apply_one(ctx.settings, ctx.rules, name)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="perms",
                 result="updated", reason="batch")
    return 0


COMMAND = Command("perms", cmd_perms, "list or set READERS/WRITERS of a wild repo")
