"""The commands gitserve has built in, for gitserve.app's table: Gitolite's core commands
(always on) and the optional repo commands, off unless `[server] commands` names them (as
Gitolite's rc ENABLE list; a disabled one is an unknown command)."""

from __future__ import annotations

import logging

from gitserve.settings import Settings

from . import create, delete, desc, fork, info, perms, program, symbolic_ref, writable
from . import help as help_cmd
from .base import Command

log = logging.getLogger(__name__)


def core_commands() -> list[Command]:
    """The commands of gitserve itself (Gitolite's); gitserve.app adds builds and deploy."""
    return [info.COMMAND, help_cmd.COMMAND, perms.COMMAND, desc.COMMAND, writable.COMMAND]


def optional_commands() -> list[Command]:
    """D, create, fork, symbolic-ref: on only where `[server] commands` names them."""
    return [delete.COMMAND, create.COMMAND, fork.COMMAND, symbolic_ref.COMMAND]


def enabled(settings: Settings, name: str) -> bool:
    return name in settings.server.commands.split()


def enabled_commands(settings: Settings) -> list[Command]:
    """The optional commands `[server] commands` names, for gitserve.app's command table;
    a name that is not gitserve's is a site command, HOME/commands/NAME (cmd/program.py)."""
    known = [c.name for c in optional_commands()]
    core = {c.name for c in core_commands()}
    site = [program.command(w) for w in settings.server.commands.split()
            if w not in known and w not in core and program.find(settings, w)]
    unknown = [w for w in settings.server.commands.split()
               if w not in known and w not in {c.name for c in site}]
    if unknown:
        log.warning("[server] commands: unknown %s (known: %s, or an executable "
                    "HOME/commands/NAME)", " ".join(unknown), " ".join(known))
    return [c for c in optional_commands() if enabled(settings, c.name)] + site
