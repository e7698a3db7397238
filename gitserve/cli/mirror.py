"""`gitserve mirror promote | push SLAVE REPO | status` and `gitserve admin server-key`.

Run on the server host. `promote` is the failover step (README: "Mirroring and failover");
`push` and `status` are Gitolite's `gitolite mirror push|status` on the server command line
(no access check: the person at the server's shell may do anything).
"""

from __future__ import annotations

from typing import Annotated

import typer

from gitserve import repos
from gitserve.mirror import state
from gitserve.mirror.config import MASTER, MirrorError
from gitserve.mirror.promotion import promote as do_promote
from gitserve.mirror.promotion import rejoin as do_rejoin
from gitserve.mirror.syncer import mirror_of, push_one
from gitserve.mirror.transport import Transport, ensure_server_key
from gitserve.settings import Settings

from .admin_keys import cli_author
from .common import HomeOption, fail, load_settings

app = typer.Typer(help="Mirroring between gitserve servers (Gitolite's mirror command).",
                  no_args_is_help=True)


@app.command("promote")
def promote(home: HomeOption = None,
            force: Annotated[bool, typer.Option(
                "--force", help="Promote although another slave cannot be asked how far it "
                                "got (what only it had is lost).")] = False) -> None:
    """Make this slave the master of every repo it mirrors (after the master failed)."""
    settings = load_settings(home)
    try:
        report = do_promote(settings, cli_author(), force=force)
    except MirrorError as exc:
        fail(str(exc))
    for line in report.lines(settings.server.hostname):
        print(line)


@app.command("rejoin")
def rejoin(master: str, home: HomeOption = None) -> None:
    """Make this old master a slave of MASTER (after a promote there; stop this server first)."""
    settings = load_settings(home)
    try:
        lines = do_rejoin(settings, master)
    except MirrorError as exc:
        fail(str(exc))
    for line in lines:
        print(line)


def _existing_repo(settings: Settings, repo: str) -> str:
    """REPO's name, or one line and exit 1 unless it names an existing repository."""
    try:
        name = repos.parse_repo_arg(repo)
    except repos.RepoError as exc:
        fail(str(exc))
    if not repos.exists(settings, name):
        fail(f"repository '{name}' does not exist")
    return name


@app.command("push")
def push(slave: str, repo: str, home: HomeOption = None) -> None:
    """Push REPO to SLAVE now (whether or not SLAVE is listed for it)."""
    settings = load_settings(home)
    name = _existing_repo(settings, repo)
    transport = Transport(settings)
    try:
        ok, out = push_one(settings, transport, name, slave, force=True)
    except MirrorError as exc:
        fail(str(exc))
    finally:
        transport.close()
    if out:
        typer.echo(out.rstrip("\n"), err=True)
    if not ok:
        raise typer.Exit(1)


@app.command("status")
def status(repo: Annotated[str, typer.Argument()] = "all", home: HomeOption = None) -> None:
    """Repos with a failed mirror push (Gitolite's `mirror status all all`), or REPO's
    slaves with what each has."""
    settings = load_settings(home)
    if repo == "all":
        for name in repos.list_names(settings):
            if state.failed_slaves(repos.path(settings, name)):
                print(name)
        return
    name = _existing_repo(settings, repo)
    mirror = mirror_of(settings, name)
    repo_dir = repos.path(settings, name)
    hostname = settings.server.hostname
    mode = mirror.mode(hostname)
    print(f"{name}: {mode} on {hostname or '(no hostname)'}; master {mirror.master or '-'}; "
          f"seq {state.seq_of(repo_dir)}")
    if mode != MASTER:
        return
    refs, meta = state.refs_digest(repo_dir), state.read_meta(repo_dir).digest()
    for slave in mirror.copies:
        synced = state.read_synced(repo_dir, slave)
        ok = synced.get("refs") == refs and synced.get("meta") == meta
        print(f"  {slave}: {'in sync' if ok else 'behind'} (seq {synced.get('seq', 0)})")
        text = state.status_text(name, repo_dir, slave)
        if text:
            print(text, end="")


def server_key(home: HomeOption = None) -> None:
    """Print this server's public key, to add as keydir/server-HOSTNAME.pub on its peers."""
    settings = load_settings(home)
    if not settings.admin_repo.exists():
        fail(f"{settings.home} is not a gitserve home (run `gitserve init` first)")
    print(ensure_server_key(settings))


def add_admin_commands(admin_app: typer.Typer) -> None:
    admin_app.command("server-key")(server_key)
