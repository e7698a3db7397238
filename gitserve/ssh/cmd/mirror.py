"""`ssh git@HOST mirror push SLAVE REPO | status SLAVE|all REPO | status [REPO]` (Gitolite's
mirror command, remote usage; SPEC §10).

- `mirror push SLAVE REPO`: push REPO to SLAVE now (Gitolite: any user with any access may;
  gitserve also wants read access to REPO, and answers a repo the user cannot read exactly
  as one that does not exist). git's output goes to stderr; exit 1 when the push failed.
- `mirror status SLAVE REPO`, `mirror status all REPO`: Gitolite's output - the saved
  status of the last failed push to that slave (nothing when it went well).
- `mirror status [REPO]` (gitserve): one line per repo and slave this master mirrors to,
  `REPO<TAB>SLAVE<TAB>in sync|behind|failed<TAB>seq N`, for the repos the user can read.
"""

from __future__ import annotations

from gitserve import repos
from gitserve.mirror import state
from gitserve.mirror.config import MASTER, repo_mirror
from gitserve.mirror.syncer import push_one
from gitserve.mirror.transport import Transport

from gitserve.errors import CommandError

from .base import Command, CommandContext, wild

USAGE = """Usage:    ssh git@master-server mirror push <copy> <repo>
          ssh git@master-server mirror status <copy> <repo>
          ssh git@master-server mirror status all <repo>
          ssh git@master-server mirror status [<repo>]

Forces a push of one repo to one copy (push), or shows the saved status of the last
failed push of a repo to a copy (status <copy>|all <repo>), or whether each copy has
the repo's latest state (status [<repo>]).
"""


def _usage(ctx: CommandContext) -> int:
    ctx.err(USAGE)
    return 1


def _valid_copy(ctx: CommandContext, slave: str, repo: str) -> str:
    """Gitolite's valid_copy: the repo name, if SLAVE is one of REPO's copies."""
    repo = repo.removesuffix(".git")
    try:
        name = repos.check_name(repo)
    except repos.RepoError:
        raise CommandError(f"invalid repo '{repo}'") from None
    mirror = repo_mirror(ctx.rules.options(name, wild=wild(ctx, name)))
    if slave not in mirror.copies or not repos.exists(ctx.settings, name) \
            or not ctx.may(name, "R"):
        raise CommandError(f"'{slave}' not a valid copy for '{name}'")
    return name


def cmd_mirror(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        return _usage(ctx)
    if not ctx.settings.server.hostname:
        raise CommandError("HOSTNAME not set")
    verb, rest = args[0], args[1:]
    if verb == "push" and len(rest) == 2:
        slave = "copies" if rest[0] == "slaves" else rest[0]
        name = _valid_copy(ctx, slave, rest[1])
        ok, out = push_one(ctx.settings, Transport(ctx.settings), name, slave, force=True)
        if out:
            ctx.err(out if out.endswith("\n") else out + "\n")
        return 0 if ok else 1
    if verb == "status" and len(rest) == 2:
        slave = rest[0]
        if slave == "all":
            name = repos.parse_repo_arg(rest[1])
            if not repos.exists(ctx.settings, name) or not ctx.may(name, "R"):
                raise CommandError(f"'all' not a valid copy for '{name}'")
            slaves = state.failed_slaves(repos.path(ctx.settings, name))
        else:
            name = _valid_copy(ctx, slave, rest[1])
            slaves = [slave]
        repo_dir = repos.path(ctx.settings, name)
        for s in sorted(slaves):
            ctx.out(state.status_text(name, repo_dir, s))
        return 0
    if verb == "status" and len(rest) <= 1:
        return _summary(ctx, rest[0] if rest else None)
    return _usage(ctx)


def _summary(ctx: CommandContext, only: str | None) -> int:
    hostname = ctx.settings.server.hostname
    names = [repos.parse_repo_arg(only)] if only else repos.list_names(ctx.settings)
    for name in names:
        if not repos.exists(ctx.settings, name) or not ctx.may(name, "R"):
            if only:
                raise CommandError(f"'{name}' is not mirrored from here")
            continue
        mirror = repo_mirror(ctx.rules.options(name, wild=wild(ctx, name)))
        if mirror.mode(hostname) != MASTER:
            if only:
                ctx.out(f"{name}\t{hostname}\t{mirror.mode(hostname)}"
                        f"{' of ' + mirror.master if mirror.master else ''}\t"
                        f"seq {state.seq_of(repos.path(ctx.settings, name))}\n")
            continue
        repo_dir = repos.path(ctx.settings, name)
        refs = state.refs_digest(repo_dir)
        meta = state.read_meta(repo_dir).digest()
        failed = set(state.failed_slaves(repo_dir))
        for slave in mirror.copies:
            synced = state.read_synced(repo_dir, slave)
            if synced.get("refs") == refs and synced.get("meta") == meta:
                what = "in sync"
            elif slave in failed:
                what = "failed"
            else:
                what = "behind"
            ctx.out(f"{name}\t{slave}\t{what}\tseq {synced.get('seq', 0)}\n")
    return 0


COMMAND = Command("mirror", cmd_mirror, "push a repo to a mirror now; mirror push status")
