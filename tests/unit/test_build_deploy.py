"""A passed build of a site repo hands its deploy.dir to a deploy job on the `deploy` queue;
the deploy's lines land in the build log and the build ends with the deploy."""

from __future__ import annotations

from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from buildqueue import deploy_job, enqueue, keys, logs, records, rqconn
from buildqueue.rqjob import GitserveJob
from gitserve.options import RepoOptions
from gitserve.settings import Settings
from tests.support.builds import commit_to, make_bare, set_ref

# thread method: the in-process rq worker takes over SIGALRM, so the signal method cannot fire
pytestmark = pytest.mark.timeout(60, method="thread")

SCRIPT = "#!/bin/sh\nmkdir -p \"$GITSERVE_OUTPUT\"\necho \"hello $GITSERVE_BUILD_ID\" > \"$GITSERVE_OUTPUT/index.html\"\necho built\n"


@pytest.fixture
def site_env(tmp_path, redis_server, monkeypatch):
    settings = Settings(home=tmp_path / "home")
    settings.home.mkdir()
    settings.redis.url = redis_server.url
    monkeypatch.setenv("GITSERVE_HOME", str(settings.home))
    monkeypatch.setenv("GITSERVE_BUILD_CACHE", str(tmp_path / "cache"))
    calls: list[dict] = []
    return settings, calls


def _build(settings, name, fake, monkeypatch):
    bare = make_bare(settings.repo_path(name))
    sha = commit_to(bare, {".gitserve/build": SCRIPT, "deploy/post.sh": "echo post\n"})
    set_ref(bare, "refs/heads/main", sha)
    r = rqconn.connect(settings.effective_redis_url)
    options = {"deploy.site": "www", "deploy.dir": "public", "deploy.port": "8080",
               "deploy.preview-port": "8081"}
    build = enqueue.enqueue(settings, r, name, bare, "refs/heads/main", "0" * 40, sha, "alice",
                            RepoOptions.parse(options), "sync")
    monkeypatch.setattr(deploy_job, "default_deploy", lambda *a: fake)
    SimpleWorker(["builds", "deploy"], connection=r, serializer=JSONSerializer,
                 job_class=GitserveJob).work(burst=True)
    return r, build, sha


def test_passed_build_is_deployed(site_env, monkeypatch):
    settings, calls = site_env

    def fake(settings_, site, output_dir, options, meta, log, post_workdir):
        calls.append({"site": site, "index": (Path(output_dir) / "index.html").read_text(),
                      "options": dict(options), "meta": dict(meta),
                      "post": (Path(post_workdir) / "deploy/post.sh").read_text(),
                      "home": settings_.home})
        log("deploy www: switching")
        log("Enable: blue")

    r, build, sha = _build(settings, "site", fake, monkeypatch)
    final = records.get(r, build.id)
    assert final.status == "passed", final
    (call,) = calls
    assert call["site"] == "www" and call["index"] == f"hello {build.id}\n"
    assert call["options"]["deploy.port"] == "8080" and call["options"]["deploy.dir"] == "public"
    assert call["meta"]["commit"] == sha and call["meta"]["build_id"] == build.id
    assert call["post"] == "echo post\n" and call["home"] == settings.home
    lines = [e["l"] for e in logs.entries(r, build.id) if "l" in e]
    assert lines == ["built", "gitserve: build passed, deploying site www", "deploy www: switching",
                     "Enable: blue"]
    assert not r.exists(keys.artifact(build.id))


def test_failed_deploy_fails_the_build(site_env, monkeypatch):
    settings, _ = site_env

    def fake(*args):
        raise RuntimeError("check failed: GET / answered 502")

    r, build, _ = _build(settings, "badsite", fake, monkeypatch)
    final = records.get(r, build.id)
    assert final.status == "failed" and final.reason == "deploy: check failed: GET / answered 502"
    lines = [e["l"] for e in logs.entries(r, build.id) if "l" in e]
    assert lines[-1] == "gitserve: deploy: check failed: GET / answered 502"


def test_next_build_of_the_ref_does_not_wait_for_the_deploy(site_env, monkeypatch):
    """One worker taking builds before deploys: build 2 of the same ref must not wait for
    build 1's deploy (which needs that very worker), or the site repo deadlocks."""
    settings, calls = site_env
    bare = make_bare(settings.repo_path("busy-site"))
    r = rqconn.connect(settings.effective_redis_url)
    options = {"deploy.site": "www", "deploy.dir": "public"}
    builds = []
    for n in range(2):
        sha = commit_to(bare, {".gitserve/build": SCRIPT, "n": str(n)})
        builds.append(enqueue.enqueue(settings, r, "busy-site", bare, "refs/heads/main", "0" * 40, sha,
                                      "alice", RepoOptions.parse(options), "async"))
    monkeypatch.setattr(deploy_job, "default_deploy",
                        lambda *a: lambda s, site, out, o, meta, log, post: calls.append(meta["build_id"]))
    SimpleWorker(["builds", "deploy"], connection=r, serializer=JSONSerializer,
                 job_class=GitserveJob).work(burst=True)
    assert [records.get(r, b.id).status for b in builds] == ["passed", "passed"]
    assert calls == [b.id for b in builds]
