"""gitserve.sandbox without a usable sandbox: refused unless allowed, and even then never
root and never the server's environment."""

from __future__ import annotations

import os
import pwd

import pytest

from buildqueue.runner import run_script
from gitserve import sandbox

pytestmark = pytest.mark.timeout(60)


def _work(tmp_path):
    work = sandbox.new_workdir(sandbox.work_root(tmp_path / "work"))
    (work / "src" / "s.sh").write_text('#!/bin/sh\necho "uid=$(id -u)"\nenv | sort\n')
    (work / "src" / "s.sh").chmod(0o755)
    return work


def test_no_sandbox_is_refused_with_the_setting_to_change(tmp_path):
    policy = sandbox.Policy(enabled=False)
    with pytest.raises(sandbox.SandboxError, match=r"build refused: no sandbox on this worker "
                       r"\(\[builds\] sandbox = false\).*allow_unsandboxed = true"):
        sandbox.prepare(policy, _work(tmp_path), ["/build/src/s.sh"], {})
    assert sandbox.describe(policy).startswith("local builds refused: no sandbox")


def test_allowed_unsandboxed_run_is_still_not_root_and_has_no_server_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_ONLY_VARIABLE", "leak")
    policy = sandbox.Policy(enabled=False, allow_unsandboxed=True)
    work = _work(tmp_path)
    sandbox.hand_over(policy, work)
    jail = sandbox.prepare(policy, work, ["/build/src/s.sh"], {"GITSERVE_OUTPUT": "/build/src/public"})
    assert not jail.sandboxed
    got: list[str] = []
    res = run_script([], tmp_path, {}, 10, got.append, jail=jail)
    assert res.status == "passed", got
    uid = next(line for line in got if line.startswith("uid="))
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.getuid()
    assert uid == f"uid={expected}", got
    names = {line.split("=", 1)[0] for line in got if "=" in line and not line.startswith("uid=")}
    assert "SERVER_ONLY_VARIABLE" not in names and names <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD",
                                                            "SHLVL", "_", "GITSERVE_OUTPUT"}, names
    assert f"GITSERVE_OUTPUT={work.resolve()}/src/public" in got, got  # inside paths mapped
    assert sandbox.describe(policy).startswith("WARNING: builds run UNSANDBOXED")


def test_root_sandbox_user_must_exist_and_not_be_root():
    if os.geteuid() != 0:
        assert sandbox.Policy(user="root").run_as() is None  # only a root server switches users
        return
    with pytest.raises(sandbox.SandboxError, match="is root"):
        sandbox.Policy(user="root").run_as()
    with pytest.raises(sandbox.SandboxError, match="does not exist"):
        sandbox.Policy(user="no-such-user-here").run_as()
    assert "local builds refused" in sandbox.describe(sandbox.Policy(user="root"))


def test_payload_round_trip_and_old_bool():
    policy = sandbox.Policy(enabled=True, allow_unsandboxed=True, user="builder")
    assert sandbox.Policy.from_payload(policy.to_payload()) == policy
    assert sandbox.Policy.from_payload(False) == sandbox.Policy(enabled=False)
    assert sandbox.Policy.from_payload(None) == sandbox.Policy()
