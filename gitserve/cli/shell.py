"""`gitserve shell USER`: the forced command sshd runs for USER's keys (see ssh/shell.py).

Its stdout is the git protocol and its stderr is what the user reads, so logs go to
HOME/logs/shell.log and nothing else is ever printed here.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from gitserve.settings import Settings

from .common import HomeOption, fail, load_settings


def _log_to_file(settings: Settings) -> None:
    logs = settings.logs_dir
    try:
        logs.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(logs / "shell.log")
    except OSError:
        handler = logging.NullHandler()  # never fall back to stderr: the client reads it
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s shell[{os.getpid()}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def shell(
    user: Annotated[str, typer.Argument(help="The gitserve user whose key sshd verified.")],
    home: HomeOption = None,
) -> None:
    """Forced command for the system OpenSSH: serve SSH_ORIGINAL_COMMAND for USER."""
    from gitserve.ssh import shell as shell_mod

    settings = load_settings(home)
    try:
        shell_mod.check_user(user)
    except ValueError as exc:
        fail(str(exc))
    if not settings.admin_repo.exists():
        fail(f"{settings.home} is not a gitserve home (check --home in authorized_keys)")
    _log_to_file(settings)
    if shell_mod.needs_plugins(os.environ.get("SSH_ORIGINAL_COMMAND", "")):
        from .serve import load_plugins

        load_plugins()  # push hooks (builds) and ssh commands (builds, deploy), as `serve` has
    status = shell_mod.run(settings, user, os.environ)
    sys.stdout.flush()
    raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    app.command("shell")(shell)
