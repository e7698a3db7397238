"""`gitserve shell USER`: the forced command sshd runs for USER's keys (see ssh/shell.py).

Its stdout is the git protocol and its stderr is what the user reads, so logs go to
HOME/logs/shell.log only and nothing else is ever printed here. The push hooks and the
ssh command table come from the composition root (gitserve.app), as for `gitserve serve`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from gitserve import logsetup
from gitserve.settings import Settings

from .common import HomeOption, fail, load_settings

log = logging.getLogger("gitserve.shell")


def shell(
    user: Annotated[str, typer.Argument(help="The gitserve user whose key sshd verified.")],
    home: HomeOption = None,
) -> None:
    """Forced command for the system OpenSSH: serve SSH_ORIGINAL_COMMAND for USER."""
    from gitserve import app as app_mod
    from gitserve.ssh.cmd import base as ssh_commands
    from gitserve.ssh.cmd import builtin
    from gitserve.ssh import shell as shell_mod

    settings = load_settings(home)
    try:
        shell_mod.check_user(user)
    except ValueError as exc:
        fail(str(exc))
    if not settings.admin_repo.exists():
        fail(f"{settings.home} is not a gitserve home (check --home in authorized_keys)")
    try:
        logsetup.configure(settings.home, "shell.log", console=False)
    except OSError:
        logging.getLogger().addHandler(logging.NullHandler())  # never stderr: the user reads it
    _migrate_admin_branch(settings)
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    if shell_mod.needs_plugins(command):
        # builds and deploy: their hooks and commands (importing them costs more than a clone)
        table = app_mod.ssh_commands_table(settings)
        hooks = shell_mod.for_shell(app_mod.push_hooks(settings))
    else:
        table, hooks = ssh_commands.table(builtin.core_commands()), []
    status = shell_mod.run(settings, user, os.environ, table=table, hooks=hooks)
    sys.stdout.flush()
    raise typer.Exit(status)


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


def add_commands(app: typer.Typer) -> None:
    app.command("shell")(shell)
