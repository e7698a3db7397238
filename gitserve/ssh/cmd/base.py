"""What every ssh command is made of: `Command`, the `CommandContext` it runs with, the
`CommandTable` gitserve.app builds, and the helpers commands share (rights, repo names).

gitserve.app builds the one command table (gitserve's own commands, one module each in this
package, plus `builds`, `deploy`, `secrets`, `token`, `login`) and the session looks commands
up in it; nothing registers itself on import. Each command gets a `CommandContext` (who, from
where, the rules in force, output streams, the table) and its argument words, and returns an
exit status. Messages follow Gitolite's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from gitserve import acl, repos
from gitserve.errors import CommandError
from gitserve.settings import Settings

if TYPE_CHECKING:
    from gitserve.acl import Rules, WildInfo
    from gitserve.adminrepo import AdminState

__all__ = ["FATAL_STATUS", "REMOTE_COMMAND_PATT", "Command", "CommandContext", "CommandError",
           "CommandFn", "CommandTable", "ScriptError", "owns", "repo_name", "table",
           "wild"]

# The exit status of Gitolite's FATAL: Perl's `die` exits with errno, which in gitolite-shell
# behind sshd (no terminal) is always ENOTTY, 25; scripts written against Gitolite see 25.
FATAL_STATUS = 25


class ScriptError(CommandError):
    """A refusal of one of Gitolite's shell-script commands (fork, D, ...): their `die` prints
    the message as is (no `FATAL: `) and exits 1."""

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
    # stdout as bytes, for commands that speak a binary protocol (git-lfs-transfer)
    write: Callable[[bytes], None] | None = None

    @property
    def rules(self) -> Rules:
        return self.state.rules

    def may(self, name: str, perm: str, ref: str = "any") -> bool:
        """acl.can for this command's user on repo NAME (where the server keeps it); a name
        no repository can have is a no."""
        try:
            repo_dir = repos.path(self.settings, name)
        except repos.RepoError:
            return False
        return acl.can(self.rules, name, self.user, perm, ref, repo_dir=repo_dir)

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
    # False for the protocol commands git tools run by themselves (git-lfs-transfer,
    # git-lfs-authenticate): like git-upload-pack, they are not in `help`
    listed: bool = True


CommandTable = Mapping[str, Command]


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


def owns(ctx: CommandContext, name: str) -> bool:
    return repos.exists(ctx.settings, name) and repos.creator(ctx.settings, name) == ctx.user


def repo_name(arg: str) -> str:
    return repos.check_name(arg)
