"""The Starlette application: routes for git, pages, metrics and health, and the headers
every page carries.

Why Starlette + uvicorn: the git endpoints must stream both ways for minutes (a clone of a
large repo, a push that waits for its build) while the pages and the Server-Sent Events
of live logs stay responsive. An ASGI stack gives that with one event loop and a bounded
thread pool for the blocking dulwich handlers, and Starlette is small, typed and well kept
(the base of FastAPI); uvicorn is its reference server. jinja2 is already a dependency
(nginx templates), and autoescape makes every page escape by default.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Sequence

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gitserve.settings import Settings

from . import pages
from .agents import PATH as AGENT_RELEASE_PATH, AgentReleases
from .auth import Authenticator, FailureLimit, trusted_set
from .lfs import LfsHttp
from .logins import LoginLinks, Sessions
from .metrics import Observer, health
from .smart import GitEndpoint, SmartHttp
from .tokens import TokenStore

PAGE_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     b"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
]


class SecurityHeaders:
    """Adds PAGE_HEADERS to every response and counts HTTP connections."""

    def __init__(self, app: ASGIApp, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + PAGE_HEADERS
            await send(message)

        self.metrics.connections.labels("http").inc()
        self.metrics.connections_open.labels("http").inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.connections_open.labels("http").dec()


class HttpFace:
    """Everything behind the HTTP port, built from the settings and the shared parts."""

    def __init__(self, settings: Settings, metrics: Any, hooks: Sequence[Any] = ()) -> None:
        h = settings.http
        self.settings = settings
        self.metrics = metrics
        settings.http_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tokens = TokenStore(settings.http_dir)
        self.links = LoginLinks(settings.http_dir)
        self.sessions = Sessions(settings.http_dir, max_age=h.session_days * 86400)
        self.auth = Authenticator(self.tokens, self.sessions,
                                  FailureLimit(h.auth_failures_per_minute),
                                  trusted_set(h.trusted_proxies), has_key=self._has_key)
        self.git = SmartHttp(settings, self.auth, metrics, hooks, threads=h.git_threads)
        self.page_routes = pages.routes(settings, self.auth, self.links, self.sessions, metrics)
        self.observer = Observer(settings, metrics)
        self.lfs = LfsHttp(settings, self.auth)
        self.agent_releases = AgentReleases(settings)  # deploy agents fetch releases (SPEC §7.1)

    def _has_key(self, user: str) -> bool:
        """Does the keydir at the admin repo's tip hold a key of USER? (tokens and sessions)"""
        from gitserve import adminrepo

        return bool(adminrepo.current(self.settings).keys_of(user))

    def asgi(self) -> Starlette:
        git, lfs = self.git, self.lfs
        routes = [
            Route("/metrics", self.metrics_endpoint),
            Route("/healthz", self.healthz),
            Mount("/static", app=StaticFiles(directory=Path(__file__).parent / "static")),
            Route(AGENT_RELEASE_PATH, self.agent_releases.release, methods=["GET"]),
            *self.page_routes,
            # Git LFS (SPEC §11), where git-lfs looks: REMOTE_URL/info/lfs
            Route("/{repo:path}/info/lfs/objects/batch", lfs.batch, methods=["POST"]),
            Route("/{repo:path}/info/lfs/objects/{oid}", lfs.download, methods=["GET"]),
            Route("/{repo:path}/info/lfs/objects/{oid}", lfs.upload, methods=["PUT"]),
            Route("/{repo:path}/info/lfs/verify", lfs.verify, methods=["POST"]),
            Route("/{repo:path}/info/lfs/locks/verify", lfs.verify_locks, methods=["POST"]),
            Route("/{repo:path}/info/lfs/locks/{lock_id}/unlock", lfs.unlock, methods=["POST"]),
            Route("/{repo:path}/info/lfs/locks", lfs.create_lock, methods=["POST"]),
            Route("/{repo:path}/info/lfs/locks", lfs.list_locks, methods=["GET"]),
            Route("/{repo:path}/info/refs", GitEndpoint(git.info_refs), methods=["GET"]),
            Route("/{repo:path}/git-upload-pack", GitEndpoint(git.upload_pack), methods=["POST"]),
            Route("/{repo:path}/git-receive-pack", GitEndpoint(git.receive_pack),
                  methods=["POST"]),
        ]
        return Starlette(routes=routes,
                         middleware=[Middleware(SecurityHeaders, metrics=self.metrics)])

    async def metrics_endpoint(self, request: Request) -> Response:
        token = self.settings.http.metrics_token
        if token:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return PlainTextResponse("metrics need the bearer token\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        await anyio.to_thread.run_sync(self.observer.sync)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        ok, report = await anyio.to_thread.run_sync(health, self.settings)
        return JSONResponse(report, status_code=200 if ok else 503)

