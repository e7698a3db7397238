"""From a passed build to a blue-green deploy (SPEC §7) on the server host.

The build may have run on another host, so its deploy.dir output travels through Redis as
a tar.gz artifact. The deploy job runs on the `deploy` queue, which only workers on the
server host consume (they see HOME/sites), and writes its lines into the same build log,
so the pusher sees the deploy steps and `Enable: blue|green`; the build ends after it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path
from typing import Any, Callable

import redis
from rq import get_current_job

from gitserve import sandbox
from gitserve.secrets.crypt import SecretError, check_job, decrypt, sign_job
from gitserve.secrets.masker import Masker
from gitserve.errors import GitserveError

from . import ending, keys, logs, records, rqconn, rqjob, safetar, uids, workspace
from .notify import events as notify
from .payload import BuildPayload, DeployOrder
from .liveness import heartbeat_loop, worker_name
from .workersettings import WorkerSettings

DEPLOY_QUEUE = "deploy"
# the signed deploy job's field holding the artifact's sha256: the bytes travel beside the
# job in Redis, where anyone with the Redis password could replace them
ARTIFACT_SHA256 = "artifact_sha256"
MAX_ARTIFACT = 256 * 1024 * 1024
ARTIFACT_TTL = 24 * 3600


class HandOverError(GitserveError):
    pass


def release_source(ws: Path, out_rel: str, dir_given: bool) -> tuple[str, frozenset[str]]:
    """What becomes the release (SPEC §7.1): the build's deploy.dir, or, when deploy.dir is
    unset and the build left that default folder empty, the commit as the build left it
    (the workspace without .git): a Procfile app needs no build output. (rel, top-level
    names to leave out)."""
    import os

    from deploy import safetree
    from deploy.errors import DeployError

    if dir_given:
        return out_rel, frozenset()
    try:
        fd = safetree.open_under(ws, out_rel, "pack")
    except (DeployError, OSError):
        return out_rel, frozenset()  # pack() says what is wrong with it
    try:
        empty = not os.listdir(fd)
    finally:
        os.close(fd)
    return (".", frozenset({".git", out_rel.split("/")[0]})) if empty else (out_rel, frozenset())


def pack(ws: Path, out_rel: str, skip: frozenset[str] = frozenset()) -> bytes:
    """tar.gz of WS/OUT_REL, read through O_NOFOLLOW descriptors after the build's PID
    namespace is gone (deploy.safetree): a symlink or hard link the build left cannot make
    the worker pack a file from outside the output. Raises HandOverError."""
    from deploy import safetree
    from deploy.errors import DeployError

    try:
        return safetree.pack(ws, out_rel, skip=skip)
    except DeployError as exc:
        raise HandOverError(f"deploy output refused: {exc.message}") from None
    except OSError as exc:
        raise HandOverError(f"deploy output {out_rel}/ could not be read: {exc.strerror or exc}") from None


def unpack(data: bytes, dest: Path) -> None:
    """Extract the artifact by the rules of tarfile's `data` filter (see safetar: Python
    3.11.2, Debian 12's, has no filter)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        safetar.extract_all(tar, dest)


def hand_over(r: redis.Redis, payload: BuildPayload, order: DeployOrder, ws: Path) -> None:
    """Store the output and queue the deploy; the build stays unfinished until it ran."""
    build_id = payload.build_id
    rel, skip = release_source(ws, order.dir, order.dir_given)
    data = pack(ws, rel, skip)
    if len(data) > MAX_ARTIFACT:
        raise HandOverError(f"deploy output {order.dir}/ is too large "
                            f"({len(data) // (1024 * 1024)} MiB packed, limit {MAX_ARTIFACT // (1024 * 1024)})")
    r.set(keys.artifact(build_id), data, ex=ARTIFACT_TTL)
    if not records.move(r, build_id, "running", records.DEPLOY_QUEUED):
        return  # cancelled meanwhile
    logs.append(r, build_id, f"gitserve: build passed, deploying site {order.site}")
    key_file = WorkerSettings.from_env().secrets_key_file
    if key_file is None:
        raise HandOverError("this worker has no secrets.key to sign the deploy job with")
    job = sign_job({**payload.to_json(), ARTIFACT_SHA256: hashlib.sha256(data).hexdigest()},
                   key_file)
    rqconn.queue(r, DEPLOY_QUEUE).enqueue(
        "buildqueue.deploy_job.run_deploy", job,
        job_id=keys.deploy_job(build_id),
        job_timeout=-1, result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
        description=f"deploy build {build_id} to {order.site}",
    )


