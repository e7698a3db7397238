"""Mirroring end to end (SPEC §10, issue 22): three real gitserve servers on 127.0.0.1,
frodo the master and sam, gollum its slaves, driven with the real git and ssh clients.

The trio is shared by the module (starting three servers takes seconds); each test uses its
own repos. The failover test kills the master, so it runs last.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster, disk_refs, make_cluster, wait_for
from tests.support.tools import require_tool

CONF = """\
@mirrored = gitolite-admin plain syncd redir noredir survive down status lfsrepo unacked w/..*
repo gitolite-admin
    RW+ = admin
repo plain syncd redir noredir survive down status lfsrepo unacked
    RW+ = alice
    R = bob
repo w/CREATOR/..*
    C = alice
    RW+ = CREATOR
    RW = WRITERS
    R = READERS
repo @mirrored
    option mirror.master = frodo
    option mirror.slaves = sam gollum
repo syncd survive unacked
    option mirror.sync = 1
repo redir
    option mirror.redirectOK = all
repo local-only
    RW+ = alice
"""


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("trio"), ["frodo", "sam", "gollum"], CONF,
                           users=("alice", "bob"), http=("frodo",))
    try:
        # the master's admin repo (keys and rules) reaches both slaves on its own
        frodo = cluster["frodo"]
        wait_for(lambda: all(disk_refs(cluster[s], "gitolite-admin")
                             == disk_refs(frodo, "gitolite-admin") for s in ("sam", "gollum")),
                 what="gitolite-admin on the slaves")
        yield cluster
    finally:
        cluster.stop()


def _work(srv, repo: str, user: str = "alice") -> Path:
    return srv.clone(user, repo)


def _push_new(srv, work: Path, user: str = "alice", ref: str = "HEAD:refs/heads/main",
              url: str | None = None) -> tuple[str, object]:
    sha = srv.commit(user, work)
    done = srv.git(user, "push", url or "origin", ref, cwd=work, check=False)
    return sha, done


def test_a_clone_from_a_slave_has_what_was_pushed_to_the_master(trio: Cluster) -> None:
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = _work(frodo, "plain")
    sha, done = _push_new(frodo, work)
    assert done.returncode == 0, done.stderr
    frodo.git("alice", "tag", "v1", cwd=work)
    frodo.git("alice", "push", "origin", "v1", cwd=work)
    for slave in (sam, gollum):
        wait_for(lambda slave=slave: disk_refs(slave, "plain").get("refs/tags/v1") == sha,
                 what="the push on the slave")
        clone = slave.clone("bob", "plain")  # bob reads on the slave with the mirrored rules
        assert slave.git("bob", "rev-parse", "HEAD", cwd=clone).stdout.strip() == sha
        assert (clone / "file.txt").exists()
    # a deleted branch is deleted on the slaves too
    frodo.git("alice", "push", "origin", "HEAD:refs/heads/tmp", cwd=work)
    wait_for(lambda: "refs/heads/tmp" in disk_refs(sam, "plain"), what="tmp on sam")
    frodo.git("alice", "push", "origin", ":refs/heads/tmp", cwd=work)
    wait_for(lambda: "refs/heads/tmp" not in disk_refs(sam, "plain")
             and "refs/heads/tmp" not in disk_refs(gollum, "plain"), what="tmp gone")
    assert disk_refs(sam, "plain") == disk_refs(frodo, "plain") == disk_refs(gollum, "plain")


def test_with_mirror_sync_1_every_acknowledged_push_is_on_a_slave(trio: Cluster) -> None:
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = _work(frodo, "syncd")
    for i in range(15):
        sha, done = _push_new(frodo, work)
        assert done.returncode == 0, done.stderr
        # at the moment git push returned: read the slaves' disks, no waiting
        on = [n for n, s in (("sam", sam), ("gollum", gollum))
              if disk_refs(s, "syncd").get("refs/heads/main") == sha]
        assert on, f"push {i} ({sha[:12]}) acknowledged but on no slave"


def test_wild_repo_creator_perms_and_description_are_carried(trio: Cluster) -> None:
    frodo, sam = trio["frodo"], trio["sam"]
    work = frodo.tmp / "wild-work"
    frodo.git("alice", "clone", "-q", frodo.url("w/alice/tool"), str(work))
    _push_new(frodo, work)
    out = frodo.ssh("alice", "perms", "w/alice/tool", "+", "READERS", "bob")
    assert out.returncode == 0, out.stderr
    out = frodo.ssh("alice", "desc", "w/alice/tool", "the", "tool")
    assert out.returncode == 0, out.stderr
    repo = sam.repo_path("w/alice/tool")
    wait_for(lambda: (repo / "gl-perms").exists()
             and "bob" in (repo / "gl-perms").read_text()
             and (repo / "description").read_text().strip() == "the tool", what="meta on sam")
    assert (repo / "gl-creator").read_text().strip() == "alice"
    # bob is a READER on the slave, by the carried gl-perms
    info = sam.ssh("bob", "info").stdout
    assert re.search(r"^ R\s+w/alice/tool$", info, re.M), info
    assert sam.ssh("bob", "desc", "w/alice/tool").stdout.strip() == "the tool"
    # changes on a slave's copy would be undone by the master: refused, naming the master
    for cmd in (("perms", "w/alice/tool", "+", "WRITERS", "bob"),
                ("desc", "w/alice/tool", "other"), ("perms", "-c", "w/alice/new", "-l")):
        out = sam.ssh("alice", *cmd)
        assert out.returncode == 25, cmd  # FATAL exits as Gitolite's die (gitolite helper, issue 24)
        name = [a for a in cmd[1:] if a.startswith("w/")][0]
        assert f"FATAL: sam: '{name}' is a copy; change it on its master 'frodo'" in out.stderr
    assert not sam.repo_path("w/alice/new").exists()
    assert "bob" in sam.ssh("alice", "perms", "w/alice/tool", "-l").stdout  # reading is fine
    assert "WRITERS" not in (repo / "gl-perms").read_text()


def test_a_push_to_a_slave_with_redirectok_lands_on_the_master(trio: Cluster) -> None:
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = _work(sam, "redir")  # cloned from the slave
    sha, done = _push_new(sam, work)
    assert done.returncode == 0, done.stderr
    assert "-> main" in done.stderr
    assert disk_refs(frodo, "redir")["refs/heads/main"] == sha  # the master has it at once
    for slave in (sam, gollum):
        wait_for(lambda slave=slave: disk_refs(slave, "redir").get("refs/heads/main") == sha,
                 what="the redirected push mirrored back")
    # the master applies the rules as the user: bob (R only) is refused by the master
    sam.git("bob", "fetch", "-q", cwd=work, check=False)
    refused = sam.git("bob", "push", "origin", "HEAD:refs/heads/bob", cwd=work, check=False)
    assert refused.returncode != 0
    assert "W any redir bob DENIED by fallthru" in refused.stderr
    assert "refs/heads/bob" not in disk_refs(frodo, "redir")


def test_a_push_to_a_slave_without_redirectok_is_refused_as_gitolite_does(trio: Cluster) -> None:
    frodo, sam = trio["frodo"], trio["sam"]
    work = _work(sam, "noredir")
    sha, done = _push_new(sam, work)
    assert done.returncode != 0
    assert "FATAL: sam: pushing 'noredir' to copy 'sam' not allowed" in done.stderr
    assert disk_refs(sam, "noredir") == {} and disk_refs(frodo, "noredir") == {}
    # a user key cannot pretend to be a slave forwarding a push
    out = frodo.ssh("alice", "USER=admin SOC=git-receive-pack 'noredir'")
    assert out.returncode != 0 and "'alice' is not a valid server name" in out.stderr


def test_admin_changes_on_the_master_rule_every_slave(trio: Cluster) -> None:
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    admin_work = frodo.clone("admin", "gitolite-admin")
    conf = admin_work / "conf" / "gitolite.conf"
    conf.write_text(conf.read_text() + "repo newrepo\n    RW+ = alice\n"
                    "    option mirror.master = frodo\n    option mirror.slaves = sam gollum\n")
    frodo.git("admin", "commit", "-qam", "newrepo", cwd=admin_work)
    frodo.git("admin", "push", "-q", "origin", "HEAD:master", cwd=admin_work)
    for slave in (sam, gollum):
        wait_for(lambda slave=slave: slave.repo_path("newrepo").is_dir(), what="newrepo compiled on slave")
        assert "newrepo" in slave.ssh("alice", "info").stdout
    # an admin push to a slave is refused (no redirectOK for gitolite-admin)
    slave_admin = sam.clone("admin", "gitolite-admin")
    (slave_admin / "x").write_text("x")
    sam.git("admin", "add", "x", cwd=slave_admin)
    sam.git("admin", "commit", "-qm", "x", cwd=slave_admin)
    refused = sam.git("admin", "push", "origin", "HEAD:master", cwd=slave_admin, check=False)
    assert "FATAL: sam: pushing 'gitolite-admin' to copy 'sam' not allowed" in refused.stderr


def test_mirror_push_and_status_commands(trio: Cluster) -> None:
    frodo = trio["frodo"]
    work = _work(frodo, "status")
    _push_new(frodo, work)
    wait_for(lambda: "in sync" in frodo.ssh("alice", "mirror", "status", "status").stdout
             and "behind" not in frodo.ssh("alice", "mirror", "status", "status").stdout,
             what="status in sync")
    out = frodo.ssh("alice", "mirror", "status", "status").stdout
    assert sorted(line.split("\t")[1] for line in out.splitlines()) == ["gollum", "sam"]
    out = frodo.ssh("alice", "mirror", "push", "sam", "status")
    assert out.returncode == 0, out.stderr
    assert "Everything up-to-date" in out.stderr or "up to date" in out.stderr.lower() \
        or out.stderr.strip() == "" or "[up to date]" in out.stderr
    out = frodo.ssh("alice", "mirror", "push", "merry", "status")
    assert out.returncode == 25 and "FATAL: 'merry' not a valid copy for 'status'" in out.stderr
    # Gitolite's status output is empty when the last push went well
    assert frodo.ssh("alice", "mirror", "status", "sam", "status").stdout == ""
    # a repo alice cannot read looks exactly like one that does not exist
    assert "not a valid copy" in frodo.ssh("bob", "mirror", "push", "sam", "local-only").stderr
    # the same on the server's command line
    out = frodo.admin_cli("mirror", "status", "status").stdout
    assert "status: master on frodo; master frodo" in out and "  sam: in sync" in out, out
    assert frodo.admin_cli("mirror", "status").stdout.strip() == ""  # no failed push anywhere
    assert frodo.admin_cli("mirror", "push", "gollum", "status").returncode == 0
    bad = frodo.admin_cli("mirror", "push", "merry", "status", check=False)
    assert bad.returncode == 1 and "no address for server 'merry'" in bad.stderr
    assert "Traceback" not in bad.stderr
    # /metrics counts the master's mirror pushes and their lag, per slave
    text = urllib.request.urlopen(f"http://127.0.0.1:{frodo.http_port}/metrics",
                                  timeout=30).read().decode()
    ok = re.search(r'^gitserve_mirror_pushes_total\{result="ok",slave="sam"\} (\S+)$', text, re.M)
    assert ok and float(ok.group(1)) >= 1, text[-2000:]
    lag = re.search(r'^gitserve_mirror_lag_seconds_count\{slave="gollum"\} (\S+)$', text, re.M)
    assert lag and float(lag.group(1)) >= 1


def _lfs_env(srv, user: str, home: Path) -> dict[str, str]:
    env = srv.client_env(user)
    env["HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True,
                   capture_output=True)
    return env


def test_lfs_objects_are_carried_to_the_slaves(trio: Cluster) -> None:
    require_tool("git-lfs")
    frodo, sam = trio["frodo"], trio["sam"]
    env = _lfs_env(frodo, "alice", frodo.tmp / "lfs-alice")
    work = frodo.tmp / "lfs-work"
    subprocess.run(["git", "clone", "-q", frodo.url("lfsrepo"), str(work)], env=env, check=True)
    subprocess.run(["git", "lfs", "track", "*.bin"], cwd=work, env=env, check=True,
                   capture_output=True)
    data = os.urandom(300_000)
    (work / "big.bin").write_bytes(data)
    subprocess.run(["git", "add", ".gitattributes", "big.bin"], cwd=work, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "big"], cwd=work, env=env, check=True)
    push = subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], cwd=work,
                          env=env, capture_output=True, text=True)
    assert push.returncode == 0, push.stderr
    wait_for(lambda: disk_refs(sam, "lfsrepo") == disk_refs(frodo, "lfsrepo"), what="refs on sam")
    # a reader clones from the slave and gets the content, over ssh only
    benv = _lfs_env(sam, "bob", sam.tmp / "lfs-bob")
    clone = sam.tmp / "lfs-clone"
    done = subprocess.run(["git", "clone", "-q", sam.url("lfsrepo"), str(clone)], env=benv,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (clone / "big.bin").read_bytes() == data


def test_a_push_the_slaves_do_not_confirm_is_not_acknowledged(trio: Cluster) -> None:
    """mirror.sync = 1 with both slaves down: git push fails (not acknowledged), the master
    keeps the commit, and the slaves get it when they are back."""
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = _work(frodo, "unacked")
    _push_new(frodo, work)
    sam.stop()
    gollum.stop()
    try:
        sha, done = _push_new(frodo, work)
        assert done.returncode != 0
        assert "mirror.sync: 0 of 1 slave(s) confirmed" in done.stderr
        assert "WARNING: mirror.sync = 1 but only 0 slave(s) confirmed" in done.stderr
        assert disk_refs(frodo, "unacked")["refs/heads/main"] == sha
    finally:
        sam.start(port=sam.port)
        gollum.start(port=gollum.port)
    wait_for(lambda: disk_refs(sam, "unacked").get("refs/heads/main") == sha
             and disk_refs(gollum, "unacked").get("refs/heads/main") == sha, timeout=60,
             what="the slaves to get the unacknowledged push")


def test_server_keys_only_do_what_gitolite_lets_a_peer_do(trio: Cluster) -> None:
    """An attacker holding sam's server key (not the master of anything): it cannot push
    into frodo's repos, set their meta, read repos it does not mirror, or pose as a user
    through a slave's redirect line for a repo without redirectOK."""
    frodo, sam = trio["frodo"], trio["sam"]
    key = sam.home / "server_key"
    out = frodo.ssh("alice", "mirror", "meta", "plain", key=key, input='{"perms": "READERS @all"}')
    assert out.returncode != 0 and "FATAL: frodo: 'plain' is native" in out.stderr
    out = frodo.ssh("alice", "git-receive-pack 'plain'", key=key)
    assert out.returncode != 0 and "FATAL: frodo: 'plain' is native" in out.stderr
    out = frodo.ssh("alice", "USER=alice SOC=git-receive-pack 'noredir'", key=key)
    assert out.returncode != 0 and "FATAL: frodo: redirection not allowed from 'sam'" in out.stderr
    out = frodo.ssh("alice", "git-upload-pack 'local-only'", key=key)
    assert out.returncode != 0 and "DENIED" in out.stderr
    # and the same key used by a user on the slave: a user key cannot send peer commands
    out = frodo.ssh("alice", "mirror", "meta", "plain", input="{}")
    assert out.returncode != 0 and "Usage:" in out.stderr
    assert not (frodo.repo_path("plain") / "gl-perms").exists()


