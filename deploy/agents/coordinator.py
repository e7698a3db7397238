"""The server's side of a site on several web hosts (SPEC §7.1): two phases over rq.

deploy (the deploy job calls it where a single-host site calls bluegreen.deploy_release):
  1. every host named in deploy.hosts must have a fresh signed status report (else the
     deploy fails at once, naming the host);
  2. the release is stored for the agents to fetch (releases.py), and a `prepare` job is
     queued on each agent's queue `deploy-agent:NAME`: fetch + sha256, publish, processes,
     check through the idle side's preview;
  3. only when EVERY host answered "prepared" are the `switch` jobs queued, all at once;
     if any host failed phase one (its reason, a job it did not take within
     [deploy] agent_timeout seconds, a report that stopped, rq's timeout), the others get
     an `abort` and nothing switches: the old release stays live on every host.
rollback does the same with a release every host still keeps. rq runs each job's life
(timeouts, results, expiry of a job no agent took); every job and result is signed
(auth.py), so nothing a build host writes to Redis is taken for a host's answer.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from gitserve.settings import Settings

from ..bluegreen import DeployResult, read_order
from ..errors import DeployError
from ..options import SiteOptions, check_release_id, check_site_name
from . import auth, queue_name, record, releases, status_key
from .worker import REPORT_TTL

Log = Callable[[str], None]

PREPARE_TIMEOUT = 600   # rq's job_timeout of phase one on a host (fetch, processes, check)
SWITCH_TIMEOUT = 120
ABORT_TIMEOUT = 60
POLL = 0.02
JOB_FUNCTION = "deploy.agents.jobs.run"
# how far an agent's clock may lag the server's before its reports count as stale (a job's
# expiry already needs the clocks within [deploy] agent_timeout of each other)
REPORT_SLACK = 30


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fetch_base(settings: Settings) -> str:
    """Where agents download releases: the server's HTTP face ([http] public_url, else
    http://[http] listen)."""
    if settings.http.public_url:
        return str(settings.http.public_url).rstrip("/")
    listen = str(settings.http.listen or "")
    host = listen.rpartition(":")[0]
    if not listen or host in ("", "0.0.0.0", "[::]", "*"):
        raise DeployError("options", "deploy.hosts: agents fetch releases from this server's HTTP "
                          "face: set [http] listen (or public_url) in gitserve.toml")
    return f"http://{listen}"


def host_options(options: Mapping[str, str], opts: SiteOptions, host: str) -> dict[str, str]:
    """The deploy.* lines HOST deploys with: the site's, its own ports from deploy.host-ports."""
    out = {k: str(v) for k, v in options.items() if k.startswith("deploy.")}
    for name, ports in opts.host_ports:
        if name == host:
            port, _, preview = ports.partition("/")
            out["deploy.port"] = port
            if preview:
                out["deploy.preview-port"] = preview
    return out


# what an agent says reaches the pusher's terminal (`remote:` lines) and the deploy log: a
# compromised web host must not be able to send escape sequences (rewrite the screen, set the
# window title) or fake lines of the server's own with a carriage return
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
MAX_LINES = 500
MAX_LINE = 2000


def agent_text(value: Any) -> str:
    """VALUE from an agent as one printable line: control characters as \\xNN, cut to MAX_LINE."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value)[:MAX_LINE])


def _from_agent(body: dict[str, Any]) -> dict[str, Any]:
    """An agent's verified answer with the text in it made printable and its times numbers
    (the signature proves which host sent it, not that the host is honest)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "lines":
            value = [agent_text(line) for line in value[:MAX_LINES]] if isinstance(value, list) else []
        elif key in ("switched_at", "switch_ms"):
            try:
                value = float(value or 0)
            except (TypeError, ValueError):
                value = 0.0
        elif isinstance(value, str):
            value = agent_text(value)
        out[key] = value
    return out


@dataclass
class Sent:
    host: str
    job: Job
    key: bytes
    at: float
    timeout: float


