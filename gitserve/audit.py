"""Audit log: one JSON line per access decision and ref update, in HOME/logs/audit.log.

Many SSH sessions (threads) and processes write at once; each entry is one `write(2)`
on an O_APPEND descriptor, so lines never interleave and nothing needs a lock.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from gitserve.settings import Settings

log = logging.getLogger(__name__)

FILE_NAME = "audit.log"
MAX_FIELD = 2000  # keep every line far below the size a single write handles at once
FIELDS = ("ts", "user", "ip", "repo", "op", "ref", "old", "new", "result", "reason")


def log_path(settings: Settings) -> Path:
    return settings.logs_dir / FILE_NAME


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "..."
    return value


def record(
    settings: Settings,
    *,
    user: str | None,
    op: str,
    result: str,
    ip: str | None = None,
    repo: str | None = None,
    ref: str | None = None,
    old: str | None = None,
    new: str | None = None,
    reason: str | None = None,
) -> None:
    """Append one entry. OP: e.g. "R", "W", "+", "C", "admin", "info"; RESULT: "allowed",
    "denied", "updated", "rejected", "error". Never raises on a full disk or missing dir
    (an audit failure must not break a push); it reports to stderr instead."""
    entry = {
        "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": user,
        "ip": ip,
        "repo": repo,
        "op": op,
        "ref": ref,
        "old": old,
        "new": new,
        "result": result,
        "reason": reason,
    }
    line = json.dumps({k: _clip(v) for k, v in entry.items()}, ensure_ascii=True) + "\n"
    data = line.encode()
    target = log_path(settings)
    try:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        log.error("audit log %s: %s", target, exc)


def read(settings: Settings) -> Iterator[dict[str, Any]]:
    """Entries in order (skips a torn last line left by a crash)."""
    try:
        f = open(log_path(settings), encoding="utf-8")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
