"""Blue-green deploys through the real thing: `git push` over OpenSSH to `gitserve serve`
(embedded Redis, local rq workers, embedded nginx on free 127.0.0.1 ports); deploy steps
and `Enable: blue|green` come back as `remote:` lines while the push waits."""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.server import GitServer, make_server
from tests.support.pushes import remote, timed_push
from tests.support.tools import HttpLoad, free_port, require_tool

pytestmark = pytest.mark.timeout(180)

BUILD = """#!/bin/sh
set -e
echo "building $(head -c 20 site/index.html | head -1)"
sleep "$(cat site/delay 2>/dev/null || echo 0)"
cp -R site/. "$GITSERVE_OUTPUT/"
"""
POST = """#!/bin/sh
echo "post: LIVE_SIDE=$LIVE_SIDE IDLE_SIDE=$IDLE_SIDE SITE=$SITE"
"""


def page(version: str) -> str:
    return f"<!-- {version} -->\n" + (version + "\n") * (200_000 // (len(version) + 1))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    binary = require_tool("nginx")
    ports = {"live": free_port(), "preview": free_port()}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo web
    RW+ = alice
    R = bob
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{ports['live']}
    option deploy.preview-port = {ports['preview']}
    option deploy.check = /health.txt
    option deploy.post = .gitserve/post
    option deploy.previews = 1
    option deploy.server-name = www.test
"""
    server = make_server(tmp_path_factory.mktemp("deploy-srv"), conf=conf, users=("alice", "bob", "carol"),
                         settings={"deploy": {"nginx_binary": binary}, "builds": {"workers": 2}})
    server.ports = ports  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        server.stop_sites()  # serve never stops the sites


def get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def commit_version(srv: GitServer, work: Path, version: str, health: bool = True, fail: bool = False,
                   delay: float = 0) -> None:
    files = {".gitserve/build": BUILD + ("exit 1\n" if fail else ""), ".gitserve/post": POST,
             "site/index.html": page(version), "site/delay": str(delay)}
    for name, text in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if name.startswith(".gitserve/"):
            p.chmod(0o755)
    health_file = work / "site" / "health.txt"
    if health:
        health_file.write_text("ok\n")
    elif health_file.exists():
        health_file.unlink()
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", version, cwd=work)


def push(srv: GitServer, work: Path, ref: str = "HEAD:main") -> list[str]:
    code, lines = timed_push(srv, "alice", work, "origin", ref, timeout=120)
    assert code == 0, lines
    return remote(lines)


def test_push_deploys_blue_green_with_zero_downtime(srv):
    live, preview = srv.ports["live"], srv.ports["preview"]
    work = srv.clone("alice", "web")

    commit_version(srv, work, "v1")
    msgs = push(srv, work)
    assert "Enable: blue" in msgs, msgs
    assert "post: LIVE_SIDE=blue IDLE_SIDE=green SITE=www" in msgs
    assert any(m.startswith("deploy www: check: GET /health.txt") for m in msgs)
    assert re.fullmatch(r"build \d+ passed in \d+\.\ds", msgs[-1]), msgs
    assert get(live) == (200, page("v1"))

    # v2 while 8 clients hammer the live port for the whole push
    commit_version(srv, work, "v2")
    with HttpLoad(live, "/", threads=8) as load:
        time.sleep(0.3)
        msgs = push(srv, work)
        pushed = time.monotonic()
        time.sleep(0.3)
    assert "Enable: green" in msgs and "post: LIVE_SIDE=green IDLE_SIDE=blue SITE=www" in msgs, msgs
    assert load.errors == [], load.errors[:3]
    v1, v2 = page("v1").encode(), page("v2").encode()
    assert all(status == 200 and body in (v1, v2) for _, _, status, body in load.results)
    assert all(body == v2 for start, _, _, body in load.results if start > pushed)
    assert sum(body == v1 for *_, body in load.results) and sum(body == v2 for *_, body in load.results)
    switch = next(m for m in msgs if "switch: live -> green" in m)
    print(f"\ne2e load: {len(load.results)} served, {len(load.errors)} failed during the push; {switch}")
    assert get(preview) == (200, page("v1"))  # the old side waits on the preview

    # a check that fails and a build that fails leave v2 live
    commit_version(srv, work, "v3", health=False)
    msgs = push(srv, work)
    assert any("FAILED at check" in m and "answered 404" in m and "live stays green" in m for m in msgs), msgs
    assert not any(m.startswith("Enable:") for m in msgs)
    assert re.fullmatch(r"build \d+ failed in \d+\.\ds", msgs[-1]), msgs
    assert get(live) == (200, page("v2"))
    commit_version(srv, work, "v4", fail=True)
    msgs = push(srv, work)
    assert not any("deploy www" in m for m in msgs) and get(live) == (200, page("v2"))

    # status and rollback over ssh, with the access rules of the repo
    status = srv.ssh("bob", "deploy", "status", "www")
    assert status.returncode == 0 and "live:     green" in status.stdout and "pushed by alice" in status.stdout
    denied = srv.ssh("bob", "deploy", "rollback", "www")
    assert denied.returncode != 0 and "W refs/heads/main web bob DENIED by fallthru" in denied.stderr
    hidden = srv.ssh("carol", "deploy", "status", "www")
    assert hidden.returncode != 0 and "site www does not exist, or you are not authorised" in hidden.stderr
    t0 = time.monotonic()
    back = srv.ssh("alice", "deploy", "rollback", "www")
    took = time.monotonic() - t0
    assert back.returncode == 0 and "Enable: blue" in back.stdout, back.stderr
    assert get(live) == (200, page("v1")) and took < 5, took
    done = re.search(r"done: live is blue \(release \d+\) in ([0-9.]+)s", back.stdout)
    assert done and float(done.group(1)) < 2.0
    print(f"e2e rollback over ssh: {took:.2f}s end to end, {done.group(1)}s in the server")
    cli = srv.admin_cli("deploy", "status", "www").stdout
    assert "live:     blue" in cli and "by alice (rollback" in cli


def test_concurrent_pushes_deploy_in_push_order_last_push_wins(srv):
    """Only deploy.ref (main) deploys, and builds of one ref run in push order: the second
    push waits for the first one's build and deploy, then goes live."""
    live = srv.ports["live"]
    work_a = srv.clone("alice", "web")
    work_b = srv.clone("alice", "web")
    commit_version(srv, work_a, "slow-first", delay=3)   # pushed first, builds longest
    commit_version(srv, work_b, "fast-second")
    # both go to main (deploy.ref defaults to the default branch); the second one forced
    first = subprocess.Popen(["git", "push", "origin", "+HEAD:main"], cwd=work_a,
                             env=srv.client_env("alice"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the second push starts once the first one's build runs: it is pushed later, builds faster
    assert first.stderr is not None
    seen_a: list[str] = []
    for line in first.stderr:
        seen_a.append(line)
        if "building <!-- slow-first" in line:
            break
    second = subprocess.Popen(["git", "push", "origin", "+HEAD:main"], cwd=work_b,
                              env=srv.client_env("alice"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_b = second.communicate(timeout=120)[1]
    out_a = "".join(seen_a) + first.communicate(timeout=120)[1]
    assert first.returncode == 0 and second.returncode == 0, (out_a, out_b)
    assert "Enable:" in out_a and "Enable:" in out_b, (out_a, out_b)
    assert "waiting for build" in out_b and "of the same ref to finish" in out_b, out_b
    assert get(live) == (200, page("fast-second"))


def test_sites_outlive_serve_sigterm_and_kill9(srv):
    """Stopping serve (SIGTERM) or killing it (-9) and starting a new one costs the live
    site no request: nginx runs under `gitserve sites`, which serve never stops; the new
    serve re-attaches to it. A SIGTERM'd serve exits promptly, and after kill -9 no local
    worker is left behind."""
    import os
    import signal

    from deploy import nginx, sitesctl
    from gitserve import procscan

    live = srv.ports["live"]
    work = srv.clone("alice", "web")
    commit_version(srv, work, "outlives-serve")
    assert "Enable:" in " ".join(push(srv, work, "+HEAD:main"))
    status, served = get(live)
    assert status == 200 and "outlives-serve" in served
    sites_pid = sitesctl.running_pid(srv.settings)
    nginx_pid = nginx.running_pid(srv.settings)
    assert sites_pid and nginx_pid
    with HttpLoad(live, "/", threads=4) as load:
        time.sleep(0.2)
        t0 = time.monotonic()
        srv.stop()  # SIGTERM to serve's process group
        stopped = time.monotonic() - t0
        assert get(live) == (200, served)
        srv.start()
        assert f"attached to gitserve sites (pid {sites_pid}) serving 1 site(s)" in "".join(srv.output)
        assert srv.proc is not None
        # a build is running (a local worker's work horse, its sandbox) when serve is killed
        commit_version(srv, work, "slow-build", delay=60)
        slow = subprocess.Popen(["git", "push", "origin", "HEAD:slow"], cwd=work,
                                env=srv.client_env("alice"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert slow.stderr is not None
        said = []
        for line in slow.stderr:
            said.append(line)
            if "building <!-- slow-build" in line:
                break
        # a branch other than deploy.ref builds; with deploy.previews on (this site) it goes
        # live as a preview, so the pusher is not told "not deployed"
        assert not any("is not deployed: site" in x for x in said), said
        deadline = time.monotonic() + 10
        serve_tree = procscan.tree(srv.proc.pid)
        while not any(procscan.cmdline(p).startswith(b"sleep") for p in serve_tree):
            assert time.monotonic() < deadline, "the build is not running"
            time.sleep(0.05)
            serve_tree = procscan.tree(srv.proc.pid)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        slow.kill()
        slow.wait()
        srv.start()
        # the old serve's tree is gone by the time the new one listens (its build killed
        # with its worker, not left running until it notices Redis went away)
        # (the parent-death signal is immediate; a loaded machine may take a moment to run
        # the dying processes' last instructions, so they get 2 s, far less than a worker
        # would need to notice that Redis went away)
        deadline = time.monotonic() + 2
        orphans = [p for p in serve_tree[1:] if procscan.alive(p)]
        while orphans and time.monotonic() < deadline:
            time.sleep(0.05)
            orphans = [p for p in orphans if procscan.alive(p)]
        time.sleep(0.2)
    assert load.errors == [], load.errors[:3]
    assert len(load.results) > 20 and all(st == 200 and body == served.encode()
                                          for _, _, st, body in load.results)
    # promptly: no part of serve's stop waits out a timeout (the local workers used to, 10 s:
    # rq's warm shutdown finished the job first and ignored a second SIGTERM)
    slow_parts = [(what, float(took)) for what, took in
                  re.findall(r"stopping (\w+) took ([0-9.]+)s", (srv.home / "logs" / "server.log").read_text())]
    assert all(took < 5 for _, took in slow_parts), slow_parts
    assert stopped < 10, f"SIGTERM'd serve took {stopped:.1f}s to exit"
    # nothing of the killed serve is left (workers got the parent-death signal, cold stop)
    assert orphans == [], [procscan.cmdline(p) for p in orphans]
    assert sitesctl.running_pid(srv.settings) == sites_pid
    assert nginx.running_pid(srv.settings) == nginx_pid
    print(f"\nserve SIGTERM exit {stopped:.2f}s; {len(load.results)} requests, 0 failed")


def get_host(port: int, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_preview_appears_for_a_branch_and_disappears_with_it(srv):
    live = srv.ports["live"]
    work = srv.clone("alice", "web")
    commit_version(srv, work, "main-now")
    push(srv, work, "+HEAD:main")
    live_page = get(live)
    commit_version(srv, work, "feature-login")
    msgs = push(srv, work, "HEAD:feature/Login")
    url = f"http://feature-login.www.test:{live}/"
    assert f"deploy www: preview live at {url}" in msgs, msgs
    assert not any(m.startswith("Enable:") for m in msgs), msgs
    assert get_host(live, f"feature-login.www.test:{live}") == (200, page("feature-login"))
    assert get(live) == live_page  # the live site is untouched
    status = srv.ssh("bob", "deploy", "status", "www")
    assert status.returncode == 0
    gone = push(srv, work, ":feature/Login")
    assert "gitserve: the preview of feature/Login will be removed" in gone, gone
    files = srv.home / "sites" / "www" / "previews" / "feature-login"
    deadline = time.monotonic() + 30
    while get_host(live, f"feature-login.www.test:{live}") != live_page or files.exists():
        assert time.monotonic() < deadline, "the preview is still served, or its files still there"
        time.sleep(0.1)
