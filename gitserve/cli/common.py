"""Pieces every command shares: the --home option and one-line errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from gitserve import settings as settings_mod

@dataclass
class CliState:
    """What the root command hands its subcommands through typer's context (ctx.obj)."""

    home: Optional[Path] = None


def _home_from_root(ctx: typer.Context, home: Optional[Path]) -> Optional[Path]:
    """The subcommand's --home, else the root's (`gitserve --home X cmd`), else None
    (settings then reads $GITSERVE_HOME, then the default home)."""
    if home is not None:
        return home
    state = ctx.find_object(CliState)
    return state.home if state is not None else None


HomeOption = Annotated[
    Optional[Path],
    typer.Option(
        "--home",
        help="Server home (env GITSERVE_HOME, default ~/.gitserve; root: /var/lib/gitserve).",
        show_default=False,
        callback=_home_from_root,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero (SPEC §3)."""
    print(f"gitserve: {message}", file=sys.stderr)
    raise typer.Exit(code)


def load_settings(home: Optional[Path]) -> settings_mod.Settings:
    try:
        return settings_mod.load(home)
    except settings_mod.SettingsError as exc:
        fail(str(exc))


def plural(count: int, noun: str) -> str:
    """`1 key`, `2 keys`: counts in what the CLI prints read as English."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
