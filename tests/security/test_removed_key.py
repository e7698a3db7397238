"""Issue 21 finding 4: removing a user's key left their HTTP token and web session working
(clone of a private repo, push, "signed in as bob"). A token and a session are only as good
as the key that made them: once the keydir holds no key of the user, both stop at once.

Failed before the fix: after `gitserve admin remove-key bob` the clone with bob's token
succeeded and the page still said "signed in as bob".
"""

from __future__ import annotations

import pytest

from tests.support.httpkit import get, hgit, http_url, login_cookie, make_http_server, token

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo private
    RW+ = alice bob
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_http_server(tmp_path_factory.mktemp("removed-key"), conf=CONF, users=("alice", "bob"))
    try:
        work = server.clone("alice", "private")
        server.commit("alice", work, content="private\n")
        server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        yield server
    finally:
        server.stop()


def test_token_and_session_die_with_the_key(srv, tmp_path):
    tok = token(srv, "bob", "laptop")
    cookie = login_cookie(srv, "bob").split(";", 1)[0]
    # both work while bob has a key
    assert hgit(srv, "clone", "-q", http_url(srv, "private", "bob", tok), str(tmp_path / "a")).returncode == 0
    status, _, page = get(srv.http_base + "/", headers={"Cookie": cookie})
    assert status == 200 and "bob" in page.decode()
    srv.admin_cli("admin", "remove-key", "bob")
    res = hgit(srv, "clone", "-q", http_url(srv, "private", "bob", tok), str(tmp_path / "b"))
    assert res.returncode != 0 and not (tmp_path / "b" / "README").exists(), res.stderr
    assert "401" in res.stderr or "Authentication failed" in res.stderr, res.stderr
    status, _, page = get(srv.http_base + "/", headers={"Cookie": cookie})
    assert "bob" not in page.decode(), page.decode()[:2000]
    # alice, who still has her key, is not affected
    tok_a = token(srv, "alice", "desk")
    assert hgit(srv, "clone", "-q", http_url(srv, "private", "alice", tok_a), str(tmp_path / "c")).returncode == 0
