"""`builds list|show|log|cancel|retry`: one implementation for the CLI and the SSH command.

The caller says what the user may do through ACCESS(repo, perm, ref="any") ("R" to see a
build, "W" to cancel it, W on the build's ref to retry it). A build the user may not read is
reported exactly like one that does not exist, so build ids leak nothing about other repos.
A retry obeys the conf in force now, not the options stored with the old build: a repo
whose builds were switched off is refused, and removed deploy.* options are not used.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Callable, Protocol

import redis

from gitserve.errors import CommandError
from gitserve.settings import Settings

from . import ending, enqueue, keys, logs, records, rqconn

Access = Callable[..., bool]  # (repo, perm) or (repo, perm, ref)


class Out(Protocol):
    """Where a command writes (sys.stdout on the CLI, the ssh channel over ssh)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...
USAGE = "usage: builds list [--repo R] | show ID | log ID [--follow] | cancel ID | retry ID"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError(f"{message}; {USAGE}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="builds", add_help=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", add_help=False)
    ls.add_argument("--repo")
    ls.add_argument("--limit", type=int, default=50)
    for name in ("show", "cancel", "retry"):
        sub.add_parser(name, add_help=False).add_argument("id")
    lg = sub.add_parser("log", add_help=False)
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true")
    return p


def _when(ts: float) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _visible(r: redis.Redis, build_id: str, access: Access, perm: str = "R") -> records.Build:
    build_id = build_id.lstrip("#")
    try:
        build = records.get(r, build_id)
    except records.BuildNotFound:
        raise CommandError(f"no build {build_id}") from None
    if not access(build.repo, "R"):
        raise CommandError(f"no build {build_id}")
    if perm != "R" and not access(build.repo, perm):
        raise CommandError(f"{perm} access to {build.repo} needed to change build {build_id}")
    return build


def _fresh(r: redis.Redis, build: records.Build, log_ttl: int) -> records.Build:
    """The build as it is now, ending it first if its worker died."""
    if ending.reap_if_lost(r, build, log_ttl=log_ttl):
        return records.get(r, build.id)
    return build


def cmd_list(r, args, access, out, settings) -> int:
    if args.repo and not access(args.repo, "R"):
        raise CommandError(f"no builds for {args.repo}")
    limit = max(1, min(args.limit, 1000))
    rows = []
    for build_id in records.list_ids(r, args.repo, limit=limit if args.repo else limit * 4):
        try:
            build = records.get(r, build_id)
        except records.BuildNotFound:
            continue
        if not access(build.repo, "R"):
            continue
        build = _fresh(r, build, settings.builds.log_ttl)
        rows.append(build)
        if len(rows) >= limit:
            break
    if not rows:
        return 0
    out.write(f"{'ID':>6}  {'STATUS':<13} {'REPO':<20} {'REF':<24} {'COMMIT':<8} "
              f"{'PUSHER':<12} {'CREATED':<20} TIME\n")
    for b in rows:
        ref = b.ref[len("refs/heads/"):] if b.ref.startswith("refs/heads/") else b.ref
        dur = f"{b.duration}s" if b.duration else "-"
        out.write(f"{b.id:>6}  {b.status:<13} {b.repo:<20} {ref:<24} {b.new[:7]:<8} "
                  f"{b.pusher:<12} {_when(b.created):<20} {dur}\n")
    return 0


def cmd_show(r, args, access, out, settings) -> int:
    b = _fresh(r, _visible(r, args.id, access), settings.builds.log_ttl)
    rows = [("build", b.id), ("repo", b.repo), ("ref", b.ref), ("commit", b.new),
            ("previous", b.old), ("pusher", b.pusher), ("mode", b.mode), ("queue", b.queue),
            ("status", b.status), ("reason", b.reason or "-"), ("worker", b.worker or "-"),
            ("created", _when(b.created)), ("started", _when(b.started)),
            ("finished", _when(b.finished)), ("duration", f"{b.duration}s" if b.duration else "-")]
    if b.retry_of:
        rows.append(("retry of", b.retry_of))
    for k, v in rows:
        out.write(f"{k + ':':<10}{v}\n")
    return 0


