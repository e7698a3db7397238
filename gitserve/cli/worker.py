"""`gitserve worker [QUEUE...]`: an rq worker with gitserve's settings.

Equivalent to `rq worker --url URL --serializer rq.serializers.JSONSerializer QUEUE...`,
with the Redis URL taken from HOME (the embedded server's socket by default). Logs go to
HOME/logs/workers.log, one line per event tagged with the build id.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Optional

import typer

from .common import HomeOption, fail, load_settings
from .serve import LogFormatOption, LogLevelOption, setup_logging


def add_commands(app: typer.Typer) -> None:
    @app.command()
    def worker(
        queues: Annotated[Optional[list[str]], typer.Argument(
            metavar="[QUEUE...]", help="Queues to work (default: deploy builds).")] = None,
        url: Annotated[Optional[str], typer.Option(
            "--url", "--redis-url", help="Redis URL (default: from gitserve.toml / embedded).")] = None,
        burst: Annotated[bool, typer.Option("--burst", help="Stop when the queues are empty.")] = False,
        name: Annotated[Optional[str], typer.Option("--name", help="Worker name.")] = None,
        home: HomeOption = None,
        log_level: LogLevelOption = "INFO",
        log_format: LogFormatOption = "text",
        log_console: Annotated[bool, typer.Option(
            "--log-console/--no-log-console", hidden=True,
            help="Also show warnings on stderr (off for serve's local workers, whose stderr "
                 "already goes to workers.log).")] = True,
        cold_stop: Annotated[bool, typer.Option(
            "--cold-stop", hidden=True,
            help="SIGTERM kills the running job and exits at once (serve's local workers).")] = False,
    ) -> None:
        """Run build (and, on the server host, deploy) jobs."""
        from buildqueue.rqconn import RedisUnavailable, insecure_reason, safe_url
        from buildqueue.worker import DEFAULT_QUEUES, run_worker

        settings = load_settings(home)
        redis_url = url or settings.effective_redis_url
        insecure = insecure_reason(redis_url)
        if insecure is not None and not settings.redis.allow_insecure:
            fail(insecure)
        setup_logging(settings.home, "workers.log", log_level, log_format, console=log_console)
        # the key that decrypts build secrets also checks each job's signature: this home's,
        # unless one is named (jobs are forked: they read it from the environment)
        from gitserve.secrets.crypt import KEY_FILE_ENV

        if not os.environ.get(KEY_FILE_ENV) and (settings.home / "secrets.key").is_file():
            os.environ[KEY_FILE_ENV] = str(settings.home / "secrets.key")
        work = list(queues or DEFAULT_QUEUES)
        logging.getLogger("gitserve.worker").info("worker on %s, queues %s", safe_url(redis_url),
                                                  " ".join(work))
        from gitserve import sandbox

        # on a build host: can builds run sandboxed here? (each job carries the server's policy)
        logging.getLogger("gitserve.worker").info("%s", sandbox.describe(sandbox.Policy.from_settings(settings.builds)))
        try:
            run_worker(redis_url, work, name=name, burst=burst, cold_stop=cold_stop)
        except RedisUnavailable as exc:
            fail(str(exc))
