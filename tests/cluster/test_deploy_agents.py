"""Sites on several web hosts (SPEC §7.1, `option deploy.hosts = web1 web2`), for real:
one `gitserve serve` (ssh, HTTP face, embedded Redis, local workers) and two
`gitserve deploy-agent`s, each with its own home, `gitserve sites`, embedded nginx and
Procfile processes on its own 127.0.0.1 ports, behind an nginx upstream the test starts
over both agents' site ports. A client requests the upstream every 20 ms through a deploy
and a rollback (zero failed requests); an agent that is stopped makes the next deploy
fail cleanly, naming it, with the old release still live on both hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.appkit import write_app
from tests.support.pushes import remote, timed_push
from tests.support.server import GitServer, make_server
from tests.support.sitekit import get
from tests.support.tools import free_port, gitserve_cmd, require_tool, subprocess_env

pytestmark = pytest.mark.timeout(240)

HOSTS = ("web1", "web2")
BUILD = """#!/bin/sh
set -e
cp -R app/. "$GITSERVE_OUTPUT/"
"""


class Agent:
    """One `gitserve deploy-agent` with its own home (and, through it, its own
    `gitserve sites`, nginx and site processes)."""

    def __init__(self, srv: GitServer, root: Path, name: str, nginx: str) -> None:
        from gitserve import settings as settings_mod

        self.srv, self.name = srv, name
        self.home = root / name / "home"
        self.home.mkdir(parents=True)
        s = settings_mod.load(self.home)
        s.deploy.nginx_binary = nginx
        settings_mod.write(s)
        key = srv.admin_cli("deploy", "agent-key", name).stdout.strip()
        fd = os.open(self.home / "agent.key", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        self.proc: subprocess.Popen | None = None
        self.log = root / name / "agent.out"

    @property
    def settings(self):
        from gitserve import settings as settings_mod

        return settings_mod.load(self.home)

    def start(self) -> None:
        seen = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            gitserve_cmd("--home", str(self.home), "deploy-agent", "--name", self.name,
                         "--redis-url", self.srv.settings.effective_redis_url),
            stdout=out, stderr=out, env=subprocess_env(), start_new_session=True)
        out.close()
        deadline = time.monotonic() + 30
        while "working deploy-agent:" not in self.log.read_text()[seen:]:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the agent (its whole process group); its `gitserve sites` keeps serving."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop_sites(self) -> None:
        from deploy import nginx, sitesctl

        sitesctl.stop(self.settings)
        nginx.stop_embedded(self.settings)


class Upstream:
    """An nginx (the test's own, not gitserve's) proxying one port to both hosts' sites."""

    def __init__(self, root: Path, nginx: str, backends: list[int]) -> None:
        self.port = free_port()
        self.prefix = root / "upstream"
        (self.prefix / "logs").mkdir(parents=True)
        servers = "".join(f"        server 127.0.0.1:{p};\n" for p in backends)
        (self.prefix / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/tmp; proxy_temp_path {self.prefix}/tmp;
    fastcgi_temp_path {self.prefix}/tmp; uwsgi_temp_path {self.prefix}/tmp; scgi_temp_path {self.prefix}/tmp;
    upstream hosts {{
{servers}    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://hosts;
            proxy_next_upstream off;   # a host's failed answer reaches the client: nothing hidden
        }}
    }}
}}
""")
        (self.prefix / "tmp").mkdir()
        self.proc = subprocess.Popen([nginx, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                                      "-g", "daemon off;"], start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Poller:
    """One client requesting the upstream every 20 ms; every answer but a 200 fails."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok: list[str] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = get(self.port, "/")
            (self.ok if status == 200 else self.failed).append(body.split(" ")[0] if status == 200
                                                              else f"{status} {body[:100]}")
            self._stop.wait(0.02)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def start_cluster(root: Path) -> dict:
    """The server, its two agents and the test's upstream nginx; stop_cluster(c) stops all."""
    nginx = require_tool("nginx")
    require_tool("bwrap")
    ports = {h: (free_port(), free_port()) for h in HOSTS}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo app
    RW+ = alice
    R = bob
    option build.enable = 1
    option deploy.site = app
    option deploy.port = 127.0.0.1:{ports['web1'][0]}
    option deploy.preview-port = {ports['web1'][1]}
    option deploy.hosts = web1 web2
    option deploy.host-ports = web2=127.0.0.1:{ports['web2'][0]}/{ports['web2'][1]}
    option deploy.check = /health
    option deploy.drain = 1
    option deploy.previews = 1
    option deploy.server-name = app.test