def cmd_log(r, args, access, out, settings) -> int:
    build = _visible(r, args.id, access)

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    if args.follow:
        final = logs.follow(r, build.id, emit, log_ttl=settings.builds.log_ttl)
        emit(final.summary())
        return 0 if final.status == "passed" else 1
    ended = False
    for entry in logs.entries(r, build.id):
        if entry.get("event") == "end":
            ended = True
        elif "l" in entry:
            emit(entry["l"])
    build = _fresh(r, records.get(r, build.id), settings.builds.log_ttl)
    if build.is_final:
        if not ended and not r.exists(keys.log(build.id)):
            emit(f"(log of build {build.id} expired)")
        emit(build.summary())
    return 0


def cmd_cancel(r, args, access, out, settings, user: str = "") -> int:
    build = _visible(r, args.id, access, "W")
    by = f" by {user}" if user else ""
    ttl = settings.builds.log_ttl
    for _ in range(5):  # the status may move under us; each step is a compare-and-set
        build = _fresh(r, records.get(r, build.id), ttl)
        if build.is_final:
            raise CommandError(f"build {build.id} already {build.status}")
        if build.status in ("queued", records.DEPLOY_QUEUED):
            # not picked up yet: it never will be (the job sees the status and returns)
            if ending.finish(r, build.id, "cancelled", f"cancelled{by}", log_ttl=ttl,
                              last_line=f"gitserve: cancelled{by}", expect=build.status):
                rqconn.cancel_job(r, build.job_id if build.status == "queued" else keys.deploy_job(build.id))
                out.write(f"build {build.id} cancelled\n")
                return 0
            continue
        if build.status == "deploying":
            raise CommandError(f"build {build.id} is deploying; a deploy is never stopped halfway")
        # who cancels, for the job's end line; then rq's stop-job command: the worker kills the
        # work-horse and its on_stopped callback (jobs.stopped) ends the build
        r.set(keys.cancel(build.id), user or "1", ex=24 * 3600)
        rqconn.stop_job(r, build.job_id)
        final = logs.wait_quietly(r, build.id, timeout=15)
        if final.is_final:
            out.write(f"build {build.id} {final.status}\n")
        else:
            out.write(f"build {build.id}: cancel requested (still {final.status})\n")
        return 0
    raise CommandError(f"build {build.id} keeps changing state; try again")


def cmd_retry(r, args, access, out, settings, user: str = "") -> int:
    from gitserve import adminrepo
    from gitserve.options import RepoOptions

    old = _visible(r, args.id, access)
    if not enqueue.options_signed(settings.secrets_key_file, old):
        # the record is in Redis: its commit, ref or repo may have been rewritten there
        raise CommandError(f"build {old.id}'s record is not the one this server wrote: not retried")
    if not access(old.repo, "W", old.ref):
        raise CommandError(f"W access to {old.ref} of {old.repo} needed to retry build {old.id}")
    repo_path = settings.repo_path(old.repo)
    if not repo_path.is_dir():
        raise CommandError(f"repository {old.repo} no longer exists")
    options = RepoOptions.parse(adminrepo.repo_options(settings, old.repo))
    if not options.build.enable:
        raise CommandError(f"builds are off for {old.repo} (no `option build.enable = 1`)")
    if not enqueue.commit_exists(repo_path, old.new):
        raise CommandError(f"commit {old.new[:12]} of build {old.id} is no longer in {old.repo}")
    mode = "async"
    build = enqueue.enqueue(settings, r, old.repo, repo_path, old.ref, old.old, old.new,
                            user or old.pusher, options, mode, retry_of=old.id)
    out.write(enqueue.queued_line(settings, build.id) + "\n")
    return 0


def run(settings: Settings, argv: list[str], access: Access, out: Out, user: str = "") -> int:
    """Run one `builds ...` command; raises CommandError (one line) on bad input or denial."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        out.write(USAGE + "\n")
        return 0
    args = _parser().parse_args(argv)
    try:
        r = rqconn.connect(settings.effective_redis_url)
        handler = {"list": cmd_list, "show": cmd_show, "log": cmd_log}.get(args.cmd)
        if handler is not None:
            return handler(r, args, access, out, settings)
        if args.cmd == "cancel":
            return cmd_cancel(r, args, access, out, settings, user)
        return cmd_retry(r, args, access, out, settings, user)
    except (redis.RedisError, OSError) as exc:  # rqconn.RedisUnavailable is one line already
        raise CommandError(f"Redis error: {rqconn.one_line(exc)}") from None
