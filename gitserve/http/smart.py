"""Smart HTTP git (stateless-rpc): `GET /REPO.git/info/refs?service=...` and `POST
/REPO.git/git-upload-pack|git-receive-pack`, with the SSH path's checks and handlers.
Protocol v2 (the `Git-Protocol: version=2` header, what git sends by default) is
gitserve/git/v2.py: info/refs is its capability advertisement, each POST one command;
`version=1` gets v0 behind a `version 1` line; pushes are v0 (git has no v2 push).

Access is decided by the same functions the SSH session uses (gitserve.ssh.session:
check #1 with its audit line and wild-repo creation, check #2 and the push hooks wired
into receive-pack), so a decision, a Gitolite message and an audit line are the same
over both transports. A check #1 denial is answered 403 with Gitolite's text as a
text/plain body, which git prints as `remote: FATAL: ...`, as it does for Gitolite
behind http. Anonymous requests act as Gitolite's `daemon` user; where `daemon` may not
read, and for every push, the answer is 401 with `WWW-Authenticate`, so git asks its
credential helper for `USER:TOKEN`.

The dulwich handler runs in a worker thread (pack generation never blocks the event loop)
and talks to the ASGI connection directly: request body chunks are pulled from the loop
as the handler reads, response bytes are sent as it writes (64 KiB at a time, progress
lines at once). So a push's `remote:` lines, a sync build's log among them, reach the
pusher while the build runs, and a slow client slows the pack writer (backpressure)
instead of filling memory.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import anyio
import anyio.from_thread
import anyio.to_thread
from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import pkt_line
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from gitserve import adminrepo, repos
from gitserve.git import v2
from gitserve.git.receive import ReceivePack
from gitserve.git.repo import SingleRepoBackend
from gitserve.git.sideband import BAND_DATA, SidebandProtocol
from gitserve.git.upload import UploadPack
from gitserve.metrics import count_ref_denials, pushed
from gitserve.mirror import gate as mirror_gate
from gitserve.mirror.config import repo_mirror
from gitserve.settings import Settings
from gitserve.ssh import session

from .auth import REALM, Authenticator, BadCredentials, TooManyFailures

log = logging.getLogger(__name__)

SERVICES: dict[str, tuple[str, type]] = {
    "git-upload-pack": ("R", UploadPack),
    "git-receive-pack": ("W", ReceivePack),
}
ANONYMOUS = "daemon"  # Gitolite's user for unauthenticated reads (git-daemon export)
FLUSH_AT = 65536
INFLATE_STEP = 65536
FETCH_PKT = len(b"0012command=fetch\n")  # a v2 request's first pkt-line, when it fetches


@dataclass
class HttpConn:
    """What gitserve.ssh.session's access functions need to know about a connection."""

    settings: Settings
    user: str
    ip: str
    hooks: Sequence[Any] = field(default_factory=tuple)
    # mirroring: peers talk ssh only, so over http nobody is a server or a forwarded push
    from_server: str = ""
    redirected: bool = False


async def _call(fn: Any, *args: Any) -> Any:
    """Await an ASGI receive/send from a worker thread (anyio.from_thread.run wants a
    coroutine function)."""
    return await fn(*args)


class ClientGone(Exception):
    """The HTTP client disconnected mid-request."""


