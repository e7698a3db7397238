"""Preview sites for branches (SPEC §7.1): `option deploy.previews = 1` puts a passed build
of any branch other than deploy.ref live at `BRANCH.SERVER_NAME` (the first name of
`deploy.server-name`) on the site's own port; deleting the branch removes it; at most
`deploy.previews-max` (default 5) exist, the least recently deployed one goes first.

```
HOME/sites/SITE/previews/SLUG/releases/BUILD/   the preview's published files
HOME/sites/SITE/previews/SLUG/current -> releases/BUILD   (renamed in: atomic for readers)
```
SLUG is the branch as a DNS label (lower case, `[a-z0-9-]`, at most 63; with a hash of the
name when another branch has the same one: feature/a and feature-a). The site's nginx
config gets one server block per preview (server_name SLUG.SERVER_NAME, root `current`),
re-rendered and reloaded under the site's lock like any deploy. A Procfile release runs
its processes as a side of its own (`preview-SLUG`, deploy/processes.py), under `gitserve
sites` with the [sites] limits like blue and green, and the preview's server block proxies
to them; a new build of the branch starts the new set and drains the old one, deleting the
branch or evicting the preview (deploy.previews-max) stops them. A static release is served
as files.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from gitserve.settings import Settings

from . import processes, procfile
from .errors import DeployError
from .options import SiteOptions, check_release_id
from .publish import clean_partials, publish, remove_release
from .site import Site

Log = Callable[[str], None]
DEFAULT_MAX = 5
CHECK_TIMEOUT = 10.0
PROCESS_CHECK_TIMEOUT = 60.0   # processes starting: nginx's 502/503/504 are retried this long


def slug(branch: str) -> str:
    """BRANCH as one DNS label: feature/Login_2 -> feature-login-2 (a long one keeps a hash
    of the whole name, so two long branches never share a preview)."""
    label = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-") or "branch"
    if len(label) > 63:
        digest = hashlib.sha256(branch.encode()).hexdigest()[:8]
        label = label[:54].rstrip("-") + "-" + digest
    return label


def label_for(state: Mapping[str, Any], branch: str) -> str:
    """The DNS label of BRANCH's preview: the one it has, else its slug, unless another
    branch has that (feature/a and feature-a): then the slug with a hash of the name, so
    neither replaces or removes the other's preview."""
    previews = dict(state.get("previews") or {})
    for label, meta in previews.items():
        if meta.get("branch") == branch:
            return str(label)
    label = slug(branch)
    if label in previews:
        digest = hashlib.sha256(branch.encode()).hexdigest()[:8]
        label = label[:54].rstrip("-") + "-" + digest
    return label


def server_name(opts: SiteOptions) -> str:
    name = opts.server_name.split()[0] if opts.server_name else ""
    if not name or "*" in name or "~" in name:
        raise DeployError("options", "deploy.previews needs deploy.server-name (a plain host name: "
                          "previews live at BRANCH.SERVER_NAME)")
    return name


def preview_root(s: Site, label: str) -> Path:
    return s.root / "previews" / label


