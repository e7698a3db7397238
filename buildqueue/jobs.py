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
from rq.job import Job

from gitserve import sandbox, sandbox_limits
from gitserve.errors import GitserveError
from gitserve.logsetup import log_context
from gitserve.secrets.crypt import SecretError, check_job, decrypt
from gitserve.secrets.masker import Masker

from . import ending, keys, logs, perrepo, records, rqjob, runner, uids, workspace
from .liveness import heartbeat_loop, worker_name
from .payload import BuildPayload
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


def _wait_for_lane(r: redis.Redis, build: records.Build, log: BuildLog) -> None:
    """Builds of one repo+ref run in push order: wait until every earlier one ended.
    (`builds cancel` stops the job here as anywhere: rq's stop-job command.)

    Why not rq's job dependencies (depends_on the lane's earlier jobs, allow_failure): in rq
    3.0 a dependency that was cancelled or stopped never releases its dependents
    (Job.dependencies_are_met counts only FINISHED and FAILED), and a job whose worker host
    vanished turns FAILED only when rq's registry cleanup finds its execution expired
    (90 s and more, on maintenance), so one cancel or one lost host would stall a ref's
    builds. The wait holds a worker, which [builds] per_repo also does."""
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
            return
        for other_id in pending:
            if other_id not in announced:
                log(f"gitserve: waiting for build {other_id} of the same ref to finish")
                announced.add(other_id)
        records.heartbeat(r, build.id)
        time.sleep(LANE_POLL)


