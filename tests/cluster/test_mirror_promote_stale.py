"""Promoting a stale slave (issue 22): `gitserve mirror promote` on a slave that missed pushes
while another slave, the only one that has them, is down.

With `mirror.sync = 1` an acknowledged push is on at least one slave. If that slave is down
when a staler one is promoted, the new master's state is older, and once the down slave is
back the new master's mirror push (`--force --prune`) replaces the acknowledged push with
it. Before: promote went ahead (the down slave only appeared as "not reachable") and the
push was lost. Now promote refuses, naming the slave, until it is back (or `--force`)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.cluster import Cluster, disk_refs, make_cluster, wait_for

pytestmark = pytest.mark.timeout(240)

CONF = """\
repo gitolite-admin
    RW+ = admin
repo acked
    RW+ = alice
repo gitolite-admin acked
    option mirror.master = frodo
    option mirror.slaves = sam gollum
repo acked
    option mirror.sync = 1
"""


@pytest.fixture
def trio(tmp_path) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path, ["frodo", "sam", "gollum"], CONF, users=("alice",))
    try:
        frodo = cluster["frodo"]
        wait_for(lambda: all(disk_refs(cluster[s], "gitolite-admin")
                             == disk_refs(frodo, "gitolite-admin") for s in ("sam", "gollum")),
                 what="gitolite-admin on the slaves")
        yield cluster
    finally:
        cluster.stop()


def test_a_stale_slave_is_not_promoted_over_an_absent_fresher_one(trio: Cluster) -> None:
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = frodo.clone("alice", "acked")
    first = frodo.commit("alice", work)
    frodo.git("alice", "push", "origin", "HEAD:refs/heads/main", cwd=work)
    wait_for(lambda: all(disk_refs(s, "acked").get("refs/heads/main") == first
                         for s in (sam, gollum)), what="the first push on both slaves")
    sam.stop()  # sam misses the next push; gollum confirms it (mirror.sync = 1)
    acked = frodo.commit("alice", work)
    frodo.git("alice", "push", "origin", "HEAD:refs/heads/main", cwd=work)
    assert disk_refs(gollum, "acked").get("refs/heads/main") == acked
    trio.kill9("frodo")
    sam.start(port=sam.port)
    gollum.stop()  # the one slave with the acknowledged push is away now
    out = sam.admin_cli("mirror", "promote", check=False)
    assert out.returncode != 0
    assert out.stderr.startswith("gitserve: not promoted: cannot ask gollum (2 repos: "
                                 "acked gitolite-admin) how far it got; it may hold "
                                 "acknowledged pushes"), out.stderr
    assert len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr
    conf = (sam.home / "repositories" / "gitolite-admin.git")
    assert sam.git("admin", "--git-dir", str(conf), "show", "master:conf/gitolite.conf"
                   ).stdout.count("mirror.master = frodo") == 1  # nothing changed
    # gollum back: promote takes its newer state, and the acknowledged push survives
    gollum.start(port=gollum.port)
    out = sam.admin_cli("mirror", "promote")
    assert "acked: took the newer state of gollum" in out.stdout, out.stdout
    assert disk_refs(sam, "acked").get("refs/heads/main") == acked
    wait_for(lambda: disk_refs(gollum, "gitolite-admin") == disk_refs(sam, "gitolite-admin"),
             what="gollum takes sam's promotion")
    after = sam.clone("alice", "acked")
    assert sam.git("alice", "rev-parse", "HEAD", cwd=after).stdout.strip() == acked
    assert disk_refs(gollum, "acked").get("refs/heads/main") == acked
