"""`gitserve admin add-key | remove-key | list-keys | set-conf`: commits on the admin repo.

Each command is one validated commit authored by the local user running it, so the
admin repo's history shows who changed keys or rules from the shell as well as by push.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer

from gitserve import adminrepo, keys, repos
from gitserve.cli import admin_acl
from gitserve.cli.common import HomeOption, fail, load_settings, plural
from gitserve.settings import Settings


def cli_author() -> str:
    """`user <user@host>` of whoever runs the CLI (the sudo caller when run with sudo)."""
    user = os.environ.get("SUDO_USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid{os.getuid()}"
    return f"{user} <{user}@{socket.gethostname()}>"


def _read_input(source: str, what: str) -> str:
    """Contents of FILE, or stdin for `-`."""
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).expanduser().read_text()
    except UnicodeDecodeError:
        fail(f"{source}: {what} is not UTF-8 text")
    except OSError as exc:
        fail(f"{source}: {exc.strerror or exc}")


def _existing(home: Optional[Path]):
    settings = load_settings(home)
    if not (settings.admin_repo / "HEAD").is_file():
        fail(f"no gitserve home at {settings.home} (run `gitserve init` first)")
    return settings


def _compile(settings) -> None:
    for name in adminrepo.compile(settings):
        print(f"created repository {name}")


T = TypeVar("T")


def _change(command: str, settings: Settings, commit: Callable[[], T],
            *errors: type[Exception]) -> T:
    """COMMIT (one commit on the admin repo), then the repos the new conf names; one of
    ERRORS (or a bad repo name) is one `COMMAND: ...` line and exit 1."""
    caught: tuple[type[Exception], ...] = (*errors, repos.RepoError)
    try:
        done = commit()
        _compile(settings)
    except caught as exc:
        fail(f"{command}: {exc}")
    return done


def add_commands(app: typer.Typer) -> None:
    @app.command("add-key")
    def add_key(
        user: Annotated[str, typer.Argument(help="USER, or USER@label for a further key of USER.")],
        key_file: Annotated[str, typer.Argument(metavar="FILE|-", help="Public key file, - for stdin.")],
        home: HomeOption = None,
    ) -> None:
        """Add one SSH public key for USER (a commit on the admin repo)."""
        settings = _existing(home)
        text = _read_input(key_file, "key")
        entry, sha = _change("add-key", settings, lambda: adminrepo.add_key(
            settings, user, text, cli_author()), adminrepo.AdminError, keys.InvalidKey)
        print(f"added {entry.path} for {entry.user}: {entry.key.label} {entry.fingerprint} "
              f"(commit {sha[:12]})")

    @app.command("remove-key")
    def remove_key(
        user: Annotated[str, typer.Argument(help="USER (all keys), or USER@label (that key file).")],
        fingerprint: Annotated[Optional[str], typer.Option(
            "--fingerprint", help="Remove only the key with this SHA256:... fingerprint.")] = None,
        home: HomeOption = None,
    ) -> None:
        """Remove USER's keys (a commit on the admin repo)."""
        settings = _existing(home)
        try:
            removed, sha = adminrepo.remove_key(settings, user, fingerprint, author=cli_author())
        except (adminrepo.AdminError, keys.InvalidKey) as exc:
            fail(f"remove-key: {exc}")
        for e in removed:
            print(f"removed {e.path} of {e.user}: {e.key.label} {e.fingerprint}")
        print(f"(commit {sha[:12]})")

    @app.command("list-keys")
    def list_keys(home: HomeOption = None) -> None:
        """List keys: user, fingerprint (as ssh-keygen -lf prints it), key type."""
        settings = _existing(home)
        try:
            state = adminrepo.current(settings)
        except adminrepo.AdminError as exc:
            fail(f"list-keys: {exc}")
        for e in sorted(state.keys, key=lambda e: (e.user, e.path)):
            print(f"{e.user}\t{e.fingerprint}\t{e.key.label}")

    @app.command("set-conf")
    def set_conf(
        conf_file: Annotated[str, typer.Argument(metavar="FILE|-", help="New conf/gitolite.conf.")],
        home: HomeOption = None,
    ) -> None:
        """Replace conf/gitolite.conf (validated first, with the files it includes)."""
        settings = _existing(home)
        text = _read_input(conf_file, "conf")
        sha = _change("set-conf", settings, lambda: adminrepo.set_conf(settings, text, cli_author()),
                      adminrepo.AdminError)
        if sha is None:
            print("conf/gitolite.conf unchanged")
        else:
            print(f"conf/gitolite.conf updated (commit {sha[:12]})")


def validate_keydir(target: admin_acl.CheckTarget, report: admin_acl.CheckReport) -> None:
    """`admin check`: the keydir of the server (already checked by adminrepo.current) or, with
    --conf DIR/conf/gitolite.conf, the keydir/ beside that conf/ (a gitolite-admin checkout)."""
    if target.conf is None:
        settings = load_settings(target.home)
        try:
            state = adminrepo.current(settings)
        except adminrepo.AdminError as exc:
            raise admin_acl.CheckFailed(str(exc)) from None
        entries, warnings = list(state.keys), list[str]()  # state.warnings were listed with the conf
    else:
        conf_dir = Path(target.conf).parent
        keydir = conf_dir.parent / adminrepo.KEYDIR
        if conf_dir.name != adminrepo.CONF_DIR or not keydir.is_dir():
            return
        files: dict[str, bytes] = {}
        for p in sorted(keydir.rglob("*")):
            rel = f"{adminrepo.KEYDIR}/{p.relative_to(keydir).as_posix()}"
            if p.is_symlink():
                raise admin_acl.CheckFailed(f"{rel}: symlinks are not allowed in the admin repo")
            if p.is_file():
                files[rel] = p.read_bytes()
        try:
            entries, warnings = adminrepo.keydir_entries(files)
        except adminrepo.AdminError as exc:
            raise admin_acl.CheckFailed(str(exc)) from None
    report.warnings.extend(warnings)
    report.summary.append(f"{plural(len(entries), 'key')} of "
                          f"{plural(len({e.user for e in entries}), 'user')}")
