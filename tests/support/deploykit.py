"""Deploy test helpers: site outputs whose every file names its version (so a mixed or
half-copied response shows), plain HTTP GETs, and `deploy_release` called as the deploy job
calls it."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

from deploy import bluegreen
from gitserve.settings import Settings


def make_output(root: Path, version: str, files: int = 3, size: int = 50_000,
                health: bool = True) -> Path:
    """A site whose every file says which version it is, big enough that a half-copied
    or mixed response would show."""
    out = root / f"out-{version}-{time.monotonic_ns()}"
    (out / "assets").mkdir(parents=True)
    (out / "index.html").write_text(page(version, size))
    for i in range(files):
        (out / "assets" / f"f{i}.txt").write_text(f"{version} asset {i}\n")
    if health:
        (out / "health.txt").write_text("ok\n")
    return out


def page(version: str, size: int = 50_000) -> str:
    return f"<!-- {version} -->\n" + (version + "\n") * (size // (len(version) + 1))


def get(port: str | int, path: str = "/") -> tuple[int, bytes]:
    port = int(str(port).rpartition(":")[2])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def deploy(settings: Settings, options: dict[str, str], out: Path, build: str, site: str = "www",
           log: Log | None = None, **meta: Any) -> tuple[bluegreen.DeployResult, Log]:
    log = log if log is not None else Log()
    meta = {"build_id": build, "repo": "web", "ref": "refs/heads/main", "commit": "c" * 40,
            "pusher": "alice", **meta}
    return bluegreen.deploy_release(settings, site, out, options, meta, log, meta.pop("workdir", None)), log
