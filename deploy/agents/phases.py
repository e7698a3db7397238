"""The agent's side of a deploy on several hosts: the local blue-green code of
deploy/bluegreen.py cut into the two phases the server coordinates.

- prepare: RELEASE published on the idle side, its processes started, the preview config
  loaded, deploy.check 200 through the preview (bluegreen.prepare_locked); the live side is
  untouched; the site's state remembers what is prepared;
- rollback: a release kept on this host put on the idle side the same way;
- switch: the prepared release goes live (bluegreen.finish_switch: rename or reload, the
  old side drains, prune), only if it is still the one prepared on the idle side;
- abort: another host failed phase one: the idle side's processes stop, live stays.

Each phase takes the site's lock for its own length; the server holds its own lock on the
site across both, so no other deploy of the site comes between them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from gitserve.settings import Settings

from .. import bluegreen, processes, proclog, sitesctl
from ..errors import DeployError
from ..options import check_release_id, check_site_name, parse
from ..publish import clean_partials
from ..site import Site, all_sites, other_side

Log = Callable[[str], None]
PS_FIELDS = ("type", "side", "pid", "port", "started", "restarts", "state", "last_exit", "live")


def _site(settings: Settings, site: str) -> Site:
    return Site(settings.sites_dir, check_site_name(site))


def _where(s: Site) -> dict[str, Any]:
    live = s.live_side()
    return {"live_side": live, "live_release": s.slot_release(live),
            "idle_side": other_side(live), "idle_release": s.slot_release(other_side(live))}


def prepare(settings: Settings, site: str, output_dir: Path, options: Mapping[str, str],
            meta: Mapping[str, Any], say: Log) -> dict[str, Any]:
    opts = parse(site, options, settings.deploy.keep)
    release = check_release_id(meta.get("build_id", ""))
    bluegreen.check_ports(settings, opts)
    s = _site(settings, site)
    s.ensure()
    sitesctl.ensure_running(settings)
    with s.lock(f"phase one of build {release}", bluegreen.LOCK_TIMEOUT, say):
        state = s.load_state()
        state.pop("prepared", None)
        state["pending_options"] = {k: str(v) for k, v in options.items() if k.startswith("deploy.")}
        clean_partials(s.releases_dir)
        bluegreen.prepare_locked(settings, s, state, opts, Path(output_dir), release, meta, say)
        state["prepared"] = {"release": release, "action": "deploy",
                             "side": other_side(s.live_side()),
                             "meta": {k: meta.get(k) for k in ("repo", "ref", "commit", "pusher",
                                                               "pushed_at")}}
        s.save_state(state)
        return {**_where(s), "release": release}


def prepare_rollback(settings: Settings, site: str, target: str, action: str, say: Log
                     ) -> dict[str, Any]:
    """TARGET (kept on this host) started and checked on the idle side: rollback's phase one."""
    release = check_release_id(target)
    s = _site(settings, site)
    if not s.exists():
        raise DeployError("rollback", f"no site {s.name} on this host")
    sitesctl.ensure_running(settings)
    with s.lock(f"phase one of the {action} to {release}", bluegreen.LOCK_TIMEOUT, say):
        state = s.load_state()
        state.pop("prepared", None)
        live = s.live_side()
        if live is None:
            raise DeployError("rollback", f"site {s.name} has nothing live on this host")
        if not s.release_dir(release).is_dir():
            raise DeployError("rollback", f"release {release} is not kept on this host")
        if action == "restart":
            if release != s.slot_release(live):
                raise DeployError("restart", f"release {release} is not the one live on this host")
            if not processes.side_ports(settings, s.name, live):
                raise DeployError("restart", f"site {s.name} is static (no Procfile): nothing to restart")
        elif release == s.slot_release(live):
            raise DeployError("rollback", f"release {release} is already live on this host")
        opts = bluegreen.stored_options(s, state, settings)
        idle = bluegreen.prepare_kept(settings, s, opts, live, release, say)
        state["prepared"] = {"release": release, "action": action, "side": idle}
        s.save_state(state)
        return {**_where(s), "release": release}


