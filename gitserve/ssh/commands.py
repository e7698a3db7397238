"""Commands a user runs over ssh (`ssh git@host info`): the core ones and the table's types.

gitserve.app builds the one command table (these core commands plus `builds` and `deploy`)
and the session looks commands up in it; nothing registers itself on import. Each command
gets a `CommandContext` (who, from where, the rules in force, output streams, the table) and
its argument words, and returns an exit status. Messages follow Gitolite's wording.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import dulwich

from gitserve import audit, repos
from gitserve.errors import CommandError
from gitserve.fsutil import atomic_write
from gitserve.names import USERNAME_PATT
from gitserve.settings import Settings

if TYPE_CHECKING:
    from gitserve.acl import Rules, WildInfo
    from gitserve.admin import AdminState

# Gitolite's $REMOTE_COMMAND_PATT: what a non-git command line may contain at all
REMOTE_COMMAND_PATT = re.compile(r"^[-0-9a-zA-Z._@/+ :,%=]*$")


@dataclass
class CommandContext:
    settings: Settings
    user: str
    ip: str
    state: AdminState  # rules and keys in force for this connection
    out: Callable[[str], None]  # stdout of the ssh command
    err: Callable[[str], None]  # stderr
    read: Callable[[int], bytes]  # stdin
    commands: CommandTable = field(default_factory=dict)  # what `help` lists
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> Rules:
        return self.state.rules


CommandFn = Callable[[CommandContext, list[str]], int]


@dataclass
class Command:
    name: str
    fn: CommandFn
    summary: str


CommandTable = Mapping[str, Command]


def core_commands() -> list[Command]:
    """The commands of gitserve itself (Gitolite's); gitserve.app adds builds and deploy."""
    return [
        Command("info", cmd_info, "list repos you can access"),
        Command("help", cmd_help, "list commands"),
        Command("perms", cmd_perms, "list or set READERS/WRITERS of a wild repo"),
        Command("desc", cmd_desc, "show or set a repo's description"),
    ]


def table(commands: list[Command]) -> dict[str, Command]:
    """A command table from COMMANDS; a name given twice is a wiring mistake."""
    found: dict[str, Command] = {}
    for cmd in commands:
        if cmd.name in found:
            raise ValueError(f"ssh command {cmd.name!r} defined twice")
        found[cmd.name] = cmd
    return found


# --- helpers shared by commands ------------------------------------------------------

def wild(ctx: CommandContext, name: str) -> WildInfo | None:
    return repos.wild_info(ctx.settings, name) if repos.exists(ctx.settings, name) else None


def can(ctx: CommandContext, name: str, perm: str, ref: str = "any") -> bool:
    return bool(ctx.rules.check(name, ctx.user, perm, ref, wild=wild(ctx, name)).allowed)


def owns(ctx: CommandContext, name: str) -> bool:
    return repos.exists(ctx.settings, name) and repos.creator(ctx.settings, name) == ctx.user


def repo_name(arg: str) -> str:
    try:
        return repos.check_name(arg)
    except repos.RepoError as exc:
        raise CommandError(str(exc)) from None


# --- info ---------------------------------------------------------------------------

def cmd_info(ctx: CommandContext, args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        ctx.out("Usage:  ssh git@host info\n\n"
                "list repos you have access to: patterns first (C: you may create them),\n"
                "then existing repos, with R and W columns\n")
        return 0
    if args:
        raise CommandError("info takes no arguments (try 'info -h')")
    names = repos.list_names(ctx.settings)
    wilds = {n: repos.wild_info(ctx.settings, n) for n in names}
    body = ctx.rules.info(ctx.user, wilds)
    ctx.out(greeting(ctx) + body)
    return 0


def greeting(ctx: CommandContext) -> str:
    """Gitolite's first lines of `info`: who you are and what you are talking to."""
    host = ctx.settings.server.public_host or socket.gethostname()
    return (f"hello {ctx.user}, this is {ctx.settings.server.ssh_user}@{host} "
            f"running {_server_id(ctx)}\n\n")


# --- help ---------------------------------------------------------------------------

def cmd_help(ctx: CommandContext, args: list[str]) -> int:
    ctx.out(greeting(ctx))
    ctx.out("list of remote commands available:\n\n")
    for name in sorted(ctx.commands):
        ctx.out(f"\t{name}\n")
    ctx.out("\n")
    ctx.out("git commands: git clone / fetch / push / archive --remote with "
            f"{ctx.settings.server.ssh_user}@HOST:REPO\n")
    return 0


def _server_id(ctx: CommandContext) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("gitserve")
    except PackageNotFoundError:
        v = "dev"
    return f"gitserve {v} on dulwich {'.'.join(map(str, dulwich.__version__))}"


# --- perms --------------------------------------------------------------------------

GENERIC_ERROR = "repo does not exist, or you are not authorised"
PERMS_USAGE = """perms -- list or set permissions for user-created ("wild") repo.

Usage summary:
    ssh git@host perms <repo> -l
        # list current permissions on repo
    ssh git@host perms <repo> -lr
        # list available roles
    ssh git@host perms <repo> + <rolename> <username>
        # change permissions: add a user to a role
    ssh git@host perms <repo> - <rolename> <username>
        # change permissions: remove a user from a role

Examples:
    ssh git@host perms my/repo + READERS alice
    ssh git@host perms my/repo + WRITERS bob
"""


def cmd_perms(ctx: CommandContext, args: list[str]) -> int:
    if len(args) < 2 or args[0] == "-h":
        ctx.out(PERMS_USAGE)
        return 0 if args[:1] == ["-h"] else 1
    # Gitolite 3.6 takes `perms REPO -l`; older docs say `perms -l REPO`: accept both
    if args[0] in ("-l", "-lr"):
        args = [args[1], args[0], *args[2:]]
    name = repo_name(args[0])
    rest = args[1:]
    if rest == ["-lr"]:
        ctx.out("\t".join(["", "role"]) + "\n")
        for role in repos.ROLES:
            ctx.out(f"\t{role}\n")
        return 0
    if not owns(ctx, name):
        raise CommandError(GENERIC_ERROR)
    pf = repos.path(ctx.settings, name) / "gl-perms"
    if rest == ["-l"]:
        if pf.exists():
            ctx.out(pf.read_text())
        return 0
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
        if role not in repos.ROLES:
            ctx.err(f"Invalid role '{role}'; valid roles for this repo:\n")
            for r in repos.ROLES:
                ctx.err(f"\t{r}\n")
            return 1
        if entry in lines:
            ctx.err(f"WARNING: '{role} {member}' already present in file\n")
            return 0
        lines = sorted(lines + [entry])
    atomic_write(pf, "".join(lines))
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="perms",
                 result="updated", reason=f"{op} {role} {member}")
    return 0


# --- desc ---------------------------------------------------------------------------

def cmd_desc(ctx: CommandContext, args: list[str]) -> int:
    if not args or args[0] == "-h":
        ctx.out("Usage:  ssh git@host desc <repo>\n"
                "        ssh git@host desc <repo> <description string>\n\n"
                "Show or set the description of a repo (setting it needs ownership).\n")
        return 0 if args else 1
    name = repo_name(args[0])
    text = " ".join(args[1:])
    if not repos.exists(ctx.settings, name):
        raise CommandError("you are not authorized")
    if not text:
        if not can(ctx, name, "R"):
            raise CommandError("you are not authorized")
        try:  # the file as it is, as Gitolite prints it (no newline added)
            ctx.out((repos.path(ctx.settings, name) / "description").read_text(errors="replace"))
        except FileNotFoundError:
            pass
        return 0
    writer_owns = ctx.rules.options(name, wild=wild(ctx, name)).get("writer-is-owner")
    if not (owns(ctx, name) or (writer_owns and can(ctx, name, "W"))):
        raise CommandError("you are not authorized")
    try:
        repos.set_description(ctx.settings, name, text)
    except repos.RepoError as exc:
        raise CommandError(str(exc)) from None
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="desc", result="updated")
    return 0
