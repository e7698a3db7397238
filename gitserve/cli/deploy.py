"""Placeholder: `gitserve deploy` commands are being written (see the issue that owns it)."""

from __future__ import annotations

import typer

app = typer.Typer(help="deploy", no_args_is_help=True)
