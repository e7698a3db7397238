"""Placeholder: `gitserve builds` commands are being written (see the issue that owns it)."""

from __future__ import annotations

import typer

app = typer.Typer(help="builds", no_args_is_help=True)
