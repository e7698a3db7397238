"""Git LFS (SPEC §11) attacked by users with a key, against a running server (HTTP + ssh).

1. Nested repository names shared one LFS directory tree: repo `projects/app` kept its objects
   in HOME/lfs/projects/app/objects/aa/bb/OID and its locks in .../locks.json, so bob, who may
   create any `projects/..*` repo, created `projects/app/objects/aa/bb/OID` (or
   `projects/app/locks.json`) and uploaded one object to it: his store's directory now stood at
   alice's object path (her upload of OID was answered 200 and never stored; her download was a
   500) or at her lock table (every lock request a 500 with a traceback in the log). Now each
   repository's LFS data is HOME/lfs/REPO.git, which no other repository name can reach into.
2. A `git-lfs-authenticate ... download` token created and broke locks and called verify over
   HTTP (only uploads checked the token's operation). Now a download token only reads.
3. `git-lfs-transfer` kept a request body of up to 10,000 pkt-lines of 65,516 bytes in memory
   (655 MB per session, for any reader). Now a body over 4 MiB ends the session.
4. Breaking another user's lock needs RW+, but on the ref the *caller* named: with Gitolite's
   usual `RW+ personal/USER/ = @all`, bob broke alice's lock on master by naming
   refs/heads/personal/bob/x (HTTP and ssh). Now the lock's own ref (else HEAD's branch) is
   the one asked about.
5. The push check for locked paths looked at branches only, and diffed a new ref against the
   empty tree: bob's edit of alice's locked file went in as refs/tags/t1 or refs/for/main,
   while a new branch made from main (no change at all) was refused for holding the file.
   Now every ref is checked, a new ref by what its new commits change.
6. `writable REPO off` stopped pushes but not LFS uploads or locks (HTTP and ssh). Now it
   stops both, with the admin's message over ssh.
7. A user with W only on his own branches (`RW+ personal/USER/`) locked the team's files by
   naming his branch: the lock was enforced on every ref, so alice's push to main changing
   the file was refused. Now a lock needs W on the default branch too (HTTP and ssh).
8. Lock paths were taken as spelled: `./hero.psd` or `art//hero.psd` neither conflicted with
   the lock on `hero.psd` nor was ever enforced (a push changes `hero.psd`). Now a lock path
   is git's spelling; absolute paths and `..` are refused.
9. No limit on a repository's locks: a writer scripting 100,000 locks made every push read
   (and every lock rewrite) the whole table. Now `[server] max_lfs_locks` refuses one more
   with one line (HTTP and ssh).

Each test failed before its fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.httpkit import get, make_http_server, token
from tests.support.server import GitServer

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo projects/..*
    C = @all
    RW+ = CREATOR
    R = @all
repo plain
    RW+ = alice
    RW = bob
    R = dave
repo frozen
    RW+ = alice
repo locked
    RW+ = alice
    RW+ = bob
repo team
    RW+ = alice
    RW master = bob
    RW+ personal/USER/ = bob
repo art
    RW+ = alice
    RW+ personal/USER/ = dave
repo capped
    RW+ = alice
"""
MAX_LOCKS = 5
MEDIA = {"Content-Type": "application/vnd.git-lfs+json",
         "Accept": "application/vnd.git-lfs+json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_http_server(tmp_path_factory.mktemp("lfs-attacks"), conf=CONF,
                              users=("alice", "bob", "dave"),
                              settings={"server": {"max_lfs_locks": MAX_LOCKS}})
    try:
        server.tokens = {u: token(server, u, "t") for u in ("alice", "bob", "dave")}
        server.git("alice", "ls-remote", server.url("projects/app"))  # C: alice creates it
        yield server
    finally:
        server.stop()


