"""`gitserve worker [QUEUE...]`: an rq worker with gitserve's settings.

Equivalent to `rq worker --url URL --serializer rq.serializers.JSONSerializer QUEUE...`,
with the Redis URL taken from HOME (the embedded server's socket by default).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .common import HomeOption, fail, load_settings


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        queues: Annotated[Optional[list[str]], typer.Argument(
            metavar="[QUEUE...]", help="Queues to work (default: deploy builds).")] = None,
        url: Annotated[Optional[str], typer.Option(
            "--url", "--redis-url", help="Redis URL (default: from gitserve.toml / embedded).")] = None,
        burst: Annotated[bool, typer.Option("--burst", help="Stop when the queues are empty.")] = False,
        name: Annotated[Optional[str], typer.Option("--name", help="Worker name.")] = None,
        home: HomeOption = None,
    ) -> None:
        """Run build (and, on the server host, deploy) jobs."""
        from buildqueue.rqconn import RedisUnavailable
        from buildqueue.worker import DEFAULT_QUEUES, run_worker

        settings = load_settings(home)
        redis_url = url or settings.effective_redis_url
        try:
            run_worker(redis_url, list(queues or DEFAULT_QUEUES), name=name, burst=burst)
        except RedisUnavailable as exc:
            fail(str(exc))
