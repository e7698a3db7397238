"""A mirrored Gitolite site moves to gitserve and keeps working (SPEC §2, §10; issue 22).

The gitolite-admin checkout is the shape of Gitolite's own t/mirror-test-setup.sh: the
shared conf with `option mirror.copies-1` (Gitolite 3.6's name), per-host rules in
`include "%HOSTNAME.conf"`, and keydir/server-NAME.pub for each server. Each host runs
`gitserve init --from-gitolite CHECKOUT --hostname NAME` and gets its Gitolite server key
as HOME/server_key; then the two servers mirror as the Gitolite ones did, with the same
messages.
"""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from tests.support.cluster import Cluster, disk_refs, wait_for
from tests.support.server import GitServer, _merge_settings
from tests.support.tools import free_port, require_tool

CONF = """\
repo gitolite-admin
    RW+ = admin
    option mirror.master = frodo
    option mirror.copies-1 = sam
    option mirror.redirectOK = sam

repo r1
    RW+ = u1
    R   = u2
    option mirror.master = sam
    option mirror.copies-1 = frodo

include "%HOSTNAME.conf"
"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for tool in ("git", "ssh", "ssh-keygen"):
        require_tool(tool)
    tmp = tmp_path_factory.mktemp("glmirror")
    keys = GitServer(home=tmp / "unused", tmp=tmp)
    checkout = tmp / "gitolite-admin"
    (checkout / "conf").mkdir(parents=True)
    (checkout / "keydir").mkdir()
    (checkout / "conf" / "gitolite.conf").write_text(CONF)
    for host in ("frodo", "sam"):
        (checkout / "conf" / f"{host}.conf").write_text(f"repo l-{host}\n    RW = u1\n")
        server_key = keys.keygen(f"server-{host}")
        shutil.copy(f"{server_key}.pub", checkout / "keydir" / f"server-{host}.pub")
    for user in ("admin", "u1", "u2"):
        shutil.copy(f"{keys.keygen(user)}.pub", checkout / "keydir" / f"{user}.pub")
    ports = {"frodo": free_port(), "sam": free_port()}
    peers = " ".join(f"{h}=git@127.0.0.1:{p}" for h, p in ports.items())
    cluster = Cluster()
    for host in ("frodo", "sam"):
        srv = GitServer(home=tmp / host / "home", tmp=tmp / host)
        srv.tmp.mkdir(parents=True)
        out = srv.admin_cli("init", "--from-gitolite", str(checkout), "--hostname", host)
        assert "imported" in out.stdout, out.stdout
        _merge_settings(srv.home, {"mirror": {"peers": peers, "catchup_interval": 1.0},
                                   "builds": {"workers": 0}})
        for suffix in ("", ".pub"):  # the Gitolite server's own key pair, kept
            shutil.copy(f"{tmp / 'keys' / f'server-{host}'}{suffix}", f"{srv.home / 'server_key'}{suffix}")
        srv.keys.update({u: tmp / "keys" / u for u in ("admin", "u1", "u2")})
        srv.port = ports[host]
        cluster.servers[host] = srv
    try:
        for srv in cluster.servers.values():
            srv.start(port=srv.port)
        yield cluster
    finally:
        cluster.stop()


def test_hostname_includes_and_server_keys_work_after_the_import(imported: Cluster) -> None:
    frodo, sam = imported["frodo"], imported["sam"]
    assert frodo.settings.server.hostname == "frodo"
    assert "l-frodo" in frodo.ssh("u1", "info").stdout
    assert "l-sam" not in frodo.ssh("u1", "info").stdout
    assert "l-sam" in sam.ssh("u1", "info").stdout
    # a server key is a server, as in Gitolite's t/mirror-test ("hello server-frodo")
    assert "hello server-sam," in frodo.ssh("u1", "info", key=frodo.tmp.parent / "keys" / "server-sam").stdout


def test_r1_is_mastered_on_sam_and_mirrored_to_frodo(imported: Cluster) -> None:
    frodo, sam = imported["frodo"], imported["sam"]
    work = sam.clone("u1", "r1")
    sha = sam.commit("u1", work)
    sam.git("u1", "push", "-q", "origin", "HEAD:refs/heads/master", cwd=work)
    wait_for(lambda: disk_refs(frodo, "r1").get("refs/heads/master") == sha, what="r1 on frodo")
    fwork = frodo.clone("u2", "r1")  # a reader clones from the copy
    assert frodo.git("u2", "rev-parse", "HEAD", cwd=fwork).stdout.strip() == sha
    frodo.commit("u1", fwork)
    refused = frodo.git("u1", "push", frodo.url("r1"), "HEAD:refs/heads/master", cwd=fwork,
                        check=False)
    assert "FATAL: frodo: pushing 'r1' to copy 'frodo' not allowed" in refused.stderr


def test_the_admin_repo_is_mastered_on_frodo_and_a_push_via_sam_is_redirected(
        imported: Cluster) -> None:
    frodo, sam = imported["frodo"], imported["sam"]
    work = sam.clone("admin", "gitolite-admin")  # from the copy; redirectOK = sam
    (work / "conf" / "frodo.conf").write_text("repo l-frodo\n    RW = u1\nrepo l-new\n    RW = u2\n")
    sam.git("admin", "commit", "-qam", "l-new on frodo", cwd=work)
    done = sam.git("admin", "push", "origin", "HEAD:master", cwd=work, check=False)
    assert done.returncode == 0, done.stderr
    sha = sam.git("admin", "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert disk_refs(frodo, "gitolite-admin")["refs/heads/master"] == sha
    wait_for(lambda: disk_refs(sam, "gitolite-admin").get("refs/heads/master") == sha,
             what="the admin push mirrored back to sam")
    assert "l-new" in frodo.ssh("u2", "info").stdout  # frodo.conf is frodo's own
    assert "l-new" not in sam.ssh("u2", "info").stdout
