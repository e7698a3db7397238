"""Commands a user runs over ssh (`ssh git@host info`): the core ones and the table's types.

gitserve.app builds the one command table (these core commands plus `builds` and `deploy`)
and the session looks commands up in it; nothing registers itself on import. Each command
gets a `CommandContext` (who, from where, the rules in force, output streams, the table) and
its argument words, and returns an exit status. Messages follow Gitolite's wording.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import dulwich

from gitserve import audit, repoconf, repos
from gitserve.errors import CommandError
from gitserve.fsutil import atomic_write
from gitserve.names import USERNAME_PATT
from gitserve.settings import Settings

if TYPE_CHECKING:
    from gitserve.acl import Rules, WildInfo
    from gitserve.adminrepo import AdminState

# Gitolite's $REMOTE_COMMAND_PATT: what a non-git command line may contain at all
REMOTE_COMMAND_PATT = re.compile(r"^[-0-9a-zA-Z._@/+ :,%=]*$")
# the Gitolite release whose behaviour (conf language, commands, output) gitserve follows
GITOLITE_COMPAT = "v3.6.12"


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

    def read_input(self, limit: int) -> bytes:
        """All of stdin, but never more than LIMIT + 1 bytes buffered: a caller seeing more than
        LIMIT refuses (or truncates) instead of holding whatever a client sends."""
        data = b""
        while len(data) <= limit:
            chunk = self.read(65536)
            if not chunk:
                break
            data += chunk
        return data


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
        Command("writable", cmd_writable, "disable/enable pushes to a repo or all repos"),
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

INFO_USAGE = """Usage:  ssh git@host info [-lc] [-ld] [-json] [<repo name pattern>]

List all existing repos you can access, as well as repo name patterns (see
"wild repos") you have any kind of access to.

    '-lc'       lists creators as an additional field at the end.
    '-ld'       lists description as an additional field at the end.
    '-json'     produce JSON output instead of normal output
    '-p'        limits output to physical repos only (no wild repo regexes!)

The optional pattern is an unanchored regex that will limit the repos
searched, in both cases.
"""


def cmd_info(ctx: CommandContext, args: list[str]) -> int:
    flags = {a.lstrip("-") for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    if flags - {"lc", "ld", "json", "p", "h"} or len(words) > 1 or "h" in flags:
        ctx.out(INFO_USAGE)
        return 0 if flags == {"h"} else 1
    try:
        # Gitolite's unanchored regex; REMOTE_COMMAND_PATT already keeps it to [-.+/@:,%= \w]
        regex = re.compile(words[0] if words else ".")
    except re.error as exc:
        raise CommandError(f"bad pattern '{words[0]}': {exc}") from None
    names = repos.list_names(ctx.settings)
    wilds = {n: repos.wild_info(ctx.settings, n) for n in names}
    rows = ctx.rules.info_rows(ctx.user, wilds, lambda n: bool(regex.search(n)),
                               patterns="p" not in flags)
    lc, ld = "lc" in flags, "ld" in flags

    def creator(name: str) -> str:
        info = wilds.get(name)
        return info.creator.strip() if info else ""

    def description(name: str) -> str:
        return repos.gitweb_description(ctx.settings, name)

    if "json" in flags:
        doc: dict[str, Any] = greeting_fields(ctx)
        listed: dict[str, Any] = {}
        for name, perm, is_pattern in rows:
            entry: dict[str, Any] = {}
            if lc and not is_pattern:
                entry["creator"] = creator(name)
            if ld and not is_pattern:
                entry["description"] = description(name)
            entry["perms"] = {letter: 1 for letter in perm.split()}
            listed[name] = entry
        if listed:
            doc["repos"] = listed
        ctx.out(json.dumps(doc, indent=3, sort_keys=True) + "\n")
        return 0
    out = [greeting(ctx)]
    # Gitolite pads the name (and, with both flags, the creator) of each group of rows
    for group in (True, False):
        chosen = [(n, p) for n, p, pat in rows if pat is group]
        extra_c, extra_d = (lc and not group), (ld and not group)
        width = max((len(n) for n, _p in chosen), default=0) if extra_c or extra_d else 0
        cwidth = (max((len(creator(n)) for n, _p in chosen), default=0)
                  if extra_c and extra_d else 0)
        for name, perm in chosen:
            line = (f"{perm}\t{name:<{width}}\t{(creator(name) if extra_c else ''):<{cwidth}}"
                    f"\t{description(name) if extra_d else ''}")
            out.append(line.replace("\t\t", "\t", 1).rstrip() + "\n")
    ctx.out("".join(out))
    return 0


def greeting(ctx: CommandContext) -> str:
    """Gitolite's first line of `info`: who you are and what you are talking to."""
    return (f"hello {ctx.user}, this is {ctx.settings.server.ssh_user}@{_hostname(ctx)} "
            f"running gitolite3 ({_version()}) on {_engine()}\n\n")


