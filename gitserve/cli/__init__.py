"""The `gitserve` command: a thin typer layer over the library modules (cli/root.py).

`main` serves `gitserve shell USER`, which sshd starts for every connection behind the
system OpenSSH, without importing typer or any command group (cli/shellfast.py); every
other command line goes to the typer app.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """The `gitserve` command. A GitserveError (bad input, a server already running...) is
    one `gitserve: MESSAGE` line on stderr and exit 1, never a traceback."""
    from . import shellfast

    fast = shellfast.parse_argv(sys.argv[1:])
    if fast is not None:
        sys.exit(shellfast.serve(*fast))
    from gitserve.errors import GitserveError

    from .root import make_app, part_named

    try:
        make_app(part_named(sys.argv[1:]))()
    except GitserveError as exc:
        print(f"gitserve: {exc}", file=sys.stderr)
        sys.exit(1)


def __getattr__(name: str) -> Any:
    if name == "app":  # `from gitserve.cli import app` (tests, typer's CliRunner)
        from .root import app

        return app
    raise AttributeError(name)
