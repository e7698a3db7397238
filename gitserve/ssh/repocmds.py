"""Gitolite's optional repo commands: `D` (delete your wild repo), `create`, `fork`,
`symbolic-ref`. Off unless `[server] commands` names them (as Gitolite's rc ENABLE list);
a disabled one is an unknown command. Same rights and messages as Gitolite's scripts.
"""

from __future__ import annotations

import logging
import shutil

from dulwich.refs import check_ref_format
from dulwich.repo import Repo

from gitserve import audit, repoconf, repos

from gitserve.errors import CommandError
from gitserve.settings import Settings

from .commands import Command, CommandContext, can, owns, repo_name

log = logging.getLogger(__name__)

OPTIONAL = ("D", "create", "fork", "symbolic-ref")
RM_OK = "gl-rm-ok"  # Gitolite's unlock marker

D_USAGE = """Usage:    ssh git@host D <subcommand> <argument>

The "rm" command deletes repos (only wild repos you created).  "rm" needs the
repo to be unlocked first; "lock" locks it again:

    ssh git@host D unlock repo
    ssh git@host D rm repo
    ssh git@host D lock repo
"""


def enabled(settings: Settings, name: str) -> bool:
    return name in settings.server.commands.split()


def _created(ctx: CommandContext, name: str, how: str) -> None:
    ctx.err(repos.initialized_line(ctx.settings, name) + "\n")
    repoconf.apply_one(ctx.settings, ctx.rules, name)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="C", result="created",
                 reason=how)


def cmd_create(ctx: CommandContext, args: list[str]) -> int:
    if len(args) != 1 or args[0] == "-h":
        ctx.out("create -- create a wild repo.\n\nUsage:\n    ssh git@host create <repo>\n")
        return 1 if args[:1] != ["-h"] else 0
    name = repo_name(args[0])
    if repos.exists(ctx.settings, name) or not ctx.rules.can_create(name, ctx.user):
        raise CommandError("repo already exists or you are not authorised to create it")
    try:
        repos.create(ctx.settings, name, creator=ctx.user)
    except repos.RepoError:
        raise CommandError("repo already exists or you are not authorised to create it") from None
    _created(ctx, name, "create")
    return 0


def cmd_fork(ctx: CommandContext, args: list[str]) -> int:
    if len(args) != 2 or args[0] == "-h":
        ctx.out("Usage:    ssh git@host fork <repo1> <repo2>\n\n"
                "Copy <repo1> to <repo2> (you need read access on one and the right to create\n"
                "the other); you become <repo2>'s creator.\n")
        return 1 if args[:1] != ["-h"] else 0
    src, dest = repo_name(args[0]), repo_name(args[1])
    if not repos.exists(ctx.settings, src) or not can(ctx, src, "R"):
        raise CommandError(f"'{src}' does not exist or you are not allowed to read it")
    if repos.exists(ctx.settings, dest) or not ctx.rules.can_create(dest, ctx.user):
        raise CommandError(f"'{dest}' already exists or you are not allowed to create it")
    try:
        path = repos.create(ctx.settings, dest, creator=ctx.user)
    except repos.RepoError:
        raise CommandError(f"'{dest}' already exists or you are not allowed to create it") \
            from None
    try:
        with Repo(str(repos.path(ctx.settings, src))) as s, Repo(str(path)) as d:
            s.fetch(d)  # every object reachable from its refs
            for ref, sha in s.refs.as_dict().items():
                if ref != b"HEAD" and not ref.startswith(b"refs/gitserve/"):
                    d.refs[ref] = sha
            head = s.refs.get_symrefs().get(b"HEAD")
            if head:
                d.refs.set_symbolic_ref(b"HEAD", head)
    except Exception:
        shutil.rmtree(path, ignore_errors=True)
        raise
    (path / "gl-forked-from").write_text(src + "\n")
    ctx.err(f"{src} forked to {dest}\n")
    repoconf.apply_one(ctx.settings, ctx.rules, dest)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=dest, op="C", result="created",
                 reason=f"fork of {src}")
    return 0


def cmd_symbolic_ref(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        ctx.out("Usage:    ssh git@host symbolic-ref <repo> <name> [<ref>]\n\n"
                "Read or set a symbolic ref (e.g. HEAD) of a repo you can write to.\n")
        return 1 if not args else 0
    name = repo_name(args[0].removesuffix(".git"))
    if not repos.exists(ctx.settings, name) or not can(ctx, name, "W"):
        raise CommandError("You are not authorised")
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


COMMANDS = {
    "D": (cmd_d, "delete a wild repo you created (D unlock REPO, then D rm REPO)"),
    "create": (cmd_create, "create a wild repo"),
    "fork": (cmd_fork, "copy a repo you can read to a new wild repo"),
    "symbolic-ref": (cmd_symbolic_ref, "read or set a symbolic ref (e.g. HEAD)"),
}


def enabled_commands(settings: Settings) -> list[Command]:
    """The optional commands `[server] commands` names, for gitserve.app's command table."""
    unknown = [w for w in settings.server.commands.split() if w not in COMMANDS]
    if unknown:
        log.warning("[server] commands: unknown %s (known: %s)", " ".join(unknown),
                    " ".join(COMMANDS))
    return [Command(name, fn, summary) for name, (fn, summary) in COMMANDS.items()
            if enabled(settings, name)]
