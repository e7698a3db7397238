"""The web UI in a real headless Chromium (Debian's `chromium`, driven by playwright; no browser
is downloaded): one-time login link, a build's log lines appearing while it runs, a site
rolled back with the button (the live side flips and nginx serves the old release), and a
user without W on deploy.ref who sees no button and gets 403 on the POST."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.server import GitServer
from tests.support.httpkit import get, login_cookie, make_http_server
from tests.support.tools import free_port, require_tool

pytestmark = pytest.mark.timeout(240)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[GitServer]:
    nginx = require_tool("nginx")
    ports = {"live": free_port(), "preview": free_port()}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo web
    RW+ = alice
    RW dev = erin
    R = bob erin
    R = gitweb
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{ports['live']}
    option deploy.preview-port = {ports['preview']}
repo slow
    RW+ = alice
    R = bob
    option build.enable = 1
    option build.mode = async
repo hidden
    RW+ = alice
"""
    server = make_http_server(tmp_path_factory.mktemp("web-srv"), conf=conf,
                              users=("alice", "bob", "carol", "erin"),
                              settings={"deploy": {"nginx_binary": nginx},
                                        "builds": {"workers": 2}})
    server.ports = ports  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        from deploy import nginx as nginx_mod

        from deploy import sitesctl
        sitesctl.stop(server.settings)  # `gitserve sites` (serve never stops it), nginx with it
        nginx_mod.stop_embedded(server.settings)


@pytest.fixture(scope="module")
def browser():
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def login(srv: GitServer, browser, user: str):
    """A fresh browser context logged in as USER through `ssh git@HOST login`."""
    out = srv.ssh(user, "login")
    assert out.returncode == 0, out.stderr
    link = out.stdout.strip()
    assert re.fullmatch(rf"{re.escape(srv.http_base)}/login/[A-Za-z0-9_-]{{43}}", link), link
    assert "valid 5 minutes" in out.stderr
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(link)
    page.click("#login button")
    page.wait_for_url(srv.http_base + "/")
    assert page.inner_text("#user") == user
    return ctx, page, link


def commit_site(srv: GitServer, work: Path, version: str) -> None:
    files = {".gitserve/build": "#!/bin/sh\nset -e\ncp -R site/. \"$GITSERVE_OUTPUT/\"\n",
             "site/index.html": f"<p>{version}</p>\n"}
    for name, text in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if name.startswith(".gitserve/"):
            p.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", version, cwd=work)
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work, timeout=180)


def site_body(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def wait_text(page, selector: str, text: str, timeout: float = 30.0) -> None:
    """Poll the DOM from Python (the pages' CSP forbids eval, so no wait_for_function)."""
    deadline = time.monotonic() + timeout
    while text not in page.inner_text(selector):
        assert time.monotonic() < deadline, f"{text!r} never showed in {selector}"
        time.sleep(0.1)


def test_login_link_sets_session_cookie_once(srv, browser):
    ctx, page, link = login(srv, browser, "alice")
    (cookie,) = [c for c in ctx.cookies() if c["name"] == "gitserve_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    # alice sees her repos, with clone URLs for ssh and http on the repo page
    page.goto(srv.http_base + "/")
    names = page.locator("#repos td:first-child a").all_inner_texts()
    assert {"web", "slow", "hidden"} <= set(names)
    ctx.close()
    # the link worked once
    other = browser.new_context()
    p2 = other.new_page()
    p2.goto(link)
    assert "Login link not valid" in p2.content()
    # an anonymous visitor sees what gitweb may read, and is nobody
    p2.goto(srv.http_base + "/")
    assert p2.locator("#repos td:first-child a").all_inner_texts() == ["web"]
    assert p2.locator("#user").count() == 0
    # the sign-in hint is the real command (user, host and port), not a placeholder
    assert f"ssh -p {srv.port} git@127.0.0.1 login" in p2.inner_text("header")
    other.close()


def test_forwarded_https_from_untrusted_peer_is_ignored(srv):
    # this server trusts no proxy: a client claiming https gets no Secure cookie
    cookie = login_cookie(srv, "alice", {"X-Forwarded-Proto": "https"})
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_build_log_lines_appear_live(srv, browser):
    work = srv.clone("alice", "slow")
    script = work / ".gitserve" / "build"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'step one <b>not bold</b>'\nsleep 4\necho step two\n"
                      "sleep 2\necho step three\n")
    script.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-qm", "slow", cwd=work)
    out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work).stderr
    build_id = re.search(r"build (\d+) queued", out).group(1)
    ctx, page, _ = login(srv, browser, "bob")
    page.goto(f"{srv.http_base}/builds/{build_id}")
    wait_text(page, "#log", "step one")
    # no reload from here on: the lines arrive through the event stream
    assert page.inner_text("#status") in ("queued", "running")
    assert "step two" not in page.inner_text("#log")
    assert page.locator("#log b").count() == 0  # the build's HTML is text, not markup
    t0 = time.monotonic()
    wait_text(page, "#log", "step two")
    assert page.inner_text("#status") == "running"
    wait_text(page, "#status", "passed")
    assert time.monotonic() - t0 >= 1.0
    lines = page.locator("#log .line").all_inner_texts()
    assert lines == ["step one <b>not bold</b>", "step two", "step three"]
    assert re.fullmatch(rf"build {build_id} passed in \d+\.\ds", page.inner_text("#summary"))
    # the Duration row, rendered "-" while running, shows the same number without a reload
    summary_secs = re.search(r"in (\d+\.\d)s", page.inner_text("#summary")).group(1)
    assert page.inner_text("#duration") == f"{summary_secs}s"
    # the index's "Last build" is a time, never a raw epoch
    page.goto(f"{srv.http_base}/")
    last = page.locator("#repos tr", has_text="slow").locator("td").nth(2).inner_text()
    assert re.fullmatch(rf"#{build_id} passed \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ", last), last
    # a finished build shows its stored log (no script needed)
    page.goto(f"{srv.http_base}/builds/{build_id}")
    assert page.locator("#log .line").all_inner_texts() == lines
    # carol may not read the repo: the build does not exist for her
    ctx.close()
    ctx, page, _ = login(srv, browser, "carol")
    resp = page.goto(f"{srv.http_base}/builds/{build_id}")
    assert resp.status == 404
    ctx.close()


