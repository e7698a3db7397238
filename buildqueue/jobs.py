"""The RQ job that runs one build (executed by `rq worker`, anywhere).

Everything the job needs arrives in its JSON payload (see enqueue.payload_for): it never
reads the server's home, so the same job runs on a build host that only reaches Redis and
the SSH port. Every line it writes to the log passes through the secret masker first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import redis
from rq import get_current_job

from gitserve import sandbox, sandbox_limits
from gitserve.logsetup import log_context

from . import ending, keys, logs, perrepo, records, rqjob, runner, uids, workspace
from .liveness import heartbeat_loop, worker_name
from .secrets import Masker, SecretError, decrypt, worker_key_file
from .workersettings import WorkerSettings

logger = logging.getLogger(__name__)

LANE_POLL = 0.2


def _connection() -> redis.Redis:
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_build must run inside an rq worker")
    return job.connection


class BuildLog:
    """Masked, size-capped writer of one build's log stream."""

    def __init__(self, r: redis.Redis, build_id: str, mask: Callable[[str], str]) -> None:
        self.r, self.build_id, self.mask = r, build_id, mask
        self.count = 0

    def __call__(self, line: str) -> None:
        self.count += 1
        if self.count == logs.MAX_LINES + 1:
            logs.append(self.r, self.build_id, f"gitserve: log truncated after {logs.MAX_LINES} lines")
        if self.count > logs.MAX_LINES:
            return
        logs.append(self.r, self.build_id, self.mask(line))


def _wait_for_lane(r: redis.Redis, build: records.Build, log: BuildLog) -> bool:
    """Builds of one repo+ref run in push order: wait until every earlier one ended.

    Returns False when this build was cancelled while it waited.
    """
    announced: set[str] = set()
    while True:
        pending = []
        for other_id in records.earlier_in_lane(r, build):
            try:
                other = records.get(r, other_id)
            except records.BuildNotFound:
                r.zrem(build.lane, other_id)
                continue
            if other.is_final:
                r.zrem(build.lane, other_id)
                continue
            if other.status in (records.DEPLOY_QUEUED, "deploying"):
                # built already; deploys keep their own order (and a worker waiting here
                # must never be the one that deploy needs)
                continue
            ending.reap_if_lost(r, other)
            pending.append(other_id)
        if not pending:
            return True
        for other_id in pending:
            if other_id not in announced:
                log(f"gitserve: waiting for build {other_id} of the same ref to finish")
                announced.add(other_id)
        records.heartbeat(r, build.id)
        if r.exists(keys.cancel(build.id)):
            return False
        time.sleep(LANE_POLL)


def build_env(payload: dict[str, Any], output: str, secret_values: dict[str, str]) -> dict[str, str]:
    """The script's variables, from scratch: nothing of the worker's environment (the
    sandbox adds PATH, HOME and LANG). OUTPUT is deploy.dir as the script sees it."""
    env = dict(secret_values)
    env.update({
        "GITSERVE_REPO": payload["repo"],
        "GITSERVE_REF": payload["ref"],
        "GITSERVE_OLDREV": payload["old"],
        "GITSERVE_NEWREV": payload["new"],
        "GITSERVE_PUSHER": payload["pusher"],
        "GITSERVE_BUILD_ID": str(payload["build_id"]),
        "GITSERVE_OUTPUT": output,
    })
    return env


def _script_argv(path: Path, inside: str) -> list[str]:
    if os.access(path, os.X_OK):
        return [inside]
    return ["/bin/sh", inside]


def borrowed_objects(ws: Path) -> list[Path]:
    """Object stores the checkout's .git borrows (alternates): bound read-only, so `git` in
    the build works and writes nothing there."""
    try:
        lines = (ws / ".git" / "objects" / "info" / "alternates").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.strip()) for line in lines if line.strip() and Path(line.strip()).is_dir()]


def run_build(payload: dict[str, Any]) -> dict[str, str]:
    """Entry point of the `builds` queue's jobs (logged as `build ID` in workers.log)."""
    with log_context(f"build {payload['build_id']}"):
        logger.info("start %s %s %s", payload.get("repo"), payload.get("ref"),
                    str(payload.get("commit") or payload.get("new", ""))[:12])
        result = _run_build(payload)
        logger.info("end: %s", result.get("status"))
        return result