def listed(s: Site, state: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """(host, root) of every preview the site config must serve."""
    out = []
    for label, meta in sorted(dict(state.get("previews") or {}).items()):
        root = preview_root(s, label) / "current"
        if root.exists():
            out.append((str(meta.get("host")), root))
    return out


def _point(root: Path, release: str) -> None:
    import os

    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/{release}", tmp)
    os.replace(tmp, root / "current")


def _drop(s: Site, state: dict[str, Any], label: str) -> None:
    import shutil

    state.setdefault("previews", {}).pop(label, None)
    shutil.rmtree(preview_root(s, label), ignore_errors=True)


def check(opts: SiteOptions, host: str, path: str, timeout: float = CHECK_TIMEOUT,
          retry: tuple[int, ...] | None = None) -> int:
    """GET PATH on the site's own port with Host: HOST (what a visitor of the preview does),
    again until 200 or TIMEOUT; with RETRY, only those answers are tried again (nginx's
    502/503/504 while processes start), any other is the app's own and final."""
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(opts.listen.connect_host(), opts.listen.port, timeout=2)
        try:
            conn.request("GET", path, headers={"Host": host, "User-Agent": "gitserve-deploy-check"})
            status = conn.getresponse().status
            if status == 200 or (retry is not None and status not in retry):
                return status
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return status


def _held_by(reload: Any) -> list[int]:
    """The nginx workers a reload left finishing requests (deploy/nginx/control.py Reload)."""
    alive = getattr(reload, "old_workers_alive", None)
    return list(alive()) if callable(alive) else []


def _start_processes(settings: Settings, s: Site, opts: SiteOptions, label: str, release_dir: Path,
                     release: str, runtime: Mapping[str, Any], say: Log) -> bool:
    """Run RELEASE's Procfile processes as the preview's side (False: a static release). The
    set the branch ran before is not killed: it drains beside the new one (deploy.drain)."""
    side = processes.preview_side(label)
    commands = procfile.read(release_dir)
    if commands is None:
        processes.stop_side(settings, s.name, side)  # a Procfile build of the branch before
        return False
    missing = [kind for kind in [opts.web, *(k for _, k in opts.routes)] if kind not in commands]
    if missing:
        raise DeployError("procfile", f"Procfile has no {missing[0]} process (deploy.web / "
                          f"deploy.routes name it; it has {', '.join(sorted(commands))})")
    processes.stop_side(settings, s.name, side, after=opts.drain)
    uid = runtime.get("uid")
    ports = processes.start_side(settings, s.name, side, release, release_dir, commands,
                                 dict(runtime.get("env") or {}), int(uid) if uid is not None else None)
    try:
        processes.wait_running(settings, s.name, side, PROCESS_CHECK_TIMEOUT)
    except DeployError:
        processes.stop_side(settings, s.name, side)
        raise
    say(f"preview processes: {' '.join(f'{k}:{p}' for k, p in sorted(ports.items()))} "
        f"(release {release})")
    return True


def deploy_preview(s: Site, state: dict[str, Any], opts: SiteOptions, branch: str, output: Path,
                   meta: Mapping[str, Any], apply: Callable[[], Any], say: Log,
                   limit: int, *, settings: Settings | None = None, runtime: Mapping[str, Any] | None = None) -> str:
    """Publish OUTPUT as BRANCH's preview and serve it (APPLY re-renders and reloads the
    site's config and returns the reload); returns its URL. Runs under the site's lock.
    With SETTINGS, a Procfile release's processes run (RUNTIME: env and uid, as a deploy's);
    without, a preview serves files only."""
    host_base = server_name(opts)
    label = label_for(state, branch)
    host = f"{label}.{host_base}"
    release = check_release_id(meta.get("build_id", ""))
    root = preview_root(s, label)
    (root / "releases").mkdir(parents=True, exist_ok=True)
    clean_partials(root / "releases")
    previews = state.setdefault("previews", {})
    evicted: list[str] = []
    if label not in previews:
        while len(previews) >= limit:
            oldest = min(previews, key=lambda k: str(previews[k].get("at", "")))
            say(f"preview {previews[oldest].get('branch')} removed (deploy.previews-max = {limit})")
            _drop(s, state, oldest)
            evicted.append(oldest)
    if (root / "releases" / release).exists():
        remove_release(root / "releases", release)
    before = (root / "current").resolve().name if (root / "current").is_symlink() else None
    files, size = publish(output, root / "releases", release)
    say(f"preview: {files} files, {size} bytes of branch {branch} as release {release}")
    running = settings is not None and _start_processes(
        settings, s, opts, label, root / "releases" / release, release, runtime or {}, say)
    _point(root, release)
    for old in [p.name for p in (root / "releases").iterdir() if p.name not in (release, before)]:
        remove_release(root / "releases", old)  # the one before stays while its processes drain
    previews[label] = {"branch": branch, "host": host, "release": release,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "commit": meta.get("commit"), "pusher": meta.get("pusher"),
                       "processes": bool(running)}
    s.save_state(state)
    reload = apply()
    if settings is not None:
        for gone in evicted:  # nginx no longer sends them anything new
            processes.stop_side(settings, s.name, processes.preview_side(gone), hold=_held_by(reload))
    url = f"http://{host}:{opts.listen.port}/"
    if not running and (root / "current" / "Procfile").is_file():
        say(f"preview live at {url} (files only: a preview runs no Procfile process)")
        return url
    status = (check(opts, host, opts.check, PROCESS_CHECK_TIMEOUT, retry=(0, 502, 503, 504)) if running
              else check(opts, host, opts.check))
    if status != 200:
        if running and settings is not None:  # nothing to inspect once stopped: the preview
            # goes, as a failed idle side
            previews.pop(label, None)
            s.save_state(state)
            processes.stop_side(settings, s.name, processes.preview_side(label), hold=_held_by(apply()))
            _drop(s, state, label)
            s.save_state(state)
        raise DeployError("check", f"GET {opts.check} on the preview {url} answered "
                          f"{status or 'nothing'}, not 200" + ("; its processes are stopped" if running else ""))
    say(f"preview live at {url}")
    return url


def remove_preview(s: Site, state: dict[str, Any], branch: str, apply: Callable[[], Any],
                   say: Log, *, settings: Settings | None = None) -> bool:
    """The branch is gone: so is its preview and, with SETTINGS, its processes (once nginx's
    workers that may still send them a request are gone). False when it had none."""
    label = next((k for k, meta in dict(state.get("previews") or {}).items()
                  if meta.get("branch") == branch), None)  # never another branch's, same slug
    if label is None:
        return False
    state["previews"].pop(label)
    s.save_state(state)
    reload = apply()  # nginx stops serving it before the files go
    if settings is not None:
        processes.stop_side(settings, s.name, processes.preview_side(label), hold=_held_by(reload))
    _drop(s, state, label)
    s.save_state(state)
    say(f"preview of branch {branch} removed")
    return True


def settings_limit(options: Mapping[str, str]) -> int:
    raw = str(options.get("deploy.previews-max", DEFAULT_MAX)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise DeployError("options", f"option deploy.previews-max = {raw!r}: need 1-100")
    return int(raw)


def enabled(options: Mapping[str, str]) -> bool:
    return str(options.get("deploy.previews", "")).strip().lower() in ("1", "yes", "true", "on")

