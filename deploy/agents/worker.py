"""`gitserve deploy-agent`'s worker: an rq worker on `deploy-agent:NAME` that runs nothing
but the agent job (its own Job class, as buildqueue/rqjob.py does for builds: whoever can
write to Redis must not make a web host import and call any function), plus a thread that
keeps the agent's signed status report in Redis every REPORT_INTERVAL seconds. The report
expires after REPORT_TTL: a stopped or killed agent is seen as down within that time.
"""

from __future__ import annotations

import json
import os
import socket
import logging
import threading
import time
from typing import Any, Callable

import redis
from rq import Worker
from rq.serializers import JSONSerializer

from buildqueue.rqjob import AllowlistJob
from gitserve.errors import GitserveError
from gitserve.settings import Settings

from ..errors import DeployError
from . import auth, phases, queue_name, status_key

log = logging.getLogger("gitserve.agent")

ALLOWED = frozenset({"deploy.agents.jobs.run"})
REPORT_INTERVAL = 2.0
REPORT_TTL = 10


class ForeignAgentJob(GitserveError):
    """A job on an agent's queue that is not the agent job (one line in its record)."""


class AgentJob(AllowlistJob):
    """rq's Job, refusing every function but the agent's and every callback."""

    ALLOWED_FUNCS = ALLOWED
    KIND = "deploy agent job"
    REFUSED = ForeignAgentJob


class Reporter:
    """Writes the agent's sealed status report (what each site serves here) to Redis."""

    def __init__(self, settings: Settings, name: str, key: bytes, r: redis.Redis) -> None:
        self.settings, self.name, self.key, self.r = settings, name, key, r
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="agent-report", daemon=True)
        self.instance = f"{socket.gethostname()} pid {os.getpid()}"

    def report_once(self) -> None:
        body = {"agent": self.name, "at": time.time(), "instance": self.instance,
                "sites": phases.report(self.settings)}
        self.r.set(status_key(self.name), json.dumps(auth.seal(self.key, "status", body)),
                   ex=REPORT_TTL)

    def _last(self) -> dict[str, Any] | None:
        raw = self.r.get(status_key(self.name))
        try:
            return auth.unseal(self.key, "status", json.loads(raw)) if raw else None
        except (ValueError, auth.BadSignature):
            return None  # not the agent's own: no agent of this name wrote it

    def claim(self) -> None:
        """Refuse to run beside a live agent of the same name (two would split the site's
        phases between them): its report still advancing after REPORT_INTERVAL means it
        runs. A report left by a killed agent stops advancing; a clean stop deletes it."""
        first = self._last()
        if first is None or first.get("instance") == self.instance:
            return
        time.sleep(REPORT_INTERVAL * 1.5)
        second = self._last()
        if second is not None and second.get("at") != first.get("at") \
                and second.get("instance") != self.instance:
            raise DeployError("agent", f"another deploy agent {self.name} is running "
                              f"({second.get('instance')}): each web host needs its own name")

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.report_once()
            except (redis.RedisError, GitserveError, OSError) as exc:
                log.warning("status report not written: %s", exc)
            self.stopping.wait(REPORT_INTERVAL)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """A clean stop says so at once: the server sees the agent down without waiting."""
        self.stopping.set()
        try:
            self.r.delete(status_key(self.name))
        except redis.RedisError:
            pass


def run_agent(settings: Settings, name: str, key: bytes, r: redis.Redis, burst: bool = False,
              ready: Callable[[], None] = lambda: None) -> bool:
    """Work NAME's queue until stopped (SIGTERM: rq finishes the job it runs, then exits).
    READY is called once the first status report is in Redis (deploys see the agent up)."""
    reporter = Reporter(settings, name, key, r)
    reporter.claim()
    reporter.report_once()
    reporter.start()
    ready()
    worker = Worker([queue_name(name)], connection=r, serializer=JSONSerializer, job_class=AgentJob,
                    name=f"deploy-agent.{name}.{os.getpid()}")
    log.info("deploy agent %s: working %s", name, queue_name(name))
    try:
        return bool(worker.work(burst=burst, with_scheduler=False, logging_level="WARNING"))
    finally:
        reporter.stop()
