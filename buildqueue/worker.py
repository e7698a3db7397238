"""RQ workers for builds: the in-process worker of `gitserve worker`, and the local worker
processes `gitserve serve` starts and stops with itself.

A plain `rq worker --url URL --serializer rq.serializers.JSONSerializer --job-class
buildqueue.rqjob.GitserveJob builds` works too (without the job class it runs no build);
`gitserve worker` only adds gitserve's settings (Redis URL from HOME, default queues) and
imports the job code before forking, so each build starts without import delay.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# deploy first: a free worker finishes a passed build's deploy before starting another build
from .runner import die_with_parent, forks_die_with_parent

DEFAULT_QUEUES = ("deploy", "builds")
STOP_TIMEOUT = 10.0
RESPAWN_CHECK = 1.0  # seconds between checks for dead local workers
# A worker that dies within STEADY seconds of its start (Redis unreachable, a broken install)
# would die again at once: each respawn is a Python start (~1 s of CPU), so the wait before
# the next one doubles up to RESPAWN_MAX. One that ran longer is replaced at the next check.
STEADY = 30.0
RESPAWN_MAX = 16.0


def respawn_delay(lived: float, previous: float) -> float:
    """Seconds to wait before replacing a worker that died after LIVED seconds, when the
    wait before its own start was PREVIOUS (0 for a first start)."""
    if lived >= STEADY:
        return 0.0
    return min(RESPAWN_MAX, max(RESPAWN_CHECK, 2 * previous))


def _cold_stop_worker_class() -> type:
    from rq import Worker

    class ColdStopWorker(Worker):
        """SIGTERM stops at once: the running job's work horse is killed (its sandbox dies
        with it) and the worker exits. serve's local workers are this kind: their SIGTERM
        comes from serve stopping, or from the kernel when serve was killed (parent-death
        signal), and rq's warm shutdown would finish the job first, as an orphan outliving
        serve (rq ignores a second SIGTERM within a second, so "twice" does not help)."""

        def request_stop(self, signum: Any, frame: Any) -> None:
            self.log.warning("Worker %s: stopping now (signal %s)", self.name, signum)
            if self.horse_pid:
                self.kill_horse()
                self.wait_for_horse()
            # exit here, not by SystemExit: the signal may have interrupted a BLPOP, and rq's
            # teardown on that connection would wait for the BLPOP's answer (its timeout);
            # Redis expires the worker's registration, and the build reaper ends its build
            logging.shutdown()
            os._exit(0)

    return ColdStopWorker


NOTIFY_MAINTENANCE = 30  # seconds between a notify worker's rq maintenance runs
RECONNECT_CAP = 4.0  # seconds between a worker's tries to reach a Redis that is down


def run_worker(redis_url: str, queues: list[str], name: str | None = None, burst: bool = False,
               cold_stop: bool = False) -> bool:
    """Work QUEUES until stopped (SIGTERM: finish the current job, or with COLD_STOP kill
    it and exit at once; twice: stop now)."""
    from rq import Worker
    from rq.serializers import JSONSerializer

    from . import deploy_job, jobs  # noqa: F401  (preloaded before each fork)
    from .notify import notifier  # noqa: F401
    from .notify.events import NOTIFY_QUEUE
    from .rqconn import connect
    from .rqjob import GitserveJob

    r = connect(redis_url)
    base = _cold_stop_worker_class() if cold_stop else Worker
    # back to work within RECONNECT_CAP s of Redis returning from an outage, not rq's up to 60
    cls = type("GitserveWorker", (base,), {"max_connection_wait_time": RECONNECT_CAP})
    # only gitserve's job functions run here, whatever a job in Redis names (buildqueue/rqjob.py);
    # rq's scheduler re-queues a notification delivery whose retry is due (notify/notifier.py)
    scheduler = NOTIFY_QUEUE in queues
    worker = cls(queues, connection=r, serializer=JSONSerializer, name=name, job_class=GitserveJob,
                 # a scheduler lock left by a notify worker that was killed expires after 61 s;
                 # rq retries taking it at maintenance, by default only every 10 minutes
                 **({"maintenance_interval": NOTIFY_MAINTENANCE} if scheduler else {}))
    # the horse and the scheduler this worker forks die with it (kill -9, parent-death signal)
    forks_die_with_parent()
    return worker.work(burst=burst, with_scheduler=scheduler, logging_level="WARNING")


class LocalWorkers:
    """N `gitserve worker` child processes on this host (they see HOME: fast local fetch)."""

    def __init__(self, home: Path, redis_url: str, count: int,
                 queues: tuple[str, ...] = DEFAULT_QUEUES, log_file: Path | None = None,
                 env: dict[str, str] | None = None, cold_stop: bool = True) -> None:
        self.home, self.redis_url, self.count = home, redis_url, count
        self.queues, self.log_file, self.cold_stop = queues, log_file, cold_stop
        self.env = env or {}  # more of the worker's environment (buildqueue.workersettings names it)
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "LocalWorkers":
        self._stopping = threading.Event()
        self.procs = [self._spawn() for _ in range(self.count)]
        now = time.monotonic()
        self._started = [now] * self.count  # when each slot's process was spawned
        self._waited = [0.0] * self.count  # the wait before that spawn (respawn_delay)
        self._due: list[float | None] = [None] * self.count  # when a dead slot is respawned
        if self.count:
            threading.Thread(target=self._supervise, name="gitserve-workers", daemon=True).start()
        return self

    def _spawn(self) -> subprocess.Popen:
        env = dict(os.environ, **self.env, GITSERVE_HOME=str(self.home))
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "gitserve", "worker", "--url", self.redis_url,
                 "--no-log-console", *(["--cold-stop"] if self.cold_stop else []), *self.queues],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                # when serve dies (kill -9), a cold-stop worker's SIGTERM ends it at once; a
                # warm-stop one (notify) would wait on a Redis that died too, so it is killed
                # (rq redoes an abandoned delivery)
                preexec_fn=die_with_parent(signal.SIGTERM if self.cold_stop else signal.SIGKILL),
            )
        finally:
            if not isinstance(out, int):  # an open log file, not DEVNULL
                out.close()

    def _supervise(self) -> None:
        """A worker that died (OOM killer, kill -9) is replaced, so builds keep running."""
        while not self._stopping.wait(RESPAWN_CHECK):
            for i, proc in enumerate(list(self.procs)):
                if proc.poll() is None or self._stopping.is_set():
                    continue
                now = time.monotonic()
                due = self._due[i]
                if due is None:  # just found dead: when to replace it
                    self._waited[i] = respawn_delay(now - self._started[i], self._waited[i])
                    due = self._due[i] = now + self._waited[i]
                if now < due:
                    continue
                try:
                    self.procs[i] = self._spawn()
                except (OSError, IndexError):
                    continue
                self._started[i], self._due[i] = now, None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Cold-stop the workers: a running build is killed and ends as `worker lost`."""
        if getattr(self, "_stopping", None) is not None:
            self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # --cold-stop: the running job is killed
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []

    def __enter__(self) -> "LocalWorkers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
