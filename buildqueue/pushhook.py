"""buildqueue's PushHook: what a push triggers (gate builds, sync/async builds, post-receive).

gitserve.app puts one in the server's list of push hooks. Nothing runs for a repo without
`option build.enable = 1` (SPEC §6): write access alone never runs code on the server
(Gitolite's default `testing` repo is `RW+ = @all`). Redis trouble never
fails a push: the pusher is told the build could not be queued (gate mode rejects the ref
with that reason, since an unbuilt commit must not pass the gate).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

from gitserve import repos
from gitserve.git.pushhooks import PushContext, RefUpdate
from gitserve.options import BuildOptions
from gitserve.secrets.crypt import result_sealed

from . import ending, enqueue, keys, logs, posthook, records, rqconn, spool
from .notify import events as notify

log = logging.getLogger(__name__)


def _keepalive(ctx: PushContext) -> Callable[[], None] | None:
    fn = ctx.extra.get("keepalive")
    return fn if callable(fn) else None


QUEUED_HINT_AFTER = 5.0  # seconds a build may wait for a worker before the pusher is told


def push_redis(ctx: PushContext):
    """This push's Redis client. An unreachable Redis is waited for at most [redis]
    outage_wait seconds (a Sentinel failover, a restart), once per push: a push that found it
    down answers its other refs, events and hooks at once. Every reply is bounded by a
    socket timeout, so a frozen Redis cannot hang the pusher either."""
    found = ctx.extra.get("redis")
    if isinstance(found, rqconn.RedisUnavailable):
        raise found
    if found is not None:
        return found
    settings = ctx.settings
    try:
        r = rqconn.connect(settings.effective_redis_url, retry_for=settings.redis_outage_wait,
                           socket_timeout=max(rqconn.CONNECT_TIMEOUT,
                                              settings.redis.wait_timeout + 2.0))
    except rqconn.RedisUnavailable as exc:
        ctx.extra["redis"] = exc
        raise
    ctx.extra["redis"] = r
    return r


def confirm_replicated(ctx: PushContext, r, build_id: str) -> None:
    """Redis WAIT before the push is answered on the strength of a Redis write (a queued
    build, a build's end): with [redis] wait_replicas (1 with Sentinel) a failover right after
    the answer cannot lose it. A replica that does not confirm in time is said, not fatal:
    the build is queued on the master and runs unless the master dies now."""
    settings = ctx.settings
    want = settings.redis_wait_replicas
    try:
        got = rqconn.confirm_replicated(r, want, settings.redis.wait_timeout)
    except (rqconn.redis.RedisError, OSError) as exc:
        got, why = 0, f": {rqconn.one_line(exc)}"
    else:
        why = ""
    if got is None or got >= want:
        return
    log.warning("build %s: %d of %d Redis replica(s) confirmed%s", build_id, got, want, why)
    ctx.progress(f"gitserve: build {build_id} is on the Redis master only ({got} of {want} "
                 f"replica(s) confirmed within {settings.redis.wait_timeout:g}s{why}): "
                 "a failover now could lose it")


def hold_build(ctx: PushContext, update: RefUpdate, exc: rqconn.RedisUnavailable) -> None:
    """Redis stayed down past the push's wait: keep the build on disk (spool.py) and say so
    in one line; it is queued when Redis is back."""
    log.error("build of %s %s could not be queued: %s", ctx.repo_name, update.ref, exc)
    try:
        spool.hold(ctx.settings, ctx.repo_path, spool.Held(
            repo=ctx.repo_name, ref=update.ref, old=update.old, new=update.new, pusher=ctx.user,
            options=dict(ctx.options), reason=str(exc)))
    except OSError as err:
        log.error("build of %s %s could not be kept either: %s", ctx.repo_name, update.ref, err)
        ctx.progress(f"build of {update.ref} could not be queued: {exc}")
        return
    ctx.progress(f"build of {update.ref} could not be queued: {exc}; it is kept and queued "
                 "when Redis is back (`builds list` shows it then)")


def stream_build(ctx: PushContext, r, build: records.Build) -> records.Build:
    """Relay the build's log to the pusher live, then its summary line."""
    keepalive = _keepalive(ctx)
    since = time.monotonic()
    hinted = False

    def on_idle() -> None:
        nonlocal hinted
        if keepalive is not None:
            keepalive()
        if hinted or time.monotonic() - since < QUEUED_HINT_AFTER:
            return
        if records.get(r, build.id).status == "queued":
            hinted = True
            ctx.progress(f"gitserve: build {build.id} waits for a worker on queue '{build.queue}' "
                         f"(Ctrl-C is safe; follow it with: {enqueue.follow_command(ctx.settings, build.id)})")

    final = logs.follow(r, build.id, ctx.progress, log_ttl=ctx.settings.builds.log_ttl,
                        on_idle=on_idle)
    confirm_replicated(ctx, r, build.id)  # the end the pusher is about to see survives a failover
    ctx.progress(final.summary())
    log.info("build %s %s (%s %s)", build.id, final.status, ctx.repo_name, build.ref)
    return final


def _wants_build(ctx: PushContext, update: RefUpdate, opts: BuildOptions) -> bool:
    return (opts.enable
            and not update.is_delete
            and enqueue.ref_matches(update.ref, opts.refs)
            and enqueue.commit_has_file(ctx.repo_path, update.new, opts.script))


def _enqueue(ctx: PushContext, update: RefUpdate, mode: str):
    r = push_redis(ctx)
    build = enqueue.enqueue(ctx.settings, r, ctx.repo_name, ctx.repo_path, update.ref,
                            update.old, update.new, ctx.user, ctx.repo_options, mode)
    confirm_replicated(ctx, r, build.id)
    log.info("build %s queued (%s %s %s, %s mode, queue %s)", build.id, ctx.repo_name,
             update.ref, update.new[:12], mode, build.queue)
    options = ctx.repo_options
    site = options.site_name
    default_ref = repos.deploy_default(ctx.settings, ctx.repo_path)
    if site and enqueue.deploy_order(options, update.ref, default_ref) is None:
        # a site repo's other branch builds but never goes live: say so, once per build
        live_ref = options.deploy_ref(default_ref)
        ctx.progress(f"gitserve: build {build.id} of {update.ref} is not deployed: site {site} "
                     f"deploys {live_ref or 'nothing (no default branch)'} (deploy.ref)")
    return r, build


def _remove_previews(ctx: PushContext, updates: list[RefUpdate]) -> None:
    """A deleted branch takes its preview site along (deploy.previews, SPEC §7.1)."""
    site = ctx.options.get("deploy.site", "").strip()
    if not site or not enqueue.previews_enabled(ctx.options):
        return
    gone = [u.ref[len("refs/heads/"):] for u in updates if u.is_delete and u.ref.startswith("refs/heads/")]
    if not gone:
        return
    from .deploy_job import queue_preview_removal

    try:
        r = push_redis(ctx)
        for branch in gone:
            queue_preview_removal(r, ctx.repo_name, site, branch, ctx.settings.secrets_key_file)
            ctx.progress(f"gitserve: the preview of {branch} will be removed")
    except (rqconn.RedisUnavailable, rqconn.redis.RedisError) as exc:
        ctx.progress(f"gitserve: the preview of {gone[0]} could not be removed: {rqconn.one_line(exc)}")


def push_build_options(ctx: PushContext) -> BuildOptions:
    """The repo's build options, adjusted by the pusher's `-o build.skip` / `-o build.mode=async`
    (mode "skip": nothing builds).

    A gate cannot be bypassed from the client: in gate mode both are ignored (and said so)."""
    opts = ctx.repo_options.build
    wants_skip = "build.skip" in ctx.push_options
    wants_async = "build.mode=async" in ctx.push_options
    if not (wants_skip or wants_async):
        return opts
    if opts.mode == "gate":
        if not ctx.extra.get("push_option_warned"):
            ctx.extra["push_option_warned"] = True
            ctx.progress("gitserve: push options build.skip/build.mode are ignored: "
                         "this repository gates pushes on its build")
        return opts
    return dataclasses.replace(opts, mode="skip" if wants_skip else "async")


class BuildHook:
    def before_update(self, ctx: PushContext, update: RefUpdate) -> str | None:
        opts = push_build_options(ctx)
        if opts.mode != "gate" or not _wants_build(ctx, update, opts):
            return None
        for warning in ctx.repo_options.warnings:
            ctx.progress(warning)
        try:
            r, build = _enqueue(ctx, update, "gate")
        except rqconn.RedisUnavailable as exc:
            log.error("build of %s %s could not be queued: %s", ctx.repo_name, update.ref, exc)
            return f"build could not be queued: {exc}"
        try:
            final = stream_build(ctx, r, build)
        except (rqconn.redis.RedisError, OSError) as exc:
            return f"build {build.id} lost: {rqconn.one_line(exc)}"
        finally:
            # a gate build's commit is only pinned while it is judged: refs stay as they were
            enqueue.drop_hidden_refs(ctx.repo_path, [build.id])
        if final.status == "passed":
            seal = r.hget(keys.build(build.id), ending.SEAL_FIELD)
            if result_sealed(ctx.settings.secrets_key_file, build.id, "passed", update.new,
                             seal.decode() if seal else None):
                return None
            log.warning("gate build %s of %s: a pass not sealed by a worker (forged in Redis?)",
                        build.id, ctx.repo_name)
            return (f"build {build.id} passed, but the pass is not sealed by a worker holding "
                    "this server's secrets.key")
        return f"build {build.id} {final.status}"

    def after_push(self, ctx: PushContext, updates: list[RefUpdate]) -> None:
        options = ctx.repo_options
        if updates and options.notify.wants("push"):  # push events need no build.enable
            try:
                notify.push_event(push_redis(ctx), ctx.repo_name, ctx.user, options, updates,
                                  ctx.settings.secrets_key_file)
            except (rqconn.RedisUnavailable, rqconn.redis.RedisError, OSError) as exc:
                # no Redis, no notifications; the push itself is fine
                log.error("push event of %s not queued: %s", ctx.repo_name, rqconn.one_line(exc))
        if updates:
            # Gitolite's repo-specific hooks run as they ran there, builds or not: the script
            # is the admin's, installed in HOME/hooks, never code from the push
            for hook in options.build.post_receive:
                posthook.run_post_receive(ctx, updates, hook, ctx.progress)
        if not options.build.enable:
            return  # SPEC §6: without `option build.enable = 1` a push runs no pushed code
        _remove_previews(ctx, updates)
        opts = push_build_options(ctx)
        if opts.mode == "gate":
            return
        if opts.mode == "skip":
            if any(_wants_build(ctx, u, opts) for u in updates):
                ctx.progress("gitserve: build skipped (push option build.skip)")
            return
        wanted = [u for u in updates if _wants_build(ctx, u, opts)]
        if not wanted:
            return
        for warning in options.warnings:
            ctx.progress(warning)
        started = []
        for update in wanted:
            try:
                r, build = _enqueue(ctx, update, opts.mode)
            except rqconn.RedisUnavailable as exc:
                hold_build(ctx, update, exc)
                continue
            if opts.mode == "async":
                ctx.progress(enqueue.queued_line(ctx.settings, build.id))
            else:
                started.append((r, build))
        for r, build in started:
            try:
                stream_build(ctx, r, build)
            except (rqconn.redis.RedisError, OSError) as exc:
                ctx.progress(f"build {build.id}: lost contact with Redis ({rqconn.one_line(exc)}); "
                             f"see {enqueue.follow_command(ctx.settings, build.id)}")

