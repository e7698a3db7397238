"""An LFS lock taken on a mirror's copy protected nothing (issue 22 x SPEC §11), as a user
with a key attacks two real servers: frodo the master, sam its slave (redirectOK).

alice locked `a.psd` on sam (her remote): sam kept the lock in its own table (201), one no
push consults: sam forwards every push to frodo, and frodo's push check reads frodo's table.
Now a copy never keeps a lock: over HTTP it refuses, naming the master where locks are
kept; over ssh, where a redirectOK copy pipes the whole upload session to its master (as it
pipes a push), the lock is taken on the master, in the table pushes read. Failed before the
fix (the lock was created in sam's own table: 201 / status 201).
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Iterator

import pytest

from tests.support.cluster import Cluster, disk_refs, make_cluster, wait_for
from tests.support.httpkit import get, token

pytestmark = pytest.mark.timeout(180)

CONF = """\
repo gitolite-admin
    RW+ = admin
repo art
    RW+ = alice
    RW = bob
repo gitolite-admin art
    option mirror.master = frodo
    option mirror.slaves = sam
repo art
    option mirror.redirectOK = all
"""
MEDIA = {"Content-Type": "application/vnd.git-lfs+json",
         "Accept": "application/vnd.git-lfs+json"}


@pytest.fixture(scope="module")
def duo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("duo"), ["frodo", "sam"], CONF,
                           users=("alice", "bob"), http=("frodo", "sam"))
    try:
        frodo, sam = cluster["frodo"], cluster["sam"]
        wait_for(lambda: disk_refs(sam, "gitolite-admin") == disk_refs(frodo, "gitolite-admin"),
                 what="gitolite-admin on the slave")
        yield cluster
    finally:
        cluster.stop()


def _lock(srv, user: str, path: str) -> tuple[int, dict]:
    raw = f"{user}:{token(srv, user, 'lfs-' + path)}".encode()
    headers = {**MEDIA, "Authorization": "Basic " + base64.b64encode(raw).decode()}
    status, _, body = get(f"http://127.0.0.1:{srv.http_port}/art.git/info/lfs/locks", headers,
                          json.dumps({"path": path}).encode())
    return status, json.loads(body or b"{}")


def _locked_paths(srv, user: str) -> set[str]:
    """The locked paths SRV lists over HTTP."""
    raw = f"{user}:{token(srv, user, 'lfs-list')}".encode()
    headers = {**MEDIA, "Authorization": "Basic " + base64.b64encode(raw).decode()}
    status, _, body = get(f"http://127.0.0.1:{srv.http_port}/art.git/info/lfs/locks", headers)
    assert status == 200, body
    return {lock["path"] for lock in json.loads(body)["locks"]}


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def test_a_copy_takes_no_locks(duo: Cluster) -> None:
    frodo, sam = duo["frodo"], duo["sam"]
    status, body = _lock(sam, "alice", "a.psd")
    assert status == 403, body
    assert body["message"] == "sam: 'art' is a copy; LFS locks are kept on its master 'frodo'"
    proc = subprocess.run(
        sam.ssh_command(sam.key_for("alice")) + [f"git@{sam.host}", "git-lfs-transfer", "art",
                                                 "upload"],
        input=pkt(b"lock\n") + pkt(b"path=b.psd\n") + b"0000" + pkt(b"quit\n") + b"0000",
        capture_output=True, env=sam.client_env("alice"), timeout=60)
    # forwarded: taken on frodo, the master, whose push check reads it; sam keeps nothing
    assert b"status 201" in proc.stdout, proc.stdout
    assert _locked_paths(frodo, "alice") == {"b.psd"}
    assert _locked_paths(sam, "alice") == set()
    # on the master, where pushes are checked, alice locks as before
    status, body = _lock(frodo, "alice", "a.psd")
    assert status == 201, body
