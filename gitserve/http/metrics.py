"""What /metrics and /healthz read from outside this process: Redis and the sites on disk.

Builds end on workers and deploys switch in deploy jobs, often in other processes, so
their counters cannot be bumped where the work happens. Before each scrape, `Observer`
looks at the recent builds in Redis and the switch history of every site, and counts the
ones it has not seen yet into the process's `gitserve.metrics.Metrics` (what existed when
the server started is marked seen, so the counters count work done since then, as
Prometheus counters should). Queue depth is a gauge read at scrape time.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from gitserve import shellmetrics
from gitserve.settings import Settings

log = logging.getLogger(__name__)

SCAN_BUILDS = 500  # recent builds looked at per scrape (more end between two scrapes: rare)
SEEN_MAX = 20_000


class Observer:
    def __init__(self, settings: Settings, metrics: Any) -> None:
        self.settings = settings
        self.metrics = metrics
        self._lock = threading.Lock()
        self._builds_seen: set[str] = set()
        self._switches_seen: set[str] = set()
        self._seeded = False
        # what `gitserve shell` sessions behind the system sshd counted (gitserve/shellmetrics.py)
        self._shell = shellmetrics.Reader(settings.run_dir)

    def seed(self) -> None:
        """Mark what already happened as seen (called when the server starts)."""
        with self._lock:
            self._scan(count=False)
            self._seeded = True

    def sync(self) -> None:
        with self._lock:
            self._scan(count=self._seeded)
            self._seeded = True

    def _scan(self, count: bool) -> None:
        try:
            self._scan_builds(count)
        except Exception as exc:  # noqa: BLE001 - Redis down: /healthz says so, metrics go on
            log.info("metrics: builds not read: %s", exc)
        self._scan_switches(count)
        self._scan_shell(count)

    def _scan_shell(self, count: bool) -> None:
        if not count:
            self._shell.skip_existing()
            return
        try:
            new = self._shell.read_new()
        except OSError as exc:
            log.info("metrics: shell sessions not read: %s", exc)
            return
        for name, labels, amount in new:
            if labels and labels[0] == "ssh":
                labels = (shellmetrics.TRANSPORT, *labels[1:])
            try:
                getattr(self.metrics, name).labels(*labels).inc(amount)
            except (AttributeError, ValueError):
                continue  # a label set this server does not know

    def _redis(self) -> Any:
        from buildqueue import rqconn

        return rqconn.connect(self.settings.effective_redis_url)

    def _scan_builds(self, count: bool) -> None:
        from buildqueue import records, rqconn

        r = self._redis()
        for name in {self.settings.builds.queue, "deploy"}:
            self.metrics.queue_depth.labels(name).set(len(rqconn.queue(r, name)))
        for build_id in records.list_ids(r, None, limit=SCAN_BUILDS):
            if build_id in self._builds_seen:
                continue
            try:
                build = records.get(r, build_id)
            except records.BuildNotFound:
                continue
            if not build.is_final:
                continue
            self._builds_seen.add(build_id)
            if count:
                self.metrics.builds.labels(build.status).inc()
                try:
                    self.metrics.build_seconds.observe(float(build.duration or 0))
                except ValueError:
                    pass
        if len(self._builds_seen) > SEEN_MAX:
            self._builds_seen = set(sorted(self._builds_seen, key=int)[-SEEN_MAX // 2:])

    def _scan_switches(self, count: bool) -> None:
        sites = self.settings.sites_dir
        if not sites.is_dir():
            return
        for state_file in sorted(sites.glob("*/state.json")):
            try:
                history = json.loads(state_file.read_text()).get("history", [])
            except (OSError, ValueError, AttributeError):
                continue
            for h in history if isinstance(history, list) else []:
                if not isinstance(h, dict):
                    continue
                key = f"{state_file.parent.name}|{h.get('at')}|{h.get('release')}|{h.get('action')}"
                if key in self._switches_seen:
                    continue
                self._switches_seen.add(key)
                if count:
                    self.metrics.deploys.labels(str(h.get("action", "deploy"))).inc()
                    try:
                        self.metrics.switch_seconds.observe(float(h.get("switch_ms", 0)) / 1000)
                    except (TypeError, ValueError):
                        pass


def health(settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Redis reachable, build workers alive, nginx up (when gitserve runs it)."""
    report: dict[str, Any] = {}
    ok = True
    try:
        from buildqueue import rqconn
        from rq import Worker

        r = rqconn.connect(settings.effective_redis_url)
        report["redis"] = "ok"
        workers = [w for w in Worker.all(connection=r) if w.state != "suspended"]
        report["workers"] = len(workers)
        if not workers:
            ok = False
            report["workers_error"] = "no build worker is registered in Redis"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        ok = False
        report["redis"] = f"unreachable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        report["workers"] = 0
    try:
        from deploy import nginx

        if nginx.is_embedded(settings):
            pid = nginx.running_pid(settings)
            if pid:
                report["nginx"] = "ok"
            elif not nginx.site_confs(settings):
                report["nginx"] = "no sites (not needed)"  # the first deploy starts it
            else:
                report["nginx"] = "not running"
                ok = False
        else:
            report["nginx"] = "system (not checked)"
    except Exception as exc:  # noqa: BLE001
        report["nginx"] = f"error: {exc}"
        ok = False
    report["status"] = "ok" if ok else "failing"
    return ok, report
