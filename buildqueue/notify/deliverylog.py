"""The delivery log of notifications: HOME/logs/notify.log, one JSON line per delivery.

`gitserve admin notify-log [REPO]` reads it. Written only by the notifier in `gitserve serve`
(one O_APPEND write per line, as the audit log). Targets are stored masked: a webhook URL
loses its password, its query values and any token-like path segment (Slack's
`/services/T…/B…/SECRET`), since such a URL is itself a credential.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitserve.settings import Settings

FILE_NAME = "notify.log"
TOKENISH = re.compile(r"^[A-Za-z0-9_\-]{16,}$")


def log_path(settings: Settings) -> Path:
    return Path(settings.logs_dir) / FILE_NAME


def mask_url(url: str) -> str:
    """URL with its credentials replaced by ***: user:password, query values, token-like segments."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    path = "/".join("***" if TOKENISH.match(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, ""))


def record(settings: Settings, *, repo: str, event: str, channel: str, target: str, ok: bool,
           status: int | None, attempts: int, error: str = "", build_id: str = "",
           delivery: str = "", latency: float | None = None) -> None:
    entry = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "repo": repo, "event": event, "channel": channel,
        "target": mask_url(target) if channel == "webhook" else target,
        "result": "delivered" if ok else "failed", "status": status, "attempts": attempts,
        "error": error, "build_id": build_id, "delivery": delivery,
        "seconds": None if latency is None else round(latency, 3),
    }
    path = log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (json.dumps(entry, ensure_ascii=True) + "\n").encode())
    finally:
        os.close(fd)


def read(settings: Settings, repo: str | None = None) -> Iterator[dict[str, Any]]:
    path = log_path(settings)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if repo is None or entry.get("repo") == repo:
                yield entry


def table(entries: list[dict[str, Any]]) -> str:
    rows = [("TIME", "REPO", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "RESULT")]
    for e in entries:
        status = "-" if e.get("status") is None else str(e["status"])
        result = e.get("result", "")
        if e.get("error") and result != "delivered":
            result += f" ({e['error']})"
        rows.append((e.get("ts", ""), e.get("repo", ""), e.get("event", ""), e.get("target", ""),
                     status, str(e.get("attempts", "")), result))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n" for r in rows)
