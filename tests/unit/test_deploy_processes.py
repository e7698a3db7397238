"""Procfile sites (SPEC §7.1) through `deploy.bluegreen` as the deploy job calls it, with the
real `gitserve sites` supervisor, bwrap sandbox and nginx: processes per side with PORT,
SIDE, RELEASE and secrets; the check through the preview; the switch by reload; a drained
old side; a failing idle side that leaves live serving; rollback; restart; a killed process
restarted and counted."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from deploy import bluegreen, nginx, processes, sitesctl
from deploy.errors import DeployError
from gitserve.settings import Settings
from tests.support.appkit import write_app
from tests.support.deploykit import deploy, get
from tests.support.tools import HttpLoad, free_port, require_tool

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    binary = require_tool("nginx")
    require_tool("bwrap")
    home = tmp_path_factory.mktemp("procs") / "home"
    home.mkdir()
    s = Settings(home=home)
    s.deploy.nginx_binary = binary
    yield s
    sitesctl.stop(s)
    nginx.stop_embedded(s)


@pytest.fixture(scope="module")
def opts():
    return {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health", "deploy.routes": "/api=search", "deploy.drain": "1"}


def body(port: str, path: str = "/") -> str:
    status, data = get(port, path)
    assert status == 200, (status, data)
    return data.decode()


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_procfile_release_runs_per_side_and_switches(settings, opts, tmp_path) -> None:
    out = write_app(tmp_path / "v1", "v1")
    result, log = deploy(settings, opts, out, "1", env={"API_TOKEN": "s3cr3t-token"})
    assert result.side == "blue" and "Enable: blue" in log
    assert any(line.startswith("deploy www: processes: search:") for line in log), log
    page = body(opts["deploy.port"])
    assert page.startswith("v1 side=blue port=") and "release=1 site=www secret=set" in page
    assert json.loads(body(opts["deploy.port"], "/api/search?q=x"))["side"] == "blue"
    # the process log has the output, the secret masked
    text = processes.log_file(settings, "www").read_text()
    assert "web v1 listening on" in text and "token ***" in text and "s3cr3t-token" not in text
    # the port forward queues connections as nginx does (libslirp's own backlog of 1 dropped
    # SYNs under a few clients: 1 s stalls, and a 504 when three drops passed nginx's 5 s)
    import subprocess

    web = next(r for r in processes.read_status(settings, "www") if r["type"] == "web")
    ss = subprocess.run([require_tool("ss"), "-ltnH", f"sport = :{web['port']}"], capture_output=True,
                        text=True, check=True).stdout.split()
    assert ss[0] == "LISTEN" and int(ss[2]) >= 511, ss

    out2 = write_app(tmp_path / "v2", "v2")
    with HttpLoad(int(opts["deploy.port"].rpartition(":")[2]), "/", threads=4) as load:
        time.sleep(0.3)
        result, log = deploy(settings, opts, out2, "2", env={"API_TOKEN": "s3cr3t-token"})
        time.sleep(0.3)
    assert result.side == "green" and load.failures() == [], load.failures()[:5]
    assert {b.split()[0] for *_, b in load.results} <= {b"v1", b"v2"}
    assert body(opts["deploy.port"]).startswith("v2 side=green")
    # the old side drains (deploy.drain = 1), then stops
    wait_for(lambda: not [r for r in processes.read_status(settings, "www") if r["side"] == "blue"],
             what="blue to stop")
    rows = processes.read_status(settings, "www")
    assert sorted((r["type"], r["side"], r["state"]) for r in rows) == [
        ("search", "green", "running"), ("web", "green", "running")]


def test_failing_idle_side_leaves_live_serving(settings, opts, tmp_path) -> None:
    live_before = body(opts["deploy.port"])
    out = write_app(tmp_path / "bad", "bad", unhealthy=True)
    t0 = time.monotonic()
    with pytest.raises(DeployError) as err:
        deploy(settings, {**opts}, out, "3", env={})
    assert err.value.step == "check" and "answered 500" in str(err.value)
    assert body(opts["deploy.port"]) == live_before
    live = bluegreen.Site(settings.sites_dir, "www").live_side()
    idle = "blue" if live == "green" else "green"
    wait_for(lambda: not [r for r in processes.read_status(settings, "www") if r["side"] == idle],
             what="the failed side to stop")
    print(f"\nfailed check noticed in {time.monotonic() - t0:.1f}s")


def test_killed_process_is_restarted_and_counted(settings, opts) -> None:
    rows = {r["type"]: r for r in processes.read_status(settings, "www")}
    web = rows["web"]
    os.kill(web["pid"], signal.SIGKILL)
    t0 = time.monotonic()
    new = wait_for(lambda: next((r for r in processes.read_status(settings, "www")
                                 if r["type"] == "web" and r["pid"] and r["pid"] != web["pid"]), None),
                   what="web to come back")
    wait_for(lambda: get(opts["deploy.port"])[0] == 200, what="web to answer")
    print(f"\nkilled web answered again after {time.monotonic() - t0:.2f}s")
    assert new["restarts"] == web["restarts"] + 1 and new["port"] == web["port"]
    assert "exited with" in processes.log_file(settings, "www").read_text()


def test_rollback_and_restart_start_processes_on_the_idle_side(settings, opts) -> None:
    port = int(opts["deploy.port"].rpartition(":")[2])
    with HttpLoad(port, "/", threads=4) as load:
        result = bluegreen.rollback(settings, "www", by="alice", log=lambda _l: None)
        assert body(opts["deploy.port"]).startswith(f"v1 side={result.side}")
        again = bluegreen.restart(settings, "www", by="alice", log=lambda _l: None)
        assert again.side != result.side and again.release == result.release
        time.sleep(0.2)
    assert load.failures() == [], load.failures()[:5]
    assert body(opts["deploy.port"]).startswith(f"v1 side={again.side}")
    wait_for(lambda: {r["side"] for r in processes.read_status(settings, "www")} == {again.side},
             what="the old side to drain")


def test_post_reaches_the_new_live_sides_search_api(settings, opts, tmp_path) -> None:
    """The seed's post-deploy step: deploy.post gets PORT_<TYPE> of the new live side and,
    from its own network namespace, reaches exactly those ports to load the search index."""
    from tests.support.appkit import POST

    checkout = tmp_path / "checkout"
    (checkout / ".gitserve").mkdir(parents=True)
    (checkout / ".gitserve" / "post").write_text(POST)
    (checkout / ".gitserve" / "post").chmod(0o755)
    out = write_app(tmp_path / "v5", "v5")
    result, log = deploy(settings, {**opts, "deploy.post": ".gitserve/post"}, out, "5",
                         workdir=checkout, env={"API_TOKEN": "s3cr3t-token"})
    assert result.post_status == 0, log
    ports = {r["type"]: r["port"] for r in processes.current_rows(settings, "www", result.side)}
    assert (f"post: LIVE_SIDE={result.side} IDLE_SIDE={'green' if result.side == 'blue' else 'blue'} "
            f"SITE=www PORT_WEB={ports['web']} PORT_SEARCH={ports['search']}") in log, log
    assert f'{{"indexed": 4, "side": "{result.side}"}}' in log, log
    hits = json.loads(body(opts["deploy.port"], "/api/search?q=alpha"))
    assert hits == {"q": "alpha", "hits": ["alpha"], "side": result.side}


def test_restart_of_one_type(settings, opts, tmp_path) -> None:
    """`deploy restart SITE TYPE`: a type nginx sends nothing to restarts in place (same side,
    same port, the others untouched); one that takes traffic restarts the side."""
    procfile = ("web: python3 web.py\nsearch: python3 search.py\n"
                "worker: python3 -c \"import time; print('worker up', flush=True); time.sleep(1e6)\"\n")
    result, _ = deploy(settings, opts, write_app(tmp_path / "v6", "v6", procfile=procfile), "6")
    side = result.side
    before = {r["type"]: r for r in processes.current_rows(settings, "www", side)}
    done = bluegreen.restart(settings, "www", by="alice", log=lambda _l: None, kind="worker")
    assert done.side == side
    after = {r["type"]: r for r in processes.current_rows(settings, "www", side)}
    assert after["worker"]["restarts"] == before["worker"]["restarts"] + 1
    assert after["worker"]["pid"] != before["worker"]["pid"] and after["worker"]["port"] == before["worker"]["port"]
    assert after["web"]["pid"] == before["web"]["pid"] and after["web"]["restarts"] == before["web"]["restarts"]
    moved = bluegreen.restart(settings, "www", by="alice", log=lambda _l: None, kind="search")
    assert moved.side != side and body(opts["deploy.port"]).startswith(f"v6 side={moved.side}")
    with pytest.raises(DeployError) as err:
        bluegreen.restart(settings, "www", by="alice", log=lambda _l: None, kind="nope")
    assert "has no nope process (it has search, web, worker)" in str(err.value)


def test_a_request_in_flight_keeps_the_old_side_until_it_is_answered(settings, opts, tmp_path) -> None:
    """The switch is correct, not merely fast: a request nginx sent to the old side before
    the switch is answered by it in whole, however long it takes, though the drain (0 s
    here) is shorter. The old side stops once no nginx worker can still be talking to it
    (the cause of a 502 seen once under load: a request held 2 s by a loaded machine, the
    old side stopped after the 1 s drain)."""
    import threading

    quick = {**opts, "deploy.drain": "0"}
    first, _ = deploy(settings, quick, write_app(tmp_path / "v7", "v7"), "7")
    log = processes.log_file(settings, "www")
    begun = log.read_text().count("slow request begun")
    answer: list[tuple[int, bytes]] = []

    def slow() -> None:
        port = int(opts["deploy.port"].rpartition(":")[2])
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/slow?s=5")
        resp = conn.getresponse()
        answer.append((resp.status, resp.read()))

    client = threading.Thread(target=slow)
    client.start()
    wait_for(lambda: log.read_text().count("slow request begun") > begun, what="the slow request to arrive")
    second, lines = deploy(settings, quick, write_app(tmp_path / "v8", "v8"), "8")
    assert second.side != first.side
    # a deploy right after puts a new release on the side still draining: the draining
    # processes are not replaced in place, they finish beside the new ones
    third, _ = deploy(settings, quick, write_app(tmp_path / "v9", "v9"), "9")
    assert third.side == first.side and body(opts["deploy.port"]).startswith(f"v9 side={first.side}")
    client.join(30)
    assert answer and answer[0][0] == 200, answer
    assert answer[0][1].startswith(f"v7 side={first.side}".encode()), answer
    # and then the old side does stop
    wait_for(lambda: {(r["side"], r["release"]) for r in processes.read_status(settings, "www")}
             == {(third.side, "9")}, what="the old processes to stop once their last request was answered")


def _host_get(port: str, host: str, path: str = "/") -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(port.rpartition(":")[2]), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_a_procfile_preview_runs_its_own_processes(settings, opts, tmp_path) -> None:
    """deploy.previews of a Procfile release: the branch's processes run as a side of their
    own (preview-SLUG) beside blue and green; a new build of the branch replaces them, the
    eviction by deploy.previews-max and the branch's deletion stop them."""
    live_before = body(opts["deploy.port"])
    popts = {**opts, "deploy.server-name": "www.test", "deploy.previews": "1", "deploy.previews-max": "1"}

    def preview_rows(side: str) -> list[dict]:
        return [r for r in processes.read_status(settings, "www") if r["side"] == side]

    _, log = deploy(settings, {**popts, "deploy.preview": "feat/One"}, write_app(tmp_path / "p1", "p1"), "21",
                    env={"API_TOKEN": "s3cr3t-token"})
    assert any(line.startswith("deploy www: preview processes: search:") for line in log), log
    status, text = _host_get(opts["deploy.port"], "feat-one.www.test")
    assert status == 200 and text.startswith("p1 side=preview-feat-one") and "release=21" in text, text
    assert "secret=set" in text
    status, hits = _host_get(opts["deploy.port"], "feat-one.www.test", "/api/search?q=x")
    assert status == 200 and json.loads(hits)["side"] == "preview-feat-one"
    assert body(opts["deploy.port"]) == live_before  # blue/green untouched
    first = {r["type"]: r for r in preview_rows("preview-feat-one")}
    assert set(first) == {"web", "search"} and all(r["state"] == "running" for r in first.values())

    # a new build of the branch: new processes, the old ones drain and stop
    deploy(settings, {**popts, "deploy.preview": "feat/One"}, write_app(tmp_path / "p2", "p2"), "22")
    assert _host_get(opts["deploy.port"], "feat-one.www.test")[1].startswith("p2 side=preview-feat-one")
    wait_for(lambda: {r["release"] for r in preview_rows("preview-feat-one")} == {"22"},
             what="the branch's earlier processes to stop")

    # previews-max = 1: a second branch evicts the first, and its processes stop
    _, log = deploy(settings, {**popts, "deploy.preview": "two"}, write_app(tmp_path / "p3", "p3"), "23")
    assert "deploy www: preview feat/One removed (deploy.previews-max = 1)" in log, log
    assert _host_get(opts["deploy.port"], "two.www.test")[1].startswith("p3 side=preview-two")
    wait_for(lambda: not preview_rows("preview-feat-one"), what="the evicted preview's processes to stop")
    assert _host_get(opts["deploy.port"], "feat-one.www.test") == (200, live_before)

    # the branch is deleted: its preview and its processes go
    assert bluegreen.remove_branch_preview(settings, "www", "two", log=lambda _l: None)
    wait_for(lambda: not preview_rows("preview-two"), what="the deleted branch's processes to stop")
    assert _host_get(opts["deploy.port"], "two.www.test") == (200, live_before)
    assert not list(processes.site_dir(settings, "www").glob("preview-*.json"))


