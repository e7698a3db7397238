"""What a notification says: the webhook JSON (Slack-compatible `text` + structured fields)
and the mail (subject with repo, ref and result; body with the last log lines).

Everything here is built on the server from the event and the build record, then passed
through the masker of every secret the server knows for the repo (the log lines are masked
by the worker already; this second pass also covers the reason line and any value that
only the server knows, such as the webhook key or the SMTP password).
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from gitserve.settings import Settings

from .. import keys, records

MAIL_LOG_LINES = 50
ZERO_SHA = "0" * 40


@dataclass
class Notice:
    event: str
    repo: str
    fields: dict[str, Any]
    text: str
    subject: str = ""
    log_lines: list[str] = field(default_factory=list)
    delivery: str = field(default_factory=lambda: str(uuid.uuid4()))

    def json_body(self) -> dict[str, Any]:
        return {"text": self.text, "event": self.event, "repo": self.repo,
                "delivery": self.delivery, **self.fields}


def short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def ssh_prefix(settings: Settings) -> list[str]:
    from ..enqueue import ssh_host_port

    host, port = ssh_host_port(settings)
    return ["ssh"] + (["-p", str(port)] if port != 22 else []) + [f"{settings.server.ssh_user}@{host}"]


def log_command(settings: Settings, build_id: str) -> str:
    return shlex.join(ssh_prefix(settings) + ["builds", "log", build_id])


def last_log_lines(r: redis.Redis, build_id: str, count: int = MAIL_LOG_LINES) -> list[str]:
    """The last COUNT log lines of a build (as the worker wrote them: masked)."""
    lines: list[str] = []
    entries: Any = r.xrevrange(keys.log(build_id), count=count + 2)
    for _id, entry in entries:
        line = entry.get(b"l")
        if line is not None:
            lines.append(line.decode("utf-8", "replace"))
        if len(lines) >= count:
            break
    return list(reversed(lines))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _build_fields(settings: Settings, build: records.Build) -> dict[str, Any]:
    return {"ref": build.ref, "old": build.old, "new": build.new, "commit": build.new,
            "pusher": build.pusher, "build_id": build.id, "result": build.status,
            "status": build.status, "duration": float(build.duration or 0),
            "reason": build.reason, "log_command": log_command(settings, build.id)}


def push_notice(settings: Settings, repo: str, data: dict[str, Any], ts: float) -> Notice:
    ref, old, new = data["ref"], data["old"], data["new"]
    if new == ZERO_SHA:
        what = f"deleted {short_ref(ref)}"
    elif old == ZERO_SHA:
        what = f"created {short_ref(ref)} at {new[:7]}"
    else:
        what = f"pushed {short_ref(ref)} {old[:7]}..{new[:7]}"
    text = f"gitserve: {data['pusher']} {what} in {repo}"
    fields = {"ref": ref, "old": old, "new": new, "pusher": data["pusher"], "time": _iso(ts)}
    return Notice("push", repo, fields, text, subject=f"[gitserve] {repo} {short_ref(ref)}: push")


def build_notice(settings: Settings, r: redis.Redis, repo: str, data: dict[str, Any], ts: float) -> Notice:
    build = records.get(r, str(data["build_id"]))
    text = (f"gitserve: build {build.id} of {build.repo} {build.ref} ({build.new[:7]}) by {build.pusher} "
            f"{build.status} in {build.duration or '0.0'}s")
    if build.reason and build.status != "passed":
        text += f" ({build.reason})"
    fields = _build_fields(settings, build)
    fields["time"] = _iso(build.finished or ts)
    return Notice("build", repo, fields, text,
                  subject=f"[gitserve] {repo} {short_ref(build.ref)}: build {build.id} {build.status}",
                  log_lines=last_log_lines(r, build.id))


def deploy_notice(settings: Settings, r: redis.Redis, repo: str, data: dict[str, Any], ts: float) -> Notice:
    build = records.get(r, str(data["build_id"]))
    site, result, side = data["site"], data["result"], data.get("side", "")
    if result == "switched":
        text = (f"gitserve: site {site} now serves build {build.id} of {repo} {short_ref(build.ref)} "
                f"({build.new[:7]}): Enable: {side}")
    else:
        text = (f"gitserve: deploy of build {build.id} of {repo} {short_ref(build.ref)} to site {site} "
                f"{result}" + (f": {data['reason']}" if data.get("reason") else ""))
    fields = _build_fields(settings, build)
    fields.update({"result": result, "site": site, "side": side,
                   "previous_side": data.get("previous_side", ""), "reason": data.get("reason", ""),
                   "time": _iso(ts)})
    fields.pop("status", None)
    fields.pop("duration", None)
    subject = f"[gitserve] {repo} {short_ref(build.ref)}: deploy to {site} {result}"
    if side and result == "switched":
        subject += f" ({side})"
    return Notice("deploy", repo, fields, text, subject=subject, log_lines=last_log_lines(r, build.id))


def notice_for(settings: Settings, r: redis.Redis, event: str, repo: str, data: dict[str, Any],
               ts: float) -> Notice:
    if event == "push":
        return push_notice(settings, repo, data, ts)
    if event == "build":
        return build_notice(settings, r, repo, data, ts)
    if event == "deploy":
        return deploy_notice(settings, r, repo, data, ts)
    raise ValueError(f"unknown notification event {event!r}")


def mask_notice(notice: Notice, mask: Callable[[str], str]) -> Notice:
    """Every string in NOTICE through MASK (text, subject, fields, log lines)."""
    notice.text = mask(notice.text)
    notice.subject = mask(notice.subject)
    notice.fields = {k: mask(v) if isinstance(v, str) else v for k, v in notice.fields.items()}
    notice.log_lines = [mask(line) for line in notice.log_lines]
    return notice


def mail_body(notice: Notice) -> str:
    out = [notice.text, ""]
    f = notice.fields
    for label, key in (("repo", None), ("ref", "ref"), ("commit", "new"), ("pusher", "pusher"),
                       ("build", "build_id"), ("result", "result"), ("site", "site"),
                       ("live side", "side"), ("reason", "reason")):
        value = notice.repo if key is None else f.get(key)
        if value not in (None, ""):
            out.append(f"{label + ':':<11}{value}")
    if f.get("duration") is not None and notice.event == "build":
        out.append(f"{'duration:':<11}{f['duration']:.1f}s")
    if notice.log_lines:
        out += ["", f"Last {len(notice.log_lines)} log lines:", ""]
        out += [f"  {line}" for line in notice.log_lines]
    if f.get("log_command"):
        out += ["", "Whole log:", f"  {f['log_command']}"]
    return "\n".join(out) + "\n"
