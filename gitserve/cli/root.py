"""The typer application of the `gitserve` command: every command group, wired here.

A command line needs one of them: `make_app(name)` builds the application with that one
only (its module imported, its signatures read by typer), so `gitserve worker` (serve starts
several) or `gitserve admin add-key` do not import and convert every other group; `--help`,
`--version` and a name no part has get the whole application, as `app` is.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import CliState

# command or group name -> (module in gitserve.cli, "commands": its add_commands(app) adds
# the command; "group": its `app` is the group)
PARTS: dict[str, tuple[str, str]] = {
    "init": ("init", "commands"),
    "serve": ("serve", "commands"),
    "shell": ("shell", "commands"),
    "sites": ("sites", "commands"),
    "deploy-agent": ("deploy_agent", "commands"),
    "worker": ("worker", "commands"),
    "admin": ("admin", "group"),
    "builds": ("builds", "group"),
    "deploy": ("deploy", "group"),
    "mirror": ("mirror", "group"),
}


def _version(value: bool) -> None:
    if value:
        from gitserve.ssh.cmd import info

        # what `ssh git@host info` greets with: gitserve's version, then its git engine
        print(f"{info.product_version()} (Gitolite v3.6.12's rules and output, "
              f"on {info.engine_version()})")
        raise typer.Exit()


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


def make_app(only: str | None = None) -> typer.Typer:
    """The application: every part, or ONLY that one (a name of PARTS)."""
    app = typer.Typer(
        name="gitserve",
        help="Self-hosted Git server: Gitolite access rules, push-triggered builds, blue-green deploys.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name, (module_name, kind) in PARTS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"{__package__}.{module_name}")
        if kind == "group":
            app.add_typer(module.app, name=name)
        else:
            module.add_commands(app)
    return app


_ROOT_VALUE_OPTIONS = ("--home",)


def part_named(argv: list[str]) -> str | None:
    """The command or group ARGV names (after the root's own options), if PARTS has it."""
    args = iter(argv)
    for arg in args:
        if arg in _ROOT_VALUE_OPTIONS:
            next(args, None)
        elif arg.startswith("-"):
            if arg in ("--help", "--version"):
                return None
        else:
            return arg if arg in PARTS else None
    return None


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole application (tests drive it with typer's CliRunner)
        return make_app()
    raise AttributeError(name)