def _run_build(payload: dict[str, Any]) -> dict[str, str]:
    r = _connection()
    build_id = str(payload["build_id"])
    log_ttl = int(payload.get("log_ttl", 0))
    try:
        rqjob.require(get_current_job())
    except rqjob.ForeignJob as exc:  # a worker that would run any function: no builds on it
        logger.error("%s", exc)
        return _end(r, build_id, "failed", str(exc), log_ttl)
    if not records.start(r, build_id, worker_name()):
        return {"status": records.get(r, build_id).status}
    build = records.get(r, build_id)
    mask: Callable[[str], str] = str  # no secrets known yet: text as it is
    log = BuildLog(r, build_id, mask)
    policy = sandbox.Policy.from_payload(payload.get("sandbox"))
    # before any thread starts: the workspace's tmpfs lives in this process's own mount namespace
    work, uncapped = sandbox.new_capped_workdir(sandbox.work_root(workspace.work_root()),
                                                policy.limits.disk)
    # the heartbeat runs for the whole job: a long fetch must not look like a dead worker
    beating = threading.Event()
    threading.Thread(target=heartbeat_loop, args=(r, build_id, beating), daemon=True).start()
    slot = False
    try:
        if not _wait_for_lane(r, build, log):
            ending.finish(r, build_id, "cancelled", "cancelled while waiting", log_ttl=log_ttl,
                           last_line="gitserve: cancelled")
            return {"status": "cancelled"}
        slot = perrepo.acquire(r, build, int(payload.get("per_repo") or 0) or 2, log,
                               lambda: bool(r.exists(keys.cancel(build_id))))
        if not slot:
            ending.finish(r, build_id, "cancelled", "cancelled while waiting", log_ttl=log_ttl,
                           last_line="gitserve: cancelled")
            return {"status": "cancelled"}
        if uncapped is not None and policy.enabled:
            logger.warning("workspace not size-capped: %s", uncapped)
        try:
            policy = policy.with_uid(uids.uid_for(r, payload["repo"], policy.uid_range)
                                     if os.geteuid() == 0 else None)
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        records.set_fields(r, build_id, started=repr(time.time()))
        try:
            secret_values = decrypt(payload.get("secrets") or {}, worker_key_file())
        except SecretError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        log.mask = Masker(list(secret_values.values()))
        ws = work / "src"
        try:
            objects = workspace.source_objects(payload["repo"], payload.get("commit") or payload["new"],
                                               payload["fetch_ref"],
                                               payload.get("local_path", ""), payload.get("clone_url", ""))
            workspace.checkout(objects, payload.get("commit") or payload["new"], ws)
            workspace.fill_lfs(ws, payload.get("commit") or payload["new"], payload["repo"],
                               payload.get("local_path", ""), payload.get("clone_url", ""))
        except workspace.WorkspaceError as exc:
            return _end(r, build_id, "failed", f"checkout failed: {exc}", log_ttl)
        script = ws / payload["script"]
        if not script.is_file():
            return _end(r, build_id, "failed", f"{payload['script']} not found in the commit", log_ttl)
        deploy = payload.get("deploy") or {}
        out_rel = (deploy.get("dir") or "public").strip("/") or "public"
        output = (ws / out_rel).resolve()
        if not output.is_relative_to(ws.resolve()):
            return _end(r, build_id, "failed", f"deploy.dir {deploy.get('dir')!r} leaves the workspace", log_ttl)
        output.mkdir(parents=True, exist_ok=True)
        timeout = float(payload.get("timeout", 600))
        try:
            sandbox.hand_over(policy, work)
            jail = sandbox.prepare(
                policy, work, _script_argv(script, sandbox.inside_path(work, ws / payload["script"])),
                build_env(payload, sandbox.inside_path(work, output), secret_values),
                hide=WorkerSettings.from_env().sandbox_hidden(), ro=borrowed_objects(ws))
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        if not jail.sandboxed:
            log("gitserve: warning: this build runs unsandboxed ([builds] allow_unsandboxed = true)")
        try:
            result = runner.run_script(
                [], ws, {}, timeout, log,
                should_cancel=lambda: bool(r.exists(keys.cancel(build_id))), jail=jail,
                workspace=work if uncapped is None else None,
            )
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        if result.limit is not None:
            return _end(r, build_id, "failed",
                        sandbox_limits.killed_line(build_id, result.limit, policy.limits), log_ttl)
        if result.status == "timed out":
            return _end(r, build_id, "timed out",
                        f"timed out after {timeout:g}s: process group killed", log_ttl)
        if result.status == "cancelled":
            by = (r.get(keys.cancel(build_id)) or b"").decode()
            who = f" by {by}" if by and by != "1" else ""
            return _end(r, build_id, "cancelled", f"cancelled{who}: process group killed", log_ttl)
        if result.status == "failed":
            code = result.exit_code or 0
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return _end(r, build_id, "failed", why, log_ttl)
        if deploy.get("site"):
            from . import deploy_job

            try:
                deploy_job.hand_over(r, payload, ws, out_rel)
            except deploy_job.HandOverError as exc:
                return _end(r, build_id, "failed", str(exc), log_ttl)
            return {"status": "deploying"}
        return _end(r, build_id, "passed", "", log_ttl, quiet=True)
    except Exception as exc:  # noqa: BLE001 - any crash must still end the build
        # masked like the build log: a traceback can quote a secret
        logger.error("crashed: %s", log.mask(traceback.format_exc()))
        _end(r, build_id, "failed", log.mask(f"internal error: {type(exc).__name__}: {exc}"), log_ttl)
        raise
    finally:
        if slot:
            perrepo.release(r, build)
        beating.set()
        sandbox.remove_workdir(work)


def _end(r: redis.Redis, build_id: str, status: str, reason: str, log_ttl: int,
         quiet: bool = False) -> dict[str, str]:
    last = "" if quiet else f"gitserve: {reason}"
    if reason:  # the reason the pusher sees (masked where it could carry a secret)
        logger.log(logging.INFO if status == "passed" else logging.WARNING,
                   "%s: %s", status, reason)
    ending.finish(r, build_id, status, reason, log_ttl=log_ttl, last_line=last)
    return {"status": status}