"""
    http = free_port()
    srv = make_server(root / "server", conf=conf, users=("alice", "bob"),
                      settings={"deploy": {"nginx_binary": nginx, "agent_timeout": 5.0},
                                "builds": {"workers": 2}, "http": {"listen": f"127.0.0.1:{http}"}})
    srv.http_base = f"http://127.0.0.1:{http}"  # type: ignore[attr-defined]
    c: dict = {"srv": srv, "ports": ports, "agents": {}, "upstream": None}
    try:
        c["agents"] = {h: Agent(srv, root, h, nginx) for h in HOSTS}
        for agent in c["agents"].values():
            agent.start()
        c["upstream"] = Upstream(root, nginx, [ports[h][0] for h in HOSTS])
        c["work"] = srv.clone("alice", "app")
    except BaseException:
        stop_cluster(c)
        raise
    return c


def stop_cluster(c: dict) -> None:
    if c["upstream"] is not None:
        c["upstream"].stop()
    for agent in c["agents"].values():
        agent.stop()
        agent.stop_sites()
    c["srv"].stop()
    c["srv"].stop_sites()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory.mktemp("agents"))
    try:
        yield c
    finally:
        stop_cluster(c)


def commit_push(c, version: str) -> tuple[int, list[str], float]:
    srv, work = c["srv"], c["work"]
    write_app(work / "app", version, procfile="web: python3 web.py\n")
    build = work / ".gitserve" / "build"
    build.parent.mkdir(exist_ok=True)
    build.write_text(BUILD)
    build.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", version, cwd=work)
    t0 = time.monotonic()
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main", timeout=180)
    return code, remote(lines), time.monotonic() - t0


def served(c) -> dict[str, str]:
    """Which version each host's own site port serves."""
    out = {}
    for h in HOSTS:
        status, body = get(c["ports"][h][0], "/")
        out[h] = body.split(" ")[0] if status == 200 else f"HTTP {status}"
    return out


