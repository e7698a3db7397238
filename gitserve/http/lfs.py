"""Git LFS over HTTP (SPEC §11): the batch API with the basic transfer, verify, and the
locks API, under `/REPO.git/info/lfs/` (where git-lfs looks for a remote's LFS endpoint).

Who: `USER:TOKEN` basic auth (the tokens of the HTTP face), or a short-lived bearer token from
`git-lfs-authenticate` or from a batch response's actions (gitserve/lfs/tokens.py), or nobody
(Gitolite's `daemon`, for repositories it may read). A bearer token is good for one repo and
one operation, and only while its user still has a key in the keydir.
What: the decisions are gitserve/lfs's, shared with the SSH transport. A user who may not read
the repository gets the answer an unknown repository gets (404, or 401 for anonymous, so
git-lfs asks for credentials), so nothing says whether a repository or an object exists.
Objects stream both ways: an upload goes to the store chunk by chunk as the body arrives,
a download is a FileResponse; memory stays flat whatever the object's size.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from gitserve import adminrepo, repos
from gitserve.lfs import batch as lfsbatch
from gitserve.lfs.access import LfsAccess
from gitserve.lfs.locks import Lock, LockConflict
from gitserve.lfs.repo import access_for, locks_for, store_for
from gitserve.mirror.lfsfill import download_store
from gitserve.lfs.store import LfsError, LfsStore, check_oid
from gitserve.lfs.tokens import Grant, LfsTokens, bearer
from gitserve.settings import Settings

from .auth import REALM, Authenticator, BadCredentials, TooManyFailures

log = logging.getLogger(__name__)

MEDIA = "application/vnd.git-lfs+json"
ANONYMOUS = "daemon"
MAX_JSON = 4 * 1024 * 1024


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, media_type=MEDIA, headers=headers)


def _error(status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": REALM, "LFS-Authenticate": REALM} if status == 401 else None
    return _json({"message": message}, status, headers)


@dataclass
class Caller:
    user: str
    grant: Grant | None  # set when a bearer token authenticated the request
    access: LfsAccess

    def may(self, operation: str) -> bool:
        """A bearer token for uploads also downloads (git-lfs pushes ask both); one for
        downloads never uploads. Token-less callers are decided by the rules alone."""
        return self.grant is None or self.grant.operation in ("upload", operation)


def answers(handler: Callable[[Any, Request], Awaitable[Response]]
            ) -> Callable[[Any, Request], Awaitable[Response]]:
    """Every endpoint's one way out: a refusal (Refused) is its response, an LfsError its
    status and message, a lock conflict the 409 with the holder's lock."""

    @functools.wraps(handler)
    async def run(self: Any, request: Request) -> Response:
        try:
            return await handler(self, request)
        except LockConflict as exc:
            return _json({"lock": exc.lock.api(), "message": exc.message}, 409)
        except Refused as exc:
            return exc.response
        except LfsError as exc:
            return _error(exc.status, exc.message)

    return run


class Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class LfsHttp:
    def __init__(self, settings: Settings, auth: Authenticator) -> None:
        self.settings = settings
        self.auth = auth
        self.tokens = LfsTokens(settings.lfs_dir)

    # --- who and where -------------------------------------------------------------
    def _base(self, request: Request) -> str:
        public = self.settings.http.public_url.rstrip("/")
        if public:
            return public
        client = self.auth.client(request)
        host = request.headers.get("host") or request.url.netloc
        return f"{'https' if client.https else 'http'}://{host}"

    def _caller(self, request: Request, repo: str) -> Caller:
        """Authenticate and build the caller's access; raises Refused with the answer."""
        client = self.auth.client(request)
        grant = None
        token = bearer(request.headers.get("authorization", ""))
        try:
            if token is not None:
                grant = self.tokens.verify(token, repo)
                if grant is None:
                    raise Refused(_error(401, "the LFS token is invalid or expired"))
                user: str | None = grant.user
            else:
                user = self.auth.token_user(request, client.ip)
        except TooManyFailures as exc:
            raise Refused(_json({"message": "too many failed logins; try again in a minute"},
                                429, {"Retry-After": "60"})) from exc
        except BadCredentials as exc:
            raise Refused(_error(401, "wrong user name or token")) from exc
        state = adminrepo.current(self.settings)
        if grant is not None and user != adminrepo.BUILDER and not state.keys_of(grant.user):
            raise Refused(_error(401, "the LFS token's user has no key any more"))
        who = user or ANONYMOUS
        if not repos.exists(self.settings, repo):
            raise Refused(_error(401 if user is None else 404, "repository not found"))
        access = access_for(self.settings, state.rules, repo, who)
        if not access.can_download():
            raise Refused(_error(401 if user is None else 404, "repository not found"))
        return Caller(who, grant, access)

    def _store(self, repo: str, op: str) -> LfsStore:
        """Where OP reads or writes REPO's objects: a slave's copy fetches what a download
        lacks from its master (mirror/lfsfill.py)."""
        if op != "download":
            return store_for(self.settings, repo)
        return download_store(self.settings, adminrepo.current(self.settings).rules, repo)

    async def _enter(self, request: Request) -> tuple[str, Caller]:
        try:
            repo = repos.parse_repo_arg(request.path_params["repo"])
        except repos.RepoError as exc:
            raise Refused(_error(404, str(exc))) from exc
        caller = await anyio.to_thread.run_sync(self._caller, request, repo)
        return repo, caller

    async def _body(self, request: Request) -> Any:
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_JSON:
            raise Refused(_error(413, "request too large"))
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_JSON:
                raise Refused(_error(413, "request too large"))
        try:
            return json.loads(data or b"{}")
        except ValueError as exc:
            raise Refused(_error(422, "the body is not JSON")) from exc

    # --- batch ---------------------------------------------------------------------
    @answers
    async def batch(self, request: Request) -> Response:
        repo, caller = await self._enter(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            return _error(422, "the body must be a JSON object")
        op = body.get("operation")
        if op not in ("upload", "download"):
            return _error(422, "operation must be upload or download")
        if not caller.may(op):
            return _error(403, f"this token does not allow {op}s")
        if op == "upload" and caller.user == ANONYMOUS:
            return _error(401, "an upload needs USER:TOKEN")
        transfers = body.get("transfers") or ["basic"]
        if "basic" not in transfers:
            return _error(422, "only the basic transfer is offered")
        ref = body.get("ref") or {}
        refname = str(ref.get("name", "")) if isinstance(ref, dict) else ""
        if caller.grant is not None and caller.grant.ref and not refname:
            refname = caller.grant.ref
        objects = []
        for item in body.get("objects") or []:
            if not isinstance(item, dict):
                return _error(422, "objects must be JSON objects")
            try:
                objects.append((str(item["oid"]), int(item["size"])))
            except (KeyError, TypeError, ValueError):
                return _error(422, "each object needs an oid and a size")
        store = self._store(repo, op)
        items = await anyio.to_thread.run_sync(
            lfsbatch.batch, op, objects, caller.access, store, refname)
        base = f"{self._base(request)}/{repo}.git/info/lfs"
        header = self.tokens.header(Grant(caller.user, repo, op, refname))
        ttl = self.tokens.ttl
        out = []
        for item in items:
            entry: dict[str, Any] = {"oid": item.oid, "size": item.size, "authenticated": True}
            if item.error is not None:
                entry["error"] = {"code": item.error[0], "message": item.error[1]}
            elif item.action == "download":
                entry["actions"] = {"download": {"href": f"{base}/objects/{item.oid}",
                                                 "header": header, "expires_in": ttl}}
            elif item.action == "upload":
                entry["actions"] = {
                    "upload": {"href": f"{base}/objects/{item.oid}", "header": header,
                               "expires_in": ttl},
                    "verify": {"href": f"{base}/verify", "header": header, "expires_in": ttl}}
            out.append(entry)
        return _json({"transfer": "basic", "objects": out, "hash_algo": "sha256"})

    # --- basic transfer ------------------------------------------------------------
    @answers
    async def download(self, request: Request) -> Response:
        repo, caller = await self._enter(request)
        oid = check_oid(request.path_params["oid"])
        if not caller.may("download"):
            return _error(403, "this token does not allow downloads")
        store = self._store(repo, "download")
        if await anyio.to_thread.run_sync(store.size, oid) is None:
            return _error(404, "object not found")
        return FileResponse(store.path(oid), media_type="application/octet-stream")

    @answers
    async def upload(self, request: Request) -> Response:
        repo, caller = await self._enter(request)
        oid = check_oid(request.path_params["oid"])
        if caller.user == ANONYMOUS:
            return _error(401, "an upload needs USER:TOKEN")
        if not caller.may("upload"):
            return _error(403, "this token does not allow uploads")
        ref = caller.grant.ref if caller.grant else ""
        lfsbatch.authorize("upload", caller.access, ref)
        length = request.headers.get("content-length")
        if length is None:
            return _error(411, "an upload needs Content-Length")
        if not length.isdigit():
            return _error(422, "invalid Content-Length")
        store = store_for(self.settings, repo)
        up = await anyio.to_thread.run_sync(store.upload, oid, int(length))
        try:
            async for chunk in request.stream():
                await anyio.to_thread.run_sync(up.write, chunk)
            new = await anyio.to_thread.run_sync(up.commit)
        finally:
            up.abort()
        log.info("lfs: %s stored %s in %s (%s bytes, %s)", caller.user, oid, repo, length,
                 "new" if new else "known")
        return Response(status_code=200)

    @answers
    async def verify(self, request: Request) -> Response:
        repo, caller = await self._enter(request)
        body = await self._body(request)
        if caller.user == ANONYMOUS:
            return _error(401, "verify needs USER:TOKEN")
        if not caller.may("upload"):
            return _error(403, "this token does not allow uploads")
        ref = caller.grant.ref if caller.grant else ""
        try:
            oid, size = str(body["oid"]), int(body["size"])
        except (KeyError, TypeError, ValueError):
            return _error(422, "verify needs an oid and a size")
        await anyio.to_thread.run_sync(lfsbatch.verify, oid, size, caller.access,
                                       store_for(self.settings, repo), ref)
        return _json({"message": "ok"})

    # --- locks ---------------------------------------------------------------------
    def _ref_of(self, body: Any) -> str:
        ref = body.get("ref") if isinstance(body, dict) else None
        return str(ref.get("name", "")) if isinstance(ref, dict) else ""

    async def _writer(self, request: Request) -> tuple[str, Caller, Any]:
        repo, caller = await self._enter(request)
        body = await self._body(request)
        if caller.user == ANONYMOUS:
            raise Refused(_error(401, "locks need USER:TOKEN"))
        if not caller.may("upload"):  # a download token reads, it never locks or unlocks
            raise Refused(_error(403, "this token does not allow locking"))
        if not isinstance(body, dict):
            raise Refused(_error(422, "the body must be a JSON object"))
        if not caller.access.can_lock(self._ref_of(body)):
            raise Refused(_error(403, f"locking needs W for {caller.user}"))
        return repo, caller, body

    async def _page(self, repo: str, limit: Any, cursor: str, path: str = "",
                    lock_id: str = "") -> tuple[list[Lock], dict[str, str]]:
        """One page of REPO's locks and the `next_cursor` member when more follow."""
        try:
            count = int(limit or 100)
        except (TypeError, ValueError) as exc:
            raise Refused(_error(422, "invalid limit")) from exc
        table = locks_for(self.settings, repo)
        page, after = await anyio.to_thread.run_sync(table.search, path, lock_id, cursor, count)
        return page, ({"next_cursor": after} if after else {})

    @answers
    async def create_lock(self, request: Request) -> Response:
        repo, caller, body = await self._writer(request)
        refusal = caller.access.lock_refusal(self._ref_of(body))
        if refusal:
            raise Refused(_error(403, refusal))
        table = locks_for(self.settings, repo)
        lock = await anyio.to_thread.run_sync(table.create, str(body.get("path", "")),
                                              caller.user, self._ref_of(body))
        return _json({"lock": lock.api()}, 201)

    @answers
    async def list_locks(self, request: Request) -> Response:
        repo, caller = await self._enter(request)
        q = request.query_params
        page, cursor = await self._page(repo, q.get("limit"), q.get("cursor", ""),
                                        q.get("path", ""), q.get("id", ""))
        return _json({"locks": [lock.api() for lock in page], **cursor})

    @answers
    async def verify_locks(self, request: Request) -> Response:
        repo, caller, body = await self._writer(request)
        page, cursor = await self._page(repo, body.get("limit"), str(body.get("cursor") or ""))
        return _json({"ours": [lock.api() for lock in page if lock.owner == caller.user],
                      "theirs": [lock.api() for lock in page if lock.owner != caller.user],
                      **cursor})

    @answers
    async def unlock(self, request: Request) -> Response:
        repo, caller, body = await self._writer(request)
        table = locks_for(self.settings, repo)
        force = bool(body.get("force"))
        lock: Lock = await anyio.to_thread.run_sync(
            lambda: table.remove(request.path_params["lock_id"], caller.user, force,
                                 caller.access.can_force_unlock))
        return _json({"lock": lock.api()})
