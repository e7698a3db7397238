"""The web UI: repos, builds (with the live log), sites (with rollback), login.

Every page is plain HTML from jinja2 templates with autoescape on, so it works without
JavaScript; only the live log of a running build uses a small script (EventSource).
Page handlers are sync functions: Starlette runs them in its thread pool, so reading
repos, Redis and the admin repo never blocks the event loop.

Who sees what: a logged-in visitor is their Gitolite user; an anonymous one is Gitolite's
`gitweb` user (what gitweb may read is what the world may browse, as with Gitolite). A
build is visible with R on its repo, a site with R on the repo that deploys it, and the
rollback button (and its POST, CSRF-checked) needs W on the site's `deploy.ref`.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from gitserve import adminrepo, audit, repos
from gitserve.settings import Settings

from .auth import Authenticator, Client
from .logins import COOKIE, LoginLinks, Session, Sessions, csrf_ok

log = logging.getLogger(__name__)

ANONYMOUS = "gitweb"  # Gitolite's user for what a web browser may show without login
README_NAMES = ("readme", "readme.md", "readme.txt", "readme.rst", "readme.markdown")
README_MAX = 256 * 1024
COMMITS = 20


def _when(ts: float | str | None) -> str:
    try:
        value = float(ts or 0)
    except (TypeError, ValueError):
        return str(ts)
    if not value:
        return "-"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["short_ref"] = lambda ref: str(ref).removeprefix("refs/heads/")
    return env


class Visitor:
    """The visitor of one request: user (or None), the Gitolite name rules see, session."""

    def __init__(self, session: Session | None, client: Client) -> None:
        self.session = session
        self.user = session.user if session else None
        self.acts_as = self.user or ANONYMOUS
        self.client = client

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


class WebUI:
    def __init__(self, settings: Settings, auth: Authenticator, links: LoginLinks,
                 sessions: Sessions, metrics: Any) -> None:
        self.settings = settings
        self.auth = auth
        self.links = links
        self.sessions = sessions
        self.metrics = metrics
        self.env = _env()
        self._aredis: Any = None

    # --- helpers ---------------------------------------------------------------------
    def visitor(self, request: Request) -> Visitor:
        return Visitor(self.auth.session(request), self.auth.client(request))

    def page(self, template: str, visitor: Visitor, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(visitor=visitor, **ctx)
        return HTMLResponse(html, status_code=status)

    def message(self, visitor: Visitor, title: str, text: str, status: int) -> HTMLResponse:
        return self.page("message.html", visitor, status=status, title=title, text=text)

    def can(self, state: Any, repo: str, user: str, perm: str = "R", ref: str = "any") -> bool:
        try:
            if not repos.exists(self.settings, repo):
                return False
            wild = repos.wild_info(self.settings, repo)
            return bool(state.rules.check(repo, user, perm, ref, wild=wild).allowed)
        except Exception:  # noqa: BLE001 - a name the rules cannot check: no access
            return False

    def _async_redis(self) -> Any:
        """One asyncio Redis client (and pool) for the event streams of live logs."""
        if self._aredis is None:
            import redis.asyncio

            self._aredis = redis.asyncio.Redis.from_url(
                self.settings.effective_redis_url, socket_connect_timeout=3)
        return self._aredis

    def _redis(self) -> Any:
        from buildqueue import rqconn

        try:
            return rqconn.connect(self.settings.effective_redis_url)
        except rqconn.RedisUnavailable:
            return None

    def base_url(self, request: Request, client: Client) -> str:
        if self.settings.http.public_url:
            return self.settings.http.public_url.rstrip("/")
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return f"{'https' if client.https else 'http'}://{host}"

    def ssh_url(self, name: str) -> str:
        s = self.settings.server
        host, port = self.settings.listen_host_port()
        host = s.public_host or host
        if ":" in host:
            host = f"[{host}]"
        if port == 22:
            return f"{s.ssh_user}@{host}:{name}.git"
        return f"ssh://{s.ssh_user}@{host}:{port}/{name}.git"

    # --- repos ---------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        v = self.visitor(request)
        state = adminrepo.current(self.settings)
        r = self._redis()
        rows = []
        for name in repos.list_names(self.settings):
            if not self.can(state, name, v.acts_as):
                continue
            rows.append({"name": name, "description": repos.description(self.settings, name),
                         "build": self._last_build(r, name)})
        return self.page("index.html", v, repos=rows, redis_ok=r is not None)

    def _last_build(self, r: Any, repo: str) -> Any:
        if r is None:
            return None
        from buildqueue import records

        try:
            ids = records.list_ids(r, repo, limit=1)
            return records.get(r, ids[0]) if ids else None
        except Exception:  # noqa: BLE001
            return None

    def repo(self, request: Request) -> Response:
        v = self.visitor(request)
        state = adminrepo.current(self.settings)
        try:
            name = repos.parse_repo_arg(request.path_params["name"])
        except repos.RepoError:
            name = ""
        if not name or not self.can(state, name, v.acts_as):
            return self.message(v, "Not found", "No such repository, or you may not read it.", 404)
        from dulwich.objects import Blob, Commit
        from dulwich.repo import Repo

        repo = Repo(str(repos.path(self.settings, name)))
        try:
            refs = repo.get_refs()
            branches = sorted(k.decode("utf-8", "replace").removeprefix("refs/heads/")
                              for k in refs if k.startswith(b"refs/heads/"))
            commits = []
            readme = None
            head = None
            try:
                head = repo.refs[b"HEAD"]
            except KeyError:
                pass
            if head is not None:
                for entry in repo.get_walker(include=[head], max_entries=COMMITS):
                    c: Commit = entry.commit
                    commits.append({
                        "sha": c.id.decode(),
                        "subject": c.message.decode("utf-8", "replace").split("\n", 1)[0],
                        "author": c.author.decode("utf-8", "replace").split(" <", 1)[0],
                        "when": _when(c.commit_time)})
                tree = repo[repo[head].tree]
                for item in tree.items():
                    if item.path.decode("utf-8", "replace").lower() in README_NAMES:
                        blob = repo[item.sha]
                        if isinstance(blob, Blob):
                            data = blob.data[:README_MAX]
                            readme = {"name": item.path.decode("utf-8", "replace"),
                                      "text": data.decode("utf-8", "replace")}
                        break
            head_branch = None
            try:
                target = repo.refs.get_symrefs().get(b"HEAD")
                head_branch = target.decode().removeprefix("refs/heads/") if target else None
            except Exception:  # noqa: BLE001
                pass
        finally:
            repo.close()
        r = self._redis()
        builds = []
        if r is not None:
            from buildqueue import records

            for build_id in records.list_ids(r, name, limit=10):
                try:
                    builds.append(records.get(r, build_id))
                except records.BuildNotFound:
                    continue
        return self.page("repo.html", v, name=name, branches=branches, head=head_branch,
                         commits=commits, readme=readme, builds=builds,
                         description=repos.description(self.settings, name),
                         ssh_url=self.ssh_url(name),
                         http_url=f"{self.base_url(request, v.client)}/{name}.git")

    # --- builds --------------------------------------------------------------------
    def builds(self, request: Request) -> Response:
        from buildqueue import records

        v = self.visitor(request)
        state = adminrepo.current(self.settings)
        only = request.query_params.get("repo") or None
        r = self._redis()
        rows = []
        if r is not None and (only is None or self.can(state, only, v.acts_as)):
            readable: dict[str, bool] = {}
            for build_id in records.list_ids(r, only, limit=400):
                try:
                    b = records.get(r, build_id)
                except records.BuildNotFound:
                    continue
                if b.repo not in readable:
                    readable[b.repo] = self.can(state, b.repo, v.acts_as)
                if readable[b.repo]:
                    records.reap_if_lost(r, b, log_ttl=self.settings.builds.log_ttl)
                    rows.append(b)
                if len(rows) >= 50:
                    break
        return self.page("builds.html", v, builds=rows, repo=only, redis_ok=r is not None)

    def _visible_build(self, v: Visitor, build_id: str) -> Any:
        from buildqueue import records

        r = self._redis()
        if r is None or not build_id.isdigit():
            return None, None
        try:
            b = records.get(r, build_id)
        except records.BuildNotFound:
            return r, None
        state = adminrepo.current(self.settings)
        if not self.can(state, b.repo, v.acts_as):
            return r, None
        return r, b

    def build(self, request: Request) -> Response:
        from buildqueue import keys, logs, records

        v = self.visitor(request)
        r, b = self._visible_build(v, request.path_params["build_id"])
        if b is None:
            return self.message(v, "Not found", "No such build, or you may not read its repo.",
                                404)
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
        return self.page("build.html", v, build=b, lines=lines, last=last,
                         live=not b.is_final and not ended, expired=expired)

    async def build_events(self, request: Request) -> Response:
        """Server-Sent Events: the log lines after `after` (or Last-Event-ID), then `end`."""
        from buildqueue import keys, records

        v = await anyio.to_thread.run_sync(self.visitor, request)
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
                            yield _sse("end", final.summary(), last, status=final.status)
                            return
                        if "l" in data:
                            yield _sse("message", data["l"], last)
                    continue
                build = await anyio.to_thread.run_sync(records.get, r, b.id)
                if build.is_final:
                    yield _sse("end", build.summary(), last, status=build.status)
                    return
                await anyio.to_thread.run_sync(
                    functools.partial(records.reap_if_lost, r, build, log_ttl=ttl))
                yield ": waiting\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # --- sites ---------------------------------------------------------------------
    def _site(self, state: Any, v: Visitor, site: str) -> tuple[str | None, bool]:
        """(repo of SITE if the visitor may see it, may they roll it back)."""
        from deploy.options import SITE_RE
        from deploy.status import site_repo

        if not SITE_RE.match(site):
            return None, False
        repo = site_repo(self.settings, site)
        if repo is None or not self.can(state, repo, v.acts_as):
            return None, False
        if v.user is None:
            return repo, False
        ref = deploy_ref(self.settings, state, repo)
        return repo, self.can(state, repo, v.user, "W", ref)

    def sites(self, request: Request) -> Response:
        from deploy.status import list_sites, site_status

        v = self.visitor(request)
        state = adminrepo.current(self.settings)
        rows = []
        for site in list_sites(self.settings):
            repo, _ = self._site(state, v, site)
            if repo is None:
                continue
            try:
                rows.append(site_status(self.settings, site))
            except Exception:  # noqa: BLE001 - a half-made site: list it without details
                rows.append({"site": site, "repo": repo, "live_side": None, "releases": []})
        return self.page("sites.html", v, sites=rows)

    def site(self, request: Request, error: str = "", status: int = 200) -> Response:
        from deploy.status import site_status

        v = self.visitor(request)
        state = adminrepo.current(self.settings)
        name = request.path_params["site"]
        repo, may_rollback = self._site(state, v, name)
        if repo is None:
            return self.message(v, "Not found", "No such site, or you may not read its repo.", 404)
        try:
            st = site_status(self.settings, name)
        except Exception as exc:  # noqa: BLE001
            return self.message(v, "Site unavailable", str(exc), 500)
        return self.page("site.html", v, status=status, st=st, may_rollback=may_rollback,
                         error=error, deploy_ref=deploy_ref(self.settings, state, repo))

    async def rollback(self, request: Request) -> Response:
        if not same_origin(request):
            return self.message(self.visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        return await anyio.to_thread.run_sync(self._rollback, request, dict(form))

    def _rollback(self, request: Request, form: dict[str, Any]) -> Response:
        from deploy.bluegreen import rollback
        from deploy.errors import DeployError

        v = self.visitor(request)
        name = request.path_params["site"]
        if not csrf_ok(v.session, str(form.get("csrf", ""))):
            return self.message(v, "Forbidden", "Missing or wrong form token: reload the page "
                                "and try again.", 403)
        state = adminrepo.current(self.settings)
        repo, may_rollback = self._site(state, v, name)
        if repo is None:
            return self.message(v, "Not found", "No such site, or you may not read its repo.", 404)
        if not may_rollback:
            self.metrics.access_denied.labels("http", "rollback").inc()
            audit.record(self.settings, user=v.user, ip=v.client.ip, repo=repo,
                         op="deploy rollback", result="denied",
                         reason=f"W on {deploy_ref(self.settings, state, repo)} needed")
            return self.message(v, "Forbidden", "Rolling back this site needs W on its "
                                f"deploy.ref ({deploy_ref(self.settings, state, repo)}).", 403)
        to = str(form.get("to") or "") or None
        lines: list[str] = []
        try:
            rollback(self.settings, name, to=to, by=v.user, log=lines.append)
        except DeployError as exc:
            return self.site(request, error=f"rollback failed: {exc}", status=409)
        return RedirectResponse(f"/sites/{name}", status_code=303)

    # --- login ---------------------------------------------------------------------
    def login_page(self, request: Request) -> Response:
        v = self.visitor(request)
        nonce = request.path_params["nonce"]
        user = self.links.peek(nonce)
        if user is None:
            return self.message(v, "Login link not valid", "This link was used already, has "
                                "expired (links last 5 minutes) or is mistyped. Run "
                                f"`ssh {self.settings.server.ssh_user}@HOST login` again.", 400)
        return self.page("login.html", v, login_user=user, nonce=nonce)

    async def login(self, request: Request) -> Response:
        if not same_origin(request):  # login CSRF: no logging a victim in as someone else
            return self.message(self.visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        return await anyio.to_thread.run_sync(self._login, request, str(form.get("nonce", "")))

    def _login(self, request: Request, nonce: str) -> Response:
        v = self.visitor(request)
        user = self.links.consume(nonce) if nonce else None
        if user is None:
            return self.message(v, "Login link not valid", "This link was used already or "
                                "has expired. Run `ssh git@HOST login` again.", 400)
        cookie, _session = self.sessions.issue(user)
        audit.record(self.settings, user=user, ip=v.client.ip, op="web login", result="allowed")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=self.sessions.max_age, path="/",
                            httponly=True, samesite="lax", secure=v.client.https)
        return response

    async def logout(self, request: Request) -> Response:
        if not same_origin(request):
            return self.message(self.visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        v = self.visitor(request)
        if not csrf_ok(v.session, str(form.get("csrf", ""))):
            return self.message(v, "Forbidden", "Missing or wrong form token.", 403)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                               secure=v.client.https)
        return response


def deploy_ref(settings: Settings, state: Any, repo: str) -> str:
    """The only ref whose builds go live (SPEC §7), as `ssh ... deploy rollback` finds it:
    `deploy.ref`, else the branch the repo's HEAD names, else the default branch."""
    from gitserve.options import deploy_ref as option_ref

    head = (repos.default_branch(settings.repo_path(repo))
            or f"refs/heads/{settings.server.default_branch}")
    try:
        options = state.rules.options(repo, wild=repos.wild_info(settings, repo))
    except Exception:  # noqa: BLE001 - unreadable options: the default branch
        options = {}
    return option_ref(options, head) or head


def same_origin(request: Request) -> bool:
    """A browser's POST names its page's origin; it must be this host (an absent Origin is a
    non-browser client or an old browser: the CSRF token still guards what matters)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


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

