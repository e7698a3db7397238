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

from gitserve import adminrepo, gitolite_import, gitolite_rc, keys, repos
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


def _carry_site(s: settings_mod.Settings, site: gitolite_rc.SiteSettings,
                takeover_sshd: bool) -> list[str]:
    """Write what the Gitolite site decided into S (gitserve.toml); the lines saying so."""
    lines = []
    if site.authorized_keys is not None and not takeover_sshd:
        # the system sshd keeps serving git@host:repo; `gitserve serve` swaps Gitolite's
        # forced commands in that file for `gitserve shell` ones
        s.server.authorized_keys = str(site.authorized_keys)
        s.server.public_port = 22
        lines.append(f"gitserve.toml: authorized_keys = '{site.authorized_keys}': `gitserve "
                     "serve` replaces Gitolite's forced commands there with `gitserve shell` "
                     "(users keep git@host:repo on the system sshd)")
    s.server.commands = " ".join(site.commands)
    s.server.git_config_keys = site.git_config_keys
    s.server.refex_expr = site.refex_expr
    s.server.default_branch = site.default_branch
    if site.ssh_user:
        s.server.ssh_user = site.ssh_user
    lines.append(f"gitserve.toml: default_branch = {site.default_branch!r}, ssh_user = "
                 f"{s.server.ssh_user!r}")
    if site.commands:
        lines.append(f"gitserve.toml: commands = {s.server.commands!r} (the rc's ENABLE)")
    if site.refex_expr:
        lines.append("gitserve.toml: refex_expr = true (the rc's ENABLE 'refex-expr')")
    if site.git_config_keys:
        lines.append(f"gitserve.toml: git_config_keys = {site.git_config_keys!r} (the rc's "
                     "GIT_CONFIG_KEYS; keys that run programs are still never written)")
    return lines


def _check_new_home(home: Path, source: Optional[Path]) -> list[str]:
    """`gitserve admin check` on the home being built: a home the admin could not push to is
    refused (nothing is put in place) with what to fix in the Gitolite site."""
    from gitserve.cli import admin_acl
    from gitserve.cli.admin import CHECKS

    try:
        report = admin_acl.run_checks(admin_acl.CheckTarget(conf=None, home=home), CHECKS)
    except admin_acl.CheckFailed as exc:
        raise adminrepo.AdminError(
            f"nothing imported: the result would fail `gitserve admin check`: {exc} "
            f"(fix that in {source} and run the import again)") from None
    return [f"warning: {w}" for w in report.warnings] + ["admin check: ok: " +
                                                         "; ".join(report.summary)]


def init_home(
    home: Path,
    admin_user: Optional[str] = None,
    admin_key: Optional[Path] = None,
    from_gitolite: Optional[Path] = None,
    author: Optional[str] = None,
    repositories: Optional[Path] = None,
    move: bool = False,
    sshd_host_keys: Optional[Path] = None,
    hostname: str = "",
) -> list[str]:
    """Create HOME; returns the lines to show the user. Raises AdminError/RepoError.

    With FROM_GITOLITE and/or REPOSITORIES, a Gitolite site is imported (see
    gitolite_import): its admin history onto master and its repositories, copied or, with
    MOVE, moved (put back if anything fails). Everything the site ran comes along: its rc's
    commands and config keys, its hosting user and default branch (gitserve.toml), LOCAL_CODE's
    hooks and VREFs; with SSHD_HOST_KEYS, that sshd's host keys instead of new ones. The new
    home must pass `admin check` before it is put in place."""
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise adminrepo.AdminError(f"{home} already exists and is not empty; refusing to overwrite it")
    importing = from_gitolite is not None or repositories is not None
    if importing and (admin_user or admin_key):
        raise adminrepo.AdminError("--from-gitolite imports the admin's keys; "
                               "add more keys later with `gitserve admin add-key`")
    if move and not importing:
        raise adminrepo.AdminError("--move needs --from-gitolite or --repositories")
    if sshd_host_keys is not None and not importing:
        raise adminrepo.AdminError("--takeover-sshd needs --from-gitolite or --repositories")
    src: gitolite_import.Source | None = None
    plans: list[gitolite_import.RepoPlan] = []
    local = gitolite_import.LocalCode()
    site = gitolite_rc.SiteSettings()
    if importing:
        src, message, notes = _prepare_import(from_gitolite, repositories, hostname)
        files = src.files
        hostname = src.hostname
        if src.repositories is not None:
            plans, skipped = gitolite_import.plan_repositories(src.repositories)
            notes += [f"warning: {w}" for w in skipped]
        site = src.site or gitolite_rc.SiteSettings(
            default_branch=gitolite_rc.host_default_branch(None))
        if site.local_code is not None:
            local = gitolite_import.plan_local_code(site.local_code)
            notes += [f"warning: {n}" for n in local.notes]
    else:
        files, message, notes = _prepare_files(admin_user, admin_key)
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.init-", dir=home.parent))
    mover: gitolite_import.RepoMover | None = None
    try:
        s = settings_mod.Settings(home=tmp)
        if importing:
            notes += _carry_site(s, site, sshd_host_keys is not None)
        s.server.hostname = hostname  # mirroring (README: Mirroring and failover)
        settings_mod.write(s)
        for d in (s.repos_dir, s.hooks_dir, s.logs_dir, s.sites_dir, s.run_dir):
            d.mkdir()
        s.host_keys_dir.mkdir(mode=0o700)
        host_fps = []
        if sshd_host_keys is not None:
            for name in gitolite_import.copy_host_keys(sshd_host_keys, s.host_keys_dir):
                k = keys.parse((s.host_keys_dir / f"{name}.pub").read_text()) \
                    if (s.host_keys_dir / f"{name}.pub").is_file() else None
                host_fps.append(f"{name} {k.fingerprint if k else ''} (from {sshd_host_keys})")
        else:
            for kind in HOST_KEYS:
                k = keys.write_keypair(s.host_keys_dir / f"ssh_host_{kind}_key", kind,
                                       "gitserve-host")
                host_fps.append(f"{kind} {k.fingerprint}")
        gitolite_import.install_local_code(tmp, local)
        if local.files:
            notes.append(f"copied from LOCAL_CODE {site.local_code}: "
                         f"{', '.join(rel for _src, rel in local.files)}")
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
        if importing:
            notes += _check_new_home(tmp, from_gitolite or repositories)
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
        takeover_sshd: Annotated[bool, typer.Option(
            "--takeover-sshd", help="Serve with the system sshd's host keys (copied from "
            "--sshd-host-keys), so clients see no changed host key when gitserve's server "
            "takes over its port.")] = False,
        sshd_host_keys: Annotated[Path, typer.Option(
            "--sshd-host-keys", help="Where --takeover-sshd finds ssh_host_*_key.")
        ] = Path("/etc/ssh"),
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
                              repositories=repositories, move=move, hostname=hostname,
                              sshd_host_keys=sshd_host_keys if takeover_sshd else None)
        except (adminrepo.AdminError, repos.RepoError, keys.InvalidKey, OSError,
                gitolite_import.GitoliteImportError) as exc:
            fail(f"init: {exc}")
        for line in lines:
            print(line)
        sys.stdout.flush()