class _Body:
    """The request body, read from the event loop on demand (gunzipped if git sent it so)."""

    def __init__(self, receive: Receive, gzipped: bool, count: Callable[[int], None]) -> None:
        self._receive = receive
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._buf = bytearray()
        self._pending = bytearray()  # gzip input not inflated yet
        self._more = True
        self._count = count

    def _pull(self) -> bool:
        if not self._more:
            return False
        message: dict[str, Any] = anyio.from_thread.run(_call, self._receive)
        if message["type"] == "http.disconnect":
            raise ClientGone()
        data = message.get("body", b"")
        self._more = bool(message.get("more_body", False))
        self._count(len(data))
        if self._inflate is None:
            self._buf += data
            return True
        self._pending += data
        return True

    def _fill(self) -> bool:
        """More bytes into the buffer: inflated at most INFLATE_STEP at a time, so a small
        gzip bomb never becomes a large buffer (the reader only asks for what it parses)."""
        if self._inflate is None:
            return self._pull()
        while True:
            if self._pending:
                try:
                    out = self._inflate.decompress(self._pending, INFLATE_STEP)
                except zlib.error as exc:
                    raise GitProtocolError(f"bad gzip request body: {exc}") from None
                self._pending = bytearray(self._inflate.unconsumed_tail)
                if out:
                    self._buf += out
                    return True
                if self._inflate.eof:
                    self._pending = bytearray()
                continue
            if not self._pull():
                return False

    def peek(self, size: int) -> bytes:
        """The next SIZE bytes (fewer at the end), left for read()."""
        while len(self._buf) < size and self._fill():
            pass
        return bytes(self._buf[:size])

    def read(self, size: int) -> bytes:
        while len(self._buf) < size and self._fill():
            pass
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def recv(self, size: int) -> bytes:
        while not self._buf and self._fill():
            pass
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class _Response:
    """Response bytes to the client from the worker thread; headers go with the first bytes."""

    def __init__(self, send: Send, content_type: str, count: Callable[[int], None]) -> None:
        self._send = send
        self._headers = [(b"content-type", content_type.encode()),
                         (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
                         (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
                         (b"pragma", b"no-cache")]
        self._buf = bytearray()
        self.started = False
        self.closed = False
        self._count = count

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        if len(self._buf) >= FLUSH_AT:
            self.flush()

    def _emit(self, message: dict[str, Any]) -> None:
        try:
            anyio.from_thread.run(_call, self._send, message)
        except OSError as exc:
            raise ClientGone() from exc

    def flush(self, final: bool = False) -> None:
        if self.closed:
            return
        if not self.started:
            self.started = True
            self._emit({"type": "http.response.start", "status": 200, "headers": self._headers})
        if self._buf or final:
            body = bytes(self._buf)
            self._buf.clear()
            self._count(len(body))
            self._emit({"type": "http.response.body", "body": body, "more_body": not final})
        if final:
            self.closed = True


class HttpProtocol(SidebandProtocol):
    """SidebandProtocol that pushes progress (band 2/3) out at once: `remote:` lines, a
    build's log among them, must not wait for 64 KiB of company."""

    response: _Response
    _last_keepalive = 0.0
    keepalive_every = 15.0  # [server] keepalive_interval; nginx's proxy_read_timeout is 60 s

    def keepalive(self) -> None:
        """An empty progress packet now and then while a build prints nothing, so a proxy's
        read timeout never cuts a push that waits for its build (git shows nothing)."""
        now = time.monotonic()
        if self.client_gone or now - self._last_keepalive < self.keepalive_every:
            return
        self._last_keepalive = now
        try:
            with self._lock:
                self._flush_data()
                self._send(b"0005\x02")
                self.response.flush()
        except Exception:  # noqa: BLE001 - the pusher left; the build goes on
            self.client_gone = True

    def write_sideband(self, channel: int, blob: bytes) -> None:
        super().write_sideband(channel, blob)
        if channel != BAND_DATA:
            with self._lock:
                self.response.flush()


class SmartHttp:
    """The three smart-HTTP endpoints for one server."""

    def __init__(self, settings: Settings, auth: Authenticator, metrics: Any,
                 hooks: Sequence[Any] = (), threads: int = 32) -> None:
        self.settings = settings
        self.auth = auth
        self.metrics = metrics
        self.hooks = tuple(hooks)
        self.limiter = anyio.CapacityLimiter(threads)

    # --- endpoints ------------------------------------------------------------------
    async def info_refs(self, request: Request) -> Response | None:
        service = request.query_params.get("service", "")
        if service not in SERVICES:
            return PlainTextResponse(
                "gitserve serves smart HTTP only: use git 1.6.6 or newer\n", status_code=403)
        return await self._serve(request, service, advertise=True)

    async def upload_pack(self, request: Request) -> Response | None:
        return await self._serve(request, "git-upload-pack", advertise=False)

    async def receive_pack(self, request: Request) -> Response | None:
        return await self._serve(request, "git-receive-pack", advertise=False)

    # --- one request ------------------------------------------------------------------
    async def _serve(self, request: Request, service: str, advertise: bool) -> Response | None:
        aa, handler_cls = SERVICES[service]
        client = self.auth.client(request)
        m = self.metrics
        try:
            name = repos.parse_repo_arg(request.path_params["repo"])
        except repos.RepoError as exc:
            return PlainTextResponse(f"FATAL: {exc}\n", status_code=400)
        if not advertise:
            wanted = f"application/x-{service}-request"
            if request.headers.get("content-type", "").split(";")[0].strip() != wanted:
                return PlainTextResponse(f"expected Content-Type {wanted}\n", status_code=415)
        try:
            user = await anyio.to_thread.run_sync(self.auth.token_user, request, client.ip)
        except TooManyFailures:
            m.connections_refused.labels("http").inc()
            return PlainTextResponse("too many failed logins from your address; "
                                     "try again in a minute\n", status_code=429,
                                     headers={"Retry-After": "60"})
        except BadCredentials:
            m.access_denied.labels("http", "login").inc()
            return _unauthorized("wrong user name or token\n")
        if user is None and aa == "W":
            return _unauthorized("a push needs USER:TOKEN (ssh git@HOST token create NAME)\n")
        conn = HttpConn(self.settings, user or ANONYMOUS, client.ip, self.hooks)
        try:
            state, wild = await anyio.to_thread.run_sync(self._check, conn, name, aa)
        except session.Denied as exc:
            if user is None:
                # anonymous: the challenge git answers with a token (its first try is always
                # without one, so this is no denial yet); never says which repos exist
                return _unauthorized("authentication required\n")
            m.access_denied.labels("http", "1").inc()
            return PlainTextResponse(f"FATAL: {exc}\n", status_code=403)
        except Exception as exc:  # noqa: BLE001 - a broken admin repo: say so, no traceback
            log.exception("access check failed for %s", name)
            return PlainTextResponse(f"FATAL: server configuration error: {exc}\n",
                                     status_code=500)
        version = v2.requested_version(request.headers.get("git-protocol"))
        await self._run_handler(request, conn, state, name, wild, service, handler_cls, advertise,
                                version)
        return None

    def _check(self, conn: HttpConn, name: str, aa: str) -> tuple[Any, Any]:
        state = adminrepo.current(self.settings)
        if conn.user == ANONYMOUS and not repos.exists(self.settings, name):
            # an anonymous request never creates a wild repo, whatever `C` says
            raise session.Denied(f"{aa} any {name} {conn.user} DENIED by fallthru")
        wild = session.check_access(conn, state, name, aa)  # type: ignore[arg-type]
        hostname = self.settings.server.hostname
        if hostname:  # mirroring: Gitolite's pre_git decisions, as over ssh
            mirror = repo_mirror(state.rules.options(name, wild=wild))
            try:
                verdict = mirror_gate.check_user(hostname, name, mirror, aa)
            except mirror_gate.Refused as exc:
                raise session.Denied(str(exc)) from None
            if verdict.redirect_to is not None:  # only ssh pushes are forwarded
                raise session.Denied(f"{hostname}: pushing '{name}' to copy '{hostname}' not "
                                     f"allowed over http; push to {verdict.redirect_to}")
        return state, wild

    async def _run_handler(self, request: Request, conn: HttpConn, state: Any, name: str,
                           wild: Any, service: str, handler_cls: type, advertise: bool,
                           version: int = 0) -> None:
        scope: Scope = request.scope
        receive: Receive = request.receive
        send: Send = request._send  # noqa: SLF001 - the raw ASGI send: we stream ourselves
        kind = "advertisement" if advertise else "result"
        m = self.metrics

        def sent(n: int) -> None:
            if n and not advertise and service == "git-upload-pack":
                m.git_bytes.labels("http", "sent").inc(n)

        def received(n: int) -> None:
            if n and service == "git-receive-pack":
                m.git_bytes.labels("http", "received").inc(n)

        response = _Response(send, f"application/x-{service}-{kind}", sent)
        body = _Body(receive, request.headers.get("content-encoding", "") in ("gzip", "x-gzip"),
                     received)

        def work_v2(backend: Any, path: str, proto: HttpProtocol) -> None:
            """Protocol v2 (gitserve/git/v2.py) over stateless-rpc: info/refs is the
            capability advertisement, each POST is exactly one command (ls-refs or fetch)."""
            repo = backend.open_repository(path)
            try:
                server = v2.UploadPackV2(repo, proto, self.settings)
                if advertise:
                    response.write(pkt_line(f"# service={service}\n".encode()) + pkt_line(None))
                    server.advertise()
                else:
                    if b"command=fetch" in body.peek(FETCH_PKT):
                        m.git_requests.labels("http", service).inc()  # ls-refs is no fetch
                    server.serve_command()
                proto.flush()
                response.flush(final=True)
            finally:
                repo.close()

        def work() -> None:
            path = str(repos.path(self.settings, name))
            proto = HttpProtocol(body.read, response.write, body.recv)
            proto.response = response
            proto.keepalive_every = self.settings.server.keepalive_interval
            backend = SingleRepoBackend(path, show_hidden=conn.user == adminrepo.BUILDER)
            if service == "git-upload-pack" and version == 2:
                return work_v2(backend, path, proto)
            if not advertise:
                m.git_requests.labels("http", service).inc()
            handler = handler_cls(backend, [path], proto, stateless_rpc=True,
                                  advertise_refs=advertise)
            handler.settings = self.settings
            if isinstance(handler, ReceivePack) and not advertise:
                session._wire_push(handler, conn, state, name, path, wild, proto)  # type: ignore[arg-type]  # noqa: SLF001
                count_ref_denials(handler, m, "http")
                if handler.ctx is not None:
                    handler.ctx.extra["keepalive"] = proto.keepalive
            try:
                if advertise:
                    response.write(pkt_line(f"# service={service}\n".encode()) + pkt_line(None))
                    if version == 1:
                        response.write(pkt_line(b"version 1\n"))  # then v0, as git does
                before = len(response._buf)  # noqa: SLF001
                handler.handle()
                proto.flush()
                if advertise and not response.started and len(response._buf) == before:  # noqa: SLF001
                    response.write(pkt_line(None))  # an empty repo: no refs, still a list
                response.flush(final=True)
                if pushed(handler):
                    m.pushes.labels("http").inc()
            finally:
                handler.repo.close()

        try:
            await anyio.to_thread.run_sync(work, limiter=self.limiter)
        except (ClientGone, HangupException, anyio.BrokenResourceError, OSError):
            return
        except GitProtocolError as exc:
            text = f"FATAL: protocol error: {' '.join(str(exc).split())}\n"
            if not response.started:
                await PlainTextResponse(text, status_code=400)(scope, receive, send)
            else:
                log.info("protocol error from %s: %s", conn.ip, text.strip())
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:  # noqa: BLE001
                    pass
        except Exception:
            log.exception("git %s of %s failed", service, name)
            if not response.started:
                await PlainTextResponse("FATAL: internal server error (see the server log)\n",
                                        status_code=500)(scope, receive, send)
            elif not response.closed:
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:  # noqa: BLE001
                    pass


class GitEndpoint:
    """An ASGI app for one endpoint: the handler streams its own response or returns one."""

    def __init__(self, handler: Callable[[Request], Any]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send))
        if response is not None:
            await response(scope, receive, send)


def _unauthorized(text: str) -> Response:
    return PlainTextResponse(text, status_code=401, headers={"WWW-Authenticate": REALM})
