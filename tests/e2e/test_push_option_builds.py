"""`git push -o build.skip` / `-o build.mode=async` against real builds (SPEC §6): the
embedded Redis and local workers of `gitserve serve`, the real git client over ssh."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.pushes import new_work, remote, timed_push

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo live
    RW+ = alice
    option build.enable = 1
repo gated
    RW+ = alice
    option build.enable = 1
    option build.mode = gate
"""


@pytest.fixture(scope="module")
def srv(gitserve_module_factory):
    return gitserve_module_factory(conf=CONF, users=("alice",))


def builds_of(srv, repo: str) -> list[str]:
    return [line for line in srv.ssh("alice", "builds", "list").stdout.splitlines()
            if repo in line]


def test_build_skip_push_option_skips_the_build(srv) -> None:
    work = new_work(srv, "live", "#!/bin/sh\necho built\n")
    before = builds_of(srv, "live")
    code, lines = timed_push(srv, "alice", work, "-o", "build.skip", "origin", "HEAD:main")
    assert code == 0, lines
    msgs = remote(lines)
    assert "gitserve: build skipped (push option build.skip)" in msgs, lines
    assert not any(re.match(r"build \d+ ", m) for m in msgs), lines
    assert builds_of(srv, "live") == before
    # the next push without the option builds as usual
    (work / "f").write_text("x\n")
    srv.git("alice", "add", "f", cwd=work)
    srv.git("alice", "commit", "-qm", "again", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert any(re.fullmatch(r"build \d+ passed in \d+\.\ds", m) for m in remote(lines)), lines


def test_build_mode_async_push_option_does_not_wait(srv) -> None:
    work = new_work(srv, "live", "#!/bin/sh\nsleep 6\necho slow done\n", {"g": "1"})
    t0 = time.monotonic()
    code, lines = timed_push(srv, "alice", work, "-o", "build.mode=async", "origin",
                             "HEAD:main")
    assert code == 0 and time.monotonic() - t0 < 5, lines
    (queued,) = [m for m in remote(lines) if " queued: " in m]
    build_id = queued.split()[1]
    out = srv.ssh("alice", "builds", "log", build_id, "--follow", timeout=120)
    assert "slow done" in out.stdout


def test_push_options_cannot_bypass_a_gate(srv) -> None:
    work = new_work(srv, "gated", "#!/bin/sh\necho no\nexit 1\n")
    code, lines = timed_push(srv, "alice", work, "-o", "build.skip", "origin", "HEAD:main")
    assert code != 0, lines
    assert any("ignored" in m and "gates" in m for m in remote(lines)), lines
    assert any(re.search(r"\(build \d+ failed\)$", line) for _, line in lines), lines
    assert srv.git("alice", "ls-remote", srv.url("gated")).stdout.strip() == ""
