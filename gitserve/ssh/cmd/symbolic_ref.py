"""`symbolic-ref`: read or set the HEAD of a repo you can write to (optional, Gitolite's
`symbolic-ref`).

Narrower than Gitolite's (issue 21, finding 1): only HEAD may be set (a symbolic branch such
as refs/heads/dev/alias -> main would let a push to the alias move main past check #2); the
target must be a branch the user may write (check #2's W on that ref), not itself a symbolic
ref, and so must the branch HEAD names now when it exists (moving the default branch away
is the right of those who may push to it: with W on his own branches only, a user pointed
every new clone at his branch and took LFS locks on the team's files); and never in
gitolite-admin, whose HEAD is master (the admin state is read from master only:
gitserve/adminrepo/state.py). What deploys does not follow HEAD either (`deploy.ref`, else
the branch pinned when the site was configured: repos.deploy_default)."""

from __future__ import annotations

from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from gitserve import audit, repos
from gitserve.errors import CommandError

from .base import Command, CommandContext, ScriptError, repo_name, wild


def cmd_symbolic_ref(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        ctx.out("Usage:    ssh git@host symbolic-ref <repo> <name> [<ref>]\n\n"
                "Read or set a symbolic ref (e.g. HEAD) of a repo you can write to.\n")
        return 1 if not args else 0
    name = repo_name(args[0].removesuffix(".git"))
    if not repos.exists(ctx.settings, name) or not ctx.may(name, "W"):
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
        if sym != b"HEAD":
            raise CommandError(f"symbolic-ref: only HEAD may be set, not {rest[0]}")
        if name == repos.ADMIN_REPO:
            raise CommandError("symbolic-ref: the HEAD of gitolite-admin is always master")
        if not ref.startswith(b"refs/heads/") or not check_ref_format(ref):
            raise CommandError(f"refusing to point {rest[0]} at {rest[1]}: not a branch name")
        if ref in repo.refs.get_symrefs():
            raise CommandError(f"refusing to point {rest[0]} at {rest[1]}: a symbolic ref")
        # check #2's question for the branch HEAD would name, and for the one it names now:
        # HEAD is the default branch (what every clone checks out, the branch whose W an LFS
        # lock needs), so only someone who may push to it moves it away
        current = repo.refs.get_symrefs().get(sym)
        if current is not None and current not in repo.refs:
            current = None  # an unborn branch (a new repo's default name): nobody's work
        for branch in dict.fromkeys([rest[1]] + ([current.decode()] if current else [])):
            decision = ctx.rules.check(name, ctx.user, "W", branch, wild=wild(ctx, name))
            if not decision.allowed:
                raise CommandError(decision.message)
        repo.refs.set_symbolic_ref(sym, ref)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="symbolic-ref",
                 result="updated", reason=f"{rest[0]} -> {rest[1]}")
    return 0


COMMAND = Command("symbolic-ref", cmd_symbolic_ref, "read or set a symbolic ref (e.g. HEAD)")
