"""The rq Job class of every gitserve worker: only gitserve's own job functions run.

rq imports whatever function name a job in Redis names (`os.system` included) and calls
the callbacks it names, whatever the serializer: whoever can write to Redis (a build that
reached it, a compromised build host holding its password) could run code as the worker. A
worker built with this class (`gitserve worker`, serve's local workers, and the README's
`rq worker ... --job-class buildqueue.rqjob.GitserveJob`) runs only the functions in
ALLOWED, never a callback but the build's own stopped callback (STOPPED_CALLBACKS), never a
method of a stored instance: anything else fails as a job, with one line, without being
imported.

A plain `rq worker` without the class would run any function; so gitserve's own job
functions check that they were started through this class (`require`) and refuse to build
otherwise: a build host is either configured safely or runs no builds at all.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from gitserve.errors import GitserveError

ALLOWED = frozenset({"buildqueue.jobs.run_build", "buildqueue.deploy_job.run_deploy",
                     "buildqueue.deploy_job.remove_preview",
                     # the notify queue's jobs (only serve's notify workers work that queue)
                     "buildqueue.notify.notifier.deliver_event",
                     "buildqueue.notify.notifier.send_webhook",
                     "buildqueue.notify.notifier.send_mail"})
# the one callback: a build stopped by `builds cancel` (rq's stop-job command) is ended by it
STOPPED_CALLBACKS = frozenset({"buildqueue.jobs.stopped"})
JOB_CLASS = "buildqueue.rqjob.GitserveJob"


class ForeignJob(GitserveError):
    """A job gitserve did not make (one line, in the failed job's record)."""


class AllowlistJob(Job):
    """rq's Job, refusing every function but those in ALLOWED_FUNCS and every callback but
    those in ALLOWED_STOPPED (a subclass names both, what it runs and the error it raises)."""

    ALLOWED_FUNCS: frozenset[str] = frozenset()
    ALLOWED_STOPPED: frozenset[str] = frozenset()
    KIND = "gitserve job"
    REFUSED: type[GitserveError] = ForeignJob

    @property
    def func(self) -> Any:
        name = self.func_name
        if name not in self.ALLOWED_FUNCS or self.instance is not None:
            raise self.REFUSED(f"refused: job function {name!r} is not a {self.KIND}")
        for kind in ("success", "failure", "stopped"):
            callback = getattr(self, f"_{kind}_callback_name", None)
            if callback and not (kind == "stopped" and callback in self.ALLOWED_STOPPED):
                raise self.REFUSED(f"refused: job {self.id} names an on_{kind} callback")
        return super().func

    # rq calls these after the function (or instead of it, on failure): never a stored name
    # but an allowed stopped callback
    @property
    def success_callback(self) -> Any:
        return None

    @property
    def failure_callback(self) -> Any:
        return None

    @property
    def stopped_callback(self) -> Any:
        if getattr(self, "_stopped_callback_name", None) in self.ALLOWED_STOPPED:
            return super().stopped_callback
        return None


class GitserveJob(AllowlistJob):
    """rq's Job, refusing every function but gitserve's own."""

    ALLOWED_FUNCS = ALLOWED
    ALLOWED_STOPPED = STOPPED_CALLBACKS


def require(job: Job | None) -> None:
    """Called first by each job function: the worker must run gitserve's Job class."""
    if not isinstance(job, GitserveJob):
        raise ForeignJob("this worker runs any function a job names: start it with "
                         f"`gitserve worker`, or `rq worker --job-class {JOB_CLASS}`")