def default_deploy(options: dict[str, str] | None = None, r: redis.Redis | None = None
                   ) -> Callable[..., Any]:
    """bluegreen.deploy_release on this host, or, for a site with `deploy.hosts`, the
    coordinator of its deploy agents (SPEC §7.1, deploy/agents/), same signature."""
    if options and (options.get("deploy.hosts") or "").strip() and r is not None:
        from deploy.agents.coordinator import Coordinator

        return Coordinator(r).deploy
    from deploy.bluegreen import deploy_release

    return deploy_release


def run_deploy(job_data: dict[str, Any], deploy_fn: Callable[..., Any] | None = None) -> dict[str, str]:
    """Entry point of the `deploy` queue's jobs (server host only); JOB_DATA is a BuildPayload's JSON."""
    from gitserve import settings as settings_mod

    job = get_current_job()
    r = job.connection if job is not None else None
    if r is None:
        raise RuntimeError("run_deploy must run inside an rq worker")
    try:
        rqjob.require(job)
    except rqjob.ForeignJob as exc:  # a worker that would run any function: no deploys on it
        return _end(r, str(job_data.get("build_id", "")), "failed", str(exc),
                    int(job_data.get("log_ttl") or 0))
    try:  # only a job this server (or a worker holding its key) queued
        check_job(job_data, WorkerSettings.from_env().secrets_key_file)
    except SecretError as exc:
        return _end(r, str(job_data.get("build_id", "")), "failed", f"deploy refused: {exc}",
                    int(job_data.get("log_ttl") or 0))
    payload = BuildPayload.from_json(job_data)
    order = payload.deploy
    build_id = payload.build_id
    log_ttl = payload.log_ttl
    if order is None:
        return _end(r, build_id, "failed", "deploy job without a site", log_ttl)

    if not records.move(r, build_id, records.DEPLOY_QUEUED, "deploying", worker_name()):
        return {"status": records.get(r, build_id).status}
    stop = threading.Event()
    threading.Thread(target=heartbeat_loop, args=(r, build_id, stop), daemon=True).start()
    try:  # the job's policy (from Redis), never looser than this worker's own [builds]
        policy, _notes = sandbox.Policy.from_payload(payload.sandbox).floored(
            WorkerSettings.from_env().sandbox_floor())
        # deploy.post runs as the repo's own uid, as its builds do (root workers)
        policy = policy.with_uid(uids.uid_for(r, payload.repo, policy.uid_range)
                                 if os.geteuid() == 0 else None)
    except GitserveError as exc:
        stop.set()
        return _end(r, build_id, "failed", f"deploy refused: {exc}", log_ttl)
    work = sandbox.new_workdir(sandbox.work_root(workspace.work_root()))
    mask: Callable[[str], str] = str  # no secrets known yet: text as it is
    try:
        try:
            secret_values = decrypt(payload.secrets, WorkerSettings.from_env().secrets_key_file)
        except SecretError as exc:
            return _end(r, build_id, "failed", str(exc), log_ttl)
        mask = Masker(list(secret_values.values()))
        data = r.get(keys.artifact(build_id))
        if data is None:
            return _end(r, build_id, "failed", "deploy artifact missing (expired?)", log_ttl)
        if hashlib.sha256(data).hexdigest() != job_data.get(ARTIFACT_SHA256):
            # the job is signed, the bytes beside it in Redis are not: they must be the ones
            # the build worker hashed into the signed job
            return _end(r, build_id, "failed", "deploy refused: the deploy artifact in Redis is "
                        f"not the one build {build_id} made (sha256 differs)", log_ttl)
        output = work / "output"
        output.mkdir()
        try:
            unpack(data, output)
        except (safetar.UnsafeMember, tarfile.TarError, OSError) as exc:
            return _end(r, build_id, "failed", mask(f"deploy output refused: {exc}"), log_ttl)
        src = work / "src"
        objects = workspace.source_objects(payload.repo, payload.commit, payload.fetch_ref,
                                           payload.local_path, payload.clone_url)
        workspace.checkout(objects, payload.commit, src)
        sandbox.hand_over(policy, work)  # deploy.post runs in WORK's sandbox
        settings = settings_mod.load(WorkerSettings.from_env().home)
        meta = {"build_id": build_id, "repo": payload.repo, "ref": payload.ref,
                "commit": payload.new, "pusher": payload.pusher,
                "pushed_at": payload.pushed_at, "env": secret_values,
                # what deploy.post must not see besides HOME (keys configured elsewhere)
                "sandbox_hide": [str(p) for p in WorkerSettings.from_env().sandbox_hidden()],
                # as root, a site's processes and deploy.post run as its repo's build uid
                # (SPEC §6, §7.1), with the build's network and limits
                "sandbox_uid": uids.uid_for(r, payload.repo, policy.uid_range),
                "sandbox_policy": policy.to_payload()}
        options = dict(order.lines)
        fn = deploy_fn or default_deploy(options, r)
        site = order.site
        try:
            result = fn(settings, site, output, options, meta,
                        lambda line: logs.append(r, build_id, mask(line)), src)
        except Exception as exc:  # noqa: BLE001 - DeployError, or any crash: the build failed
            notify.deploy_event(r, build_id, site, "failed", reason=mask(str(exc)))
            return _end(r, build_id, "failed", mask(f"deploy: {exc}"), log_ttl)
        if result is not None and not getattr(result, "skipped", None):
            notify.deploy_event(r, build_id, site, "switched", side=str(getattr(result, "side", "") or ""),
                                previous_side=str(getattr(result, "previous_side", "") or ""))
        return _end(r, build_id, "passed", "", log_ttl, quiet=True)
    except workspace.WorkspaceError as exc:
        return _end(r, build_id, "failed", f"deploy checkout failed: {exc}", log_ttl)
    finally:
        stop.set()
        r.delete(keys.artifact(build_id))
        sandbox.remove_workdir(work)


