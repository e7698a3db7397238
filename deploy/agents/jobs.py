"""The one job function deploy agents run (`deploy.agents.jobs.run`), in rq's work horse.

The job is a sealed envelope (auth.py): it is opened with this agent's key, must name this
agent and must not have expired (a job that waited in the queue while the agent was down
belongs to a deploy that already failed). Its kind picks the phase (phases.py); the lines
the phase said and its outcome go back as a sealed result, which rq stores as the job's
return value. A DeployError is an outcome ({"ok": false, "reason": ...}), not a crash;
anything else is logged with its traceback here and reported in one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from gitserve.errors import GitserveError
from gitserve.settings import Settings

from . import auth, phases, releases
from .worker import Reporter

log = logging.getLogger("gitserve.agent")

HOME_ENV = "GITSERVE_HOME"
NAME_ENV = "GITSERVE_AGENT_NAME"
KINDS = ("prepare", "rollback", "switch", "abort", "preview", "unpreview")


@dataclass(frozen=True)
class AgentContext:
    """Who this agent is: `gitserve deploy-agent` puts it in the environment its work
    horses inherit (as `gitserve worker` does for build jobs)."""

    home: Path
    name: str

    @classmethod
    def from_env(cls) -> AgentContext:
        home, name = os.environ.get(HOME_ENV, ""), os.environ.get(NAME_ENV, "")
        if not home or not name:
            raise auth.BadSignature("this worker is not a deploy agent (no agent name)")
        return cls(Path(home), auth.check_agent_name(name))


def run(envelope: dict[str, Any]) -> dict[str, Any]:
    """Entry point of the `deploy-agent:NAME` queue's jobs."""
    from gitserve import settings as settings_mod

    ctx = AgentContext.from_env()
    key = auth.agent_key(ctx.home)
    body = auth.unseal(key, "job", envelope)  # a forged job fails here, before anything runs
    if body.get("agent") != ctx.name:
        raise auth.BadSignature(f"job for agent {body.get('agent')!r}, this is {ctx.name}")
    _first_time(ctx, body)
    kind = str(body.get("kind"))
    lines: list[str] = []
    outcome: dict[str, Any]
    try:
        if float(body.get("expires") or 0) < time.time():
            raise auth.BadSignature("job expired before this agent took it")
        if kind not in KINDS:
            raise auth.BadSignature(f"unknown job kind {kind!r}")
        settings = settings_mod.load(ctx.home)
        outcome = {"ok": True, **_dispatch(settings, ctx, key, kind, body, lines.append)}
    except GitserveError as exc:
        outcome = {"ok": False, "reason": getattr(exc, "message", None) or str(exc),
                   "step": getattr(exc, "step", "")}
    except Exception:  # noqa: BLE001 - a bug: logged here, one line to the server
        log.exception("deploy agent %s: %s job %s failed", ctx.name, kind, body.get("nonce"))
        outcome = {"ok": False, "reason": f"internal error on agent {ctx.name} (see its log)",
                   "step": kind}
    outcome.update(agent=ctx.name, kind=kind, nonce=body.get("nonce"), lines=lines)
    _report_now(ctx, key)
    return auth.seal(key, "result", outcome)


def _report_now(ctx: AgentContext, key: bytes) -> None:
    """The status report as of now: `deploy status` right after a switch shows it."""
    from rq import get_current_job

    from gitserve import settings as settings_mod

    job = get_current_job()
    if job is None:
        return
    try:
        Reporter(settings_mod.load(ctx.home), ctx.name, key, job.connection).report_once()
    except (GitserveError, OSError, RedisError) as exc:
        log.warning("status report not written: %s", exc)


def _first_time(ctx: AgentContext, body: dict[str, Any]) -> None:
    """A signed job runs once: a copy read back from Redis and queued again (within its
    expiry) is refused. The nonce is remembered until well after the job's expiry."""
    from rq import get_current_job

    job = get_current_job()
    nonce = str(body.get("nonce") or "")
    if job is None or not nonce:
        raise auth.BadSignature("job without a nonce")
    if not job.connection.set(f"gitserve:agent:{ctx.name}:nonce:{nonce}", "1", nx=True, ex=3600):
        raise auth.BadSignature(f"job {nonce} already ran on this agent (replayed)")


def _dispatch(settings: Settings, ctx: AgentContext, key: bytes, kind: str, body: dict[str, Any],
              say: Any) -> dict[str, Any]:
    site, release = str(body.get("site")), str(body.get("release"))
    if kind in ("prepare", "preview"):
        fetch = dict(body.get("fetch") or {})
        meta = dict(body.get("meta") or {})
        meta["env"] = auth.decrypt_env(key, str(body.get("env") or ""))
        work = Path(tempfile.mkdtemp(prefix="agent-fetch-", dir=_incoming(settings)))
        try:
            t0 = time.monotonic()
            tree = releases.fetch(str(fetch.get("url")), key, ctx.name, site, release,
                                  str(fetch.get("sha256")), int(fetch.get("size") or 0), work / "r")
            say(f"fetch: release {release}, {fetch.get('size')} bytes, sha256 ok "
                f"({(time.monotonic() - t0) * 1000:.0f} ms)")
            options = dict(body.get("options") or {})
            if kind == "preview":  # a branch's preview: no two phases, blue/green untouched
                return phases.preview(settings, site, tree, options, meta, say)
            return phases.prepare(settings, site, tree, options, meta, say)
        finally:
            releases.remove_tree(work)
    if kind == "rollback":
        return phases.prepare_rollback(settings, site, release, str(body.get("action") or "rollback"), say)
    if kind == "switch":
        return phases.switch(settings, site, release, body.get("by"), say, say)
    if kind == "unpreview":
        return phases.unpreview(settings, site, str(body.get("branch")), say)
    return phases.abort(settings, site, release, say)


def _incoming(settings: Settings) -> Path:
    path = Path(settings.home) / "agents" / "incoming"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
