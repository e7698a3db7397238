"""Secrets and notifications on the CLI (SPEC §3, §6).

`gitserve admin set-secret REPO NAME` and `gitserve admin secrets set|list|remove`: a
value is always read from stdin (never from the command line: shell history, `ps`), and
`list` shows names and when they were set, never a value. REPO `@server` is the scope of
the server's own secrets (the SMTP password). With `[secrets] backend = "vault"` the repo
commands act on Vault/OpenBao. `gitserve admin notify-log [REPO]` shows the deliveries.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from .common import HomeOption, fail, load_settings

RepoArg = Annotated[str, typer.Argument(help="Repository name (without .git), or @server.")]
NameArg = Annotated[str, typer.Argument(help="Secret name (the environment variable a build sees).")]

secrets_app = typer.Typer(help="List, set and remove secrets (values are never shown).",
                          no_args_is_help=True)


def read_value(stream: Any, prompt: str) -> str:
    """The secret value from STREAM: one trailing newline dropped (as `echo v |` adds it)."""
    if hasattr(stream, "isatty") and stream.isatty():
        print(prompt, file=sys.stderr)
    value = stream.read()
    if value.endswith("\r\n"):
        return value[:-2]
    return value.removesuffix("\n")


def _set(repo: str, name: str, home: Any, refs: list[str] | None = None) -> None:
    from gitserve.secrets import crypt as secrets
    from gitserve.secrets import scope as secretscope
    from gitserve.secrets import store as secretstore
    from gitserve import audit

    settings = load_settings(home)
    try:
        repo = secretstore.scope_name(repo)
        secrets.validate_name(name)
        for ref in refs or []:
            secretscope.check_ref(ref)
        value = read_value(sys.stdin, f"value of {name} for {repo} (end with Ctrl-D):")
        secrets.check_value(value)
        secretstore.store_for(settings, repo).set(repo, name, value)
        secretscope.set_scope(settings, repo, name, refs or [])
    except secrets.SecretError as exc:
        fail(str(exc))
    audit.record(settings, user="(cli)", op="secret", repo=repo, result="updated", reason=f"set {name}")
    print(f"secret {name} set for {repo}{secretscope.suffix(refs, ': ')}")


RefOption = Annotated[Optional[list[str]], typer.Option(
    "--ref", help="Only builds of this ref get it (repeatable; a prefix ends in /). Default: every ref.")]


@secrets_app.command("set")
def secrets_set(repo: RepoArg, name: NameArg, ref: RefOption = None, home: HomeOption = None) -> None:
    """Store secret NAME for REPO; the value is read from stdin."""
    _set(repo, name, home, ref)


@secrets_app.command("list")
def secrets_list(repo: RepoArg, home: HomeOption = None) -> None:
    """Names of REPO's secrets and when each was set (never the values)."""
    from gitserve.secrets import crypt as secrets
    from gitserve.secrets import store as secretstore

    settings = load_settings(home)
    try:
        repo = secretstore.scope_name(repo)
        rows = secretstore.store_for(settings, repo).list(repo)
    except secrets.SecretError as exc:
        fail(str(exc))
    from gitserve.secrets import scope as secretscope

    scoped = secretscope.scopes(settings, repo)
    for name, ts in rows:
        print(f"{name}\t{secretstore.when(ts)}{secretscope.suffix(scoped.get(name))}")


@secrets_app.command("remove")
def secrets_remove(repo: RepoArg, name: NameArg, home: HomeOption = None) -> None:
    """Forget secret NAME of REPO."""
    from gitserve.secrets import crypt as secrets
    from gitserve.secrets import store as secretstore
    from gitserve import audit

    settings = load_settings(home)
    try:
        repo = secretstore.scope_name(repo)
        secretstore.store_for(settings, repo).remove(repo, name)
        from gitserve.secrets import scope as secretscope

        secretscope.set_scope(settings, repo, name, [])
    except secrets.SecretError as exc:
        fail(str(exc))
    audit.record(settings, user="(cli)", op="secret", repo=repo, result="updated", reason=f"remove {name}")
    print(f"secret {name} removed from {repo}")


def add_commands(app: typer.Typer) -> None:
    @app.command("set-secret")
    def set_secret(repo: RepoArg, name: NameArg, home: HomeOption = None) -> None:
        """Store a secret for REPO's builds; the value is read from stdin."""
        _set(repo, name, home)

    @app.command("notify-log")
    def notify_log(
        repo: Annotated[str | None, typer.Argument(help="Only this repository.")] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Last N deliveries.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Notification deliveries: time, repo, event, target (credentials masked), status, attempts."""
        import json

        from buildqueue.notify import deliverylog as notifylog

        settings = load_settings(home)
        entries = list(notifylog.read(settings, repo.removesuffix(".git") if repo else None))[-limit:]
        if as_json:
            for e in entries:
                print(json.dumps(e))
        elif entries:
            sys.stdout.write(notifylog.table(entries))

    app.add_typer(secrets_app, name="secrets")