def _end(r: redis.Redis, build_id: str, status: str, reason: str, log_ttl: int,
         quiet: bool = False) -> dict[str, str]:
    ending.finish(r, build_id, status, reason, log_ttl=log_ttl,
                  last_line="" if quiet else f"gitserve: {reason}",
                  key_file=WorkerSettings.from_env().secrets_key_file)
    return {"status": status}


def queue_preview_removal(r: redis.Redis, repo: str, site: str, branch: str,
                          key_file: Path | None = None) -> None:
    """A deleted branch's preview goes; the `deploy` queue runs it on the server host.
    Signed with KEY_FILE (the server's secrets.key) like every build and deploy job."""
    data: dict[str, Any] = {"repo": repo, "site": site, "branch": branch}
    rqconn.queue(r, DEPLOY_QUEUE).enqueue(
        "buildqueue.deploy_job.remove_preview",
        sign_job(data, key_file) if key_file is not None else data,
        job_timeout=600, result_ttl=3600, failure_ttl=7 * 24 * 3600,
        description=f"remove the preview of {branch} of {site}")


def remove_preview(payload: dict[str, Any]) -> dict[str, str]:
    """Entry point of the removal job (server host only)."""
    from deploy.bluegreen import remove_branch_preview
    from deploy.errors import DeployError
    from gitserve import settings as settings_mod

    try:  # a job forged in Redis would take any site's preview down
        check_job(payload, WorkerSettings.from_env().secrets_key_file)
    except SecretError as exc:
        return {"status": "failed", "reason": f"refused: {exc}"}
    settings = settings_mod.load(WorkerSettings.from_env().home)
    try:
        from deploy.agents import record

        if record.exists(settings, str(payload["site"])):  # deploy.hosts: on every host
            from deploy.agents.coordinator import Coordinator

            removed = Coordinator.for_settings(settings).remove_preview(
                settings, str(payload["site"]), str(payload["branch"]), log=lambda line: None)
        else:
            removed = remove_branch_preview(settings, str(payload["site"]), str(payload["branch"]),
                                            log=lambda line: None)
    except DeployError as exc:
        return {"status": "failed", "reason": str(exc)}
    return {"status": "removed" if removed else "none"}
