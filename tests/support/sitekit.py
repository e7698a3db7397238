"""A running server with builds and blue-green deploys, for attacks on the push -> build ->
deploy path: embedded Redis, local rq workers, embedded nginx on free 127.0.0.1 ports.

`site_server(tmp, conf_body)` starts one; CONF_BODY may use {live} and {preview} for the
site's ports. `site_commit` makes a commit whose build publishes `site/` and whose page
names its author, so a test can tell from the live port whose commit went live.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

from tests.support.server import GitServer, make_server
from tests.support.tools import free_port, require_tool

BUILD = """#!/bin/sh
set -e
echo "building $(cat site/index.html)"
cp -R site/. "$GITSERVE_OUTPUT/"
"""


def site_server(tmp: Path, conf_body: str, users: tuple[str, ...] = ("alice", "mallory"),
                settings: dict | None = None) -> GitServer:
    binary = require_tool("nginx")
    ports = {"live": free_port(), "preview": free_port()}
    conf = "repo gitolite-admin\n    RW+ = admin\n" + conf_body.format(**ports)
    merged: dict = {"deploy": {"nginx_binary": binary}, "builds": {"workers": 2}}
    for section, values in (settings or {}).items():
        merged.setdefault(section, {}).update(values)
    srv = make_server(tmp, conf=conf, users=users, settings=merged)
    srv.ports = ports  # type: ignore[attr-defined]
    return srv


def stop_site_server(srv: GitServer) -> None:
    srv.stop()
    from deploy import nginx

    from deploy import sitesctl
    sitesctl.stop(srv.settings)  # `gitserve sites` (serve never stops it), nginx with it
    nginx.stop_embedded(srv.settings)  # in case serve died without stopping it


def get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
    finally:
        conn.close()


def site_commit(srv: GitServer, user: str, work: Path, text: str, extra: dict[str, str] | None = None) -> str:
    """Commit a buildable site whose page says TEXT; returns the commit sha."""
    files = {".gitserve/build": BUILD, "site/index.html": text + "\n", **(extra or {})}
    for name, content in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        if name.startswith(".gitserve/"):
            p.chmod(0o755)
    srv.git(user, "add", "-A", cwd=work)
    srv.git(user, "commit", "-q", "-m", text, cwd=work)
    return srv.git(user, "rev-parse", "HEAD", cwd=work).stdout.strip()


def rev(srv: GitServer, repo: str, ref: str) -> str:
    import subprocess

    r = subprocess.run(["git", "--git-dir", str(srv.repo_path(repo)), "rev-parse", "--verify", "-q", ref],
                       capture_output=True, text=True, check=False)
    return r.stdout.strip()


def builds_of(srv: GitServer, repo: str) -> list[dict[str, Any]]:
    """Every build record of REPO (from the server's Redis), newest first."""
    from buildqueue import records, rqconn

    r = rqconn.connect(srv.settings.effective_redis_url)
    out = []
    for build_id in records.list_ids(r, repo, limit=1000):
        b = records.get(r, build_id)
        out.append({"id": b.id, "ref": b.ref, "new": b.new, "status": b.status, "pusher": b.pusher})
    return out
