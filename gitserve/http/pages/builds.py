"""The build pages: the list (`/builds`), one build with its log, and the log's live
Server-Sent Events (`/builds/ID/events`). A build is visible with R on its repo."""

from __future__ import annotations

import functools
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gitserve import adminrepo

from ..auth import Visitor
from .base import Pages, visitor


class BuildPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.settings = pages.settings
        self._aredis: Any = None

    def _async_redis(self) -> Any:
        """One asyncio Redis client (and pool) for the event streams of live logs."""
        if self._aredis is None:
            from buildqueue import rqconn

            self._aredis = rqconn.connect_async(self.settings.effective_redis_url)
        return self._aredis

    def builds(self, request: Request) -> Response:
        from buildqueue import records

        v = visitor(request)
        state = adminrepo.current(self.settings)
        only = request.query_params.get("repo") or None
        r = self.pages.redis()
        rows = []
        if r is not None and (only is None or self.pages.can(state, only, v.acts_as)):
            readable: dict[str, bool] = {}
            for build_id in records.list_ids(r, only, limit=400):
                try:
                    b = records.get(r, build_id)
                except records.BuildNotFound:
                    continue
                if b.repo not in readable:
                    readable[b.repo] = self.pages.can(state, b.repo, v.acts_as)
                if readable[b.repo]:
                    records.reap_if_lost(r, b, log_ttl=self.settings.builds.log_ttl)
                    rows.append(b)
                if len(rows) >= 50:
                    break
        return self.pages.page("builds.html", v, builds=rows, repo=only, redis_ok=r is not None)

    def _visible_build(self, v: Visitor, build_id: str) -> Any:
        from buildqueue import records

        r = self.pages.redis()
        if r is None or not build_id.isdigit():
            return None, None
        try:
            b = records.get(r, build_id)
        except records.BuildNotFound:
            return r, None
        state = adminrepo.current(self.settings)
        if not self.pages.can(state, b.repo, v.acts_as):
            return r, None
        return r, b

    def build(self, request: Request) -> Response:
        from buildqueue import keys, logs, records

        v = visitor(request)
        r, b = self._visible_build(v, request.path_params["build_id"])
        if b is None:
            return self.pages.message(v, "Not found",
                                      "No such build, or you may not read its repo.", 404)
        lines: list[str] = []
        last = "0-0"
        ended = False
        for entry in logs.entries(r, b.id):
            last = entry["id"]
            if entry.get("event") == "end":
                ended = True
            elif "l" in entry:
                lines.append(entry["l"])
        records.reap_if_lost(r, b, log_ttl=self.settings.builds.log_ttl)
        b = records.get(r, b.id)
        expired = b.is_final and not ended and not r.exists(keys.log(b.id))
        return self.pages.page("build.html", v, build=b, lines=lines, last=last,
                               live=not b.is_final and not ended, expired=expired)

    async def build_events(self, request: Request) -> Response:
        """Server-Sent Events: the log lines after `after` (or Last-Event-ID), then `end`."""
        from buildqueue import keys, records

        v = visitor(request)
        r, b = await anyio.to_thread.run_sync(self._visible_build, v,
                                              request.path_params["build_id"])
        if b is None:
            return Response("no such build\n", status_code=404, media_type="text/plain")
        after = request.headers.get("last-event-id") or request.query_params.get("after") or "0-0"
        if not _stream_id(after):
            after = "0-0"
        stream = keys.log(b.id)
        ttl = self.settings.builds.log_ttl

        aredis = self._async_redis()

        async def events() -> AsyncIterator[str]:
            last = after
            yield "retry: 2000\n\n"
            while True:
                if await request.is_disconnected():
                    return
                # an async XREAD: a page watching a quiet build holds no thread
                batch = await aredis.xread({stream: last}, count=500, block=1000)
                if batch:
                    for entry_id, fields in batch[0][1]:
                        last = entry_id.decode()
                        data = {k.decode(): val.decode("utf-8", "replace")
                                for k, val in fields.items()}
                        if data.get("event") == "end":
                            final = await anyio.to_thread.run_sync(records.get, r, b.id)
                            yield _sse("duration", f"{final.duration or '0.0'}s", last)
                            yield _sse("end", final.summary(), last, status=final.status)
                            return
                        if "l" in data:
                            yield _sse("message", data["l"], last)
                    continue
                build = await anyio.to_thread.run_sync(records.get, r, b.id)
                if build.is_final:
                    yield _sse("duration", f"{build.duration or '0.0'}s", last)
                    yield _sse("end", build.summary(), last, status=build.status)
                    return
                await anyio.to_thread.run_sync(
                    functools.partial(records.reap_if_lost, r, build, log_ttl=ttl))
                yield ": waiting\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _stream_id(value: str) -> bool:
    left, sep, right = value.partition("-")
    return bool(sep) and left.isdigit() and right.isdigit()


def _sse(event: str, data: str, entry_id: str, status: str | None = None) -> str:
    text = data.replace("\r", "")
    payload = "".join(f"data: {part}\n" for part in text.split("\n"))
    if status is not None:
        payload = f"data: {status}\n" + payload
    head = f"event: {event}\n" if event != "message" else ""
    return f"{head}id: {entry_id}\n{payload}\n"
