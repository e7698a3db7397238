"""The push-hook seam end to end: gate rejection per ref and live progress after the push."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(
        users=("alice",), conf="repo hooked\n    RW+ = alice\n",
        settings={"server": {"keepalive_interval": 1.0}},
        env={"GITSERVE_PLUGINS": "tests.e2e.hookplugin:push_hooks"})


def test_progress_streams_after_report_and_gate_rejects_one_ref(srv):
    work = srv.clone("alice", "hooked")
    srv.commit("alice", work, "a.txt")
    res = srv.git("alice", "push", "origin", "HEAD:main", "HEAD:gated", cwd=work, check=False)
    assert res.returncode != 0
    err = res.stderr
    assert "remote: hook saw refs/heads/main pushed by alice to hooked" in err
    for i in range(3):
        assert f"remote: step {i}" in err
    assert "remote: build 7 passed in 3.6s" in err
    assert "! [remote rejected] HEAD -> gated (build 7 failed)" in err
    ls = srv.git("alice", "ls-remote", srv.url("hooked")).stdout
    assert "refs/heads/main" in ls and "gated" not in ls
