"""`gitserve shell USER` without typer: sshd starts this process for every connection.

Typer (with pydantic) and every command group cost more to import than a clone costs to
serve, so `gitserve.cli.main` hands a plain `shell USER [--home DIR]` command line here
before it imports them; anything else (`shell --help`, odd spellings) goes through typer
(cli/shell.py), which ends up in the same `serve`.

Its stdout is the git protocol and its stderr is what the user reads, so logs go to
HOME/logs/shell.log only; the one thing printed here is a `gitserve: ...` line when the
forced command itself is wrong (bad user name, no home).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitserve.settings import Settings

log = logging.getLogger("gitserve.shell")


def parse_argv(argv: list[str]) -> tuple[str, Path | None] | None:
    """(USER, --home) for `[--home DIR] shell [--home DIR] USER [--home DIR]`, else None."""
    home: Path | None = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--home" and i + 1 < len(argv):
            home = Path(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--home="):
            home = Path(arg[len("--home="):])
        elif arg.startswith("-"):
            return None  # --help and friends: typer
        else:
            words.append(arg)
        i += 1
    if len(words) != 2 or words[0] != "shell":
        return None
    return words[1], home


def serve(user: str, home: Path | None) -> int:
    """Serve SSH_ORIGINAL_COMMAND for USER; returns the exit status for sshd."""
    from gitserve import settings as settings_mod
    from gitserve.ssh import handoff

    try:
        settings = settings_mod.load(home)
    except settings_mod.SettingsError as exc:
        return _fail(str(exc))
    # the running server serves it (one process start is all this costs); else we do
    status = handoff.hand_off(settings.run_dir, user, os.environ)
    if status is not None:
        return status

    from gitserve import logsetup
    from gitserve.ssh import shell as shell_mod
    from gitserve.ssh.cmd import base as ssh_commands
    from gitserve.ssh.cmd import builtin
    try:
        shell_mod.check_user(user)
    except ValueError as exc:
        return _fail(str(exc))
    if not settings.admin_repo.exists():
        return _fail(f"{settings.home} is not a gitserve home (check --home in authorized_keys)")
    try:
        logsetup.configure(settings.home, "shell.log", console=False)
    except OSError:
        logging.getLogger().addHandler(logging.NullHandler())  # never stderr: the user reads it
    _migrate_admin_branch(settings)
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if shell_mod.needs_plugins(command):
        # builds and deploy: their hooks and commands (importing them costs more than a clone)
        from gitserve import app as app_mod

        table = app_mod.ssh_commands_table(settings)
        hooks = shell_mod.for_shell(app_mod.push_hooks(settings))
    else:
        table, hooks = ssh_commands.table(builtin.core_commands()), []
    status = shell_mod.run(settings, user, os.environ, table=table, hooks=hooks)
    sys.stdout.flush()
    return status


def _fail(message: str) -> int:
    print(f"gitserve: {message}", file=sys.stderr)
    return 1


def _migrate_admin_branch(settings: Settings) -> None:
    """Each sshd connection starts this process: move an older home's admin branch to
    master before anything reads the rules (once moved, this is two small file reads)."""
    from gitserve import adminrepo

    try:
        note = adminrepo.migrate_branch(settings)
    except adminrepo.AdminError as exc:  # the session says "server configuration error"
        log.error("%s", exc)
        return
    if note:
        log.info("%s", note)
