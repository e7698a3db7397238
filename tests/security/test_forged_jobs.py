"""Issue 21 leftover: a build job forged in Redis.

Whoever can write to the build queue (a leaked Redis password) wrote `run_build` jobs of his
own, with rq's client, next to the server's:
1. a copy of a real job whose `sandbox` said: the host's network, user `daemon`, limits of
   its own; the worker ran it as told (uid 1, the server's 127.0.0.1 reached, cpu limit
   99999999);
2. a job checking out HIS commit with the secret tokens of another repo's job (stored in
   Redis with every job): the worker decrypted them into his build, which printed the
   secret reversed (the masker only knows the value and its encodings).
Now every job is signed with a key derived from secrets.key by whoever queued it (the
server; a worker handing a build to the deploy queue) and a worker runs only jobs it can
verify with its own copy: both are refused with one line. And a worker holds even a signed
job to its own `[builds]` (Policy.floored: an attacker who stole a build host's key still
gets the sandbox, the worker's uid range, at most its network and limits).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.server import GitServer
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(300)

PROBE = """#!/bin/sh
echo "uid=$(id -u)"
echo "cpu=$(ulimit -t)"
echo "pid1=$(cat /proc/1/comm)"
ls -A "{home}" 2>/dev/null | sed 's/^/LISTED /'
python3 - <<'EOF'
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), 3)
    print("REACHED", s.recv(100))
except OSError as exc:
    print("BLOCKED", exc.__class__.__name__)
EOF
"""

FORGED = {"enabled": True, "allow_unsandboxed": True, "user": "daemon", "network": "host",
          "limits": {"memory": 1 << 40, "pids": 20000, "cpu_seconds": 99999999,
                     "file_size": 1 << 40, "disk": 1 << 40, "open_files": 20000,
                     "log_bytes": 1 << 30},
          "uid_range": "", "uid": 1}


@pytest.fixture(scope="module")
def srv(gitserve_module_factory) -> GitServer:
    require_tool("bwrap")
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the per-repo uids of these tests need a root server (CI runs as root)")
    conf = """
repo gitolite-admin
    RW+ = admin
repo forge vault
    RW+ = alice
    option build.enable = 1
"""
    return gitserve_module_factory(conf=conf, users=("alice",),
                                   settings={"builds": {"workers": 2}})


@pytest.fixture
def host_listener() -> Iterator[int]:
    """Something on the host's 127.0.0.1 a build must never reach."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HOST-LOOPBACK")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        sock.close()


def redis_client(srv: GitServer):
    import redis

    return redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))


def forge_build(srv: GitServer, template_id: str, sandbox: dict | None = None,
                key: Path | None = None, **fields: object) -> str:
    """A copy of build TEMPLATE_ID's job with SANDBOX as its policy and FIELDS changed, queued
    as a new build of `forge` (record, pinned commit and rq job, as enqueue.py writes them),
    signed with KEY when given (an attacker holding secrets.key). Returns its id."""
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from buildqueue import keys, records
    from buildqueue.enqueue import hidden_ref

    r = redis_client(srv)
    try:
        job = Job.fetch(keys.build_job(template_id), connection=r, serializer=JSONSerializer)
        data = {**dict(job.args[0]), **fields}
        build_id = records.new_id(r)
        subprocess.run(["git", "update-ref", hidden_ref(build_id), data["commit"]],
                       cwd=srv.repo_path("forge"), check=True, timeout=30)
        records.create(r, records.Build(id=build_id, repo=data["repo"], ref=data["ref"],
                                        old=data["old"], new=data["new"], pusher="alice",
                                        mode="async", queue="builds",
                                        job_id=keys.build_job(build_id)), 100)
        data.update(build_id=build_id, fetch_ref=hidden_ref(build_id))
        if sandbox is not None:
            data["sandbox"] = sandbox
        if key is not None:
            from gitserve.secrets.crypt import sign_job

            data = sign_job(data, key)
        Queue("builds", connection=r, serializer=JSONSerializer).enqueue(
            "buildqueue.jobs.run_build", data, job_id=keys.build_job(build_id), job_timeout=-1)
        return build_id
    finally:
        r.close()


def field(out: str, name: str) -> str:
    m = re.search(rf"{name}=(\S+)", out)
    assert m, out
    return m.group(1)


