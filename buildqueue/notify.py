"""`option notify.webhook = URL`: a JSON POST (Slack-compatible `text`) when a build ends.

Sent by a separate small job on the build's queue, so a slow or dead receiver never delays
a push, a build, or the next build; it retries a few times with backoff, then gives up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import redis

from . import records, rqconn

ATTEMPTS = 4
BACKOFF = (0.5, 1.0, 2.0)
TIMEOUT = 5.0


def message(build: records.Build, sha: str) -> dict[str, Any]:
    text = (f"gitserve: build {build.id} of {build.repo} {build.ref} ({sha[:7]}) by {build.pusher} "
            f"{build.status} in {build.duration or '0.0'}s")
    if build.reason and build.status != "passed":
        text += f" ({build.reason})"
    return {"text": text, "build_id": build.id, "repo": build.repo, "ref": build.ref,
            "commit": sha, "pusher": build.pusher, "status": build.status,
            "duration": float(build.duration or 0), "reason": build.reason}


def build_ended(r: redis.Redis, build_id: str) -> None:
    """Queue the webhook of an ended build, if its repo asks for one. Never raises."""
    try:
        build = records.get(r, build_id)
        url = build.options.get("notify.webhook", "").strip()
        if not url.startswith(("http://", "https://")):
            return
        rqconn.queue(r, build.queue).enqueue(
            "buildqueue.notify.send", url, message(build, build.new),
            job_timeout=60, result_ttl=3600, failure_ttl=24 * 3600,
            description=f"notify build {build.id}",
        )
    except Exception:  # noqa: BLE001 - a notification must never break a build's end
        pass


def send(url: str, body: dict[str, Any]) -> str:
    """POST BODY as JSON to URL; retries on network errors and 5xx answers."""
    import time

    data = json.dumps(body).encode()
    last = ""
    for attempt in range(ATTEMPTS):
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "gitserve"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                return last
        except (urllib.error.URLError, OSError) as exc:
            last = type(exc).__name__
        if attempt < len(BACKOFF):
            time.sleep(BACKOFF[attempt])
    raise RuntimeError(f"webhook failed after {ATTEMPTS} attempts: {last}")
