"""Blue-green deploys against a real nginx (Debian's), run unprivileged under a temp HOME
on free 127.0.0.1 ports, driven through `deploy.bluegreen` as the deploy job calls it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy import bluegreen, nginx
from deploy.errors import DeployError
from deploy.site import Site
from deploy.status import format_status, site_status
from gitserve.settings import Settings
from tests.support.deploykit import Log, deploy, get, make_output, page
from tests.support.tools import HttpLoad, free_port, require_tool, subprocess_env


@pytest.fixture
def settings(tmp_path: Path):
    binary = require_tool("nginx")
    home = tmp_path / "home"
    home.mkdir()
    s = Settings(home=home)
    s.deploy.nginx_binary = binary
    yield s
    from deploy import sitesctl
    sitesctl.stop(s)  # `gitserve sites` (serve never stops it), nginx with it
    nginx.stop_embedded(s)
    assert nginx.running_pid(s) is None


@pytest.fixture
def ports() -> dict[str, str]:
    return {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health.txt"}


def test_first_deploy_enables_blue_then_green(settings, ports, tmp_path) -> None:
    result, log = deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    assert result.side == "blue" and log[-2:][0] == "Enable: blue"
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    # every step reported, like build log lines
    text = "\n".join(log)
    for word in ("publish:", "nginx -t: ok", "reload: ok", "check: GET /health.txt", "switch: live -> blue"):
        assert word in text
    result, log = deploy(settings, ports, make_output(tmp_path, "v2"), "2")
    assert (result.side, result.previous_side, result.previous_release) == ("green", "blue", "1")
    assert "Enable: green" in log
    assert get(ports["deploy.port"]) == (200, page("v2").encode())
    # the preview now shows the old side, ready for an instant rollback
    assert get(ports["deploy.preview-port"]) == (200, page("v1").encode())
    st = site_status(settings, "www")
    assert (st["live_side"], st["live_release"], st["idle_release"], st["rollback_to"]) == ("green", "2", "1", "1")
    assert "live:     green  release 2" in format_status(st)


def test_switch_under_load_zero_failures_whole_responses(settings, ports, tmp_path) -> None:
    v1, v2 = page("v1", 200_000).encode(), page("v2", 200_000).encode()
    deploy(settings, ports, make_output(tmp_path, "v1", size=200_000), "1")
    out2 = make_output(tmp_path, "v2", files=200, size=200_000)
    port = int(ports["deploy.port"].rpartition(":")[2])
    with HttpLoad(port, "/", threads=8) as load:
        time.sleep(0.3)
        result, _ = deploy(settings, ports, out2, "2")
        returned = time.monotonic()
        time.sleep(0.3)
    assert load.errors == []
    bodies = [r for r in load.results]
    assert len(bodies) > 100
    assert all(status == 200 and body in (v1, v2) for _, _, status, body in bodies)
    assert any(body == v1 for *_, body in bodies) and any(body == v2 for *_, body in bodies)
    after = [body for start, _, _, body in bodies if start > returned]
    assert after and all(body == v2 for body in after)
    last_v1 = max(start for start, _, _, body in bodies if body == v1)
    first_v2 = min(end for _, end, _, body in bodies if body == v2)
    print(f"\nload: {len(bodies)} served, {len(load.errors)} failed; rename {result.switch_seconds * 1000:.2f} ms;"
          f" last v1 request started {(last_v1 - first_v2) * 1000:+.1f} ms after the first v2 answer")


def test_failed_check_leaves_live_untouched(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    with pytest.raises(DeployError) as err:
        deploy(settings, ports, make_output(tmp_path, "v2", health=False), "2")
    assert err.value.step == "check" and "answered 404" in str(err.value)
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    st = site_status(settings, "www")
    assert (st["live_side"], st["live_release"]) == ("blue", "1")
    # the next good deploy goes through, and the failed release is not a rollback target
    result, _ = deploy(settings, ports, make_output(tmp_path, "v3"), "3")
    assert result.side == "green" and site_status(settings, "www")["rollback_to"] == "1"
    audit = [json.loads(line) for line in (settings.logs_dir / "audit.log").read_text().splitlines()]
    assert [(e["op"], e["result"], e["user"]) for e in audit] == [
        ("deploy", "updated", "alice"), ("deploy", "error", "alice"), ("deploy", "updated", "alice")]
    assert "check failed" in audit[1]["reason"] and audit[2]["reason"] == "www: live blue -> green (release 3)"


def test_nginx_t_failure_names_step_and_restores_config(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    conf = nginx.site_conf(settings, "www")
    before = conf.read_text()
    Site(settings.sites_dir, "www").template_override.write_text("server { listen {{ listen }}; bogus_directive on; }\n")
    with pytest.raises(DeployError) as err:
        deploy(settings, ports, make_output(tmp_path, "v2"), "2")
    assert err.value.step == "nginx -t" and "bogus_directive" in str(err.value)
    assert conf.read_text() == before
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    assert Site(settings.sites_dir, "www").slot_release("green") is None


def test_template_override_is_used(settings, ports, tmp_path) -> None:
    override = Site(settings.sites_dir, "www").template_override
    override.parent.mkdir(parents=True)
    builtin = (Path(bluegreen.__file__).parent / "templates" / "site.conf.j2").read_text()
    override.write_text(builtin.replace("index index.html index.htm;\n    location",
                                        "index index.html;\n    add_header X-Custom {{ site }};\n    location", 1))
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    conn = http.client.HTTPConnection("127.0.0.1", int(ports["deploy.port"].rpartition(":")[2]), timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().getheader("X-Custom") == "www"
    conn.close()


def test_rollback_is_one_fast_step(settings, ports, tmp_path) -> None:
    for v in ("1", "2", "3"):
        deploy(settings, ports, make_output(tmp_path, f"v{v}"), v)
    log = Log()
    t0 = time.monotonic()
    result = bluegreen.rollback(settings, "www", by="bob", log=log)
    took = time.monotonic() - t0
    assert took < 2.0, took
    assert result.release == "2" and get(ports["deploy.port"]) == (200, page("v2").encode())
    assert f"Enable: {result.side}" in log
    st = site_status(settings, "www")
    assert (st["by"], st["action"], st["rollback_to"]) == ("bob", "rollback", "1")
    bluegreen.rollback(settings, "www", by="bob", log=log)
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    with pytest.raises(DeployError, match="no release before 1"):
        bluegreen.rollback(settings, "www", log=log)
    bluegreen.rollback(settings, "www", to="3", log=log)
    assert get(ports["deploy.port"]) == (200, page("v3").encode())
    with pytest.raises(DeployError, match="not kept"):
        bluegreen.rollback(settings, "www", to="99", log=log)
    with pytest.raises(DeployError, match="already live"):
        bluegreen.rollback(settings, "www", to="3", log=log)
    print(f"\nrollback took {took * 1000:.0f} ms")


def test_post_runs_after_switch_with_sides(settings, ports, tmp_path) -> None:
    work = tmp_path / "checkout"
    (work / ".gitserve").mkdir(parents=True)
    script = work / ".gitserve" / "post"
    # post runs sandboxed (no server home): it sees the live site the way visitors do
    script.write_text('#!/bin/sh\necho "post sees $LIVE_SIDE $IDLE_SIDE $SITE"\n'
                      'python3 -c "import urllib.request as u; '
                      'print(\'post live:\', u.urlopen(\'$LIVE_URL\').read().decode().splitlines()[0])"\n')
    script.chmod(0o755)
    opts = {**ports, "deploy.post": ".gitserve/post"}
    live_url = f"http://127.0.0.1:{ports['deploy.port'].rsplit(':', 1)[-1]}/"
    logs = []
    for v in ("v1", "v2"):
        _, log = deploy(settings, opts, make_output(tmp_path, v), v, workdir=work,
                        env={"LIVE_URL": live_url})
        logs.append(log)
    assert "post sees blue green www" in logs[0] and "post sees green blue www" in logs[1]
    # post ran after the switch: the live side it saw already served the new release
    assert "post live: <!-- v1 -->" in logs[0] and "post live: <!-- v2 -->" in logs[1]
    assert logs[1].index("Enable: green") > logs[1].index("post sees green blue www")


def test_failing_post_reports_but_live_is_switched(settings, ports, tmp_path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "post.sh").write_text("echo indexing; exit 3\n")  # not executable: run with sh
    with pytest.raises(DeployError) as err:
        deploy(settings, {**ports, "deploy.post": "post.sh"}, make_output(tmp_path, "v1"), "1", workdir=work)
    assert err.value.step == "post" and "exited with 3" in str(err.value)
    assert get(ports["deploy.port"]) == (200, page("v1").encode())


@pytest.mark.parametrize("by", ["pushed_at", "build id"])
def test_concurrent_deploys_serialize_and_last_push_wins(settings, ports, tmp_path, by) -> None:
    order = (lambda v: {"pushed_at": float(v) + 1}) if by == "pushed_at" else (lambda v: {})
    deploy(settings, ports, make_output(tmp_path, "v0"), "0", **order("0"))
    outs = {v: make_output(tmp_path, f"v{v}", files=100) for v in ("1", "2", "3")}
    log = Log()
    site = Site(settings.sites_dir, "www")
    errors: list[BaseException] = []

    def run(v: str) -> None:
        tagged = lambda line, v=v: log(f"[{v}] {line}")  # noqa: E731
        try:
            deploy(settings, ports, outs[v], v, log=tagged, **order(v))  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # hold the site lock so all three queue up, then release them in reverse push order
    with site.lock("test", 5, lambda _: None):
        threads = []
        for v in ("3", "2", "1"):
            t = threading.Thread(target=run, args=(v,))
            t.start()
            threads.append(t)
            time.sleep(0.2)
    for t in threads:
        t.join(30)
    assert errors == []
    assert get(ports["deploy.port"]) == (200, page("v3").encode())
    # never overlapping: each deploy's lines form one block
    order = [line[1] for line in log if "waiting for" not in line]
    blocks = [order[0]] + [b for a, b in zip(order, order[1:]) if a != b]
    assert len(blocks) == len(set(blocks)), blocks
    for v in ("1", "2", "3"):
        mine = [line for line in log if line.startswith(f"[{v}]")]
        outcome = [line for line in mine if "Enable:" in line or "skipped: build" in line]
        assert len(outcome) == 1, mine


def test_crashed_holder_does_not_block_next_deploy(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    code = ("import sys, time\nfrom pathlib import Path\nfrom deploy.site import Site\n"
            "s = Site(Path(sys.argv[1]), 'www')\n"
            "with s.lock('crashing worker', 5, print):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(settings.sites_dir)], stdout=subprocess.PIPE,
                             env=subprocess_env(), text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        child.send_signal(signal.SIGKILL)
        child.wait(5)
    finally:
        if child.poll() is None:
            child.kill()
    result, _ = deploy(settings, ports, make_output(tmp_path, "v2"), "2")
    assert result.side == "green"


def test_deploy_killed_at_any_point_keeps_a_live_side(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    served = {page(f"v{i}").encode() for i in range(1, 9)}
    code = ("import json, sys\nfrom pathlib import Path\nfrom deploy import bluegreen\n"
            "from gitserve.settings import Settings\n"
            "s = Settings(home=Path(sys.argv[1])); s.deploy.nginx_binary = sys.argv[5]\n"
            "bluegreen.deploy_release(s, 'www', Path(sys.argv[2]), json.loads(sys.argv[3]),"
            " {'build_id': sys.argv[4]}, print)\n")
    for i, delay in enumerate((0.05, 0.12, 0.2, 0.3, 0.45), start=2):
        out = make_output(tmp_path, f"v{i}", files=300)
        child = subprocess.Popen([sys.executable, "-c", code, str(settings.home), str(out), json.dumps(ports),
                                  f"k{i}", settings.deploy.nginx_binary], env=subprocess_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        child.kill()
        child.wait(5)
        status, body = get(ports["deploy.port"])
        assert status == 200 and body in served, (delay, status, body[:40])
    result, _ = deploy(settings, ports, make_output(tmp_path, "v8"), "8")
    assert get(ports["deploy.port"]) == (200, page("v8").encode())
    assert not [p for p in (settings.sites_dir / "www" / "releases").iterdir() if p.name.startswith(".")]


def test_keep_prunes_old_releases(settings, ports, tmp_path) -> None:
    opts = {**ports, "deploy.keep": "2"}
    for v in ("1", "2", "3", "4"):
        _, log = deploy(settings, opts, make_output(tmp_path, f"v{v}"), v)
    assert sorted(os.listdir(settings.sites_dir / "www" / "releases")) == ["3", "4"]
    assert any("pruned 1 old release: 2 (deploy.keep" in line for line in log)
    assert [r["release"] for r in site_status(settings, "www")["releases"]] == ["4", "3"]


def test_bad_input_changes_nothing(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    conf = nginx.site_conf(settings, "www").read_text()
    state = (settings.sites_dir / "www" / "state.json").read_text()
    # output with a symlink escaping it, a missing output dir, a port clash with another site
    evil = make_output(tmp_path, "evil")
    (evil / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(DeployError, match="symlink out of the build output"):
        deploy(settings, ports, evil, "2")
    with pytest.raises(DeployError, match="not a directory"):
        deploy(settings, ports, tmp_path / "missing", "3")
    with pytest.raises(DeployError, match="already used by site www"):
        deploy(settings, {**ports, "deploy.preview-port": str(free_port())}, make_output(tmp_path, "o"), "1", site="other")
    with pytest.raises(DeployError, match="site www is deployed from repo web, not intruder"):
        deploy(settings, ports, make_output(tmp_path, "v3"), "3", repo="intruder")
    with pytest.raises(DeployError, match="invalid build id"):
        deploy(settings, ports, make_output(tmp_path, "v4"), "../x")
    settings.deploy.nginx_binary = str(tmp_path / "no-nginx")
    with pytest.raises(DeployError, match="no-nginx is not an executable file"):
        deploy(settings, ports, make_output(tmp_path, "v5"), "5")
    settings.deploy.nginx_binary, settings.deploy.nginx = "", "system"
    with pytest.raises(DeployError, match="conf_dir must be set"):
        deploy(settings, ports, make_output(tmp_path, "v6"), "6")
    settings.deploy.nginx = "embedded"
    assert nginx.site_conf(settings, "www").read_text() == conf
    assert (settings.sites_dir / "www" / "state.json").read_text() == state
    assert os.listdir(settings.sites_dir / "www" / "releases") == ["1"]
    assert not (settings.sites_dir / "other").exists()
    assert get(ports["deploy.port"]) == (200, page("v1").encode())


def test_port_taken_by_another_program_fails_before_reload(settings, ports, tmp_path) -> None:
    import socket

    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        taken = {**ports, "deploy.preview-port": f"127.0.0.1:{blocker.getsockname()[1]}"}
        with pytest.raises(DeployError) as err:
            deploy(settings, taken, make_output(tmp_path, "v2"), "2")
        assert err.value.step == "nginx config" and "in use by another program" in str(err.value)
    finally:
        blocker.close()
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    result, _ = deploy(settings, ports, make_output(tmp_path, "v3"), "3")
    assert result.side == "green"


def test_embedded_start_serves_live_and_adopts_running(settings, ports, tmp_path) -> None:
    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    from deploy import sitesctl

    assert sitesctl.stop(settings)  # the supervisor stops nginx with it (else it restarts it)
    assert nginx.running_pid(settings) is None
    with pytest.raises(OSError):
        get(ports["deploy.port"])
    handle = nginx.start_embedded(settings)
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    again = nginx.start_embedded(settings)  # a second start adopts the running master
    assert again.pid == handle.pid
    handle.stop()
    assert nginx.running_pid(settings) is None


def test_system_mode_uses_conf_dir_and_commands(tmp_path, ports) -> None:
    binary = require_tool("nginx")
    home = tmp_path / "home"
    home.mkdir()
    sysdir = tmp_path / "system"
    confd = sysdir / "conf.d"
    confd.mkdir(parents=True)
    main = sysdir / "nginx.conf"
    main.write_text(f"pid {sysdir}/nginx.pid;\nerror_log {sysdir}/error.log;\n"
                    + ("user root;\n" if os.geteuid() == 0 else "")
                    + f"events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {sysdir}/body;\n"
                    f"  proxy_temp_path {sysdir}/proxy;\n  fastcgi_temp_path {sysdir}/fcgi;\n"
                    f"  uwsgi_temp_path {sysdir}/uwsgi;\n  scgi_temp_path {sysdir}/scgi;\n"
                    f"  include {confd}/*.conf;\n}}\n")
    base = f"{binary} -p {sysdir}/ -c {main}"
    s = Settings(home=home)
    s.deploy.nginx = "system"
    s.deploy.conf_dir = str(confd)
    s.deploy.test_command = f"{base} -t"
    s.deploy.reload_command = f"{base} -s reload"
    subprocess.run(base.split(), check=True, timeout=10)
    try:
        _, log = deploy(s, ports, make_output(tmp_path, "v1"), "1")
        assert (confd / "www.conf").is_file() and "Enable: blue" in log
        assert get(ports["deploy.port"]) == (200, page("v1").encode())
        deploy(s, ports, make_output(tmp_path, "v2"), "2")
        assert get(ports["deploy.port"]) == (200, page("v2").encode())
        assert not (home / "nginx").exists()
    finally:
        from deploy import sitesctl

        sitesctl.stop(s)
        subprocess.run(base.split() + ["-s", "quit"], timeout=10)


def test_reload_refused_by_nginx_names_step_and_keeps_live(settings, ports, tmp_path) -> None:
    """nginx -t passes but the reload fails (a port only the reload binds): nginx keeps the
    old config, the deploy says why at once, and the next deploy goes through."""
    import socket

    deploy(settings, ports, make_output(tmp_path, "v1"), "1")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    override = Site(settings.sites_dir, "www").template_override
    builtin = (Path(bluegreen.__file__).parent / "templates" / "site.conf.j2").read_text()
    override.write_text(builtin + f"server {{ listen 127.0.0.1:{blocker.getsockname()[1]}; }}\n")
    try:
        t0 = time.monotonic()
        with pytest.raises(DeployError) as err:
            deploy(settings, ports, make_output(tmp_path, "v2"), "2")
        assert time.monotonic() - t0 < 5
        assert err.value.step == "reload" and "Address already in use" in str(err.value)
    finally:
        blocker.close()
        override.unlink()
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    result, _ = deploy(settings, ports, make_output(tmp_path, "v3"), "3")
    assert result.side == "green" and get(ports["deploy.port"]) == (200, page("v3").encode())