def test_a_forged_job_cannot_loosen_the_sandbox(srv, host_listener):
    work = srv.tmp / "work" / f"forge-{uuid.uuid4().hex[:8]}"
    srv.git("alice", "clone", "-q", srv.url("forge"), str(work))
    script = work / ".gitserve" / "build"
    script.parent.mkdir(parents=True)
    script.write_text(PROBE.format(home=srv.home, port=host_listener))
    script.chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "probe", cwd=work)
    out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=240).stderr
    legit = re.findall(r"build (\d+) passed", out)
    assert legit and "BLOCKED" in out, out
    legit_uid = int(field(out, "uid"))

    # unsigned, as anyone with the Redis password writes it: refused with one line
    refused = srv.ssh("alice", "builds", "log", forge_build(srv, legit[-1], FORGED),
                      "--follow", timeout=240).stdout
    assert "uid=" not in refused and "build refused: the job is not signed by this " \
        "server's secrets.key" in refused, refused
    # signed with a stolen key: it runs, held to the worker's floor
    forged_id = forge_build(srv, legit[-1], FORGED, key=srv.home / "secrets.key")
    log = srv.ssh("alice", "builds", "log", forged_id, "--follow", timeout=240).stdout
    assert "uid=" in log, log  # it ran: held to the worker's policy, not refused outright
    assert "REACHED" not in log and "BLOCKED" in log, log  # never the host's network
    assert int(field(log, "uid")) == legit_uid, log  # the repo's uid, from the worker's range
    assert 200000 <= legit_uid <= 265535
    assert field(log, "cpu") == "3600", log  # the worker's limit, not the job's 99999999
    assert field(log, "pid1") == "bwrap", log  # in its own PID namespace
    # the server home stays hidden (only the path to the repo's own object store, bound
    # read-only for the checkout, is there)
    assert [ln for ln in log.splitlines() if ln.startswith("LISTED ")] == ["LISTED repositories"], log
    assert "this worker allows network" in log, log  # and the build log says what it lowered
    assert f"build {forged_id} passed" in log or " passed in " in log, log


def test_a_forged_job_cannot_lower_the_uid_or_name_root(srv):
    """No sandbox, `user = root`, a uid of 0 in the job: the worker's own switches, sandbox_user
    and range win (before, the build ran unsandboxed or not at all, as the job said)."""
    r = redis_client(srv)
    try:
        from buildqueue import keys

        ids = sorted(int(i) for i in r.zrange(keys.repo_builds("forge"), 0, -1))
    finally:
        r.close()
    assert ids, "the test above made the template build"
    forged = {**FORGED, "enabled": False, "user": "root", "uid": 0, "uid_range": ""}
    log = srv.ssh("alice", "builds", "log",
                  forge_build(srv, str(ids[0]), forged, key=srv.home / "secrets.key"),
                  "--follow", timeout=240).stdout
    assert 200000 <= int(field(log, "uid")) <= 265535, log


def test_floor_keeps_the_narrower_network_and_lower_limits():
    from gitserve.sandbox import Policy
    from gitserve.sandbox_limits import Limits

    worker = Policy(user="builder", network="outbound", limits=Limits(memory=1 << 30, pids=100),
                    uid_range="300000-300010")
    job = Policy(enabled=False, allow_unsandboxed=True, user="root", network="host",
                 limits=Limits(memory=1 << 40, pids=10), uid_range="0-0", uid=0)
    got, notes = job.floored(worker)
    assert (got.enabled, got.allow_unsandboxed, got.user, got.uid_range, got.uid) == \
        (True, False, "builder", "300000-300010", None)
    assert got.network == "outbound" and got.limits.memory == 1 << 30 and got.limits.pids == 10
    assert len(notes) == 2, notes  # the network and the memory limit were lowered
    narrower = Policy(network="none").floored(worker)[0]
    assert narrower.network == "none"


def test_another_repos_secret_tokens_in_a_forged_job_are_refused(srv):
    """vault's job carries its secret's token; a job of forge's code (a script printing the
    secret reversed, which no masking catches) given those tokens is refused unsigned."""
    secret = f"S3CRET-{uuid.uuid4().hex}"
    srv.admin_cli("admin", "secrets", "set", "vault", "API_TOKEN", input=secret)
    work = srv.tmp / "work" / f"vault-{uuid.uuid4().hex[:8]}"
    srv.git("alice", "clone", "-q", srv.url("vault"), str(work))
    (work / ".gitserve").mkdir()
    (work / ".gitserve" / "build").write_text("#!/bin/sh\necho vault builds\n")
    (work / ".gitserve" / "build").chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-q", "-m", "vault", cwd=work)
    out = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=240).stderr
    vault_id = re.findall(r"build (\d+) passed", out)[-1]
    # forge's own commit, printing whatever API_TOKEN it is given, reversed
    thief = srv.tmp / "work" / f"forge-{uuid.uuid4().hex[:8]}"
    srv.git("alice", "clone", "-q", srv.url("forge"), str(thief))
    (thief / ".gitserve").mkdir(exist_ok=True)
    (thief / ".gitserve" / "build").write_text(
        "#!/bin/sh\necho \"REVERSED $(printf %s \"$API_TOKEN\" | rev)\"\n")
    (thief / ".gitserve" / "build").chmod(0o755)
    srv.git("alice", "add", "-A", cwd=thief)
    srv.git("alice", "commit", "-q", "-m", "thief", cwd=thief)
    out = srv.git("alice", "push", "origin", "HEAD:main", cwd=thief, timeout=240).stderr
    forge_id = re.findall(r"build (\d+) passed", out)[-1]
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from buildqueue import keys

    r = redis_client(srv)
    try:
        vault_job = Job.fetch(keys.build_job(vault_id), connection=r, serializer=JSONSerializer)
        tokens = vault_job.args[0]["secrets"]
    finally:
        r.close()
    assert tokens and secret not in str(tokens)
    log = srv.ssh("alice", "builds", "log", forge_build(srv, forge_id, secrets=tokens),
                  "--follow", timeout=240).stdout
    assert secret[::-1] not in log and "REVERSED" not in log, log
    assert "build refused: the job is not signed" in log, log
