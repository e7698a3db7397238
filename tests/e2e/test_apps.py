"""Apps, not only files (SPEC §7.1), through the real thing: `git push` over OpenSSH to
`gitserve serve`, a build whose output is a Procfile app of the seed's shape (a `web` and a
`search` process), `gitserve sites` running them sandboxed behind the embedded nginx, and
clients requesting every few ms through deploys, a rollback, serve's SIGTERM and kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.support.appkit import POST, write_app
from tests.support.pushes import remote, timed_push
from tests.support.server import make_server
from tests.support.tools import HttpLoad, free_port, require_tool
from tests.e2e.test_deploy import get

pytestmark = pytest.mark.timeout(300)

BUILD = """#!/bin/sh
set -e
echo "building $(cat app/version.txt)"
cp -R app/. "$GITSERVE_OUTPUT/"
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    binary = require_tool("nginx")
    require_tool("bwrap")
    ports = {"live": free_port(), "preview": free_port()}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo app
    RW+ = alice
    R = bob
    option build.enable = 1
    option deploy.site = app
    option deploy.port = 127.0.0.1:{ports['live']}
    option deploy.preview-port = {ports['preview']}
    option deploy.check = /health
    option deploy.routes = /api=search
    option deploy.drain = 1
    option deploy.post = .gitserve/post
    option deploy.previews = 1
    option deploy.server-name = app.test
