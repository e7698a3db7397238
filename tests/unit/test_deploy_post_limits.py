"""deploy.post runs in the build sandbox with the run's cgroups (gitserve.sandbox_cgroup):
memory it pins (here a memfd, which no RSS and no rlimit counts) ends it with the memory
limit's line, not as a timeout (a SIGKILLed post was reported `timed out after 600s`), and
it runs as the uid the caller gives it (the repo's build uid), never as root."""

from __future__ import annotations

import os

import pytest

from deploy.errors import DeployError
from deploy.post import run_post
from gitserve import sandbox, sandbox_cgroup
from gitserve.sandbox_limits import Limits
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(120)

HOG = """#!/usr/bin/env python3
import os, time
print("uid=%d" % os.getuid(), flush=True)
fd = os.memfd_create("hog")
for _ in range(32):
    os.write(fd, b"x" * (16 << 20))
print("HELD 512 MiB", flush=True)
time.sleep(30)
"""


@pytest.fixture
def checkout(tmp_path):
    require_tool("bwrap")
    if os.geteuid() != 0 or sandbox_cgroup.parent("memory") is None:
        pytest.skip("a memory cgroup needs a root worker on a host that has one")
    work = sandbox.new_workdir(sandbox.work_root(tmp_path / "work"))
    (work / "src" / "post").write_text(HOG)
    (work / "src" / "post").chmod(0o755)
    return work


def test_deploy_post_pinning_memory_is_killed_at_the_memory_limit(checkout):
    policy = sandbox.Policy(limits=Limits(memory=64 << 20, disk=64 << 20), uid=250123)
    sandbox.hand_over(policy, checkout)
    lines: list[str] = []
    with pytest.raises(DeployError) as err:
        run_post(checkout / "src", "post", {}, lines.append, timeout=60, policy=policy)
    assert "killed: memory limit 64M reached" in str(err.value), (err.value, lines)
    assert "uid=250123" in lines and "HELD 512 MiB" not in lines, lines