def switch(settings: Settings, site: str, release: str, by: str | None, say: Log, log: Log
           ) -> dict[str, Any]:
    """Phase two: the release prepared on the idle side goes live. The wall-clock moment of
    the switch (the rename, or the reload a proxied site switches with) is returned, so the
    server can tell how far apart the hosts switched."""
    started = time.monotonic()
    s = _site(settings, site)
    moments: list[float] = []

    def said(line: str) -> None:
        if line.startswith("switch:"):
            moments.append(time.time())
        say(line)

    with s.lock(f"the switch to {release}", bluegreen.LOCK_TIMEOUT, say):
        state = s.load_state()
        prepared = state.get("prepared") or {}
        live = s.live_side()
        idle = other_side(live)
        if prepared.get("release") != release or s.slot_release(idle) != release:
            raise DeployError("switch", f"release {release} is not the one prepared on the idle "
                              f"side here (prepared: {prepared.get('release') or 'none'})")
        action = str(prepared.get("action") or "deploy")
        if action == "deploy":
            opts = parse(s.name, state.get("pending_options") or {}, settings.deploy.keep)
            meta: Mapping[str, Any] | None = {"build_id": release, **dict(prepared.get("meta") or {})}
        else:
            opts = bluegreen.stored_options(s, state, settings)
            meta = None
        state.pop("prepared", None)
        result = bluegreen.finish_switch(settings, s, opts, state, live, idle, release, action,
                                         by, said, log, None, meta, started)
    return {**_where(s), "release": result.release, "previous_release": result.previous_release,
            "switch_ms": round(result.switch_seconds * 1000, 1),
            "switched_at": moments[-1] if moments else time.time()}


def abort(settings: Settings, site: str, release: str, say: Log) -> dict[str, Any]:
    """Another host failed phase one: what this host prepared does not go live; its idle
    processes stop (a static release stays on the preview for inspection)."""
    s = _site(settings, site)
    if not s.exists():
        return {}
    with s.lock(f"the abort of {release}", bluegreen.LOCK_TIMEOUT, say):
        state = s.load_state()
        prepared = state.get("prepared") or {}
        if prepared.get("release") != release:
            return _where(s)
        idle = other_side(s.live_side())
        processes.stop_side(settings, s.name, idle)
        entry = state["releases"].get(release)
        if isinstance(entry, dict) and prepared.get("action") == "deploy":
            entry["status"] = "aborted"
        state.pop("prepared", None)
        s.save_state(state)
        say(f"aborted: {release} does not go live; the {idle} processes stopped")
        return _where(s)


def preview(settings: Settings, site: str, output_dir: Path, options: Mapping[str, str],
            meta: Mapping[str, Any], say: Log) -> dict[str, Any]:
    """A branch's build at BRANCH.SERVER_NAME on this host (options carry deploy.preview):
    bluegreen's own preview deploy, which never touches blue/green."""
    result = bluegreen.deploy_release(settings, site, Path(output_dir), options, meta,
                                      lambda line: say(line.split(": ", 1)[1] if line.startswith("deploy ") else line))
    return {"release": result.release, "preview": str(options.get("deploy.preview") or "")}


def unpreview(settings: Settings, site: str, branch: str, say: Log) -> dict[str, Any]:
    """The branch was deleted: its preview goes on this host."""
    removed = bluegreen.remove_branch_preview(settings, site, branch, log=say)
    return {"removed": bool(removed)}


def report(settings: Settings) -> dict[str, Any]:
    """What this host serves, per site (the status report the agent keeps in Redis)."""
    sites: dict[str, Any] = {}
    for name in all_sites(settings.sites_dir):
        try:
            s = Site(settings.sites_dir, name)
            state = s.load_state()
        except DeployError:
            continue
        where = _where(s)
        last: dict[str, Any] = next((h for h in reversed(state["history"])
                     if h.get("release") == where["live_release"]), {})
        rows = proclog.ps_rows(settings, name)  # `deploy ps` on the server shows them
        sites[name] = {**where, "since": last.get("at"), "action": last.get("action"),
                       "prepared": (state.get("prepared") or {}).get("release"),
                       "kept": [r for r in state["deployed"] if s.release_dir(r).is_dir()],
                       "processes": len([r for r in rows if r.get("side") == where["live_side"]
                                         and r.get("pid") and r.get("state") != "draining"]),
                       "ps": [{k: r.get(k) for k in PS_FIELDS} for r in rows]}
    return sites
