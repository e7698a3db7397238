"""`gitserve admin set-secret REPO NAME`: a build secret, value read from stdin (SPEC §6).

Reading the value from stdin keeps it out of shell history and `ps`. It is stored
encrypted with HOME/secrets.key and reaches builds of REPO as the env var NAME.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import HomeOption, fail, load_settings

REPO_RE = r"^[A-Za-z0-9][A-Za-z0-9._@/+-]*$"


def register(app: typer.Typer) -> None:
    @app.command("set-secret")
    def set_secret(
        repo: Annotated[str, typer.Argument(help="Repository name (without .git).")],
        name: Annotated[str, typer.Argument(help="Environment variable name the build sees.")],
        home: HomeOption = None,
    ) -> None:
        """Store a secret for REPO's builds; the value is read from stdin."""
        import re

        from buildqueue import secrets

        settings = load_settings(home)
        repo = repo.removesuffix(".git")
        if not re.match(REPO_RE, repo) or ".." in repo.split("/") or repo.endswith("/"):
            fail(f"invalid repo name {repo!r}")
        try:
            secrets.validate_name(name)
        except secrets.SecretError as exc:
            fail(str(exc))
        if sys.stdin.isatty():
            print(f"value of {name} for {repo} (end with Ctrl-D):", file=sys.stderr)
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        try:
            secrets.set_secret(settings.home / "secrets", settings.secrets_key_file, repo, name, value)
        except secrets.SecretError as exc:
            fail(str(exc))
        print(f"secret {name} set for {repo}")
