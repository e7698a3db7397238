"""`gitserve init`: create a server home (SPEC §2) with its admin repo, host keys and worker key.

Everything is built in a temporary directory beside HOME and renamed into place at the
end, so a failed init (bad key, bad imported conf, full disk) leaves nothing behind and
a second attempt starts clean. An existing home is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from gitserve import admin, keys, repos
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


def _compiled_by_gitolite(name: str) -> bool:
    """Files a Gitolite server writes into ~/.gitolite/conf when it compiles (not sources)."""
    return name.endswith("-compiled.pm") or name == "rule_info"


def _read_checkout(path: Path) -> dict[str, bytes]:
    """conf/ and keydir/ files of a gitolite-admin checkout (or bare repo, at HEAD)."""
    if (path / "conf" / "gitolite.conf").is_file() or (path / "conf").is_dir():
        files: dict[str, bytes] = {}
        for top in (admin.CONF_DIR, admin.KEYDIR):
            root = path / top
            if not root.exists():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d != ".git")
                for d in dirnames:
                    if os.path.islink(os.path.join(dirpath, d)):
                        rel = os.path.relpath(os.path.join(dirpath, d), path)
                        raise admin.AdminError(f"{rel}: symlinks are not imported")
                for name in sorted(filenames):
                    if top == admin.CONF_DIR and _compiled_by_gitolite(name):
                        continue
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, path).replace(os.sep, "/")
                    if os.path.islink(full):
                        raise admin.AdminError(f"{rel}: symlinks are not imported")
                    with open(full, "rb") as f:
                        files[rel] = f.read()
        return files
    try:
        from dulwich.repo import Repo

        repo = Repo(str(path))
    except Exception:
        raise admin.AdminError(
            f"{path}: not a gitolite-admin checkout (no conf/gitolite.conf)") from None
    try:
        return admin.tree_files(repo, repo[repo.head()].tree)
    except KeyError:
        raise admin.AdminError(f"{path}: repository has no commit at HEAD") from None
    finally:
        repo.close()


def _prepare_files(
    admin_user: Optional[str], admin_key: Optional[Path], from_gitolite: Optional[Path]
) -> tuple[dict[str, bytes], str, list[str]]:
    """(admin tree files, commit message, lines to print); validated, nothing written."""
    if from_gitolite is not None:
        if admin_user or admin_key:
            raise admin.AdminError("--from-gitolite imports the admin's keys; "
                                   "add more keys later with `gitserve admin add-key`")
        src = from_gitolite.expanduser()
        if not src.exists():
            raise admin.AdminError(f"{src}: no such directory")
        files = _read_checkout(src)
        try:
            _, entries, warnings = admin.build(files)
        except admin.AdminError as exc:
            raise admin.AdminError(f"{src}: {exc}") from None
        users = sorted({e.user for e in entries})
        notes = [f"imported {len(files)} files from {src} ({len(entries)} keys, "
                 f"users: {', '.join(users) or 'none'})"]
        notes += [f"warning: {w}" for w in warnings]
        return files, f"Import gitolite-admin from {src}", notes
    key_line = None
    if admin_key is not None:
        try:
            key_text = admin_key.expanduser().read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise admin.AdminError(f"{admin_key}: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            key = keys.parse_file_text(key_text)
        except keys.InvalidKey as exc:
            raise admin.AdminError(f"{admin_key}: invalid key: {exc}") from None
        if not key.verifiable:
            raise admin.AdminError(f"{admin_key}: {key.key_type} keys cannot be verified by "
                                   "this server; use an ed25519, ecdsa or rsa key")
        if admin_user is None:  # like `gitolite setup -pk alice.pub`
            try:
                admin_user = keys.check_keyfile_path(admin_key.name)
            except keys.InvalidKey:
                raise admin.AdminError(f"cannot name the admin after {admin_key.name}; "
                                       "give --admin USER") from None
        key_line = key.openssh() + "\n"
    user = admin_user or DEFAULT_ADMIN
    try:
        stem = keys.keyfile_stem_for(user)
        if keys.check_keyfile_path(f"{stem}.pub") != user:
            raise keys.InvalidKey(f"{user!r} is not a valid user name (it reads as a key label)")
    except keys.InvalidKey as exc:
        raise admin.AdminError(f"--admin: {exc}") from None
    files = {admin.MAIN_CONF: default_conf(user).encode()}
    notes = []
    if key_line:
        files[f"{admin.KEYDIR}/{user}.pub"] = key_line.encode()
        k = keys.parse(key_line)
        notes.append(f"admin user: {user} (key {k.label} {k.fingerprint})")
    else:
        notes.append(f"admin user: {user} (no key yet: `gitserve admin add-key {user} FILE`)")
    admin.build(files)
    return files, f"gitserve init: admin {user}", notes


def init_home(
    home: Path,
    admin_user: Optional[str] = None,
    admin_key: Optional[Path] = None,
    from_gitolite: Optional[Path] = None,
    author: Optional[str] = None,
) -> list[str]:
    """Create HOME; returns the lines to show the user. Raises AdminError/RepoError."""
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise admin.AdminError(f"{home} already exists and is not empty; refusing to overwrite it")
    files, message, notes = _prepare_files(admin_user, admin_key, from_gitolite)
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.init-", dir=home.parent))
    try:
        s = settings_mod.Settings(home=tmp)
        settings_mod.write(s)
        for d in (s.repos_dir, s.hooks_dir, s.logs_dir, s.sites_dir, s.run_dir):
            d.mkdir()
        s.host_keys_dir.mkdir(mode=0o700)
        host_fps = []
        for kind in HOST_KEYS:
            k = keys.write_keypair(s.host_keys_dir / f"ssh_host_{kind}_key", kind, "gitserve-host")
            host_fps.append(f"{kind} {k.fingerprint}")
        keys.write_keypair(tmp / "worker_key", "ed25519", "gitserve-builder")
        fd = os.open(s.secrets_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        admin.create_admin_repo(s, files, author or cli_author(), message)
        created = admin.compile(s)
        try:
            if home.exists():
                home.rmdir()  # empty (checked above); rename needs it gone
            os.rename(tmp, home)
        except OSError:
            raise admin.AdminError(
                f"{home} was created by someone else meanwhile; refusing to overwrite it") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    names = [repos.ADMIN_REPO] + [n for n in created if n != repos.ADMIN_REPO]
    return [
        f"initialised gitserve home {home}",
        *notes,
        f"repositories: {', '.join(names)}",
        f"host keys: {'; '.join(host_fps)}",
        "start the server with: gitserve serve",
    ]


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_cmd(
        admin_user: Annotated[Optional[str], typer.Option(
            "--admin", help="Admin user name (default: from the key file name, else 'admin').")] = None,
        admin_key: Annotated[Optional[Path], typer.Option(
            "--admin-key", help="The admin's SSH public key file.")] = None,
        from_gitolite: Annotated[Optional[Path], typer.Option(
            "--from-gitolite", help="Import conf/ and keydir/ of a gitolite-admin checkout.")] = None,
        home: HomeOption = None,
    ) -> None:
        """Create a server home: admin repo, host keys, worker key, settings."""
        target = settings_mod.resolve_home(home)
        try:
            lines = init_home(target, admin_user, admin_key, from_gitolite)
        except (admin.AdminError, repos.RepoError, keys.InvalidKey, OSError) as exc:
            fail(f"init: {exc}")
        for line in lines:
            print(line)
        sys.stdout.flush()