class Coordinator:
    """Runs deploys, rollbacks and status of sites on deploy agents, through Redis R."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    @classmethod
    def for_settings(cls, settings: Settings) -> Coordinator:
        """On the server's own Redis (buildqueue's connection: Sentinel URLs too)."""
        from buildqueue.rqconn import RedisUnavailable, connect

        try:
            return cls(connect(settings.effective_redis_url))
        except RedisUnavailable as exc:
            raise DeployError("hosts", str(exc)) from None

    # --- the agents' reports -------------------------------------------------------------
    def report(self, settings: Settings, host: str) -> tuple[dict[str, Any] | None, str]:
        """(HOST's verified status report, "") or (None, why it counts as down)."""
        key = auth.server_key(settings, host)
        if key is None:
            return None, f"no agent key on this server (gitserve deploy agent-key {host})"
        try:
            raw = self.r.get(status_key(host))
        except redis.RedisError as exc:
            return None, f"Redis: {exc}"
        if raw is None:
            return None, f"deploy agent is down (no status report in the last {REPORT_TTL}s)"
        try:
            body = auth.unseal(key, "status", json.loads(raw))
        except (ValueError, auth.BadSignature) as exc:
            return None, f"status report refused: {getattr(exc, 'message', exc)}"
        # sealed is not fresh: a report kept from Redis and SET back (without expiry) would
        # show a dead agent up, with its old sides and releases, for ever
        at = body.get("at")
        age = time.time() - float(at) if isinstance(at, (int, float)) else float("inf")
        if body.get("agent") != host or age > REPORT_TTL + REPORT_SLACK:
            return None, (f"deploy agent is down (its last status report is stale: "
                          f"{age:.0f}s old)")
        return body, ""

    def _down(self, settings: Settings, hosts: list[str]) -> list[str]:
        return [f"host {h}: {why}" for h in hosts for rep, why in [self.report(settings, h)]
                if rep is None]

    # --- jobs ------------------------------------------------------------------------------
    def _send(self, settings: Settings, host: str, kind: str, body: Mapping[str, Any],
              timeout: float) -> Sent:
        key = auth.server_key(settings, host)
        if key is None:
            raise DeployError("hosts", f"host {host}: no agent key on this server "
                              f"(gitserve deploy agent-key {host})")
        wait = float(settings.deploy.agent_timeout)
        nonce = secrets.token_hex(8)
        sealed = auth.seal(key, "job", {**body, "kind": kind, "agent": host, "nonce": nonce,
                                         "expires": time.time() + wait})
        job = Queue(queue_name(host), connection=self.r, serializer=JSONSerializer).enqueue(
            JOB_FUNCTION, sealed, job_id=f"agent-{kind}-{host}-{nonce}", job_timeout=int(timeout),
            ttl=int(wait) + 1,  # rq drops a job no agent took in time
            result_ttl=3600, failure_ttl=24 * 3600,
            description=f"{kind} {body.get('site')} {body.get('release')} on {host}")
        return Sent(host, job, key, time.monotonic(), timeout)

    def _wait(self, settings: Settings, sent: list[Sent]) -> dict[str, dict[str, Any]]:
        """Every host's verified outcome: {"ok": bool, "reason": ..., "lines": [...], ...}."""
        wait = float(settings.deploy.agent_timeout)
        out: dict[str, dict[str, Any]] = {}
        pending = {s.host: s for s in sent}
        next_report = time.monotonic() + 1.0
        while pending:
            now = time.monotonic()
            check_reports = now >= next_report
            if check_reports:
                next_report = now + 1.0
            for host, s in list(pending.items()):
                result = self._outcome(s, now, wait)
                if result is None and check_reports and self.report(settings, host)[0] is None:
                    result = {"ok": False, "reason": "deploy agent stopped reporting during the job"}
                if result is not None:
                    out[host] = result
                    del pending[host]
            if pending:
                time.sleep(POLL)
        return out

    def _outcome(self, s: Sent, now: float, wait: float) -> dict[str, Any] | None:
        try:
            status = s.job.get_status(refresh=True)
        except NoSuchJobError:
            status = None
        if status == JobStatus.FINISHED:
            try:
                body = auth.unseal(s.key, "result", s.job.return_value(refresh=True))
            except auth.BadSignature as exc:
                return {"ok": False, "reason": f"its answer was refused: {exc.message}"}
            if body.get("nonce") != s.job.id.rsplit("-", 1)[1] or body.get("agent") != s.host:
                return {"ok": False, "reason": "its answer belongs to another job"}
            return _from_agent(body)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            return {"ok": False, "reason": f"job {status.value}: {self._failure(s.job)}"}
        if status in (None, JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            if now - s.at > wait:
                try:
                    s.job.cancel()
                except (InvalidJobOperation, NoSuchJobError):
                    pass
                return {"ok": False, "reason": f"deploy agent did not take the job within {wait:g}s"}
            return None
        if now - s.at > s.timeout + wait:
            return {"ok": False, "reason": f"no answer within {s.timeout + wait:g}s"}
        return None

    @staticmethod
    def _failure(job: Job) -> str:
        try:
            result = job.latest_result()
            text = (getattr(result, "exc_string", "") or "").strip()
        except Exception:  # noqa: BLE001 - only the reason's wording depends on it
            text = ""
        lines = [line for line in text.splitlines() if line.strip()]
        return agent_text(lines[-1].strip()[:300]) if lines else "no reason recorded"

    def run_phase(self, settings: Settings, hosts: list[str], kind: str,
                  bodies: Callable[[str], Mapping[str, Any]], timeout: float, say: Log
                  ) -> dict[str, dict[str, Any]]:
        """One KIND job per host at once (body from BODIES(host)); every host's verified
        outcome, the lines it said passed to SAY as `[host] line`."""
        sent = [self._send(settings, h, kind, bodies(h), timeout) for h in hosts]
        results = self._wait(settings, sent)
        for host in hosts:
            for line in results[host].get("lines") or []:
                if not str(line).startswith("Enable: "):
                    say(f"[{host}] {line}")
        return results

    def _abort(self, settings: Settings, hosts: list[str], site: str, release: str, say: Log) -> None:
        """Best effort: hosts that prepared stop their idle processes."""
        if hosts:
            self.run_phase(settings, hosts, "abort", lambda h: {"site": site, "release": release},
                            ABORT_TIMEOUT, say)

    # --- deploy and rollback ---------------------------------------------------------------
    def deploy(self, settings: Settings, site: str, output_dir: Path, options: Mapping[str, str],
               meta: Mapping[str, Any], log: Log, post_workdir: Path | None = None) -> DeployResult:
        """Deploy OUTPUT_DIR as release meta['build_id'] of SITE on every host of deploy.hosts."""
        order = read_order(settings, site, options, meta, log)
        name, release, opts, say, started = order.name, order.release, order.opts, order.say, order.started
        try:
            hosts = list(opts.hosts)
            if not hosts:
                raise DeployError("options", f"site {name} names no deploy.hosts")
            if opts.post and not str(options.get("deploy.preview") or ""):
                raise DeployError("options", "deploy.post does not run with deploy.hosts: it would "
                                  "need the commit on every host")
            stray = [h for h, _ in opts.host_ports if h not in hosts]
            if stray:
                raise DeployError("options", f"deploy.host-ports names {stray[0]}, not in deploy.hosts")
            base = fetch_base(settings)
        except DeployError as exc:
            say(f"FAILED at {exc.step}: {exc.message}")
            raise
        with record.lock(settings, name):
            rec = record.load(settings, name)
            try:
                return self._deploy_locked(settings, name, rec, opts, hosts, release, base,
                                           Path(output_dir), options, meta, say, log, started)
            except DeployError as exc:
                self._audit(settings, {**rec, "site": name, "repo": rec.get("repo") or meta.get("repo")},
                            meta.get("pusher"), "deploy", "error", f"build {release}: {exc.message}")
                raise

    def _deploy_locked(self, settings: Settings, name: str, rec: dict[str, Any], opts: SiteOptions,
                       hosts: list[str], release: str, base: str, output_dir: Path,
                       options: Mapping[str, str], meta: Mapping[str, Any], say: Log, log: Log,
                       started: float) -> DeployResult:
        owner = rec.get("repo")
        if owner and meta.get("repo") and owner != meta.get("repo"):
            raise self._failed(say, DeployError("options", f"site {name} is deployed from repo "
                                                f"{owner}, not {meta.get('repo')}"), rec)
        branch = str(options.get("deploy.preview") or "")
        if branch:
            return self._preview(settings, name, rec, opts, hosts, release, base, output_dir,
                                 options, meta, branch, say, started)
        theirs, mine = rec.get("live_pushed_at"), meta.get("pushed_at")
        if rec.get("release") and theirs is not None and mine is not None and float(theirs) > float(mine):
            skipped = f"build {rec['release']} was pushed later and is already live"
            say(f"skipped: {skipped}")  # the lock serialized two pushes: the last one wins
            return DeployResult(name, "", str(rec["release"]), None, rec.get("release"), 0.0,
                                time.monotonic() - started, skipped=skipped)
        down = self._down(settings, hosts)
        if down:
            raise self._failed(say, DeployError("hosts", down[0]), rec)
        rec.update(site=name, repo=meta.get("repo") or owner, hosts=hosts)
        record.save(settings, name, rec)
        releases.clean_stale(settings, name)
        stored = releases.store(settings, name, release, Path(output_dir))
        say(f"release {release}: {stored.size} bytes, sha256 {stored.sha256[:16]}..., "
            f"to {len(hosts)} hosts: {' '.join(hosts)}")
        env = {str(k): str(v) for k, v in dict(meta.get("env") or {}).items()}
        plain = {k: meta.get(k) for k in ("build_id", "repo", "ref", "commit", "pusher",
                                          "pushed_at", "sandbox_uid")}
        try:
            t1 = time.monotonic()
            results = self.run_phase(
                settings, hosts, "prepare",
                lambda h: {"site": name, "release": release,
                           "options": host_options(options, opts, h), "meta": plain,
                           "env": auth.encrypt_env(auth.ensure_server_key(settings, h), env),
                           "fetch": {"url": base, "sha256": stored.sha256, "size": stored.size}},
                PREPARE_TIMEOUT, say)
            phase_one = time.monotonic() - t1
            self._all_or_none(settings, say, rec, hosts, results, name, release, "deploy")
            say(f"phase one: prepared and checked on {len(hosts)} hosts in {phase_one:.1f}s")
            rec["pending_pushed_at"] = meta.get("pushed_at")
            return self._switch_all(settings, say, log, rec, hosts, name, release, "deploy",
                                    meta.get("pusher"), started)
        finally:
            releases.discard(settings, name, release)

    def restart(self, settings: Settings, site: str, by: str | None = None, log: Log = print
                ) -> DeployResult:
        """`deploy restart SITE`: on every host the live release's processes start afresh on
        the idle side and are checked; then all hosts switch (none unless all are ready)."""
        return self.rollback(settings, site, by=by, log=log, action="restart")

    def _preview(self, settings: Settings, name: str, rec: dict[str, Any], opts: SiteOptions,
                 hosts: list[str], release: str, base: str, output_dir: Path,
                 options: Mapping[str, str], meta: Mapping[str, Any], branch: str, say: Log,
                 started: float) -> DeployResult:
        """A branch's build goes to BRANCH.SERVER_NAME on every host (deploy.previews):
        blue/green is untouched, so no two phases: each host publishes its own copy, and the
        line names every host that could not."""
        if not rec.get("release"):
            raise DeployError("options", f"site {name}: a branch preview needs a live deploy on its "
                              "hosts first")
        down = self._down(settings, hosts)
        if down:
            raise DeployError("hosts", down[0])
        stored = releases.store(settings, name, release, output_dir)
        env = {str(k): str(v) for k, v in dict(meta.get("env") or {}).items()}  # the preview's processes
        plain = {k: meta.get(k) for k in ("build_id", "repo", "ref", "commit", "pusher", "pushed_at",
                                          "sandbox_uid")}
        try:
            results = self.run_phase(
                settings, hosts, "preview",
                lambda h: {"site": name, "release": release, "options": host_options(options, opts, h),
                           "meta": plain, "env": auth.encrypt_env(auth.ensure_server_key(settings, h), env),
                           "fetch": {"url": base, "sha256": stored.sha256, "size": stored.size}},
                PREPARE_TIMEOUT, say)
        finally:
            releases.discard(settings, name, release)
        bad = [h for h in hosts if not results[h].get("ok")]
        if bad:
            raise DeployError("preview", f"host {bad[0]}: {results[bad[0]].get('reason')}"
                              + (f" (and {' '.join(bad[1:])})" if bad[1:] else ""))
        say(f"preview of {branch} on {' '.join(hosts)}")
        return DeployResult(name, "", str(rec.get("release") or ""), None, rec.get("release"), 0.0,
                            time.monotonic() - started, skipped=f"preview of branch {branch}")

    def remove_preview(self, settings: Settings, site: str, branch: str, log: Log) -> bool:
        """The branch was deleted: its preview goes from every host that answers."""
        name = check_site_name(site)
        with record.lock(settings, name):
            hosts = list(record.load(settings, name)["hosts"])
            results = self.run_phase(settings, hosts, "unpreview",
                                     lambda h: {"site": name, "release": "-", "branch": branch},
                                     ABORT_TIMEOUT, log)
        bad = [h for h in hosts if not results[h].get("ok")]
        if bad:
            raise DeployError("preview", f"host {bad[0]}: {results[bad[0]].get('reason')}")
        return any(results[h].get("removed") for h in hosts)

    def rollback(self, settings: Settings, site: str, to: str | None = None, by: str | None = None,
                 log: Log = print, action: str = "rollback") -> DeployResult:
        """Every host back to the release before the live one (or TO), in two phases."""
        started = time.monotonic()
        name = check_site_name(site)

        def say(line: str) -> None:
            log(f"{action} {name}: {line}")

        with record.lock(settings, name):
            rec = record.load(settings, name)
            try:
                return self._rollback_locked(settings, name, rec, to, by, action, say, log, started)
            except DeployError as exc:
                self._audit(settings, {**rec, "site": name}, by, action, "error", exc.message)
                raise

    def _rollback_locked(self, settings: Settings, name: str, rec: dict[str, Any], to: str | None,
                         by: str | None, action: str, say: Log, log: Log, started: float
                         ) -> DeployResult:
        hosts = list(rec["hosts"])
        current = rec.get("release")
        if not hosts or not current:
            raise DeployError(action, f"site {name} has nothing live on its hosts")
        if action == "restart":  # the live release started afresh on every idle side
            target = str(current)
        elif to is not None:
            target = check_release_id(to)
            if target == current:
                raise DeployError("rollback", f"release {target} is already live")
        else:
            order = list(rec["deployed"])
            before = order[: order.index(current)] if current in order else []
            if not before:
                raise DeployError("rollback", f"site {name} has no release before {current} "
                                  "to roll back to")
            target = before[-1]
        down = self._down(settings, hosts)
        if down:
            raise self._failed(say, DeployError("hosts", down[0]), rec)
        results = self.run_phase(settings, hosts, "rollback",
                                  lambda h: {"site": name, "release": target, "action": action},
                                  PREPARE_TIMEOUT, say)
        self._all_or_none(settings, say, rec, hosts, results, name, target, action)
        return self._switch_all(settings, say, log, rec, hosts, name, target, action, by, started)

    def _all_or_none(self, settings: Settings, say: Log, rec: dict[str, Any], hosts: list[str],
                     results: dict[str, dict[str, Any]], site: str, release: str, action: str) -> None:
        """Phase one's verdict: one failed host fails the whole deploy; the others abort."""
        bad = [h for h in hosts if not results[h].get("ok")]
        if not bad:
            return
        self._abort(settings, [h for h in hosts if results[h].get("ok")], site, release, say)
        first = bad[0]
        reason = str(results[first].get("reason") or "failed")
        if len(bad) > 1:
            reason += f" (and {len(bad) - 1} more host{'s' if len(bad) > 2 else ''}: {' '.join(bad[1:])})"
        raise self._failed(say, DeployError("hosts", f"host {first}: {reason}"), rec)

    def _switch_all(self, settings: Settings, say: Log, log: Log, rec: dict[str, Any],
                    hosts: list[str], site: str, release: str, action: str, by: Any,
                    started: float) -> DeployResult:
        t2 = time.monotonic()
        results = self.run_phase(settings, hosts, "switch",
                                  lambda h: {"site": site, "release": release, "by": by},
                                  SWITCH_TIMEOUT, say)
        done = [h for h in hosts if results[h].get("ok")]
        previous = rec.get("release")
        for h in done:
            r = results[h]
            rec["live"][h] = {"side": r.get("live_side"), "release": release, "at": _now()}
        moments = [float(results[h].get("switched_at") or 0) for h in done]
        skew_ms = round((max(moments) - min(moments)) * 1000, 1) if moments else 0.0
        entry = {"action": action, "release": release, "at": _now(), "by": by,
                 "from_release": previous, "skew_ms": skew_ms,
                 "seconds": round(time.monotonic() - started, 2),
                 "hosts": {h: {"side": results[h].get("live_side"),
                               "switch_ms": results[h].get("switch_ms"),
                               "ok": bool(results[h].get("ok")),
                               "reason": results[h].get("reason")} for h in hosts}}
        rec["history"].append(entry)
        bad = [h for h in hosts if h not in done]
        if bad:
            first = bad[0]
            reason = f"host {first}: {results[first].get('reason')}"
            back = self._switch_back(settings, say, rec, done, site, previous, by) if done else []
            for h in back:
                rec["live"][h] = {"side": rec["live"][h]["side"], "release": previous, "at": _now()}
            record.save(settings, site, rec)
            stuck = [h for h in done if h not in back]
            if not stuck:  # none stays switched: the old release is live everywhere again
                where = (f"; {' '.join(back)} switched back, release {previous} is live on "
                         f"{' '.join(hosts)}" if back else "")
                raise self._failed(say, DeployError("switch", reason + where), rec, partial=bool(back))
            raise self._failed(say, DeployError(
                "switch", f"{reason}; still on release {release}: {' '.join(stuck)}, on "
                f"{previous or 'nothing'}: {' '.join(h for h in hosts if h not in stuck)} "
                f"(deploy rollback {site} or push again)"), rec, partial=True)
        self._audit(settings, rec, by, action, "updated",
                    f"release {previous or '-'} -> {release} on {' '.join(hosts)}")
        rec["release"] = release
        rec["live_pushed_at"] = rec.pop("pending_pushed_at", None) if action == "deploy" else None
        if action == "deploy" and release not in rec["deployed"]:
            rec["deployed"].append(release)
            rec["deployed"] = rec["deployed"][-1000:]
        record.save(settings, site, rec)
        sides = {h: str(results[h].get("live_side")) for h in hosts}
        say(f"switched {len(hosts)} hosts to release {release} in {time.monotonic() - t2:.2f}s "
            f"(skew between hosts {skew_ms:.0f} ms); {' '.join(f'{h}={s}' for h, s in sides.items())}")
        log("Enable: " + (next(iter(sides.values())) if len(set(sides.values())) == 1
                          else " ".join(f"{h}={s}" for h, s in sides.items())))
        first_side = sides[hosts[0]]
        say(f"done: release {release} live on {' '.join(hosts)} in {time.monotonic() - started:.1f}s")
        return DeployResult(site, first_side, release, None, previous,
                            max(float(results[h].get("switch_ms") or 0) for h in hosts) / 1000,
                            time.monotonic() - started)

    def _switch_back(self, settings: Settings, say: Log, rec: dict[str, Any], hosts: list[str],
                     site: str, previous: str | None, by: Any) -> list[str]:
        """A host failed phase two after HOSTS switched: they go back to PREVIOUS (two phases
        again, on them only), so no host stays on a release the others do not serve. Returns
        the hosts switched back."""
        if not previous:
            return []
        say(f"switching {' '.join(hosts)} back to release {previous}")
        ready = self.run_phase(settings, hosts, "rollback",
                                lambda h: {"site": site, "release": previous, "action": "rollback"},
                                PREPARE_TIMEOUT, say)
        ok = [h for h in hosts if ready[h].get("ok")]
        if not ok:
            return []
        done = self.run_phase(settings, ok, "switch",
                               lambda h: {"site": site, "release": previous, "by": by},
                               SWITCH_TIMEOUT, say)
        return [h for h in ok if done[h].get("ok")]

    @staticmethod
    def _audit(settings: Settings, rec: dict[str, Any], by: Any, action: str, result: str,
               reason: str) -> None:
        """Switches and failed deploys join the audit log, as on a single host."""
        from gitserve import audit

        audit.record(settings, user=str(by) if by else None,
                     op="deploy" if action == "deploy" else f"deploy {action}", result=result,
                     repo=str(rec.get("repo") or "") or None, reason=f"{rec.get('site')}: {reason}")

    @staticmethod
    def _failed(say: Log, exc: DeployError, rec: dict[str, Any], partial: bool = False) -> DeployError:
        live = rec.get("release")
        if partial:  # the message says which hosts switched
            where = ""
        elif live:
            where = f"; no host switched, release {live} stays live on {' '.join(rec['hosts'])}"
        else:
            where = "; no host switched, nothing was live yet"
        say(f"FAILED at {exc.step}: {exc.message}{where}")
        return DeployError(exc.step, f"{exc.message}{where}")

    # --- status ----------------------------------------------------------------------------
    def status(self, settings: Settings, site: str) -> dict[str, Any]:
        name = check_site_name(site)
        if not record.exists(settings, name):
            raise DeployError("status", f"no site {name}")
        rec = record.load(settings, name)
        hosts = []
        for h in rec["hosts"]:
            rep, why = self.report(settings, h)
            here = dict((rep or {}).get("sites", {}).get(name) or {})
            hosts.append({"host": h, "up": rep is not None, "down_reason": why or None,
                          "reported_at": (rep or {}).get("at"), **here})
        last = rec["history"][-1] if rec["history"] else {}
        live = rec.get("release")
        order = list(rec["deployed"])
        before = order[: order.index(live)] if live in order else []
        sides = {h.get("live_side") for h in hosts if h["up"]}
        return {"site": name, "repo": rec.get("repo"), "release": live,
                "hosts": hosts, "deployed": list(reversed(order[-10:])),
                "last": last, "history": rec["history"][-10:],
                # the single-host status' fields, so the web UI shows both kinds of site
                "live_side": sides.pop() if len(sides) == 1 else ("per host" if sides else None),
                "live_release": live, "idle_side": None, "idle_release": None,
                "since": last.get("at"), "by": last.get("by"), "action": last.get("action"),
                "url": None, "preview_url": None, "rollback_to": before[-1] if before else None,
                "processes": [], "previews": [],
                "releases": [{"release": r, "build_id": r, "live": r == live,
                              "status": "live" if r == live else "kept"}
                             for r in reversed(order[-10:])]}


def format_ps(site: str, st: dict[str, Any]) -> str:
    """`deploy ps SITE` of a site on hosts: each host's processes as it last reported them."""
    from ..proclog import format_ps as one_host

    out = []
    for h in st["hosts"]:
        if not h["up"]:
            out.append(f"{h['host']}: DOWN: {h['down_reason']}")
            continue
        out.append(f"{h['host']}:")
        out.extend("  " + line for line in one_host(site, list(h.get("ps") or []),
                                                    now=h.get("reported_at")).splitlines())
    return "\n".join(out)


def format_status(st: dict[str, Any]) -> str:
    out = [f"site {st['site']}" + (f" (repo {st['repo']})" if st.get("repo") else "")
           + f" on {len(st['hosts'])} hosts"]
    out.append(f"release:  {st.get('release') or 'nothing deployed yet'}")
    last = st.get("last") or {}
    if last:
        out.append(f"last:     {last.get('action')} of {last.get('release')} at {last.get('at')} "
                   f"by {last.get('by') or '-'} ({last.get('seconds', '-')}s, "
                   f"skew {last.get('skew_ms', '-')} ms)")
    for h in st["hosts"]:
        if not h["up"]:
            out.append(f"  {h['host']:<12} DOWN: {h['down_reason']}")
            continue
        mark = "" if h.get("live_release") == st.get("release") else "  (differs)"
        out.append(f"  {h['host']:<12} live {h.get('live_side') or '-'} release "
                   f"{h.get('live_release') or '-'}  idle {h.get('idle_side') or '-'} release "
                   f"{h.get('idle_release') or '-'}  processes {h.get('processes', 0)}  since "
                   f"{h.get('since') or '-'}{mark}")
    if st.get("deployed"):
        out.append(f"releases (newest first): {' '.join(st['deployed'])}")
    return "\n".join(out)
