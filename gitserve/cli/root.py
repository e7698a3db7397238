"""The typer application of the `gitserve` command: every command group, wired here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import admin, builds, deploy, deploy_agent, init, mirror, serve, shell, sites, worker
from .common import CliState

app = typer.Typer(
    name="gitserve",
    help="Self-hosted Git server: Gitolite access rules, push-triggered builds, blue-green deploys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from gitserve.ssh.cmd import info

        # what `ssh git@host info` greets with: gitserve's version, then its git engine
        print(f"{info.product_version()} (Gitolite v3.6.12's rules and output, "
              f"on {info.engine_version()})")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Annotated[
        Optional[Path],
        typer.Option("--home", help="Server home (env GITSERVE_HOME, default ~/.gitserve; root: /var/lib/gitserve)."),
    ] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version, help="Print the version and exit.")] = False,
) -> None:
    # `gitserve --home X cmd` and `gitserve cmd --home X` both work: the root option
    # travels to the subcommands in typer's context (see common.load_settings)
    ctx.obj = CliState(home=home)


init.add_commands(app)
serve.add_commands(app)
shell.add_commands(app)
sites.add_commands(app)
deploy_agent.add_commands(app)
worker.add_commands(app)
app.add_typer(admin.app, name="admin")
app.add_typer(builds.app, name="builds")
app.add_typer(deploy.app, name="deploy")
app.add_typer(mirror.app, name="mirror")