def test_a_procfile_preview_that_fails_its_check_is_stopped(settings, opts, tmp_path) -> None:
    popts = {**opts, "deploy.server-name": "www.test", "deploy.previews": "1", "deploy.preview": "bad"}
    with pytest.raises(DeployError) as err:
        deploy(settings, popts, write_app(tmp_path / "pb", "pb", unhealthy=True), "24")
    assert err.value.step == "check" and "answered 500" in str(err.value) and "processes are stopped" in str(err.value)
    wait_for(lambda: not [r for r in processes.read_status(settings, "www") if r["side"] == "preview-bad"],
             what="the failed preview's processes to stop")


def test_a_new_supervisor_adopts_the_running_processes(settings, opts) -> None:
    """Restarting `gitserve sites` (kill -9 and start, or SIGUSR2 hand-over for an upgrade)
    restarts no process: each has its own keeper, which the new supervisor adopts; no
    request fails meanwhile. SIGTERM still stops them (systemctl stop)."""
    def live_rows() -> dict[str, dict]:
        side = bluegreen.Site(settings.sites_dir, "www").live_side()
        return {r["type"]: r for r in processes.current_rows(settings, "www", side)}

    before = live_rows()
    assert before["web"]["pid"] and before["search"]["pid"]
    port = int(opts["deploy.port"].rpartition(":")[2])
    sites_log = settings.logs_dir / "sites.log"
    with HttpLoad(port, "/", threads=4) as load:
        for how in (signal.SIGKILL, signal.SIGUSR2):
            old = sitesctl.running_pid(settings)
            assert old is not None
            adopted = sites_log.read_text().count("adopted (pid") if sites_log.exists() else 0
            os.kill(old, how)
            wait_for(lambda: sitesctl.running_pid(settings) is None, what="the supervisor to go")
            t0 = time.monotonic()
            new, started = sitesctl.ensure_running(settings)
            assert started and new != old
            wait_for(lambda n=adopted: sites_log.read_text().count("adopted (pid") >= n + 2, what="adoption")
            print(f"\nsupervisor {how.name}: processes adopted {time.monotonic() - t0:.2f}s after the start")
            after = live_rows()
            assert {k: (r["pid"], r["restarts"], r["port"]) for k, r in after.items()} == \
                {k: (r["pid"], r["restarts"], r["port"]) for k, r in before.items()}
            assert all(r["state"] == "running" for r in after.values())
        time.sleep(0.3)
    assert load.failures() == [], load.failures()[:5]
    assert len(load.results) > 20
    # and the adopted processes are still kept: killed, restarted by the new supervisor
    os.kill(before["web"]["pid"], signal.SIGKILL)
    wait_for(lambda: live_rows()["web"]["pid"] not in (None, before["web"]["pid"]), what="web to come back")
    assert live_rows()["web"]["restarts"] == before["web"]["restarts"] + 1


