"""`gitserve admin authorized-keys`: lines for ~git/.ssh/authorized_keys, or sshd's
AuthorizedKeysCommand (one call per key offered: `--type %t --key %k` or `--fingerprint %f`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gitserve import adminrepo, authkeys
from gitserve.cli.common import HomeOption, fail, load_settings


def add_commands(app: typer.Typer) -> None:
    @app.command("authorized-keys")
    def authorized_keys(
        key: Annotated[str | None, typer.Option(
            "--key", help="Only the line for this base64 key (sshd's %k).")] = None,
        key_type: Annotated[str | None, typer.Option(
            "--type", help="Only keys of this type (sshd's %t).")] = None,
        fingerprint: Annotated[str | None, typer.Option(
            "--fingerprint", help="Only the key with this SHA256 fingerprint (sshd's %f).")] = None,
        user: Annotated[str | None, typer.Option(
            "--user", help="Only this gitserve user's keys.")] = None,
        block: Annotated[bool, typer.Option(
            "--block", help="With the '# gitserve start/end' markers around the lines.")] = False,
        write: Annotated[Path | None, typer.Option(
            "--write", help="Rewrite the gitserve block of this authorized_keys file in place.")] = None,
        home: HomeOption = None,
    ) -> None:
        """Print `command="gitserve shell USER",no-pty,... KEY` lines, one per key."""
        settings = load_settings(home)
        if not (settings.admin_repo / "HEAD").is_file():
            fail(f"no gitserve home at {settings.home} (run `gitserve init` first)")
        try:
            state = adminrepo.current(settings)
        except adminrepo.AdminError as exc:
            fail(str(exc))
        found = authkeys.select(authkeys.entries(settings, state), user=user, key_b64=key,
                                key_type=key_type, fingerprint=fingerprint)
        if write is not None:
            try:
                what = authkeys.write_block(settings, write, authkeys.render_block(settings, found))
            except authkeys.AuthKeysError as exc:
                fail(str(exc))
            print(f"{write}: {what} ({len(found)} keys)")
            return
        lines = [authkeys.line(settings, e) for e in found]
        if block:
            lines = [authkeys.START, *lines, authkeys.END]
        for line in lines:
            print(line)
