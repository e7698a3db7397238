"""`gitserve deploy status SITE` and `gitserve deploy rollback SITE [--to BUILD]` (SPEC §3, §7)."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from gitserve.settings import Settings

from .common import HomeOption, fail, load_settings

app = typer.Typer(help="Blue-green deploys: what is live, and rolling back.", no_args_is_help=True)

SiteArgument = Annotated[str, typer.Argument(help="Site name (option deploy.site).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TypeArgument = Annotated[Optional[str], typer.Argument(metavar="[TYPE]", help="Only this process type.")]


@contextlib.contextmanager
def _refusals(step: str = "", site: str = "") -> Iterator[None]:
    """A DeployError is one line and exit 1: its message, after `STEP SITE: ` for a switch
    (rollback, restart), where a failure of another step names that step too."""
    from deploy import DeployError

    try:
        yield
    except DeployError as exc:
        fail(f"{step} {site}: {exc.message if exc.step == step else exc}" if step else exc.message)


def _show(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=1) if as_json else text(data))


@app.command("status")
def status(site: SiteArgument, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Live side, its release, build, commit, when and by whom; the releases kept."""
    from deploy.status import format_status, site_status

    settings = load_settings(home)
    with _refusals():
        hosts = _coordinator(settings, site)
        if hosts is not None:  # a site on deploy agents: each host's report
            from deploy.agents.coordinator import format_status as format_hosts

            _show(hosts.status(settings, site), as_json, format_hosts)
            return
        st = site_status(settings, site)
    _show(st, as_json, format_status)


def _coordinator(settings: Settings, site: str) -> Any:
    """The deploy agents' coordinator when SITE is served by deploy.hosts, else None."""
    from deploy.agents import record
    from deploy.agents.coordinator import Coordinator

    return Coordinator.for_settings(settings) if record.exists(settings, site) else None


@app.command("rollback")
def rollback(
    site: SiteArgument,
    to: Annotated[Optional[str], typer.Option("--to", help="Build id of a kept release.")] = None,
    home: HomeOption = None,
) -> None:
    """Switch live back to the previous release (or --to BUILD) in one step."""
    from deploy import bluegreen

    settings = load_settings(home)
    with _refusals("rollback", site):
        hosts = _coordinator(settings, site)
        (hosts.rollback if hosts is not None else bluegreen.rollback)(
            settings, site, to=to, by=getpass.getuser(), log=lambda line: print(line, flush=True))
    sys.stdout.flush()


@app.command("ps")
def ps(site: SiteArgument, as_json: JsonOption = False, home: HomeOption = None) -> None:
    """The site's processes: type, side, pid, port, uptime, restarts, state."""
    from deploy import proclog

    settings = load_settings(home)
    with _refusals():
        hosts = _coordinator(settings, site)
        if hosts is not None:  # deploy.hosts: each host's processes as it reported them
            from deploy.agents.coordinator import format_ps as format_hosts

            st = hosts.status(settings, site)
            _show({h["host"]: h.get("ps") for h in st["hosts"]}, as_json, lambda _: format_hosts(site, st))
            return
        rows = proclog.ps_rows(settings, site)
    _show(rows, as_json, lambda r: proclog.format_ps(site, r))


@app.command("logs")
def logs(
    site: SiteArgument,
    kind: TypeArgument = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then new lines as they come.")] = False,
    home: HomeOption = None,
) -> None:
    """The output of the site's processes (the last 100 lines)."""
    from deploy import proclog

    settings = load_settings(home)
    with _refusals(), contextlib.suppress(KeyboardInterrupt):
        for line in proclog.log_lines(settings, site, kind):
            print(line, flush=True)
        if follow:
            for line in proclog.follow(settings, site, kind, stop=lambda: False):
                print(line, flush=True)


@app.command("restart")
def restart(
    site: SiteArgument,
    kind: TypeArgument = None,
    home: HomeOption = None,
) -> None:
    """Restart the live release's processes with no failed request (on the idle side, then switch)."""
    from deploy import bluegreen

    settings = load_settings(home)
    with _refusals("restart", site):
        hosts = _coordinator(settings, site)
        if hosts is not None and kind is None:  # deploy.hosts: every host, two phases
            hosts.restart(settings, site, by=getpass.getuser(), log=lambda line: print(line, flush=True))
            return
        if hosts is not None:
            fail(f"restart {site}: a single process type is restarted on its web host "
                 "(gitserve deploy restart SITE TYPE there)")
        bluegreen.restart(settings, site, by=getpass.getuser(), log=lambda line: print(line, flush=True),
                          kind=kind)


@app.command("agent-key")
def agent_key(
    name: Annotated[str, typer.Argument(help="The deploy agent's name (as in option deploy.hosts).")],
    home: HomeOption = None,
) -> None:
    """Print the key this server shares with deploy agent NAME (made on first use): put it
    in the agent's home as agent.key, mode 0600."""
    from deploy.agents import auth

    settings = load_settings(home)
    with _refusals():
        key = auth.ensure_server_key(settings, name)
    print(key.hex())
