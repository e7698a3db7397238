"""How a running job shows it is alive: the worker's name on the build and a heartbeat.

Shared by the build job (jobs) and the deploy job (deploy_job); a build whose heartbeat
stops is ended as lost (records.reap_if_lost). A killed work-horse rq reports itself (the
job turns failed at once, and reap_if_lost asks rq first); this heartbeat is for the worker
host that vanishes whole. rq notices that too, but only when the job's execution entry
expires (job_monitoring_interval + 60 s: 90 s with a stock `rq worker`, which SPEC §6 says
is all a build host runs), and a sync pusher should not wait that long for `worker lost`.
"""

from __future__ import annotations

import os
import socket
import threading

import redis

from . import records


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_loop(r: redis.Redis, build_id: str, stop: threading.Event) -> None:
    """Refresh BUILD_ID's heartbeat every second until STOP is set (run it in a thread)."""
    while not stop.wait(1.0):
        try:
            records.heartbeat(r, build_id)
        except redis.RedisError:
            pass