def basic(srv: GitServer, user: str) -> dict[str, str]:
    raw = f"{user}:{srv.tokens[user]}".encode()  # type: ignore[attr-defined]
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def lfs(srv: GitServer, repo: str, path: str, headers: dict[str, str],
        body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    status, _, answer = get(f"{srv.http_base}/{repo}.git/info/lfs/{path}",  # type: ignore[attr-defined]
                            {**MEDIA, **headers}, data)
    try:
        return status, json.loads(answer or b"{}")
    except ValueError:
        return status, answer


def put(url: str, headers: dict[str, str], data: bytes) -> int:
    req = urllib.request.Request(url, data=data, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def upload(srv: GitServer, repo: str, user: str, data: bytes) -> None:
    oid = hashlib.sha256(data).hexdigest()
    status, body = lfs(srv, repo, "objects/batch", basic(srv, user),
                       {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]})
    assert status == 200, body
    action = body["objects"][0]["actions"]["upload"]
    assert put(action["href"], action["header"], data) == 200


def download(srv: GitServer, repo: str, user: str, data: bytes) -> tuple[int, bytes]:
    oid = hashlib.sha256(data).hexdigest()
    status, body = lfs(srv, repo, "objects/batch", basic(srv, user),
                       {"operation": "download", "objects": [{"oid": oid, "size": len(data)}]})
    assert status == 200, body
    action = body["objects"][0]["actions"]["download"]
    status, _, content = get(action["href"], action["header"])
    return status, content


def test_nested_repo_cannot_take_over_an_object_path(srv):
    data = b"alice's precious asset\n"
    oid = hashlib.sha256(data).hexdigest()
    evil = f"projects/app/objects/{oid[:2]}/{oid[2:4]}/{oid}"
    srv.git("bob", "ls-remote", srv.url(evil))  # bob may create any projects/..* repo
    upload(srv, evil, "bob", b"bob's object, stored under his own repository\n")
    upload(srv, "projects/app", "alice", data)
    assert download(srv, "projects/app", "alice", data) == (200, data)
    assert download(srv, evil, "bob", b"bob's object, stored under his own repository\n")[0] == 200


def test_nested_repo_cannot_take_over_the_lock_table(srv):
    evil = "projects/app/locks.json"
    srv.git("bob", "ls-remote", srv.url(evil))
    upload(srv, evil, "bob", b"anything\n")
    status, body = lfs(srv, "projects/app", "locks", basic(srv, "alice"), {"path": "a.psd"})
    assert status == 201, body
    status, body = lfs(srv, "projects/app", "locks", basic(srv, "alice"))
    assert status == 200 and [lock["path"] for lock in body["locks"]] == ["a.psd"], body
    assert "Traceback" not in srv.server_log()


def _lfs_token(srv: GitServer, user: str, repo: str, operation: str) -> dict[str, str]:
    out = srv.ssh(user, "git-lfs-authenticate", repo, operation)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["header"]


def test_download_token_neither_locks_nor_verifies(srv):
    data = b"plain's object\n"
    upload(srv, "plain", "alice", data)
    oid = hashlib.sha256(data).hexdigest()
    reading = _lfs_token(srv, "bob", "plain", "download")
    status, body = lfs(srv, "plain", "locks", reading, {"path": "x.bin"})
    assert status == 403, body
    status, body = lfs(srv, "plain", "locks", basic(srv, "alice"), {"path": "y.bin"})
    assert status == 201, body
    lock_id = body["lock"]["id"]
    status, body = lfs(srv, "plain", f"locks/{lock_id}/unlock", reading, {"force": True})
    assert status == 403, body
    status, body = lfs(srv, "plain", "locks/verify", reading, {})
    assert status == 403, body
    status, body = lfs(srv, "plain", "verify", reading, {"oid": oid, "size": len(data)})
    assert status == 403, body
    # the same user with an upload token may (the rules give bob W on plain)
    writing = _lfs_token(srv, "bob", "plain", "upload")
    status, body = lfs(srv, "plain", "locks", writing, {"path": "x.bin"})
    assert status == 201, body
    status, body = lfs(srv, "plain", "verify", writing, {"oid": oid, "size": len(data)})
    assert status == 200, body
    status, body = lfs(srv, "plain", "locks", reading)
    assert status == 200 and {lock["path"] for lock in body["locks"]} == {"x.bin", "y.bin"}


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def test_transfer_request_body_is_bounded(srv):
    """A reader sends `version 1` with 80 lines of 65,000 bytes (5.2 MB) as its body: the
    session ends instead of the server holding it all and answering."""
    proc = subprocess.Popen(
        srv.ssh_command(srv.key_for("dave")) + [f"git@{srv.host}", "git-lfs-transfer",
                                                 "plain", "download"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=srv.client_env("dave"))
    line = pkt(b"x" * 64999 + b"\n")
    body = pkt(b"version 1\n") + b"0001" + line * 80 + b"0000"
    try:
        out, err = proc.communicate(body, timeout=60)
    except BrokenPipeError:
        out, err = proc.communicate(timeout=60)
    assert out.startswith(pkt(b"version=1\n")), out[:100]
    assert b"status 200" not in out, out[:200]
    assert proc.returncode != 0
    assert err == b"FATAL: git-lfs-transfer: request body too large\n"


def _team_lock(srv: GitServer, path: str) -> str:
    status, body = lfs(srv, "team", "locks", basic(srv, "alice"),
                       {"path": path, "ref": {"name": "refs/heads/master"}})
    assert status == 201, body
    return str(body["lock"]["id"])


def test_force_unlock_asks_about_the_locks_ref_over_http(srv):
    lock_id = _team_lock(srv, "http.psd")
    for ref in ("refs/heads/master", "refs/heads/personal/bob/x", None):
        body: dict[str, Any] = {"force": True}
        if ref:
            body["ref"] = {"name": ref}
        status, answer = lfs(srv, "team", f"locks/{lock_id}/unlock", basic(srv, "bob"), body)
        assert status == 403, (ref, answer)
    status, body = lfs(srv, "team", "locks", basic(srv, "bob"))
    assert [lock["path"] for lock in body["locks"]] == ["http.psd"], body
    # bob's own RW+ ref still lets him break a lock made for it
    status, body = lfs(srv, "team", "locks", basic(srv, "alice"),
                       {"path": "mine.psd", "ref": {"name": "refs/heads/personal/bob/x"}})
    assert status == 201, body
    status, answer = lfs(srv, "team", f"locks/{body['lock']['id']}/unlock",
                         basic(srv, "bob"), {"force": True})
    assert status == 200, answer


def test_force_unlock_asks_about_the_locks_ref_over_ssh(srv):
    lock_id = _team_lock(srv, "ssh.psd")
    proc = subprocess.Popen(
        srv.ssh_command(srv.key_for("bob")) + [f"git@{srv.host}", "git-lfs-transfer",
                                                "team", "upload"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=srv.client_env("bob"))
    request = (pkt(f"unlock {lock_id}\n".encode()) + pkt(b"force=true\n")
               + pkt(b"refname=refs/heads/personal/bob/x\n") + b"0000"
               + pkt(b"quit\n") + b"0000")
    out, _ = proc.communicate(request, timeout=60)
    assert b"status 403" in out, out
    status, body = lfs(srv, "team", "locks", basic(srv, "bob"), None)
    assert "ssh.psd" in [lock["path"] for lock in body["locks"]], body


def test_locked_path_push_check_covers_every_ref_and_only_real_changes(srv, tmp_path):
    alice = tmp_path / "alice"
    srv.git("alice", "clone", "-q", srv.url("locked"), str(alice), check=False)
    (alice / "locked.bin").write_text("v1\n")
    (alice / "other.txt").write_text("o\n")
    srv.git("alice", "add", ".", cwd=alice)
    srv.git("alice", "commit", "-qm", "c1", cwd=alice)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    status, body = lfs(srv, "locked", "locks", basic(srv, "alice"),
                       {"path": "locked.bin", "ref": {"name": "refs/heads/main"}})
    assert status == 201, body
    bob = tmp_path / "bob"
    srv.git("bob", "clone", "-q", srv.url("locked"), str(bob))
    # a branch from main that leaves locked.bin alone is not a change to it
    srv.git("bob", "push", "-q", "origin", "HEAD:refs/heads/feature", cwd=bob)
    (bob / "other.txt").write_text("o2\n")
    srv.git("bob", "commit", "-qam", "other", cwd=bob)
    srv.git("bob", "push", "-q", "origin", "HEAD:refs/heads/feature2", cwd=bob)
    (bob / "locked.bin").write_text("bob\n")
    srv.git("bob", "commit", "-qam", "bob edits the locked file", cwd=bob)
    for ref in ("refs/tags/t1", "refs/for/main", "refs/heads/feature3", "refs/heads/main",
                "refs/heads/feature2"):
        push = srv.git("bob", "push", "origin", f"HEAD:{ref}", cwd=bob, check=False)
        assert push.returncode != 0, ref
        assert "locked.bin is locked by alice" in push.stderr, (ref, push.stderr)
    refs = srv.git("bob", "ls-remote", srv.url("locked")).stdout
    assert "refs/tags/t1" not in refs and "refs/for/main" not in refs
    assert "refs/heads/feature3" not in refs


def test_writable_off_stops_lfs_writes(srv):
    (srv.repo_path("frozen") / ".gitolite.down").write_text("backup in progress\n")
    data = b"written while frozen\n"
    oid = hashlib.sha256(data).hexdigest()
    status, body = lfs(srv, "frozen", "objects/batch", basic(srv, "alice"),
                       {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]})
    assert status == 403, body
    status, body = lfs(srv, "frozen", "locks", basic(srv, "alice"), {"path": "a.psd"})
    assert status == 403, body
    out = srv.ssh("alice", "git-lfs-transfer", "frozen", "upload")
    assert out.stderr == "FATAL: backup in progress\n", out.stderr
    assert out.stdout == ""
    status, body = lfs(srv, "frozen", "objects/batch", basic(srv, "alice"),
                       {"operation": "download", "objects": [{"oid": oid, "size": len(data)}]})
    assert status == 200, body  # reading goes on


def _ssh_lock(srv: GitServer, user: str, repo: str, path: str, ref: str) -> bytes:
    proc = subprocess.Popen(
        srv.ssh_command(srv.key_for(user)) + [f"git@{srv.host}", "git-lfs-transfer", repo, "upload"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=srv.client_env(user))
    request = (pkt(b"lock\n") + pkt(f"path={path}\n".encode())
               + pkt(f"refname={ref}\n".encode()) + b"0000" + pkt(b"quit\n") + b"0000")
    out, _ = proc.communicate(request, timeout=60)
    return out


def test_own_branch_writer_cannot_lock_the_teams_files(srv, tmp_path):
    alice = tmp_path / "alice"
    srv.git("alice", "clone", "-q", srv.url("art"), str(alice), check=False)
    (alice / "hero.psd").write_text("v1\n")
    srv.git("alice", "add", ".", cwd=alice)
    srv.git("alice", "commit", "-qm", "hero", cwd=alice)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    # dave may push personal/dave/*: he names his branch, over HTTP and over ssh
    status, body = lfs(srv, "art", "locks", basic(srv, "dave"),
                       {"path": "hero.psd", "ref": {"name": "refs/heads/personal/dave/x"}})
    assert status == 403 and "locking needs W on refs/heads/main for dave" in body["message"], body
    out = _ssh_lock(srv, "dave", "art", "hero.psd", "refs/heads/personal/dave/x")
    assert b"status 403" in out and b"locking needs W on refs/heads/main" in out, out
    status, body = lfs(srv, "art", "locks", basic(srv, "alice"))
    assert body["locks"] == [], body
    # so alice's work on main goes on
    (alice / "hero.psd").write_text("v2\n")
    srv.git("alice", "commit", "-qam", "hero v2", cwd=alice)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    # and alice, who may push to main, still locks (for any branch she may write)
    status, body = lfs(srv, "art", "locks", basic(srv, "alice"),
                       {"path": "hero.psd", "ref": {"name": "refs/heads/personal/dave/x"}})
    assert status == 201, body


def test_a_repository_holds_at_most_max_lfs_locks(srv):
    for i in range(MAX_LOCKS):
        status, body = lfs(srv, "capped", "locks", basic(srv, "alice"), {"path": f"f{i}.psd"})
        assert status == 201, body
    status, body = lfs(srv, "capped", "locks", basic(srv, "alice"), {"path": "one-more.psd"})
    assert status == 422, body
    assert body["message"] == (f"lock refused: this repository holds {MAX_LOCKS} locks, this "
                               "server's limit (max_lfs_locks); unlock some first"), body
    out = _ssh_lock(srv, "alice", "capped", "one-more.psd", "refs/heads/main")
    assert b"status 422" in out and b"max_lfs_locks" in out, out
    status, body = lfs(srv, "capped", "locks", basic(srv, "alice"))
    assert len(body["locks"]) == MAX_LOCKS, body
    # unlocking one makes room again
    lock_id = body["locks"][0]["id"]
    status, _ = lfs(srv, "capped", f"locks/{lock_id}/unlock", basic(srv, "alice"), {})
    assert status == 200
    status, body = lfs(srv, "capped", "locks", basic(srv, "alice"), {"path": "one-more.psd"})
    assert status == 201, body


def test_lock_paths_are_git_paths(srv):
    status, body = lfs(srv, "locked", "locks", basic(srv, "alice"), {"path": "./art//hero.psd"})
    assert status == 201 and body["lock"]["path"] == "art/hero.psd", body
    status, body = lfs(srv, "locked", "locks", basic(srv, "bob"), {"path": "art/hero.psd"})
    assert status == 409 and body["lock"]["owner"]["name"] == "alice", body
    for bad in ("/etc/passwd", "../x", "a/../../b", "./"):
        status, body = lfs(srv, "locked", "locks", basic(srv, "alice"), {"path": bad})
        assert status == 422, (bad, body)
