"""A slave behind the system OpenSSH (SPEC §4 and §10): no `gitserve serve` on it at all,
only a private sshd whose authorized_keys gitserve keeps, every key forced to `gitserve shell
USER` - the master's server key included, as `gitserve shell server-frodo`. The master's
mirror pushes, a clone from the slave and Gitolite's refusal of a push there all go through
sshd, as on a Gitolite site where the slave keeps port 22."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import disk_refs, wait_for
from tests.support.server import ADMIN, GitServer, _merge_settings
from tests.support.sshd import PrivateSshd
from tests.support.tools import REPO_ROOT, free_port, require_tool

SHELL_COMMAND = f"/usr/bin/env PYTHONPATH={REPO_ROOT} {sys.executable} -m gitserve"
CONF = """\
repo gitolite-admin
    RW+ = admin
repo viasshd
    RW+ = alice
repo gitolite-admin viasshd
    option mirror.master = frodo
    option mirror.slaves = sam
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GitServer, GitServer, PrivateSshd]]:
    for tool in ("git", "ssh", "ssh-keygen", "sshd"):
        require_tool(tool)
    from gitserve import adminrepo

    tmp = tmp_path_factory.mktemp("mirror-sshd")
    keys = GitServer(home=tmp / "unused", tmp=tmp)
    admin_key, alice_key = keys.keygen(ADMIN), keys.keygen("alice")
    frodo = GitServer(home=tmp / "frodo" / "home", tmp=tmp / "frodo")
    sam = GitServer(home=tmp / "sam" / "home", tmp=tmp / "sam")
    ak = tmp / "authorized_keys"
    ak.write_text("")
    ak.chmod(0o600)
    for srv in (frodo, sam):
        srv.tmp.mkdir(parents=True)
        srv.admin_cli("init", "--admin", ADMIN, "--admin-key", f"{admin_key}.pub")
        srv.keys.update({ADMIN: admin_key, "alice": alice_key})
    frodo.port = free_port()
    _merge_settings(sam.home, {"server": {"hostname": "sam", "authorized_keys": str(ak),
                                          "shell_command": SHELL_COMMAND}})
    sshd = PrivateSshd(tmp / "sshd", ak)
    frodo_key = frodo.admin_cli("admin", "server-key").stdout.strip()
    try:
        for srv in (sam, frodo):  # sam first: its authorized_keys must let frodo in
            settings = srv.settings
            adminrepo.add_key(settings, "server-frodo", frodo_key, "test")
            adminrepo.add_key(settings, "alice", Path(f"{alice_key}.pub").read_text(), "test")
            srv.set_conf(CONF)
            if srv is sam:
                sshd.start()
                _merge_settings(frodo.home, {
                    "server": {"hostname": "frodo"}, "builds": {"workers": 0},
                    "mirror": {"peers": f"frodo=git@127.0.0.1:{frodo.port} "
                                        f"sam={sshd.user}@127.0.0.1:{sshd.port}",
                               "catchup_interval": 1.0}})
        frodo.start(port=frodo.port)
        yield frodo, sam, sshd
    finally:
        frodo.stop()
        sshd.stop()


def test_a_slave_served_by_sshd_gets_the_pushes_and_refuses_its_own(pair) -> None:
    frodo, sam, sshd = pair
    wait_for(lambda: disk_refs(sam, "gitolite-admin") == disk_refs(frodo, "gitolite-admin"),
             timeout=60, what="the admin repo on sam through sshd")
    work = frodo.clone("alice", "viasshd")
    sha = frodo.commit("alice", work)
    frodo.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    wait_for(lambda: disk_refs(sam, "viasshd").get("refs/heads/main") == sha, timeout=60,
             what="the push on sam through sshd")
    env = frodo.client_env("alice")
    env["GIT_SSH_COMMAND"] = " ".join(sshd.ssh_command(alice_key(frodo)))
    clone = frodo.tmp / "from-sam"
    done = subprocess.run(["git", "clone", "-q", sshd.url("viasshd"), str(clone)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + sshd.log()[-2000:]
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, env=env, capture_output=True,
                          text=True).stdout.strip() == sha
    (clone / "more.txt").write_text("more\n")
    subprocess.run(["git", "add", "more.txt"], cwd=clone, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "more"], cwd=clone, env=env, check=True)
    refused = subprocess.run(["git", "push", "origin", "HEAD:refs/heads/main"], cwd=clone,
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "FATAL: sam: pushing 'viasshd' to copy 'sam' not allowed" in refused.stderr
    # the server key got no shell: it is `gitserve shell server-frodo` like any key
    block = sshd.authorized_keys.read_text()
    assert re.search(r'^command="[^"]* shell server-frodo",no-pty,', block, re.M), block


def alice_key(srv: GitServer) -> Path:
    return srv.key_for("alice")