"""
    server = make_server(tmp_path_factory.mktemp("apps-srv"), conf=conf, users=("alice", "bob"),
                         settings={"deploy": {"nginx_binary": binary}, "builds": {"workers": 2}})
    server.ports = ports  # type: ignore[attr-defined]
    server.work = server.clone("alice", "app")  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        server.stop_sites()


def commit(srv, version: str, unhealthy: bool = False) -> None:
    work = srv.work
    write_app(work / "app", version, unhealthy=unhealthy)
    for name, text in ((".gitserve/build", BUILD), (".gitserve/post", POST)):
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", version, cwd=work)


def push(srv) -> tuple[int, list[str]]:
    code, lines = timed_push(srv, "alice", srv.work, "origin", "HEAD:main", timeout=180)
    return code, remote(lines)


def page(srv, path: str = "/") -> str:
    status, text = get(srv.ports["live"], path)
    assert status == 200, (status, text)
    return text


def ps(srv) -> list[dict]:
    out = srv.ssh("bob", "deploy", "ps", "app", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_app_deploys_blue_green_with_zero_failed_requests(srv):
    commit(srv, "v1")
    code, msgs = push(srv)
    assert code == 0 and "Enable: blue" in msgs, "\n".join(msgs)
    assert any(m.startswith("deploy app: processes: search:") for m in msgs), "\n".join(msgs)
    post = next(m for m in msgs if m.startswith("post: LIVE_SIDE=blue"))
    assert re.fullmatch(r"post: LIVE_SIDE=blue IDLE_SIDE=green SITE=app PORT_WEB=\d+ PORT_SEARCH=\d+", post)
    assert '{"indexed": 4, "side": "blue"}' in msgs, "\n".join(msgs)   # the seed's search-index upload
    assert page(srv).startswith("v1 side=blue")
    assert json.loads(page(srv, "/api/search?q=alpha"))["hits"] == ["alpha"]

    commit(srv, "v2")
    with HttpLoad(srv.ports["live"], "/", threads=6) as load:
        time.sleep(0.3)
        code, msgs = push(srv)
        time.sleep(0.3)
    assert code == 0 and "Enable: green" in msgs, "\n".join(msgs)
    assert load.failures() == [], load.failures()[:5]
    assert len(load.results) > 50 and {b.split()[0] for *_, b in load.results} == {b"v1", b"v2"}
    switch = next(m for m in msgs if "switch: nginx proxies to green" in m)
    print(f"\ndeploy under load: {len(load.results)} served, 0 failed; {switch}")
    assert json.loads(page(srv, "/api/search?q=green"))["hits"] == ["green"]


def test_rollback_and_restart_over_ssh_fail_no_request(srv):
    with HttpLoad(srv.ports["live"], "/", threads=6) as load:
        back = srv.ssh("alice", "deploy", "rollback", "app")
        assert back.returncode == 0 and "Enable: blue" in back.stdout, back.stderr
        assert page(srv).startswith("v1 side=blue")
        again = srv.ssh("alice", "deploy", "restart", "app")
        assert again.returncode == 0 and "Enable: green" in again.stdout, again.stderr
        time.sleep(0.3)
    assert load.failures() == [], load.failures()[:5]
    assert page(srv).startswith("v1 side=green")
    denied = srv.ssh("bob", "deploy", "restart", "app")
    assert denied.returncode != 0 and "DENIED" in denied.stderr


def test_serve_sigterm_and_kill9_cost_the_app_no_request(srv):
    served_before = page(srv)
    with HttpLoad(srv.ports["live"], "/", threads=6) as load:
        time.sleep(0.2)
        srv.stop()
        srv.start()
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        srv.start()
        time.sleep(0.3)
    assert load.failures() == [], load.failures()[:5]
    assert all(st == 200 and b.decode() == served_before for _, _, st, b in load.results)
    print(f"\nserve SIGTERM + kill -9: {len(load.results)} requests, 0 failed")


def test_sites_supervisor_kill9_and_restart_keeps_the_processes(srv):
    """Restarting `gitserve sites` itself (here kill -9, then serve starts it again) restarts
    no process: the new supervisor adopts their keepers; same pids, no failed request."""
    from deploy import sitesctl

    before = {(r["type"], r["side"]): (r["pid"], r["restarts"]) for r in ps(srv) if r["live"]}
    assert before and all(pid for pid, _ in before.values())
    with HttpLoad(srv.ports["live"], "/", threads=6) as load:
        old = sitesctl.running_pid(srv.settings)
        assert old is not None
        os.kill(old, signal.SIGKILL)
        while sitesctl.running_pid(srv.settings) is not None:
            time.sleep(0.02)
        srv.stop()
        srv.start()  # serve starts gitserve sites when none runs
        deadline = time.monotonic() + 30
        while True:
            now = {(r["type"], r["side"]): (r["pid"], r["restarts"]) for r in ps(srv) if r["live"]}
            if sitesctl.running_pid(srv.settings) not in (None, old) and now == before:
                break
            assert time.monotonic() < deadline, (now, before)
            time.sleep(0.1)
        time.sleep(0.3)
    assert load.failures() == [], load.failures()[:5]
    assert "adopted (pid" in (srv.home / "logs" / "sites.log").read_text()
    print(f"\ngitserve sites kill -9 + restart: {len(load.results)} requests, 0 failed, same pids")


def test_killed_web_process_is_restarted_and_counted(srv):
    rows = {(r["type"], r["side"]): r for r in ps(srv)}
    web = next(r for (kind, _), r in rows.items() if kind == "web" and r["live"])
    os.kill(web["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = next(r for r in ps(srv) if r["type"] == "web" and r["live"])
        if now["pid"] and now["pid"] != web["pid"] and get(srv.ports["live"])[0] == 200:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    assert now["restarts"] == web["restarts"] + 1 and now["port"] == web["port"]
    table = srv.ssh("bob", "deploy", "ps", "app").stdout
    assert re.search(rf"^web\s+{now['side']}\*\s+{now['pid']}\s+{now['port']}\s+\S+\s+{now['restarts']}\s+running$",
                     table, re.M), table
    status = srv.ssh("bob", "deploy", "status", "app").stdout
    assert "processes:" in status and re.search(rf"web\s+{now['side']}\*\s+{now['pid']}", status), status
    logs = srv.ssh("bob", "deploy", "logs", "app", "web")
    assert logs.returncode == 0 and "exited with" in logs.stdout and "search listening" not in logs.stdout


def test_failing_idle_side_leaves_the_live_side_serving(srv):
    before = page(srv)
    commit(srv, "v3-broken", unhealthy=True)
    code, msgs = push(srv)
    assert code == 0 and not any(m.startswith("Enable:") for m in msgs), "\n".join(msgs)
    assert any("FAILED at check" in m and "answered 500" in m for m in msgs), "\n".join(msgs)
    assert page(srv) == before
    deadline = time.monotonic() + 20
    while {r["side"] for r in ps(srv)} != {next(r["side"] for r in ps(srv) if r["live"])}:
        assert time.monotonic() < deadline, ps(srv)
        time.sleep(0.1)


def test_without_deploy_dir_the_commit_is_the_release(srv):
    """SPEC §7.1: deploy.dir unset and nothing built into it: the commit (as the build left
    it, without .git) is the release, Procfile at its root."""
    work = srv.work
    srv.git("alice", "rm", "-rq", "app", cwd=work)
    write_app(work, "v-commit")
    (work / ".gitserve" / "build").write_text("#!/bin/sh\necho nothing to build\n")
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "app at the root", cwd=work)
    code, msgs = push(srv)
    assert code == 0 and any(m.startswith("Enable:") for m in msgs), "\n".join(msgs)
    text = page(srv)
    assert text.startswith("v-commit side="), text
    site = srv.home / "sites" / "app"
    release = (site / "live").resolve()
    assert (release / "Procfile").is_file() and not (release / ".git").exists()
    assert not (release / "public").exists()


def test_a_branch_preview_runs_its_processes_until_the_branch_goes(srv):
    """SPEC §7.1 previews of a Procfile app: the branch's own web and search processes run
    (side preview-SLUG, sandboxed like the sides), BRANCH.SERVER_NAME proxies to them, and
    deleting the branch stops them."""
    from tests.e2e.test_deploy import get_host

    live = srv.ports["live"]
    live_page = page(srv)
    work = srv.work
    write_app(work / "app" if (work / "app").is_dir() else work, "v-feature")  # either layout
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-qm", "feature", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:feature/X", timeout=180)
    msgs = remote(lines)
    assert code == 0 and f"deploy app: preview live at http://feature-x.app.test:{live}/" in msgs, "\n".join(msgs)
    assert any(m.startswith("deploy app: preview processes: search:") for m in msgs), "\n".join(msgs)
    status, text = get_host(live, f"feature-x.app.test:{live}")
    assert status == 200 and text.startswith("v-feature side=preview-feature-x"), text
    assert page(srv) == live_page
    rows = [r for r in ps(srv) if r["side"] == "preview-feature-x"]
    assert sorted((r["type"], r["state"]) for r in rows) == [("search", "running"), ("web", "running")]
    assert all(r["pid"] and not r["live"] for r in rows)
    table = srv.ssh("bob", "deploy", "ps", "app").stdout
    assert re.search(r"^web\s+preview-feature-x\s+\d+\s+\d+", table, re.M), table

    code, lines = timed_push(srv, "alice", work, "origin", ":feature/X", timeout=60)
    assert code == 0, lines
    deadline = time.monotonic() + 30
    while [r for r in ps(srv) if r["side"].startswith("preview-")] or \
            get_host(live, f"feature-x.app.test:{live}") != (200, live_page):
        assert time.monotonic() < deadline, ps(srv)
        time.sleep(0.1)
    from gitserve import procscan

    while [r["pid"] for r in rows if procscan.alive(r["pid"])]:  # stopped, not only unlisted
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
