"""What a site serves now and what it could roll back to (`deploy status SITE`).

Sides and releases are read from the symlinks (what nginx really serves); state.json adds
who pushed what and when.
"""

from __future__ import annotations

from typing import Any

from gitserve.settings import Settings

from .errors import DeployError
from .options import check_site_name
from .site import Site, all_sites, other_side


def site_repo(settings: Settings, site: str) -> str | None:
    """The repo whose pushes deploy SITE (access to the site follows access to it)."""
    try:
        s = Site(settings.sites_dir, site)
    except DeployError:
        return None
    if not s.state_file.exists():
        return None
    repo = s.load_state().get("repo")
    return repo if isinstance(repo, str) and repo else None


def list_sites(settings: Settings) -> list[str]:
    return all_sites(settings.sites_dir)


def site_status(settings: Settings, site: str) -> dict[str, Any]:
    s = Site(settings.sites_dir, check_site_name(site))
    if not s.state_file.exists():
        raise DeployError("status", f"no site {site}")
    state = s.load_state()
    live = s.live_side()
    live_release = s.slot_release(live)
    idle = other_side(live) if live else None
    switch: dict[str, Any] = next((h for h in reversed(state["history"])
                   if h.get("release") == live_release and h.get("side") == live), {})
    order = [r for r in state["deployed"] if s.release_dir(r).is_dir()]
    others = [r for r in s.releases_on_disk() if r not in order]
    rollback_to = None
    if live_release in order and order.index(live_release) > 0:
        rollback_to = order[order.index(live_release) - 1]
    releases = []
    for release in list(reversed(order)) + sorted(others):
        meta = dict(state["releases"].get(release, {"build_id": release}))
        meta["release"] = release
        meta["live"] = release == live_release
        meta["side"] = next((side for side in ("blue", "green") if s.slot_release(side) == release), None)
        releases.append(meta)
    return {
        "site": s.name,
        "repo": state.get("repo"),
        "live_side": live,
        "live_release": live_release,
        "idle_side": idle,
        "idle_release": s.slot_release(idle),
        "since": switch.get("at"),
        "by": switch.get("by"),
        "action": switch.get("action"),
        "url": state.get("listen"),
        "preview_url": state.get("preview"),
        "rollback_to": rollback_to,
        "releases": releases,
        "history": state["history"][-10:],
        "processes": _processes(settings, s.name, live),
        "previews": [{"branch": m.get("branch"), "host": m.get("host"), "release": m.get("release"),
                      "at": m.get("at")} for _, m in sorted(dict(state.get("previews") or {}).items())],
    }


def _processes(settings: Settings, site: str, live: str | None) -> list[dict[str, Any]]:
    """The site's processes as `gitserve sites` last reported them (SPEC §7.1)."""
    from .processes import read_status

    rows = read_status(settings, site)
    for row in rows:
        row["live"] = row.get("side") == live and row.get("state") != "draining"
    return sorted(rows, key=lambda r: (not r["live"], r.get("side") or "", r.get("type") or ""))


def format_status(st: dict[str, Any]) -> str:
    def short(commit: Any) -> str:
        return str(commit)[:12] if commit else "-"

    out = [f"site {st['site']}" + (f" (repo {st['repo']})" if st.get("repo") else "")]
    if st["live_side"] is None:
        out.append("live:     nothing deployed yet")
    else:
        meta: dict[str, Any] = next((r for r in st["releases"] if r["release"] == st["live_release"]), {})
        out.append(
            f"live:     {st['live_side']}  release {st['live_release']}  build {meta.get('build_id', '-')}"
            f"  commit {short(meta.get('commit'))}  ref {meta.get('ref') or '-'}")
        out.append(f"since:    {st.get('since') or '-'}  by {st.get('by') or '-'}"
                   f" ({st.get('action') or 'deploy'}; pushed by {meta.get('pusher') or '-'})")
        out.append(f"idle:     {st['idle_side']}  release {st['idle_release'] or '-'}")
    out.append(f"url:      {st.get('url') or '-'}  preview {st.get('preview_url') or '-'}")
    out.append(f"rollback: {'to ' + st['rollback_to'] if st.get('rollback_to') else 'no earlier release kept'}")
    if st.get("processes"):
        from .proclog import format_ps

        out.append("processes:")
        out.extend("  " + line for line in format_ps(st["site"], st["processes"]).splitlines())
    for p in st.get("previews") or []:
        out.append(f"preview:  {p['branch']} at {p['host']} (release {p['release']}, {p['at']})")
    out.append("releases (newest first):")
    for r in st["releases"]:
        mark = "*" if r["live"] else " "
        side = r.get("side") or "-"
        out.append(f" {mark} {r['release']:<14} {side:<5} {r.get('status', '-'):<12} commit "
                   f"{short(r.get('commit'))}  by {r.get('pusher') or '-'}  "
                   f"deployed {r.get('deployed_at') or '-'}")
    return "\n".join(out)
