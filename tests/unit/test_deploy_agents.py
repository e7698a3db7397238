"""Deploy agents' pieces without servers: the signed envelopes, and a release download that
does not match what the signed job says (tests/cluster/test_deploy_agents.py runs the rest
for real)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from deploy.agents import auth, releases
from deploy.errors import DeployError
from gitserve.options import OptionError, SiteOptions

KEY = bytes(range(32))


def test_a_sealed_body_opens_only_with_its_key_and_purpose() -> None:
    env = auth.seal(KEY, "job", {"kind": "switch", "release": "7"})
    assert auth.unseal(KEY, "job", env) == {"kind": "switch", "release": "7"}
    with pytest.raises(auth.BadSignature):
        auth.unseal(KEY, "result", env)  # a job is not an answer
    with pytest.raises(auth.BadSignature):
        auth.unseal(bytes(32), "job", env)
    env["body"]["release"] = "6"
    with pytest.raises(auth.BadSignature):
        auth.unseal(KEY, "job", env)
    secret = auth.encrypt_env(KEY, {"API_TOKEN": "s3cret"})
    assert "s3cret" not in secret and auth.decrypt_env(KEY, secret) == {"API_TOKEN": "s3cret"}
    with pytest.raises(auth.BadSignature):
        auth.decrypt_env(bytes(32), secret)


def test_deploy_hosts_options_are_typed() -> None:
    base = {"deploy.site": "www", "deploy.port": "8080", "deploy.preview-port": "8081"}
    opts = SiteOptions.parse({**base, "deploy.hosts": "web1 web2", "deploy.host-ports": "web2=127.0.0.1:9080/9081"})
    assert opts.hosts == ("web1", "web2") and opts.host_ports == (("web2", "127.0.0.1:9080/9081"),)
    for bad in ({"deploy.hosts": "web1 ../x"}, {"deploy.host-ports": "web2=99999"}, {"deploy.host-ports": "web2"}):
        with pytest.raises(OptionError):
            SiteOptions.parse({**base, **bad})


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served() -> Iterator[dict]:
    """A stand-in for the server's HTTP face: answers what the test puts in BOX['data']."""
    box: dict = {"data": b"", "headers": None}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            box["headers"] = dict(self.headers)
            self.send_response(200)
            self.send_header("Content-Length", str(len(box["data"])))
            self.end_headers()
            self.wfile.write(box["data"])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    box["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield box
    finally:
        httpd.shutdown()


def test_a_release_must_match_its_signed_sha256(served: dict, tmp_path: Path) -> None:
    good = _tar({"index.html": b"v1\n"})
    served["data"] = good
    sha = hashlib.sha256(good).hexdigest()
    tree = releases.fetch(served["url"], KEY, "web1", "www", "7", sha, len(good), tmp_path / "a")
    assert (tree / "index.html").read_bytes() == b"v1\n"
    assert served["headers"]["Authorization"].startswith("GitserveAgent ")  # signed, key not sent
    assert KEY.hex() not in str(served["headers"])
    served["data"] = good[:50] + bytes([good[50] ^ 1]) + good[51:]  # one bit changed on the way
    with pytest.raises(DeployError, match="does not match its sha256"):
        releases.fetch(served["url"], KEY, "web1", "www", "7", sha, len(good), tmp_path / "b")
    served["data"] = good + b"x" * 100  # more than signed for: stopped while reading
    with pytest.raises(DeployError, match="more than the"):
        releases.fetch(served["url"], KEY, "web1", "www", "7", sha, len(good), tmp_path / "c")
    escape = _tar({"../outside.txt": b"x"})
    served["data"] = escape
    with pytest.raises(DeployError, match="refused"):
        releases.fetch(served["url"], KEY, "web1", "www", "7", hashlib.sha256(escape).hexdigest(),
                       len(escape), tmp_path / "d")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "d" / "outside.txt").exists()


def test_deploy_agent_refuses_to_start_without_its_key_in_one_line(tmp_path: Path) -> None:
    import subprocess

    from tests.support.tools import gitserve_cmd, subprocess_env

    home = tmp_path / "agent"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(gitserve_cmd("--home", str(home), "deploy-agent", *args), capture_output=True,
                              text=True, env=subprocess_env(), timeout=60)

    out = run("--name", "web1", "--redis-url", "unix:///nonexistent.sock")
    assert out.returncode == 1 and out.stderr.startswith("gitserve: no agent key at ") \
        and len(out.stderr.splitlines()) == 1, out.stderr
    (home / "agent.key").write_text(KEY.hex() + "\n")
    (home / "agent.key").chmod(0o644)
    out = run("--name", "web1", "--redis-url", "unix:///nonexistent.sock")
    assert out.returncode == 1 and "readable by others: chmod 600" in out.stderr, out.stderr
    (home / "agent.key").chmod(0o600)
    out = run("--name", "../web1", "--redis-url", "unix:///nonexistent.sock")
    assert out.returncode == 1 and "invalid deploy agent name" in out.stderr, out.stderr
    out = run("--name", "web1", "--redis-url", "redis://127.0.0.1:1/0")
    assert out.returncode == 1 and "has no password" in out.stderr and "Traceback" not in out.stderr
    out = run("--name", "web1", "--redis-url", "unix:///nonexistent.sock")
    assert out.returncode == 1 and "Redis unreachable" in out.stderr and "Traceback" not in out.stderr


def test_a_phase_fails_a_host_that_stops_reporting_or_never_takes_its_job(redis_server, tmp_path: Path) -> None:
    """The coordinator's bounds, with a real Redis and rq but no agents: web1's job is taken
    (rq: started) and then its signed report disappears (the agent died mid-job); web2's job
    is never taken. Both fail within [deploy] agent_timeout, each with its reason."""
    import json
    import time

    from rq.job import JobStatus

    from deploy.agents import status_key
    from deploy.agents.coordinator import Coordinator
    from gitserve.settings import Settings

    settings = Settings(home=tmp_path)
    settings.deploy.agent_timeout = 1.0
    r = redis_server.client()
    coordinator = Coordinator(r)
    for host in ("web1", "web2"):
        key = auth.ensure_server_key(settings, host)
        r.set(status_key(host), json.dumps(auth.seal(key, "status", {"agent": host, "at": time.time(),
                                                                      "sites": {}})), ex=30)
    assert coordinator.report(settings, "web1")[0] is not None

    def agent_dies() -> None:  # web1 "takes" its job, then its reports stop
        from rq import Queue
        from rq.serializers import JSONSerializer

        deadline = time.monotonic() + 5
        while not (ids := Queue("deploy-agent:web1", connection=r, serializer=JSONSerializer).job_ids):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        from rq.job import Job

        Job.fetch(ids[0], connection=r, serializer=JSONSerializer).set_status(JobStatus.STARTED)
        r.delete(status_key("web1"))

    killer = threading.Thread(target=agent_dies)
    killer.start()
    t0 = time.monotonic()
    said: list[str] = []
    out = coordinator.run_phase(settings, ["web1", "web2"], "abort",
                                lambda h: {"site": "www", "release": "7"}, 60, said.append)
    killer.join()
    assert time.monotonic() - t0 < 5
    assert out["web1"] == {"ok": False, "reason": "deploy agent stopped reporting during the job"}
    assert out["web2"] == {"ok": False, "reason": "deploy agent did not take the job within 1s"}
    assert coordinator.report(settings, "web1")[1].startswith("deploy agent is down")
