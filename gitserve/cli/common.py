"""Pieces every command shares: the --home option and one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from gitserve import settings as settings_mod

HomeOption = Annotated[
    Optional[Path],
    typer.Option(
        "--home",
        envvar="GITSERVE_HOME",
        help="Server home (default ~/.gitserve).",
        show_default=False,
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
