"""Tokens, one-time login links, session cookies and the trusted-proxy rule, without a server."""

from __future__ import annotations

import json
import time

import pytest
from starlette.requests import Request

from gitserve.http.auth import FailureLimit, basic_credentials, client_of, trusted_set
from gitserve.http.logins import LoginLinks, Sessions, csrf_ok
from gitserve.http.tokens import TokenError, TokenStore


def test_tokens_are_stored_hashed_and_verified(tmp_path):
    store = TokenStore(tmp_path)
    tok = store.create("alice", "ci")
    raw = (tmp_path / "tokens.json").read_text()
    assert tok not in raw and tok[4:] not in raw
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert store.verify("alice", tok) == "ci"
    assert store.verify("bob", tok) is None
    assert store.verify("alice", tok + "x") is None
    assert store.verify("alice", "not-a-token") is None
    with pytest.raises(TokenError, match="already have a token named ci"):
        store.create("alice", "ci")
    store.revoke("alice", "ci")
    assert store.verify("alice", tok) is None
    with pytest.raises(TokenError, match="no token named ci"):
        store.revoke("alice", "ci")


def test_expired_token_does_not_work(tmp_path):
    store = TokenStore(tmp_path)
    tok = store.create("alice", "old", days=1)
    data = json.loads((tmp_path / "tokens.json").read_text())
    data["alice"]["old"]["expires"] = time.time() - 1
    (tmp_path / "tokens.json").write_text(json.dumps(data))
    assert store.verify("alice", tok) is None
    assert store.list("alice")[0].expired


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "../x", "a/b"])
def test_bad_token_names(tmp_path, name):
    with pytest.raises(TokenError):
        TokenStore(tmp_path).create("alice", name)


def test_login_link_is_single_use_and_expires(tmp_path):
    links = LoginLinks(tmp_path)
    nonce = links.issue("alice")
    assert nonce not in (tmp_path / "logins.json").read_text()
    assert links.peek(nonce) == "alice"
    assert links.consume(nonce) == "alice"
    assert links.consume(nonce) is None and links.peek(nonce) is None
    stale = links.issue("bob", seconds=-1)
    assert links.consume(stale) is None
    assert links.consume("made-up") is None


def test_session_cookie_signed_and_csrf(tmp_path):
    sessions = Sessions(tmp_path, max_age=60)
    cookie, session = sessions.issue("alice")
    read = sessions.read(cookie)
    assert read is not None and read.user == "alice" and read.csrf == session.csrf
    assert csrf_ok(read, session.csrf) and not csrf_ok(read, "x") and not csrf_ok(None, "x")
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert sessions.read(tampered) is None
    # another server home's key signs nothing here
    assert Sessions(tmp_path / "other", max_age=60).read(cookie) is None
    assert Sessions(tmp_path, max_age=60).read(cookie) is not None  # key kept on disk


def _request(peer: str, headers: dict[str, str], scheme: str = "http") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "scheme": scheme, "server": ("127.0.0.1", 80), "client": (peer, 5000),
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_forwarded_headers_only_from_trusted_proxy():
    trusted = trusted_set("10.0.0.1, 10.0.0.2")
    fwd = {"X-Forwarded-For": "1.2.3.4, 203.0.113.5", "X-Forwarded-Proto": "https"}
    c = client_of(_request("10.0.0.1", fwd), trusted)
    assert c.ip == "203.0.113.5" and c.https
    c = client_of(_request("192.0.2.7", fwd), trusted)
    assert c.ip == "192.0.2.7" and not c.https
    assert client_of(_request("192.0.2.7", {}, scheme="https"), trusted).https


def test_failure_limit_per_address():
    limit = FailureLimit(3)
    for _ in range(3):
        assert not limit.blocked("a")
        limit.failed("a")
    assert limit.blocked("a") and not limit.blocked("b")


def test_basic_credentials_parsing():
    import base64

    def req(value: str) -> Request:
        return _request("1.1.1.1", {"Authorization": value})

    ok = "Basic " + base64.b64encode(b"alice:gst_x:y").decode()
    assert basic_credentials(req(ok)) == ("alice", "gst_x:y")
    assert basic_credentials(req("Basic !!!")) == ("", "")
    assert basic_credentials(req("Bearer x")) is None
    assert basic_credentials(_request("1.1.1.1", {})) is None


def test_app_wires_the_http_face_with_the_same_hooks_and_metrics(tmp_path):
    from gitserve import app
    from gitserve.errors import GitserveError
    from gitserve.settings import Settings
    from tests.support.tools import free_port

    settings = Settings(home=tmp_path)
    wired = app.build(settings)
    assert wired.http_service() is None  # off by default
    port = free_port()
    settings.http.listen = f"127.0.0.1:{port}"
    web = wired.http_service()
    try:
        assert web is not None and web.address == ("127.0.0.1", port)
        assert web.face.git.hooks == tuple(wired.hooks)
        assert web.face.metrics is wired.metrics
        # the port is taken now: a second one fails with one line, before anything starts
        with pytest.raises(GitserveError, match=f"cannot listen on 127.0.0.1:{port} \\(http\\)"):
            wired.http_service()
    finally:
        if web is not None:
            web.sock.close()
    settings.http.listen = "nonsense"
    with pytest.raises(GitserveError, match="must be HOST:PORT"):
        wired.http_service()