def status_json(c) -> dict:
    out = c["srv"].ssh("bob", "deploy", "status", "app", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_deploy_to_two_hosts_fails_no_request(cluster):
    c = cluster
    code, msgs, _ = commit_push(c, "v1")
    assert code == 0 and "Enable: blue" in msgs, "\n".join(msgs)
    assert served(c) == {"web1": "v1", "web2": "v1"}
    with Poller(c["upstream"].port) as poll:
        time.sleep(0.3)
        code, msgs, seconds = commit_push(c, "v2")
        time.sleep(0.3)
    assert code == 0 and "Enable: green" in msgs, "\n".join(msgs)
    assert served(c) == {"web1": "v2", "web2": "v2"}
    assert poll.failed == [], poll.failed[:3]
    assert set(poll.ok) == {"v1", "v2"} and poll.ok[-1] == "v2", set(poll.ok)
    # every host fetched the release (sha256 checked) and checked it before any switched
    for h in HOSTS:
        assert any(m.startswith(f"deploy app: [{h}] fetch: release") and "sha256 ok" in m for m in msgs), "\n".join(msgs)
    phase_one = max(i for i, m in enumerate(msgs) if "check: GET /health" in m)
    first_switch = min(i for i, m in enumerate(msgs) if "] switch:" in m)
    assert phase_one < first_switch, "\n".join(msgs)
    last = status_json(c)["last"]
    print(f"\ndeploy to 2 hosts: push {seconds:.1f}s, deploy {last['seconds']}s, switch skew "
          f"{last['skew_ms']} ms, {len(poll.ok)} requests every 20 ms, 0 failed")


def test_rollback_on_both_hosts_fails_no_request(cluster):
    c = cluster
    with Poller(c["upstream"].port) as poll:
        time.sleep(0.2)
        out = c["srv"].ssh("alice", "deploy", "rollback", "app")
        time.sleep(0.2)
    assert out.returncode == 0 and "Enable: blue" in out.stdout, out.stdout + out.stderr
    assert served(c) == {"web1": "v1", "web2": "v1"}
    assert poll.failed == [], poll.failed[:3]
    assert poll.ok[-1] == "v1"
    denied = c["srv"].ssh("bob", "deploy", "rollback", "app")  # R only: no switch
    assert denied.returncode != 0 and "DENIED" in denied.stderr and "Traceback" not in denied.stderr
    print(f"\nrollback on 2 hosts: {len(poll.ok)} requests, 0 failed; "
          f"skew {status_json(c)['last']['skew_ms']} ms")
    audit = [a for a in c["srv"].audit_lines() if str(a.get("reason") or "").startswith("app: release")]
    assert [a["op"] for a in audit[-2:]] == ["deploy", "deploy rollback"], audit[-2:]
    assert audit[-1]["result"] == "updated" and "on web1 web2" in audit[-1]["reason"]


def test_restart_on_both_hosts_fails_no_request(cluster):
    """`deploy restart`: every host starts the live release afresh on its idle side, checks
    it, and all switch: new processes everywhere, no failed request."""
    c = cluster
    before = {h["host"]: h["live_side"] for h in status_json(c)["hosts"]}
    with Poller(c["upstream"].port) as poll:
        out = c["srv"].ssh("alice", "deploy", "restart", "app")
    assert out.returncode == 0 and "Enable: green" in out.stdout, out.stdout + out.stderr
    assert poll.failed == [] and set(poll.ok) == {"v1"}
    after = {h["host"]: h["live_side"] for h in status_json(c)["hosts"]}
    assert before == {"web1": "blue", "web2": "blue"} and after == {"web1": "green", "web2": "green"}
    one = c["srv"].ssh("alice", "deploy", "restart", "app", "web")
    assert one.returncode != 0 and "on its web host" in one.stderr and "Traceback" not in one.stderr


def test_status_shows_each_host(cluster):
    c = cluster
    st = status_json(c)
    assert [h["host"] for h in st["hosts"]] == list(HOSTS)
    assert all(h["up"] and h["live_side"] == "green" and h["processes"] == 1 for h in st["hosts"]), st["hosts"]
    release = st["release"]
    assert all(h["live_release"] == release for h in st["hosts"])
    text = c["srv"].ssh("bob", "deploy", "status", "app").stdout
    assert all(any(line.split()[:2] == [h, "live"] for line in text.splitlines()) for h in HOSTS), text
    cli = c["srv"].admin_cli("deploy", "status", "app").stdout
    assert "web1" in cli and "web2" in cli and f"release {release}" in cli
    ps = json.loads(c["srv"].ssh("bob", "deploy", "ps", "app", "--json").stdout)
    assert sorted(ps) == list(HOSTS)
    assert all([(r["type"], r["side"], r["live"]) for r in ps[h] if r["pid"] and r["state"] == "running"]
               [:1] == [("web", "green", True)] for h in HOSTS), ps
    text = c["srv"].ssh("bob", "deploy", "ps", "app").stdout
    assert text.startswith("web1:\n  TYPE") and "\nweb2:\n" in text and "green*" in text, text
    from tests.support.httpkit import get as http_get, login_cookie

    cookie = login_cookie(c["srv"], "bob").split(";")[0]
    status, _, page = http_get(c["srv"].http_base + "/sites/app", {"Cookie": cookie})
    assert status == 200 and b'id="hosts"' in page, page[:300]
    assert all(f"<td>{h}</td><td>up</td><td>green</td>".encode() in page for h in HOSTS), page
    # the web UI's "Make live" on the other kept release: the same two phases on both hosts
    import re

    from tests.support.httpkit import post_form

    cookie = login_cookie(c["srv"], "alice").split(";")[0]
    page = http_get(c["srv"].http_base + "/sites/app", {"Cookie": cookie})[2].decode()
    other = next(r for r in st["deployed"] if r != release)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    status, _, body = post_form(c["srv"].http_base, "/sites/app/rollback", f"csrf={csrf}&to={other}",
                                {"Cookie": cookie, "Origin": c["srv"].http_base})
    assert status == 303, body[:300]
    assert served(c) == {"web1": "v2", "web2": "v2"} and status_json(c)["release"] == other


def test_a_stopped_agent_fails_the_deploy_and_none_switches(cluster):
    c = cluster
    before = served(c)
    c["agents"]["web2"].stop()
    try:
        with Poller(c["upstream"].port) as poll:
            code, msgs, seconds = commit_push(c, "v3")
        assert not any(m.startswith("Enable:") for m in msgs), "\n".join(msgs)
        failure = [m for m in msgs if "FAILED" in m]
        assert failure and "host web2: deploy agent is down" in failure[0], "\n".join(msgs)
        assert "no host switched" in failure[0] and "Traceback" not in "\n".join(msgs)
        assert served(c) == before  # the stopped agent's sites kept serving the old release
        assert poll.failed == [] and set(poll.ok) == {before["web1"]}
        st = status_json(c)
        down = next(h for h in st["hosts"] if h["host"] == "web2")
        assert not down["up"] and "down" in down["down_reason"]
        # a status report forged in Redis (not signed with web2's key) does not bring it back
        import secrets as pysecrets

        from deploy.agents import auth

        r, _ = _agent_queue(c, "web2")
        fake = {"agent": "web2", "at": time.time(), "sites": {"app": {"live_release": "1"}}}
        r.set("gitserve:agent:web2:status", json.dumps(auth.seal(pysecrets.token_bytes(32), "status", fake)), ex=10)
        down = next(h for h in status_json(c)["hosts"] if h["host"] == "web2")
        assert not down["up"] and "status report refused" in down["down_reason"], down
        code, msgs, _ = commit_push(c, "v3b")
        assert any("host web2: status report refused" in m for m in msgs), "\n".join(msgs)
        assert served(c) == before
        print(f"\nagent down: deploy failed in {seconds:.1f}s (push), {len(poll.ok)} requests, 0 failed")
    finally:
        c["agents"]["web2"].start()  # the next tests deploy through it again



def test_an_agent_killed_without_a_word_fails_phase_one_within_the_bound(cluster):
    """kill -9: its last status report is still fresh, so the deploy goes ahead; web1
    prepares (fetch, processes, check) while web2's job is never taken: after
    [deploy] agent_timeout (5 s here) the deploy fails naming web2, web1 aborts (its idle
    processes stop) and both hosts keep serving the old release."""
    from gitserve import settings as settings_mod
    from tests.support.tools import gitserve_cmd as cmd

    c = cluster
    before = served(c)
    agent = c["agents"]["web2"]
    assert agent.proc is not None
    os.killpg(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait(10)
    try:
        with Poller(c["upstream"].port) as poll:
            code, msgs, seconds = commit_push(c, "v5")
        failure = [m for m in msgs if "FAILED" in m]
        assert failure and "host web2: deploy agent did not take the job within 5s" in failure[0], "\n".join(msgs)
        assert any(m.startswith("deploy app: [web1] check: GET /health") for m in msgs), "\n".join(msgs)
        assert any(m.startswith("deploy app: [web1] aborted:") for m in msgs), "\n".join(msgs)
        assert not any(m.startswith("Enable:") or "] switch:" in m for m in msgs), "\n".join(msgs)
        assert served(c) == before and poll.failed == [] and set(poll.ok) == {before["web1"]}
        home = str(c["agents"]["web1"].home)
        live = status_json(c)["hosts"][0]["live_side"]
        deadline = time.monotonic() + 20
        while True:  # web1's idle side stopped: only the live side runs
            out = subprocess.run(cmd("--home", home, "deploy", "ps", "app", "--json"), capture_output=True,
                                 text=True, env=subprocess_env(), timeout=30)
            running = {r["side"] for r in json.loads(out.stdout) if r.get("pid")}
            if running == {live}:
                break
            assert time.monotonic() < deadline, out.stdout
            time.sleep(0.2)
        assert settings_mod.load(c["srv"].home).deploy.agent_timeout == 5.0
        print(f"\nagent killed: deploy failed after {seconds:.1f}s (push), {len(poll.ok)} requests, 0 failed")
    finally:
        agent.start()


def test_a_second_agent_of_the_same_name_is_refused(cluster, tmp_path):
    """Two agents named web1 would split a site's phases between them: the second one sees
    the first's signed status report advancing and stops with one line."""
    c = cluster
    home = tmp_path / "web1-again"
    home.mkdir()
    key = home / "agent.key"
    key.write_text((c["agents"]["web1"].home / "agent.key").read_text())
    key.chmod(0o600)
    out = subprocess.run(gitserve_cmd("--home", str(home), "deploy-agent", "--name", "web1",
                                      "--redis-url", c["srv"].settings.effective_redis_url),
                         capture_output=True, text=True, env=subprocess_env(), timeout=60,
                         start_new_session=True)
    assert out.returncode == 1 and out.stderr.startswith("gitserve: another deploy agent web1 is running (")
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert all(h["up"] for h in status_json(c)["hosts"])

# --- as an attacker with the Redis password (a build host has it) -------------------------

def _agent_queue(c, host: str):
    from rq import Queue
    from rq.serializers import JSONSerializer

    from buildqueue import rqconn

    r = rqconn.connect(c["srv"].settings.effective_redis_url)
    return r, Queue(f"deploy-agent:{host}", connection=r, serializer=JSONSerializer)


def _job_end(job, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while (status := job.get_status(refresh=True)) not in ("finished", "failed", "canceled", "stopped"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return getattr(status, "value", str(status))


def test_jobs_forged_in_redis_do_nothing_on_an_agent(cluster):
    """A rollback forged with a made-up key, an unsigned one, and a job naming another
    function: the agent refuses each before doing anything; both hosts serve as before."""
    import secrets as pysecrets

    from deploy.agents import auth

    c = cluster
    before = served(c)
    r, q = _agent_queue(c, "web1")
    live = status_json(c)["release"]
    old = next(rel for rel in status_json(c)["deployed"] if rel != live)
    body = {"kind": "rollback", "agent": "web1", "site": "app", "release": old, "action": "rollback",
            "nonce": "f" * 16, "expires": time.time() + 60}
    forged = [q.enqueue("deploy.agents.jobs.run", auth.seal(pysecrets.token_bytes(32), "job", body)),
              q.enqueue("deploy.agents.jobs.run", body),
              q.enqueue("os.system", "touch /tmp/pwned-by-agent-job")]
    for job in forged:
        assert _job_end(job) == "failed"
    reasons = [(job.latest_result().exc_string or "").strip().splitlines()[-1] for job in forged]
    assert "signature does not match" in reasons[0] and "not a signed job" in reasons[1], reasons
    assert "is not a deploy agent job" in reasons[2], reasons
    assert not os.path.exists("/tmp/pwned-by-agent-job")
    assert served(c) == before
    # a genuinely signed job read back from Redis and queued again runs once only
    key = auth.agent_key(c["agents"]["web1"].home)
    signed = auth.seal(key, "job", {"kind": "abort", "agent": "web1", "site": "app", "release": "nope",
                                    "nonce": pysecrets.token_hex(8), "expires": time.time() + 60})
    first, again = (q.enqueue("deploy.agents.jobs.run", signed) for _ in range(2))
    assert _job_end(first) == "finished" and auth.unseal(key, "result", first.return_value())["ok"]
    assert _job_end(again) == "failed"
    assert "already ran on this agent (replayed)" in again.latest_result().exc_string


def test_releases_go_only_to_signed_requests_of_the_sites_hosts(cluster):
    """The HTTP face serves a release file only to a request signed with the key of one of
    the site's hosts, within 5 minutes; another agent's valid key, an unsigned request and
    a replayed old signature get nothing."""
    from deploy.agents import auth, releases
    from tests.support.httpkit import get as http_get

    c = cluster
    srv = c["srv"]
    base = f"http://{srv.settings.http.listen}"
    path = releases.url_path("app", "999")
    stored = releases.stored_path(srv.settings, "app", "999")
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(b"release bytes")
    try:
        web1 = auth.agent_key(c["agents"]["web1"].home)  # the copy the CLI printed at setup
        web3 = auth.ensure_server_key(srv.settings, "web3")  # an agent the site does not name
        assert http_get(base + path)[0] == 401
        assert http_get(base + "/-/agents/releases/app%0Aforged/999.tar.gz")[0] == 404  # never logged
        assert http_get(base + path, auth.fetch_headers(web3, "web3", path))[0] == 404
        assert http_get(base + path, auth.fetch_headers(web3, "web1", path))[0] == 401
        assert http_get(base + path, auth.fetch_headers(web1, "web1", path, now=time.time() - 600))[0] == 401
        other = releases.url_path("app", "998")
        assert http_get(base + path, auth.fetch_headers(web1, "web1", other))[0] == 401
        status, _, data = http_get(base + path, auth.fetch_headers(web1, "web1", path))
        assert (status, data) == (200, b"release bytes")
    finally:
        stored.unlink()


def test_a_host_failing_its_switch_brings_the_others_back(cluster):
    """Phase two can fail too (here web2's nginx refuses the config that makes the new side
    live: a site template override on web2 only). web1 had switched: it is switched back, in
    two phases again, so no host stays on a release the others do not serve."""
    from deploy import bluegreen

    c = cluster
    before = served(c)
    st = status_json(c)
    web2 = next(h for h in st["hosts"] if h["host"] == "web2")
    builtin = (Path(bluegreen.__file__).parent / "templates" / "site.conf.j2").read_text()
    override = c["agents"]["web2"].home / "sites" / "app" / "nginx.conf.j2"
    override.write_text(f"{{% if live_side == '{web2['idle_side']}' %}}not_a_directive;{{% endif %}}\n"
                        + builtin)
    try:
        code, msgs, _ = commit_push(c, "v6")
    finally:
        override.unlink()
    failure = [m for m in msgs if "FAILED" in m]
    assert failure and "FAILED at switch: host web2:" in failure[0], "\n".join(msgs)
    assert f"web1 switched back, release {st['release']} is live on web1 web2" in failure[0], failure
    assert any(m.startswith("deploy app: [web1] switch:") for m in msgs), "\n".join(msgs)  # it had switched
    assert not any(m.startswith("Enable:") for m in msgs), "\n".join(msgs)
    assert served(c) == before
    after = status_json(c)
    assert after["release"] == st["release"]
    assert all(h["live_release"] == st["release"] for h in after["hosts"]), after["hosts"]



def test_a_branch_preview_goes_to_every_host_and_leaves_with_the_branch(cluster):
    """deploy.previews with deploy.hosts: a branch's build is published at BRANCH.SERVER_NAME
    on every host (blue/green untouched); deleting the branch removes it from every host."""
    import http.client

    c = cluster
    srv, work = c["srv"], c["work"]

    def version(host: str) -> str:
        port = c["ports"][host][0]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/version.txt", headers={"Host": f"feature-x.app.test:{port}"})
            return (conn.getresponse().read().decode().split() or [""])[0]  # the preview's own process
        finally:
            conn.close()

    before = served(c)
    write_app(work / "app", "feat", procfile="web: python3 web.py\n")
    srv.git("alice", "commit", "-qam", "feat", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:feature/x", timeout=180)
    msgs = remote(lines)
    assert code == 0 and all(any(m.startswith(f"deploy app: [{h}] preview live at") for m in msgs)
                             for h in HOSTS), "\n".join(msgs)
    assert not any(m.startswith("Enable:") for m in msgs), "\n".join(msgs)
    assert {h: version(h) for h in HOSTS} == {"web1": "feat", "web2": "feat"}
    assert served(c) == before
    code, lines = timed_push(srv, "alice", work, "origin", ":feature/x", timeout=60)
    assert code == 0, lines
    deadline = time.monotonic() + 30
    while any(version(h) == "feat" for h in HOSTS):
        assert time.monotonic() < deadline, "the preview is still served"
        time.sleep(0.1)
    # nginx stops serving it first, then its files go (the removal job runs on: a loaded CI
    # machine saw the directory in between)
    while any((c["agents"][h].home / "sites" / "app" / "previews" / "feature-x").exists() for h in HOSTS):
        assert time.monotonic() < deadline, "the preview's files are still there"
        time.sleep(0.1)
    srv.git("alice", "reset", "-q", "--hard", "HEAD~1", cwd=work)
