"""`symbolic-ref`: read or set a symbolic ref such as HEAD of a repo you can write to
(optional, Gitolite's `symbolic-ref`)."""

from __future__ import annotations

from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from gitserve import audit, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, ScriptError, can, repo_name


def cmd_symbolic_ref(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        ctx.out("Usage:    ssh git@host symbolic-ref <repo> <name> [<ref>]\n\n"
                "Read or set a symbolic ref (e.g. HEAD) of a repo you can write to.\n")
        return 1 if not args else 0
    name = repo_name(args[0].removesuffix(".git"))
    if not repos.exists(ctx.settings, name) or not can(ctx, name, "W"):
        raise ScriptError("You are not authorised")  # Gitolite's shell-script `die`
    rest = args[1:]
    if len(rest) not in (1, 2) or rest[0].startswith("-"):
        raise CommandError("symbolic-ref: give NAME to read it, NAME REF to set it")
    sym = rest[0].encode()
    with Repo(str(repos.path(ctx.settings, name))) as repo:
        if len(rest) == 1:
            target = repo.refs.get_symrefs().get(sym)
            if target is None:
                raise CommandError(f"ref {rest[0]} is not a symbolic ref")
            ctx.out(target.decode() + "\n")
            return 0
        ref = rest[1].encode()
        if not (sym == b"HEAD" or check_ref_format(sym)) or not ref.startswith(b"refs/") \
                or not check_ref_format(ref) or ref.startswith(b"refs/gitserve/"):
            raise CommandError(f"refusing to point {rest[0]} at {rest[1]}")
        repo.refs.set_symbolic_ref(sym, ref)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="symbolic-ref",
                 result="updated", reason=f"{rest[0]} -> {rest[1]}")
    return 0


COMMAND = Command("symbolic-ref", cmd_symbolic_ref, "read or set a symbolic ref (e.g. HEAD)")