def build_env(payload: BuildPayload, output: str, secret_values: dict[str, str]) -> dict[str, str]:
    """The script's variables, from scratch: nothing of the worker's environment (the
    sandbox adds PATH, HOME and LANG). OUTPUT is deploy.dir as the script sees it."""
    env = dict(secret_values)
    env.update({
        "GITSERVE_REPO": payload.repo,
        "GITSERVE_REF": payload.ref,
        "GITSERVE_OLDREV": payload.old,
        "GITSERVE_NEWREV": payload.new,
        "GITSERVE_PUSHER": payload.pusher,
        "GITSERVE_BUILD_ID": payload.build_id,
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


def run_build(data: dict[str, Any]) -> dict[str, str]:
    """Entry point of the `builds` queue's jobs (logged as `build ID` in workers.log);
    DATA is a BuildPayload's JSON."""
    r = _connection()
    build_id = str(data.get("build_id", ""))
    try:
        rqjob.require(get_current_job())
    except rqjob.ForeignJob as exc:  # a worker that would run any function: no builds on it
        logger.error("%s", exc)
        return _end(r, build_id, "failed", str(exc), int(data.get("log_ttl") or 0))
    try:  # only a job this server queued (its secrets.key signed it), never one forged in Redis
        check_job(data, WorkerSettings.from_env().secrets_key_file)
    except SecretError as exc:
        logger.error("build %s refused: %s", build_id, exc)
        return _end(r, build_id, "failed", f"build refused: {exc}", int(data.get("log_ttl") or 0))
    try:
        payload = BuildPayload.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        return _end(r, build_id, "failed", f"malformed build job ({type(exc).__name__}: {exc})", 0)
    with log_context(f"build {payload.build_id}"):
        logger.info("start %s %s %s", payload.repo, payload.ref, payload.commit[:12])
        result = _run_build(payload)
        logger.info("end: %s", result.get("status"))
        return result


def _run_build(payload: BuildPayload) -> dict[str, str]:
    r = _connection()
    build_id = payload.build_id
    log_ttl = payload.log_ttl
    if not records.start(r, build_id, worker_name()):
        return {"status": records.get(r, build_id).status}
    build = records.get(r, build_id)
    mask: Callable[[str], str] = str  # no secrets known yet: text as it is
    log = BuildLog(r, build_id, mask)
    try:  # the job's policy (from Redis), never looser than this worker's own [builds]
        own = WorkerSettings.from_env().builds()
        policy, floor_notes = sandbox.Policy.from_payload(payload.sandbox).floored(
            sandbox.Policy.from_settings(own))
        per_repo = min(payload.per_repo or own.per_repo, own.per_repo)
    except GitserveError as exc:
        return _end(r, build_id, "failed", f"build refused: {exc}", log_ttl)
    for note in floor_notes:
        log(note)
    # before any thread starts: the workspace's tmpfs lives in this process's own mount namespace
    work, uncapped = sandbox.new_capped_workdir(sandbox.work_root(workspace.work_root()),
                                                policy.limits.disk)
    # the heartbeat runs for the whole job: a long fetch must not look like a dead worker
    beating = threading.Event()
    threading.Thread(target=heartbeat_loop, args=(r, build_id, beating), daemon=True).start()
    # what `stopped` (below) needs if `builds cancel` kills this process
    records.set_fields(r, build_id, workdir=str(work), waiting="1")
    slot = False
    try:
        _wait_for_lane(r, build, log)
        perrepo.acquire(r, build, per_repo, log)
        slot = True
        if uncapped is not None and policy.enabled:
            logger.warning("workspace not size-capped: %s", uncapped)
        try:
            policy = policy.with_uid(uids.uid_for(r, payload.repo, policy.uid_range)
                                     if os.geteuid() == 0 else None)
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        records.set_fields(r, build_id, started=repr(time.time()), waiting="")
        try:
            secret_values = decrypt(payload.secrets, WorkerSettings.from_env().secrets_key_file)
        except SecretError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        log.mask = Masker(list(secret_values.values()))
        ws = work / "src"
        try:
            objects = workspace.source_objects(payload.repo, payload.commit, payload.fetch_ref,
                                               payload.local_path, payload.clone_url)
            workspace.checkout(objects, payload.commit, ws)
            workspace.fill_lfs(ws, payload.commit, payload.repo, payload.local_path, payload.clone_url)
        except workspace.WorkspaceError as exc:
            return _end(r, build_id, "failed", f"checkout failed: {exc}", log_ttl)
        script_rel = payload.build.script
        script = ws / script_rel
        if not script.is_file():
            return _end(r, build_id, "failed", f"{script_rel} not found in the commit", log_ttl)
        deploy = payload.deploy
        out_rel = deploy.dir if deploy else "public"
        output = (ws / out_rel).resolve()
        if not output.is_relative_to(ws.resolve()):
            return _end(r, build_id, "failed", f"deploy.dir {out_rel!r} leaves the workspace", log_ttl)
        output.mkdir(parents=True, exist_ok=True)
        timeout = float(payload.build.timeout)
        try:
            sandbox.hand_over(policy, work)
            jail = sandbox.prepare(
                policy, work, _script_argv(script, sandbox.inside_path(work, ws / script_rel)),
                build_env(payload, sandbox.inside_path(work, output), secret_values),
                hide=WorkerSettings.from_env().sandbox_hidden(), ro=borrowed_objects(ws))
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        if not jail.sandboxed:
            log("gitserve: warning: this build runs unsandboxed ([builds] allow_unsandboxed = true)")
        try:
            result = runner.run_script(
                [], ws, {}, timeout, log, jail=jail,
                workspace=work if uncapped is None else None,
                on_spawn=lambda pgid: records.set_fields(r, build_id, pgid=str(pgid)),
            )
        except sandbox.SandboxError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        if result.limit is not None:
            return _end(r, build_id, "failed",
                        sandbox_limits.killed_line(build_id, result.limit, policy.limits), log_ttl)
        if result.status == "timed out":
            return _end(r, build_id, "timed out",
                        f"timed out after {timeout:g}s: process group killed", log_ttl)
        if result.status == "failed":
            code = result.exit_code or 0
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return _end(r, build_id, "failed", why, log_ttl)
        if deploy is not None:
            from . import deploy_job

            try:
                deploy_job.hand_over(r, payload, deploy, ws)
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
    ending.finish(r, build_id, status, reason, log_ttl=log_ttl, last_line=last,
                  key_file=WorkerSettings.from_env().secrets_key_file)
    return {"status": status}


def _builds_group(pgid: int, build_id: str) -> bool:
    """Is PGID the process group of BUILD_ID's script? The id comes from the build's record
    in Redis, where anyone with the Redis password may write any number (sshd's group, 0 for
    this worker's own): only a group whose leader carries the build's id is killed - the
    sandbox's `--setenv GITSERVE_BUILD_ID N` in its command line, or that variable in an
    unsandboxed script's environment - never init's or this process's."""
    if pgid <= 1 or pgid in (os.getpgrp(), os.getpid()):
        return False
    try:
        if os.getpgid(pgid) != pgid:
            return False  # not a group's leader
        argv = Path(f"/proc/{pgid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False  # no leader any more (a sandbox's namespace died with the horse)
    marker = b"GITSERVE_BUILD_ID"
    in_argv = any(argv[i] == marker and argv[i + 1] == build_id.encode()
                  for i in range(len(argv) - 1))
    return in_argv or marker + b"=" + build_id.encode() in environ


def stopped(job: Job, connection: redis.Redis) -> None:
    """rq's on_stopped callback of a build job, run by the worker whose work-horse `builds
    cancel` killed (rq's stop-job command): end the build as cancelled, kill what the script
    left in its process group (a sandboxed build's PID namespace died with the horse), and
    remove its workspace. It runs in the worker process on the same host as the horse."""
    data = job.args[0] if job.args and isinstance(job.args[0], dict) else {}
    build_id = str(data.get("build_id", ""))
    if not build_id:
        return
    raw = connection.hmget(keys.build(build_id), "pgid", "workdir", "waiting")
    pgid, workdir, waiting = ((v or b"").decode() for v in raw)
    if pgid.isdigit() and _builds_group(int(pgid), build_id):
        runner.terminate_group(int(pgid))
    try:
        perrepo.release(connection, records.get(connection, build_id))
    except records.BuildNotFound:
        pass
    by = (connection.get(keys.cancel(build_id)) or b"").decode()
    who = f" by {by}" if by and by != "1" else ""
    log_ttl = int(data.get("log_ttl") or 0)
    with log_context(f"build {build_id}"):
        if waiting:
            ending.finish(connection, build_id, "cancelled", "cancelled while waiting",
                          log_ttl=log_ttl, last_line="gitserve: cancelled")
        else:
            _end(connection, build_id, "cancelled", f"cancelled{who}: process group killed", log_ttl)
    root = sandbox.work_root(workspace.work_root()).resolve()
    if workdir and Path(workdir).resolve().parent == root:  # never a path Redis made up
        sandbox.remove_workdir(Path(workdir))