def test_a_slave_down_for_50_pushes_catches_up(trio: Cluster) -> None:
    frodo, gollum = trio["frodo"], trio["gollum"]
    work = _work(frodo, "down")
    _push_new(frodo, work)
    wait_for(lambda: disk_refs(gollum, "down") == disk_refs(frodo, "down"), what="first sync")
    gollum.stop()
    try:
        for i in range(50):
            sha, done = _push_new(frodo, work, ref=f"HEAD:refs/heads/b{i % 5}")
            assert done.returncode == 0, done.stderr
        out = frodo.ssh("alice", "mirror", "status", "all", "down").stdout
        assert "WARNING: previous mirror push of repo 'down' to host 'gollum' failed" in out
    finally:
        gollum.start(port=gollum.port)
    wait_for(lambda: disk_refs(gollum, "down") == disk_refs(frodo, "down"), timeout=60,
             what="gollum to catch up")
    wait_for(lambda: frodo.ssh("alice", "mirror", "status", "all", "down").stdout == "",
             what="the failure status to clear")


def test_kill_master_during_pushes_then_promote_loses_no_acknowledged_push(
        trio: Cluster) -> None:
    """kill -9 of the master mid-loop (mirror.sync = 1), promote sam, go on pushing to sam:
    every push git acknowledged is on the survivors, whose ref lists end up equal."""
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work = _work(frodo, "survive")
    attempts: list[tuple[str, str, int]] = []  # (ref, sha, git push's exit status)

    def push_loop() -> None:  # pushes back to back until the master is clearly gone
        failures = 0
        for i in range(200):
            sha, done = _push_new(frodo, work, ref=f"HEAD:refs/heads/p{i}")
            attempts.append((f"refs/heads/p{i}", sha, done.returncode))
            failures = failures + 1 if done.returncode else 0
            if failures >= 3:
                return

    pusher = threading.Thread(target=push_loop)
    pusher.start()
    try:
        wait_for(lambda: sum(1 for a in attempts if a[2] == 0) >= 10, timeout=120,
                 what="10 acknowledged pushes")
    finally:
        trio.kill9("frodo")  # while the next push is on its way
        pusher.join(180)
    acked = {ref: sha for ref, sha, rc in attempts if rc == 0}
    assert len(acked) >= 10 and attempts[-1][2] != 0
    out = sam.admin_cli("mirror", "promote")
    assert "sam is now the master" in out.stdout, out.stdout + out.stderr
    # the users go on with sam
    sam_url = sam.url("survive")
    for i in range(300, 310):
        sha, done = _push_new(sam, work, ref=f"HEAD:refs/heads/p{i}", url=sam_url)
        assert done.returncode == 0, done.stderr
        acked[f"refs/heads/p{i}"] = sha
    for name, srv in (("sam", sam), ("gollum", gollum)):
        refs = disk_refs(srv, "survive") if name == "sam" else None
        if refs is not None:
            lost = {r: s for r, s in acked.items() if refs.get(r) != s}
            assert not lost, f"acknowledged pushes lost on {name}: {sorted(lost)}"
    wait_for(lambda: disk_refs(gollum, "survive") == disk_refs(sam, "survive"), timeout=60,
             what="gollum to follow the new master")
    wait_for(lambda: disk_refs(gollum, "gitolite-admin") == disk_refs(sam, "gitolite-admin"),
             what="the new admin conf on gollum")
    assert "option mirror.master = sam" in sam.git(
        "admin", "show", "master:conf/gitolite.conf", cwd=sam.repo_path("gitolite-admin")).stdout
    # pushes to gollum are now refused as to a slave of sam
    gwork = gollum.clone("alice", "noredir")
    _sha, done = _push_new(gollum, gwork)
    assert "FATAL: gollum: pushing 'noredir' to copy 'gollum' not allowed" in done.stderr
    # the old master comes back as sam's slave: `gitserve mirror rejoin sam` before it starts
    out = frodo.admin_cli("mirror", "rejoin", "sam")
    assert "frodo is its slave" in out.stdout, out.stdout + out.stderr
    frodo.start(port=frodo.port)
    wait_for(lambda: disk_refs(frodo, "survive") == disk_refs(sam, "survive"), timeout=60,
             what="the old master to take the new master's state")
    _sha, done = _push_new(frodo, work, ref="HEAD:refs/heads/late")
    assert "FATAL: frodo: pushing 'survive' to copy 'frodo' not allowed" in done.stderr
