"""`gitserve init`: create a server home (SPEC §2) with its admin repo, host keys and worker key.

Everything is built in a temporary directory beside HOME and renamed into place at the
end, so a failed init (bad key, bad imported conf, full disk) leaves nothing behind and
a second attempt starts clean. An existing home is never overwritten.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from gitserve import adminrepo, gitolite_import, keys, repos
from gitserve import settings as settings_mod
from gitserve.cli.common import HomeOption, fail
from gitserve.cli.admin_keys import cli_author

DEFAULT_ADMIN = "admin"
HOST_KEYS = ("ed25519", "rsa")


def default_conf(admin_user: str) -> str:
    """Gitolite's initial conf for ADMIN_USER."""
    return (
        "repo gitolite-admin\n"
        f"    RW+     =   {admin_user}\n"
        "\n"
        "repo testing\n"
        "    RW+     =   @all\n"
    )


def _prepare_import(from_gitolite: Optional[Path], repositories: Optional[Path],
                    hostname: str = "") -> tuple[gitolite_import.Source, str, list[str]]:
    """What a Gitolite import brings (validated, nothing written): (source, message, notes).
    HOSTNAME (else the site rc's) is the server's mirror name: `%HOSTNAME` in the conf."""
    try:
        src = gitolite_import.locate(from_gitolite, repositories)
    except OSError as exc:
        raise adminrepo.AdminError(f"{exc.filename}: {exc.strerror}") from None
    src.hostname = hostname or src.hostname
    try:
        _, entries, warnings = adminrepo.build(src.files, src.hostname)
    except adminrepo.AdminError as exc:
        raise adminrepo.AdminError(f"{from_gitolite or repositories}: {exc}") from None
    users = sorted({e.user for e in entries})
    notes = [f"imported {len(src.files)} files from {src.described} ({len(entries)} keys, "
             f"users: {', '.join(users) or 'none'})"]
    if src.history is not None:
        notes.append(f"admin history from {src.history} (now on master)")
    notes += [f"warning: {w}" for w in warnings]
    return src, f"Import gitolite-admin from {src.described}", notes + src.notes