def greeting_fields(ctx: CommandContext) -> dict[str, Any]:
    """The greeting as `info -json` gives it. gitolite_version is the Gitolite release whose
    behaviour gitserve reproduces (scripts compare it), followed by gitserve's own."""
    git = _git_version()
    return {"GL_USER": ctx.user, "USER": f"{ctx.settings.server.ssh_user}@{_hostname(ctx)}",
            "gitolite_version": f"{GITOLITE_COMPAT} ({_version()})",
            "git_version": git or _engine()}


def _hostname(ctx: CommandContext) -> str:
    return ctx.settings.server.public_host or socket.gethostname().split(".")[0]


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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"gitserve {version('gitserve')}"
    except PackageNotFoundError:
        return "gitserve dev"


def _engine() -> str:
    return f"dulwich {'.'.join(map(str, dulwich.__version__))}"


@functools.cache
def _git_version() -> str:
    """The server's `git --version` number, or "" when git is not installed."""
    try:
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.removeprefix("git version ").strip()


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
    ssh git@host perms [-c] <repo> < saved-gl-perms
        # batch mode: the whole list from stdin (-c: create the wild repo first)

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
    if args[0] == "-c":  # create the wild repo first if it is missing (and the user may)
        name = repo_name(args[1])
        if not repos.exists(ctx.settings, name):
            if not ctx.rules.can_create(name, ctx.user):
                raise CommandError(GENERIC_ERROR)
            try:
                repos.create(ctx.settings, name, creator=ctx.user)
            except repos.RepoError as exc:
                raise CommandError(str(exc)) from None
            ctx.err(repos.initialized_line(ctx.settings, name) + "\n")
            repoconf.apply_one(ctx.settings, ctx.rules, name)
            audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="C",
                         result="created", reason="perms-c")
        args = args[1:]
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
            for r in repos.ROLES:
                ctx.err(f"\t{r}\n")
            return 1
        if len(words) > 1 and not all(USERNAME_PATT.match(w.lstrip("@")) for w in words[1:]):
            raise CommandError(f"Invalid user in '{line.strip()}'")
    atomic_write(pf, "".join(x if x.endswith("\n") else x + "\n" for x in lines))
    repoconf.apply_one(ctx.settings, ctx.rules, name)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=name, op="perms",
                 result="updated", reason="batch")
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


# --- writable -------------------------------------------------------------------------

DOWN_FILE = ".gitolite.down"  # Gitolite's name: in the server home (all repos) or in a repo
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


def down_message(settings: Settings, name: str) -> str | None:
    """Why writes to repo NAME are disabled (`writable ... off`), or None if they are not."""
    for f in (settings.home / DOWN_FILE, repos.path(settings, name) / DOWN_FILE):
        try:
            text = f.read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
        return text if text else "sorry, writes are currently disabled (no more info available)\n"
    return None


def cmd_writable(ctx: CommandContext, args: list[str]) -> int:
    if len(args) < 2 or args[0] == "-h" or args[1] not in ("on", "off", "status"):
        ctx.out(WRITABLE_USAGE)
        return 1
    target, op, words = args[0], args[1], args[2:]
    is_admin = can(ctx, repos.ADMIN_REPO, "W")
    if target == "@all":
        if not is_admin:
            raise CommandError("you are not authorized")
        dirs = [ctx.settings.home]
    else:
        name = repo_name(target)
        if not repos.exists(ctx.settings, name) or not (
                owns(ctx, name) or is_admin or (op == "status" and can(ctx, name, "W"))):
            raise CommandError("you are not authorized")
        dirs = [repos.path(ctx.settings, name)]
        if op == "status":
            dirs.append(ctx.settings.home)
    if op == "status":
        return 1 if any((d / DOWN_FILE).exists() for d in dirs) else 0
    if op == "on":
        for d in dirs:
            (d / DOWN_FILE).unlink(missing_ok=True)
    else:
        msg = " ".join(words)
        if not msg:
            ctx.err("...please type the message to be shown to users:\n")
            msg = ctx.read_input(PERMS_BATCH_MAX)[:PERMS_BATCH_MAX].decode("utf-8", "replace")
        for d in dirs:
            atomic_write(d / DOWN_FILE, msg)
    audit.record(ctx.settings, user=ctx.user, ip=ctx.ip, repo=target, op="writable",
                 result="updated", reason=op)
    return 0
