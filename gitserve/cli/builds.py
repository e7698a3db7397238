"""`gitserve builds ...`: list, show, log [--follow], cancel, retry (server-side, full access).

The same commands run over SSH (`ssh git@host builds ...`) limited to the user's repos;
both go through buildqueue.commands so they behave identically.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from gitserve.errors import GitserveError

from .common import HomeOption, fail, load_settings

app = typer.Typer(help="Push-triggered builds: history, logs, cancel, retry.", no_args_is_help=True)


def _run(home, argv: list[str]) -> None:
    from buildqueue import commands

    settings = load_settings(home)
    try:
        code = commands.run(settings, argv, lambda *_: True, sys.stdout)
    except GitserveError as exc:  # CommandError, RedisUnavailable, AdminError...
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


@app.command("list")
def list_(
    repo: Annotated[Optional[str], typer.Option("--repo", help="Only builds of this repo.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many builds.")] = 50,
    home: HomeOption = None,
) -> None:
    """Recent builds, newest first."""
    _run(home, ["list", "--limit", str(limit)] + (["--repo", repo] if repo else []))


@app.command()
def show(build_id: Annotated[str, typer.Argument(metavar="ID")], home: HomeOption = None) -> None:
    """Everything known about one build."""
    _run(home, ["show", build_id])


@app.command()
def log(
    build_id: Annotated[str, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Tail a running build until it ends.")] = False,
    home: HomeOption = None,
) -> None:
    """The build's whole log (secrets masked); --follow streams it live."""
    _run(home, ["log", build_id] + (["--follow"] if follow else []))


@app.command()
def cancel(build_id: Annotated[str, typer.Argument(metavar="ID")], home: HomeOption = None) -> None:
    """Stop a queued or running build (its whole process group is killed)."""
    _run(home, ["cancel", build_id])


@app.command()
def retry(build_id: Annotated[str, typer.Argument(metavar="ID")], home: HomeOption = None) -> None:
    """Build the same commit again (as a new, async build)."""
    _run(home, ["retry", build_id])