def _prepare_files(
    admin_user: Optional[str], admin_key: Optional[Path]
) -> tuple[dict[str, bytes], str, list[str]]:
    """(admin tree files, commit message, lines to print); validated, nothing written."""
    key_line = None
    if admin_key is not None:
        try:
            key_text = admin_key.expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise adminrepo.AdminError(f"{admin_key}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            key = keys.parse_file_text(key_text)
        except keys.InvalidKey as exc:
            raise adminrepo.AdminError(f"{admin_key}: invalid key: {exc}") from None
        if not key.verifiable:
            raise adminrepo.AdminError(f"{admin_key}: {key.key_type} keys cannot be verified by "
                                   "this server; use an ed25519, ecdsa or rsa key")
        if admin_user is None:  # like `gitolite setup -pk alice.pub`
            try:
                admin_user = keys.check_keyfile_path(admin_key.name)
            except keys.InvalidKey:
                raise adminrepo.AdminError(f"cannot name the admin after {admin_key.name}; "
                                       "give --admin USER") from None
        key_line = key.openssh() + "\n"
    user = admin_user or DEFAULT_ADMIN
    try:
        stem = keys.keyfile_stem_for(user)
        if keys.check_keyfile_path(f"{stem}.pub") != user:
            raise keys.InvalidKey(f"{user!r} is not a valid user name (it reads as a key label)")
    except keys.InvalidKey as exc:
        raise adminrepo.AdminError(f"--admin: {exc}") from None
    files = {adminrepo.MAIN_CONF: default_conf(user).encode()}
    notes = []
    if key_line:
        files[f"{adminrepo.KEYDIR}/{user}.pub"] = key_line.encode()
        k = keys.parse(key_line)
        notes.append(f"admin user: {user} (key {k.label} {k.fingerprint})")
    else:
        notes.append(f"admin user: {user} (no key yet: `gitserve admin add-key {user} FILE`)")
    adminrepo.build(files)
    return files, f"gitserve init: admin {user}", notes


def init_home(
    home: Path,
    admin_user: Optional[str] = None,
    admin_key: Optional[Path] = None,
    from_gitolite: Optional[Path] = None,
    author: Optional[str] = None,
    repositories: Optional[Path] = None,
    move: bool = False,
    hostname: str = "",
) -> list[str]:
    """Create HOME; returns the lines to show the user. Raises AdminError/RepoError.

    With FROM_GITOLITE and/or REPOSITORIES, a Gitolite site is imported (see
    gitolite_import): its admin history onto master and its repositories, copied or, with
    MOVE, moved (put back if anything fails)."""
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise adminrepo.AdminError(f"{home} already exists and is not empty; refusing to overwrite it")
    importing = from_gitolite is not None or repositories is not None
    if importing and (admin_user or admin_key):
        raise adminrepo.AdminError("--from-gitolite imports the admin's keys; "
                               "add more keys later with `gitserve admin add-key`")
    if move and not importing:
        raise adminrepo.AdminError("--move needs --from-gitolite or --repositories")
    src: gitolite_import.Source | None = None
    plans: list[gitolite_import.RepoPlan] = []
    if importing:
        src, message, notes = _prepare_import(from_gitolite, repositories, hostname)
        files = src.files
        hostname = src.hostname
        if src.repositories is not None:
            plans, skipped = gitolite_import.plan_repositories(src.repositories)
            notes += [f"warning: {w}" for w in skipped]
    else:
        files, message, notes = _prepare_files(admin_user, admin_key)
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.init-", dir=home.parent))
    mover: gitolite_import.RepoMover | None = None
    try:
        s = settings_mod.Settings(home=tmp)
        s.server.hostname = hostname  # mirroring (README: Mirroring and failover)
        settings_mod.write(s)
        for d in (s.repos_dir, s.hooks_dir, s.logs_dir, s.sites_dir, s.run_dir):
            d.mkdir()
        s.host_keys_dir.mkdir(mode=0o700)
        host_fps = []
        for kind in HOST_KEYS:
            k = keys.write_keypair(s.host_keys_dir / f"ssh_host_{kind}_key", kind, "gitserve-host")
            host_fps.append(f"{kind} {k.fingerprint}")
        keys.write_keypair(tmp / "worker_key", "ed25519", "gitserve-builder")
        # mirroring: this server's own key for its peers (`gitserve admin server-key`)
        keys.write_keypair(s.server_key, "ed25519", "gitserve-server")
        fd = os.open(s.secrets_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        if src is not None and src.history is not None:
            gitolite_import.import_admin_history(s, src, author or cli_author(), message)
        else:
            adminrepo.create_admin_repo(s, files, author or cli_author(), message)
        adminrepo.migrate_branch(s)  # on master already: records it (see adminrepo/migrate.py)
        if plans:
            assert src is not None and src.repositories is not None
            mover = gitolite_import.RepoMover(s, move, src.repositories)
            for plan in plans:
                mover.bring(plan)
            notes.append(f"{'moved' if move else 'copied'} {len(plans)} repositories "
                         f"from {src.repositories}")
        created = adminrepo.compile(s)
        if mover is not None:
            notes += [f"note: {n}" for n in mover.clean()]
        try:
            if home.exists():
                home.rmdir()  # empty (checked above); rename needs it gone
            os.rename(tmp, home)
        except OSError:
            raise adminrepo.AdminError(
                f"{home} was created by someone else meanwhile; refusing to overwrite it") from None
    except BaseException:
        if mover is not None:
            mover.undo()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if mover is not None:
        mover.finish()
    names = [repos.ADMIN_REPO] + [n for n in created if n != repos.ADMIN_REPO]
    if plans:
        names += [f"{len(plans)} imported"]
    return [
        f"initialised gitserve home {home}",
        *notes,
        f"repositories: {', '.join(names)}",
        f"host keys: {'; '.join(host_fps)}",
        "start the server with: gitserve serve",
    ]


def add_commands(app: typer.Typer) -> None:
    @app.command("init")
    def init_cmd(
        admin_user: Annotated[Optional[str], typer.Option(
            "--admin", help="Admin user name (default: from the key file name, else 'admin').")] = None,
        admin_key: Annotated[Optional[Path], typer.Option(
            "--admin-key", help="The admin's SSH public key file.")] = None,
        from_gitolite: Annotated[Optional[Path], typer.Option(
            "--from-gitolite", help="Import a Gitolite site: the hosting user's home (admin "
            "history and repositories), or a gitolite-admin checkout or repository.")] = None,
        repositories: Annotated[Optional[Path], typer.Option(
            "--repositories", help="Gitolite's repositories directory to bring over "
            "(its gitolite-admin.git history too).")] = None,
        move: Annotated[bool, typer.Option(
            "--move", help="Move the repositories instead of copying them.")] = False,
        hostname: Annotated[str, typer.Option(
            "--hostname", help="This server's name among mirrors ([server] hostname; "
            "imported from a Gitolite rc's HOSTNAME).")] = "",
        home: HomeOption = None,
    ) -> None:
        """Create a server home: admin repo, host keys, worker key, settings."""
        target = settings_mod.resolve_home(home)
        try:
            if hostname and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", hostname):
                fail(f"init: --hostname must be a simple name, got {hostname!r}")
            lines = init_home(target, admin_user, admin_key, from_gitolite,
                              repositories=repositories, move=move, hostname=hostname)
        except (adminrepo.AdminError, repos.RepoError, keys.InvalidKey, OSError,
                gitolite_import.GitoliteImportError) as exc:
            fail(f"init: {exc}")
        for line in lines:
            print(line)
        sys.stdout.flush()
