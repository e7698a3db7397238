"""The `gitserve` command: a thin typer layer over the library modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import admin, builds, deploy, init, serve, shell, worker

app = typer.Typer(
    name="gitserve",
    help="Self-hosted Git server: Gitolite access rules, push-triggered builds, blue-green deploys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    home: Annotated[
        Optional[Path],
        typer.Option("--home", help="Server home (env GITSERVE_HOME, default ~/.gitserve)."),
    ] = None,
) -> None:
    # `gitserve --home X cmd` and `gitserve cmd --home X` both work: the root option is
    # handed to every subcommand through the same environment variable they read.
    if home is not None:
        os.environ["GITSERVE_HOME"] = str(home)


init.register(app)
serve.register(app)
shell.register(app)
worker.register(app)
app.add_typer(admin.app, name="admin")
app.add_typer(builds.app, name="builds")
app.add_typer(deploy.app, name="deploy")


def main() -> None:
    app()
