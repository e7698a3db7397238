"""The server's record of a site served by deploy agents (HOME/agents/sites/SITE.json).

The truth about what a host serves is on that host (its symlinks, reported in its status);
this record is what the server needs without asking: which repo deploys the site (access
to `deploy status|rollback` follows it), which hosts serve it, the options of the last
deploy, the releases that went live everywhere in order (rollback's targets) and a short
history with per-host sides and switch times. The lock file serializes the site's deploys
and rollbacks across both phases.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from gitserve.fsutil import atomic_write, locked
from gitserve.settings import Settings

from ..errors import DeployError
from ..options import check_site_name

HISTORY_MAX = 100


def sites_dir(settings: Settings) -> Path:
    return settings.home / "agents" / "sites"


def path(settings: Settings, site: str) -> Path:
    return sites_dir(settings) / f"{check_site_name(site)}.json"


def exists(settings: Settings, site: str) -> bool:
    try:
        return path(settings, site).is_file()
    except DeployError:
        return False


def load(settings: Settings, site: str) -> dict[str, Any]:
    p = path(settings, site)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise DeployError("state", f"{p}: {exc}") from None
    data.setdefault("site", site)
    data.setdefault("hosts", [])
    data.setdefault("deployed", [])
    data.setdefault("history", [])
    data.setdefault("live", {})
    return data


def save(settings: Settings, site: str, data: dict[str, Any]) -> None:
    data["history"] = data["history"][-HISTORY_MAX:]
    p = path(settings, site)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(p, json.dumps(data, indent=1, sort_keys=True), durable=True)


def site_repo(settings: Settings, site: str) -> str | None:
    """The repo whose pushes deploy SITE to its hosts (None: no such site on hosts)."""
    if not exists(settings, site):
        return None
    repo = load(settings, site).get("repo")
    return repo if isinstance(repo, str) and repo else None


def list_sites(settings: Settings) -> list[str]:
    d = sites_dir(settings)
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


@contextmanager
def lock(settings: Settings, site: str) -> Iterator[None]:
    """The site's deploy lock on the server, held across both phases (flock: a crashed
    coordinator never leaves it held)."""
    p = path(settings, site).with_suffix(".lock")
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(p):
        yield
