"""`info`: the repos (and wild-repo patterns) a user can access, with Gitolite's greeting."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
from typing import Any

import dulwich

from gitserve import repos
from gitserve.errors import CommandError

from .base import Command, CommandContext

# the Gitolite release whose behaviour (conf language, commands, output) gitserve follows
GITOLITE_COMPAT = "v3.6.12"

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


def user_pattern(text: str) -> Any:
    """Gitolite's unanchored `info` pattern (REMOTE_COMMAND_PATT already keeps it to
    [-.+/@:,%= \\w], so Perl and RE2 read it alike), compiled by RE2: matching is linear in
    the name, whatever the pattern. Python's backtracking `re` took 12 s on one 44-character
    name for `.+.+.+.+.+.+.+.+Z` (holding the GIL: every login waited) and twelve `.+` never
    ended (issue 21, finding 5)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # a bad pattern is the user's one line, not a line on stderr
    options.max_mem = 1 << 20
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        reason = str(exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc)
        raise CommandError(f"bad pattern '{text}': {reason}") from None


def cmd_info(ctx: CommandContext, args: list[str]) -> int:
    flags = {a.lstrip("-") for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    if flags - {"lc", "ld", "json", "p", "h"} or len(words) > 1 or "h" in flags:
        ctx.out(INFO_USAGE)
        return 0 if flags == {"h"} else 1
    regex = user_pattern(words[0] if words else ".")
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
        # Perl JSON pretty as Gitolite prints it: 3 spaces, `"key" : value`
        ctx.out(json.dumps(doc, indent=3, sort_keys=True, separators=(",", " : ")) + "\n")
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


def product_version() -> str:
    """`gitserve VERSION`, as the greeting and `gitserve --version` say it."""
    return _version()


def engine_version() -> str:
    return _engine()


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


COMMAND = Command("info", cmd_info, "list repos you can access")