def test_rollback_button_flips_live_side(srv, browser):
    live_port = srv.ports["live"]
    work = srv.clone("alice", "web")
    commit_site(srv, work, "version one")
    commit_site(srv, work, "version two")
    assert "version two" in site_body(live_port)

    # bob (R only) sees the site, no button, and the POST is refused
    ctx, page, _ = login(srv, browser, "bob")
    page.goto(f"{srv.http_base}/sites/www")
    before = page.inner_text("#live-side")
    assert before in ("blue", "green")
    assert page.locator("#rollback").count() == 0
    assert page.locator("#releases button").count() == 0
    csrf = page.locator("header input[name=csrf]").get_attribute("value")
    resp = page.request.post(f"{srv.http_base}/sites/www/rollback", form={"csrf": csrf})
    assert resp.status == 403 and "W on its deploy.ref" in resp.text()
    ctx.close()
    # erin may push dev, not main (the deploy.ref): no button either, and 403
    ctx, page, _ = login(srv, browser, "erin")
    page.goto(f"{srv.http_base}/sites/www")
    assert page.locator("#rollback").count() == 0
    csrf = page.locator("header input[name=csrf]").get_attribute("value")
    resp = page.request.post(f"{srv.http_base}/sites/www/rollback", form={"csrf": csrf})
    assert resp.status == 403 and "refs/heads/main" in resp.text()
    ctx.close()
    assert "version two" in site_body(live_port)

    # alice has W on refs/heads/main: one click, the other side is live with version one
    ctx, page, _ = login(srv, browser, "alice")
    page.goto(f"{srv.http_base}/sites/www")
    assert page.inner_text("#live-side") == before
    # without the form's CSRF token the POST is refused
    resp = page.request.post(f"{srv.http_base}/sites/www/rollback", form={"csrf": "forged"})
    assert resp.status == 403
    page.click("#rollback button")
    page.wait_for_url(f"{srv.http_base}/sites/www")
    after = page.inner_text("#live-side")
    assert after != before and after in ("blue", "green")
    assert "version one" in site_body(live_port)
    rows = page.locator("#releases tr.live").all_inner_texts()
    assert len(rows) == 1 and "(live)" in rows[0]
    ctx.close()
    status = srv.ssh("alice", "deploy", "status", "www").stdout
    assert f"live:     {after}" in status
    # /metrics counted both deploys and the rollback, with their switch times
    from prometheus_client.parser import text_string_to_metric_families

    body = get(f"{srv.http_base}/metrics")[2].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body) for s in f.samples}
    assert samples[("gitserve_deploys_total", (("action", "deploy"),))] == 2
    assert samples[("gitserve_deploys_total", (("action", "rollback"),))] == 1
    assert samples[("gitserve_deploy_switch_seconds_count", ())] == 3


def test_pages_escape_and_anonymous_views(srv, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{srv.http_base}/r/web")
    assert "git clone" in page.inner_text("pre.clone")
    assert f"{srv.http_base}/web.git" in page.inner_text("pre.clone")
    assert page.locator("#commits tr").count() >= 2
    assert page.goto(f"{srv.http_base}/r/hidden").status == 404
    assert page.goto(f"{srv.http_base}/sites/www").ok
    assert page.locator("#rollback").count() == 0
    ctx.close()
    # rollback without a session: 403 (no CSRF token can be right)
    assert get(f"{srv.http_base}/sites/www/rollback", data=b"csrf=x",
               headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 403