HOG = """
import time
print("hog growing", flush=True)
chunks = []
while True:
    chunks.append(bytearray(8 << 20))   # touched: resident, not only reserved
    time.sleep(0.02)
"""

FORKER = "sh -c 'echo forking; while true; do sleep 60 & done'"


def test_a_process_past_its_limits_is_killed_with_one_line_and_restarted(tmp_path) -> None:
    """[sites] memory and pids hold a site process as they hold a build: its keeper watches
    the process tree (and the run's cgroups), kills a process that grows past memory or
    forks wildly with one line in processes.log, and the supervisor starts it again with
    backoff; the other processes are untouched."""
    from gitserve import settings as settings_mod

    home = tmp_path / "home"
    home.mkdir()
    tmp_path.chmod(0o755)
    s = Settings(home=home)
    s.deploy.nginx_binary = require_tool("nginx")
    s.sites.memory, s.sites.pids = "96M", 24
    settings_mod.write(s)
    s = settings_mod.load(home)
    s.deploy.nginx_binary = require_tool("nginx")
    procfile = f"web: python3 web.py\nhog: python3 hog.py\nforker: {FORKER}\n"
    out = write_app(tmp_path / "lim", "lim", procfile=procfile)
    (out / "hog.py").write_text(HOG)
    o = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port()),
         "deploy.check": "/health"}
    try:
        deploy(s, o, out, "1", site="lim")
        log = processes.log_file(s, "lim")
        wait_for(lambda: "hog[-]: killed: memory limit 96M reached" in log.read_text(), 60, "the memory kill")
        wait_for(lambda: "forker[-]: killed: pids limit 24 reached" in log.read_text(), 60, "the pids kill")
        rows = wait_for(lambda: (lambda r: r if r["hog"]["restarts"] >= 1 and r["forker"]["restarts"] >= 1 else None)(
            {r["type"]: r for r in processes.read_status(s, "lim")}), 60, "the restarts")
        assert rows["web"]["restarts"] == 0 and rows["web"]["state"] == "running"
        text = log.read_text()
        assert text.count("hog[-]: killed:") >= 1 and "restarting in" in text
        assert body(o["deploy.port"]).startswith("lim side=blue")
    finally:
        sitesctl.stop(s)
        nginx.stop_embedded(s)
