"""The pages' authentication middleware, without a server: the session cookie becomes
`request.user` (a Visitor), a forged or absent one is Gitolite's `gitweb`, and every page
route (and no git route) runs behind it."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from gitserve.http import pages
from gitserve.http.auth import Authenticator, FailureLimit, Visitor, VisitorBackend
from gitserve.http.logins import COOKIE, LoginLinks, Sessions
from gitserve.http.tokens import TokenStore
from gitserve.metrics import NULL
from gitserve.settings import Settings


def _scope(path: str, cookie: str | None = None, method: str = "GET") -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:9")]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 9), "scheme": "http", "root_path": "", "http_version": "1.1"}


KEYED = {"alice"}  # users with a key in the keydir (the HTTP face asks the admin repo)


def _parts(tmp_path):
    sessions = Sessions(tmp_path, max_age=3600)
    auth = Authenticator(TokenStore(tmp_path), sessions, FailureLimit(5), frozenset(),
                         has_key=lambda user: user in KEYED)
    return auth, sessions


def test_the_backend_turns_the_session_cookie_into_request_user(tmp_path):
    auth, sessions = _parts(tmp_path)
    backend = VisitorBackend(auth)

    def who(cookie: str | None) -> tuple[Any, Visitor]:
        creds, user = anyio.run(backend.authenticate, HTTPConnection(_scope("/", cookie)))
        assert isinstance(user, Visitor)
        return creds, user

    creds, anon = who(None)
    assert (anon.user, anon.acts_as, anon.csrf, anon.is_authenticated) == (None, "gitweb", "", False)
    assert creds.scopes == [] and anon.client.ip == "127.0.0.1"
    cookie, session = sessions.issue("alice")
    creds, alice = who(cookie)
    assert (alice.user, alice.acts_as, alice.display_name, alice.is_authenticated) == (
        "alice", "alice", "alice", True)
    assert alice.csrf == session.csrf and creds.scopes == ["authenticated"]
    _, forged = who(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert forged.user is None and forged.acts_as == "gitweb"
    bob_cookie, _ = sessions.issue("bob")  # bob's key is gone: his session is too
    _, bob = who(bob_cookie)
    assert bob.user is None and bob.acts_as == "gitweb"


def test_every_page_route_and_no_git_route_is_behind_the_middleware(tmp_path):
    auth, sessions = _parts(tmp_path)
    routes = pages.routes(Settings(home=tmp_path), auth, LoginLinks(tmp_path), sessions, NULL)
    assert {r.path for r in routes} == {
        "/", "/r/{name:path}", "/builds", "/builds/{build_id}", "/builds/{build_id}/events",
        "/sites", "/sites/{site}", "/sites/{site}/rollback", "/login/{nonce}", "/login", "/logout"}
    for route in routes:
        assert isinstance(route.app, AuthenticationMiddleware), route.path


def test_a_page_sees_the_visitor(tmp_path):
    """The login page for a stale link, rendered through the middleware: the header shows
    who is signed in (and nobody for a forged cookie)."""
    auth, sessions = _parts(tmp_path)
    app = Starlette(routes=pages.routes(Settings(home=tmp_path), auth, LoginLinks(tmp_path),
                                        sessions, NULL))

    def get(path: str, cookie: str | None) -> tuple[int, str]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        anyio.run(app, _scope(path, cookie), receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], body.decode()

    cookie, _ = sessions.issue("alice")
    status, html = get("/login/stale", cookie)
    assert status == 400 and "Login link not valid" in html
    assert 'signed in as <strong id="user">alice</strong>' in html
    status, html = get("/login/stale", "forged")
    assert status == 400 and "signed in as" not in html
