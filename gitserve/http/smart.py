"""Smart HTTP git (stateless-rpc): `GET /REPO.git/info/refs?service=...` and `POST
/REPO.git/git-upload-pack|git-receive-pack`, with the SSH path's checks and handlers.
Protocol v2 (the `Git-Protocol: version=2` header, what git sends by default) is
gitserve/git/v2.py: info/refs is its capability advertisement, each POST one command;
`version=1` gets v0 behind a `version 1` line; pushes are v0 (git has no v2 push).

Access is decided by gitserve.gitrequest, as for ssh (check #1 with its audit line and
wild-repo creation; check #2 and the push hooks in a push's policy), so a decision, a
Gitolite message and an audit line are the same over both transports. A check #1 denial
is answered 403 with Gitolite's text as a text/plain body, which git prints as
`remote: FATAL: ...`, as it does for Gitolite behind http; any other GitserveError before
the response starts is one line with a 4xx/5xx status. Anonymous requests act as Gitolite's
`daemon` user; where `daemon` may not read, and for every push, the answer is 401 with
`WWW-Authenticate`, so git asks its credential helper for `USER:TOKEN`.

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
from typing import Any, Awaitable, Callable, Sequence

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import pkt_line
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from gitserve import adminrepo, repos
from gitserve.acl.errors import AccessError
from gitserve.errors import GitserveError
from gitserve.git import v2
from gitserve.git.pushhooks import PushHook
from gitserve.git.receive import ReceivePack
from gitserve.git.sideband import BAND_DATA, SidebandProtocol
from gitserve.gitrequest import Denied, GitRequest
from gitserve.metrics import pushed
from gitserve.settings import Settings

from .auth import REALM, Authenticator, BadCredentials, TooManyFailures

log = logging.getLogger(__name__)

SERVICES = ("git-upload-pack", "git-receive-pack")  # no upload-archive (nor has git's http-backend)
ANONYMOUS = "daemon"  # Gitolite's user for unauthenticated reads (git-daemon export)
FLUSH_AT = 65536
INFLATE_STEP = 65536
FETCH_PKT = len(b"0012command=fetch\n")  # a v2 request's first pkt-line, when it fetches


async def _call(fn: Any, *args: Any) -> Any:
    """Await an ASGI receive/send from a worker thread (anyio.from_thread.run wants a
    coroutine function)."""
    return await fn(*args)


class ClientGone(Exception):
    """The HTTP client disconnected mid-request."""


class _Body:
    """The request body, read from the event loop on demand (gunzipped if git sent it so)."""

    def __init__(self, receive: Receive, gzipped: bool, count: Callable[[int], None],
                 limit: int | None = None) -> None:
        self._receive = receive
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._buf = bytearray()
        self._pending = bytearray()  # gzip input not inflated yet
        self._more = True
        self._count = count
        # bytes of request (after gunzip) a request may carry ([http] max_request_bytes for
        # upload-pack: a 495 KiB gzip body of want lines drove the server to 1.3 GiB)
        self._limit = limit
        self._total = 0

    def _took(self, size: int) -> None:
        self._total += size
        if self._limit is not None and self._total > self._limit:
            raise GitProtocolError(f"request too large: more than {self._limit} bytes "
                                   "([http] max_request_bytes)")

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
            self._took(len(data))
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
                    self._took(len(out))
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
    """Response bytes to the client from the worker thread; headers go with the first bytes.
    Made on the event loop, whose token lets threads anyio did not start (packgen's progress
    relay) send too."""

    def __init__(self, send: Send, content_type: str, count: Callable[[int], None]) -> None:
        self._send = send
        self._loop = anyio.lowlevel.current_token()
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

    @property
    def buffered(self) -> int:
        """Bytes written and not yet sent."""
        return len(self._buf)

    def _emit(self, message: dict[str, Any]) -> None:
        try:
            anyio.from_thread.run(_call, self._send, message, token=self._loop)
        except OSError as exc:
            raise ClientGone() from exc

    def flush(self, final: bool = False) -> None:
        if self.closed:
            return
        if not self.started:
            self._emit({"type": "http.response.start", "status": 200, "headers": self._headers})
            self.started = True  # only once sent: until then a failure can still be a 500
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

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], object],
                 recv: Callable[[int], bytes] | None = None, *, response: _Response,
                 keepalive_every: float = 15.0) -> None:
        super().__init__(read, write, recv)
        self.response = response
        # [server] keepalive_interval; nginx's proxy_read_timeout is 60 s
        self.keepalive_every = keepalive_every
        self._last_keepalive = 0.0

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
                 hooks: Sequence[PushHook] = (), threads: int = 32) -> None:
        self.settings = settings
        self.auth = auth
        self.metrics = metrics
        self.hooks = tuple(hooks)
        self.limiter = anyio.CapacityLimiter(threads)

    # --- endpoints ------------------------------------------------------------------
    async def info_refs(self, request: Request, send: Send) -> Response | None:
        service = request.query_params.get("service", "")
        if service not in SERVICES:
            return PlainTextResponse(
                "gitserve serves smart HTTP only: use git 1.6.6 or newer\n", status_code=403)
        return await self._serve(request, send, service, advertise=True)

    async def upload_pack(self, request: Request, send: Send) -> Response | None:
        return await self._serve(request, send, "git-upload-pack", advertise=False)

    async def receive_pack(self, request: Request, send: Send) -> Response | None:
        return await self._serve(request, send, "git-receive-pack", advertise=False)

    # --- one request ------------------------------------------------------------------
    async def _serve(self, request: Request, send: Send, service: str,
                     advertise: bool) -> Response | None:
        client = self.auth.client(request)
        m = self.metrics
        user: str | None = None
        try:
            name = repos.parse_repo_arg(request.path_params["repo"])
            if not advertise:
                wanted = f"application/x-{service}-request"
                if request.headers.get("content-type", "").split(";")[0].strip() != wanted:
                    return PlainTextResponse(f"expected Content-Type {wanted}\n",
                                             status_code=415)
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
            if user is None and service == "git-receive-pack":
                return _unauthorized("a push needs USER:TOKEN (ssh git@HOST token create NAME)\n")
            git = await anyio.to_thread.run_sync(self._authorize, user, client.ip, service,
                                                 name)
        except GitserveError as exc:  # every refusal before the response: one line, a status
            return self._refusal(exc, anonymous=user is None)
        except Exception:  # a bug (or an unreadable admin repo): the log has it, not the client
            log.exception("access check failed for %s", request.path_params.get("repo"))
            return PlainTextResponse("FATAL: internal server error (see the server log)\n",
                                     status_code=500)
        version = v2.requested_version(request.headers.get("git-protocol"))
        await self._run_handler(request, send, git, advertise, version)
        return None

    def _refusal(self, exc: GitserveError, anonymous: bool) -> Response:
        """The answer to a domain error before the git conversation: a bad repo name 400,
        an access refusal 403 with Gitolite's text (401 for anonymous: the challenge git
        answers with a token, and it never says which repos exist), anything else 500."""
        if isinstance(exc, repos.RepoError):
            return PlainTextResponse(f"FATAL: {exc}\n", status_code=400)
        if isinstance(exc, AccessError):  # check #1's Denied among them
            if anonymous:
                return _unauthorized("authentication required\n")
            self.metrics.access_denied.labels("http", "1").inc()
            return PlainTextResponse(f"FATAL: {exc}\n", status_code=403)
        log.error("access check failed: %s", exc)  # e.g. a broken admin repo
        return PlainTextResponse(f"FATAL: server configuration error: {exc}\n", status_code=500)

    def _authorize(self, user: str | None, ip: str, service: str, name: str) -> GitRequest:
        """Check #1 (in a worker thread: it reads the admin repo and may create a wild repo),
        then mirroring's decisions as over ssh (mirroring peers talk ssh only, and only ssh
        pushes are forwarded to a master: here such a push is refused, naming the master)."""
        git = GitRequest(self.settings, adminrepo.current(self.settings), user or ANONYMOUS, ip,
                         service, name, transport="http", hooks=self.hooks,
                         metrics=self.metrics, may_create=user is not None)
        git.authorize()
        master = git.mirror_master()
        if master is not None:
            hostname = self.settings.server.hostname
            raise Denied(f"{hostname}: pushing '{name}' to copy '{hostname}' not allowed over "
                         f"http; push to {master}")
        return git

    async def _run_handler(self, request: Request, send: Send, git: GitRequest,
                           advertise: bool, version: int = 0) -> None:
        scope: Scope = request.scope
        receive: Receive = request.receive
        service = git.service
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
                     received, limit=self.settings.http.max_request_bytes or None
                     if service == "git-upload-pack" else None)

        def work_v2(proto: HttpProtocol) -> None:
            """Protocol v2 (gitserve/git/v2.py) over stateless-rpc: info/refs is the
            capability advertisement, each POST is exactly one command (ls-refs or fetch)."""
            server = git.upload_v2(proto)
            try:
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
                server.repo.close()

        def work() -> None:
            proto = HttpProtocol(body.read, response.write, body.recv,
                                 response=response,
                                 keepalive_every=self.settings.server.keepalive_interval)
            if service == "git-upload-pack" and version == 2:
                return work_v2(proto)
            if not advertise:
                m.git_requests.labels("http", service).inc()
            handler = git.handler(proto, stateless_rpc=True, advertise_refs=advertise,
                                  keepalive=proto.keepalive)
            try:
                if advertise:
                    response.write(pkt_line(f"# service={service}\n".encode()) + pkt_line(None))
                    if version == 1:
                        response.write(pkt_line(b"version 1\n"))  # then v0, as git does
                before = response.buffered
                handler.handle()
                proto.flush()
                if advertise and not response.started and response.buffered == before:
                    response.write(pkt_line(None))  # an empty repo: no refs, still a list
                response.flush(final=True)
                if isinstance(handler, ReceivePack) and pushed(handler.result):
                    m.pushes.labels("http").inc()
            finally:
                handler.repo.close()

        try:
            await anyio.to_thread.run_sync(work, limiter=self.limiter)
        except (ClientGone, HangupException, anyio.BrokenResourceError, OSError):
            return
        except (GitProtocolError, v2.ProtocolV2Error) as exc:  # one line, never a 500
            text = f"FATAL: protocol error: {' '.join(str(exc).split())}\n"
            if not response.started:
                await PlainTextResponse(text, status_code=400)(scope, receive, send)
            else:
                log.info("protocol error from %s: %s", git.ip, text.strip())
                try:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception:  # noqa: BLE001
                    pass
        except GitserveError as exc:  # a domain error the handler did not answer (a pack
            # that cannot be made from a broken repository...): one line here, a generic 500
            log.error("git %s of %s failed: %s", service, git.name, " ".join(str(exc).split()))
            await self._fail(response, scope, receive, send)
        except Exception:  # a bug: the traceback is for the log only
            log.exception("git %s of %s failed", service, git.name)
            await self._fail(response, scope, receive, send)

    @staticmethod
    async def _fail(response: "_Response", scope: Scope, receive: Receive, send: Send) -> None:
        """A generic 500 if nothing was sent yet, else the end of the body (git then reports
        the truncated answer); never the error itself."""
        if not response.started:
            await PlainTextResponse("FATAL: internal server error (see the server log)\n",
                                    status_code=500)(scope, receive, send)
        elif not response.closed:
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # noqa: BLE001
                pass


class GitEndpoint:
    """An ASGI app for one endpoint: the handler streams its own response through the raw
    ASGI SEND it is given, or returns one."""

    def __init__(self, handler: Callable[[Request, Send], Awaitable[Response | None]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive, send), send)
        if response is not None:
            await response(scope, receive, send)


def _unauthorized(text: str) -> Response:
    return PlainTextResponse(text, status_code=401, headers={"WWW-Authenticate": REALM})
