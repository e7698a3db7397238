"""Mirroring's edges (issue 22): LFS uploads made to a slave, and what a peer or a user with
partial rights can try against a mirror. Three real gitserve servers on 127.0.0.1 (frodo the
master, sam and gollum its slaves; sam also serves HTTP), the real git, git-lfs and ssh.

Every test here failed before the fix it names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cluster import Cluster, disk_refs, make_cluster, wait_for
from tests.support.httpkit import get, token
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(240)

CONF = """\
@mirrored = gitolite-admin lredir lnoredir w/..*
repo gitolite-admin
    RW+ = admin
repo lredir lnoredir
    RW+ = alice
    R = bob
repo w/CREATOR/..*
    C = alice
    RW+ = CREATOR
repo @mirrored
    option mirror.master = frodo
    option mirror.slaves = sam gollum
repo lredir w/alice/r..*
    option mirror.redirectOK = all
"""


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("edges"), ["frodo", "sam", "gollum"], CONF,
                           users=("alice", "bob"), http=("sam",))
    try:
        frodo = cluster["frodo"]
        wait_for(lambda: all(disk_refs(cluster[s], "gitolite-admin")
                             == disk_refs(frodo, "gitolite-admin") for s in ("sam", "gollum")),
                 what="gitolite-admin on the slaves")
        yield cluster
    finally:
        cluster.stop()


# --- LFS uploads to a slave ----------------------------------------------------------

def lfs_env(srv, user: str, home: Path) -> dict[str, str]:
    env = srv.client_env(user)
    env["HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True,
                   capture_output=True)
    return env


def stored(srv, repo: str, oid: str) -> bool:
    return (srv.home / "lfs" / f"{repo}.git" / "objects" / oid[:2] / oid[2:4] / oid).is_file()


def lfs_commit(srv, user: str, repo: str, tag: str) -> tuple[Path, dict[str, str], bytes, str]:
    """A clone of REPO from SRV with one new LFS file committed (not pushed)."""
    require_tool("git-lfs")
    env = lfs_env(srv, user, srv.tmp / f"lfs-{tag}")
    work = srv.tmp / f"work-{tag}"
    subprocess.run(["git", "clone", "-q", srv.url(repo), str(work)], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "lfs", "track", "*.bin"], cwd=work, env=env, check=True,
                   capture_output=True)
    data = os.urandom(200_000)
    (work / "big.bin").write_bytes(data)
    subprocess.run(["git", "add", ".gitattributes", "big.bin"], cwd=work, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", tag], cwd=work, env=env, check=True)
    return work, env, data, hashlib.sha256(data).hexdigest()


def test_an_lfs_upload_to_a_redirecting_slave_lands_on_the_master(trio: Cluster) -> None:
    """Before: git-lfs stored the object on sam, the forwarded push reached frodo without it,
    and frodo mirrored refs naming an object neither it nor gollum had."""
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    work, env, data, oid = lfs_commit(sam, "alice", "lredir", "redir")
    push = subprocess.run(["git", "push", "origin", "HEAD:refs/heads/main"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert push.returncode == 0, push.stderr
    assert stored(frodo, "lredir", oid), "the master has not got the object the push names"
    wait_for(lambda: disk_refs(gollum, "lredir") == disk_refs(frodo, "lredir"), what="gollum")
    assert stored(gollum, "lredir", oid)  # carried before the refs, as for a push to frodo
    for srv in (gollum, frodo):  # a reader clones from the other slave and from the master
        benv = lfs_env(srv, "bob", srv.tmp / f"lfs-bob-{srv.port}")
        clone = srv.tmp / f"clone-redir-{srv.port}"
        done = subprocess.run(["git", "clone", "-q", srv.url("lredir"), str(clone)], env=benv,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert (clone / "big.bin").read_bytes() == data
    # a slave that lacks an object its master has (lost, or refs that overtook it) fetches
    # it from the master for the clone: before, the clone failed on the missing object
    lost = gollum.home / "lfs" / "lredir.git" / "objects" / oid[:2] / oid[2:4] / oid
    lost.unlink()
    benv = lfs_env(gollum, "bob", gollum.tmp / "lfs-bob-again")
    clone = gollum.tmp / "clone-redir-again"
    done = subprocess.run(["git", "clone", "-q", gollum.url("lredir"), str(clone)], env=benv,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (clone / "big.bin").read_bytes() == data
    assert stored(gollum, "lredir", oid)  # kept, checked by its sha256
    # the master answers `mirror lfs-get` to the servers of the repo only, never to a user
    out = subprocess.run(frodo.ssh_command(frodo.key_for("alice")) + [
        "git@127.0.0.1", "mirror", "lfs-get", "lredir", oid], capture_output=True, timeout=60)
    assert out.returncode != 0 and data[:64] not in out.stdout


def test_an_lfs_upload_to_a_slave_without_redirect_is_refused_with_gitolites_line(
        trio: Cluster) -> None:
    """Before: `git lfs push` (git's own push is refused by the slave before git-lfs runs)
    stored the object on sam, where nothing ever used it."""
    sam = trio["sam"]
    work, env, _data, oid = lfs_commit(sam, "alice", "lnoredir", "noredir")
    push = subprocess.run(["git", "lfs", "push", "origin", "HEAD"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert not stored(sam, "lnoredir", oid)
    assert push.returncode != 0, push.stdout + push.stderr[-3000:]
    assert "sam: pushing 'lnoredir' to copy 'sam' not allowed" in push.stderr, push.stderr
    assert "Traceback" not in push.stderr
    assert not stored(sam, "lnoredir", oid)


def test_an_lfs_upload_over_http_to_a_slave_is_refused(trio: Cluster) -> None:
    """HTTP pushes to a slave are refused (not forwarded); its LFS uploads the same way.
    Before: the batch offered an upload action and sam kept the object."""
    sam = trio["sam"]
    secret = token(sam, "alice", "edges")
    auth = base64.b64encode(f"alice:{secret}".encode()).decode()
    oid = hashlib.sha256(b"x").hexdigest()
    body = json.dumps({"operation": "upload", "transfers": ["basic"],
                       "objects": [{"oid": oid, "size": 1}]}).encode()
    headers = {"Authorization": f"Basic {auth}", "Accept": "application/vnd.git-lfs+json",
               "Content-Type": "application/vnd.git-lfs+json"}
    base = f"http://127.0.0.1:{sam.http_port}/lredir.git/info/lfs"  # type: ignore[attr-defined]
    status, _, answer = get(f"{base}/objects/batch", headers, body)
    assert status == 403, answer
    assert json.loads(answer)["message"] == "sam: pushing 'lredir' to copy 'sam' not allowed"
    # bob (R only) is told what he is always told, nothing about mirroring
    bob = base64.b64encode(f"bob:{token(sam, 'bob', 'edges')}".encode()).decode()
    status, _, answer = get(f"{base}/objects/batch", {**headers, "Authorization": f"Basic {bob}"},
                            body)
    assert status == 403 and b"copy" not in answer, answer
    # downloads stay a slave's job
    body = json.dumps({"operation": "download", "objects": [{"oid": oid, "size": 1}]}).encode()
    status, _, answer = get(f"{base}/objects/batch", headers, body)
    assert status == 200, answer



# --- a peer or a user with partial rights ---------------------------------------------

def test_a_slaves_key_cannot_rule_another_slave_by_announcing_itself_master(
        trio: Cluster) -> None:
    """sam's server key (stolen, or sam compromised) pushes gollum a gitolite-admin that names
    sam the master, as `mirror promote` does, plus a rule of its own. Before: gollum took it
    whole (the check only asked that the tree name sam the master and gollum a slave), so one
    slave's key ruled every other slave and shut the real master out. Now only the exact
    promotion commit on gollum's own admin tip is taken, and only while frodo, the master,
    does not answer (else sam's next admin push, as gollum's master, could carry anything)."""
    from gitserve.mirror.promotion import rewrite_conf

    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    frodo.add_user("carol")  # one admin change of the real master, so an older tip exists
    wait_for(lambda: disk_refs(gollum, "gitolite-admin") == disk_refs(frodo, "gitolite-admin"),
             what="frodo's admin change on gollum")
    stolen = sam.home / "server_key"
    work = gollum.tmp / "stolen-admin"
    gollum.git("x", "clone", "-q", gollum.url("gitolite-admin"), str(work), key=stolen)
    before = disk_refs(gollum, "gitolite-admin")
    conf = work / "conf" / "gitolite.conf"
    promoted, _old = rewrite_conf(conf.read_text(), "sam")
    conf.write_text(promoted + "repo lnoredir\n    R = mallory\n")  # the promotion, plus more
    gollum.git("x", "commit", "-qam", "mirror promote: sam is the master now", cwd=work,
               key=stolen)
    push = gollum.git("x", "push", "origin", "HEAD:refs/heads/master", cwd=work, key=stolen,
                      check=False)
    assert push.returncode != 0
    assert ("gollum: 'sam' is not the master for 'gitolite-admin' (a promotion changes only "
            "mirror.master and mirror.slaves)") in push.stderr, push.stderr
    assert disk_refs(gollum, "gitolite-admin") == before
    # a promotion on an older tip (before carol's key: what the master changed since) too
    gollum.git("x", "reset", "-q", "--hard", "HEAD~2", cwd=work, key=stolen)
    promoted, _old = rewrite_conf(conf.read_text(), "sam")
    conf.write_text(promoted)
    gollum.git("x", "commit", "-qam", "mirror promote: sam is the master now", cwd=work,
               key=stolen)
    push = gollum.git("x", "push", "-f", "origin", "HEAD:refs/heads/master", cwd=work,
                      key=stolen, check=False)
    assert push.returncode != 0 and "a promotion is one commit on this host's admin tip" in \
        push.stderr, push.stderr
    assert disk_refs(gollum, "gitolite-admin") == before
    # the exact promotion commit on gollum's tip, while frodo is alive: taking it would make
    # sam gollum's master, and sam's next admin push could carry anything (keys, rules)
    gollum.git("x", "fetch", "-q", "origin", cwd=work, key=stolen)
    gollum.git("x", "reset", "-q", "--hard", "origin/master", cwd=work, key=stolen)
    promoted, _old = rewrite_conf(conf.read_text(), "sam")
    conf.write_text(promoted)
    gollum.git("x", "commit", "-qam", "mirror promote: sam is the master now", cwd=work,
               key=stolen)
    push = gollum.git("x", "push", "origin", "HEAD:refs/heads/master", cwd=work, key=stolen,
                      check=False)
    assert push.returncode != 0 and "'frodo' still answers; a promotion is taken only while " \
        "the master is down" in push.stderr, push.stderr
    assert disk_refs(gollum, "gitolite-admin") == before
    # the real master still rules gollum
    frodo.add_user("dave")
    wait_for(lambda: disk_refs(gollum, "gitolite-admin") == disk_refs(frodo, "gitolite-admin"),
             what="frodo's admin change on gollum")


def test_a_wild_repo_is_never_created_on_a_slave(trio: Cluster) -> None:
    """alice may create w/alice/*; on sam (a copy of w/..*) a read or a refused push created
    the repo there (Gitolite's order: creation before its mirroring check), a repo the master
    never knew and nothing mirrored. Now sam refuses and creates nothing; a push redirectOK
    allows goes to frodo, which creates the repo and mirrors it back."""
    frodo, sam = trio["frodo"], trio["sam"]
    out = sam.git("alice", "ls-remote", sam.url("w/alice/stray"), check=False)
    assert out.returncode != 0
    assert "sam: 'w/alice/stray' is a copy; create it on its master 'frodo'" in out.stderr, \
        out.stderr
    assert not sam.repo_path("w/alice/stray").exists()
    work = sam.tmp / "made"
    work.mkdir()
    sam.git("alice", "init", "-q", str(work))
    sha = sam.commit("alice", work)
    push = sam.git("alice", "push", sam.url("w/alice/rmade"), "HEAD:refs/heads/main", cwd=work,
                   check=False)
    assert push.returncode == 0, push.stderr
    assert disk_refs(frodo, "w/alice/rmade").get("refs/heads/main") == sha
    assert (frodo.repo_path("w/alice/rmade") / "gl-creator").read_text().strip() == "alice"
    wait_for(lambda: disk_refs(sam, "w/alice/rmade").get("refs/heads/main") == sha,
             what="the new repo mirrored back to sam")
    # bob may not create anything: he is told what he always was
    out = sam.git("bob", "ls-remote", sam.url("w/bob/x"), check=False)
    assert out.returncode != 0 and "DENIED" in out.stderr and "copy" not in out.stderr


def test_mirror_push_by_a_non_admin_changes_nothing_it_may_not(trio: Cluster) -> None:
    """`mirror push` is Gitolite's (any user may ask the master to push a repo to a copy it
    names); gitserve also wants R. Checked, not a hole: run on a slave it cannot make that
    slave push to another (case 2 refuses a non-master), and a repo the user cannot read, or
    a host that is not its copy, gets Gitolite's one line."""
    frodo, sam, gollum = trio["frodo"], trio["sam"], trio["gollum"]
    before = disk_refs(gollum, "lredir")
    out = sam.ssh("bob", "mirror", "push", "gollum", "lredir")
    assert out.returncode != 0
    assert "gollum: 'sam' is not the master for 'lredir'" in out.stderr, out.stderr
    assert disk_refs(gollum, "lredir") == before
    out = frodo.ssh("carol", "mirror", "push", "gollum", "lredir")  # carol: no rights on it
    assert out.returncode != 0 and "'gollum' not a valid copy for 'lredir'" in out.stderr
    out = frodo.ssh("bob", "mirror", "push", "frodo", "lredir")  # the master is no copy
    assert out.returncode != 0 and "'frodo' not a valid copy for 'lredir'" in out.stderr
    out = frodo.ssh("bob", "mirror", "push", "gollum", "lredir")  # R: allowed, as Gitolite
    assert out.returncode == 0, out.stderr
