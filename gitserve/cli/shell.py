"""`gitserve shell USER`: the forced command sshd runs for USER's keys (see ssh/shell.py).

Its stdout is the git protocol and its stderr is what the user reads, so logs go to
HOME/logs/shell.log only and nothing else is ever printed here. The push hooks and the
ssh command table come from the composition root (gitserve.app), as for `gitserve serve`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import shellfast
from .common import HomeOption


def shell(
    user: Annotated[str, typer.Argument(help="The gitserve user whose key sshd verified.")],
    home: HomeOption = None,
) -> None:
    """Forced command for the system OpenSSH: serve SSH_ORIGINAL_COMMAND for USER."""
    raise typer.Exit(shellfast.serve(user, home))


def add_commands(app: typer.Typer) -> None:
    app.command("shell")(shell)
