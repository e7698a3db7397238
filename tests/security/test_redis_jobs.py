"""Issue 21 finding 2: Redis as a way out. A build (or anyone) that can write to Redis wrote an
rq job naming `os.system`; a worker ran it as root. Now every gitserve worker runs only
gitserve's own job functions (buildqueue/rqjob.py), a plain `rq worker` without gitserve's
job class runs no build, and a TCP Redis without a password is refused with one line.

Each attack failed before the fix: the worker ran `os.system` (the marker file appeared),
and serve/worker accepted `redis://HOST:PORT/0` without a password.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.support.builds import redis_server, wait_for, workers  # noqa: F401 - fixtures
from tests.support.tools import free_port, gitserve_cmd, subprocess_env

pytestmark = pytest.mark.timeout(120)


def _final(job: Job) -> str:
    status = job.get_status(refresh=True)
    return status if status in ("finished", "failed") else ""


def test_a_worker_never_runs_a_foreign_function(redis_server, workers, tmp_path):  # noqa: F811
    r = redis_server.client()
    marker = tmp_path / f"PWNED-{uuid.uuid4().hex}"
    q = Queue("builds", connection=r, serializer=JSONSerializer)
    job = q.enqueue("os.system", f"touch {marker}")
    status = wait_for(lambda: _final(job), timeout=30)
    assert status == "failed" and not marker.exists()
    assert "is not a gitserve job" in (job.latest_result().exc_string or "")
    # nor a callback naming one: rq calls on_failure with the job's own arguments
    job2 = Job.create("buildqueue.jobs.run_build", args=({"build_id": "0"},), connection=r,
                      serializer=JSONSerializer, on_failure=None)
    job2._failure_callback_name = "os.system"
    q.enqueue_job(job2)
    assert wait_for(lambda: _final(job2), timeout=30) == "failed" and not marker.exists()


def test_gitserve_worker_never_runs_a_foreign_function(redis_server, tmp_path):  # noqa: F811
    r = redis_server.client()
    marker = tmp_path / f"PWNED-{uuid.uuid4().hex}"
    q = Queue("probe", connection=r, serializer=JSONSerializer)
    job = q.enqueue("os.system", f"touch {marker}")
    res = subprocess.run(gitserve_cmd("--home", str(tmp_path / "home"), "worker", "--burst",
                                      "--url", redis_server.url, "probe"),
                         env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert _final(job) == "failed" and not marker.exists()


def test_a_plain_rq_worker_runs_no_build(redis_server, tmp_path):  # noqa: F811
    """Without gitserve's job class a worker would run anything: so gitserve's jobs refuse it."""
    from buildqueue import records

    r = redis_server.client()
    build_id = records.new_id(r)
    records.create(r, records.Build(id=build_id, repo="x", ref="refs/heads/main", old="0" * 40,
                                    new="1" * 40, pusher="alice", mode="async", queue="plain"), 10)
    q = Queue("plain", connection=r, serializer=JSONSerializer)
    q.enqueue("buildqueue.jobs.run_build", {"build_id": build_id, "repo": "x", "ref": "refs/heads/main"})
    res = subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_server.url,
                          "--serializer", "rq.serializers.JSONSerializer", "plain"],
                         env=subprocess_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    build = records.get(r, build_id)
    assert build.status == "failed" and "--job-class buildqueue.rqjob.GitserveJob" in build.reason, build


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_tcp_redis_without_password_is_refused(tmp_path, command):
    home = tmp_path / "home"
    admin_pub = tmp_path / "admin.pub"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(admin_pub)[:-4]],
                   check=True, timeout=30)
    subprocess.run(gitserve_cmd("--home", str(home), "init", "--admin", "admin", "--admin-key",
                                str(admin_pub)), env=subprocess_env(), check=True,
                   capture_output=True, timeout=120)
    url = f"redis://127.0.0.1:{free_port()}/0"
    args = (["serve", "--listen", f"127.0.0.1:{free_port()}", "--redis-url", url]
            if command == "serve" else ["worker", "--burst", "--url", url])
    res = subprocess.run(gitserve_cmd("--home", str(home), *args), env=subprocess_env(),
                         capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "has no password" in lines[0] and "allow_insecure" in lines[0], lines
    # explicitly allowed: it goes on (and finds nobody listening)
    toml = home / "gitserve.toml"
    toml.write_text(toml.read_text().replace("allow_insecure = false", "allow_insecure = true"))
    res = subprocess.run(gitserve_cmd("--home", str(home), "worker", "--burst", "--url", url),
                         env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert "has no password" not in res.stderr and "Redis unreachable" in res.stderr, res.stderr
