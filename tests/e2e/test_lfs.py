"""Git LFS (SPEC §11) with Debian's git-lfs 3.3 and the real git client, over HTTP and over
ssh (the pure SSH `git-lfs-transfer` protocol, checked with GIT_TRACE to use no HTTP): track,
push, clone, pull; who may upload and download (a reader cannot upload, a stranger learns
nothing about objects); a corrupt upload is refused and not stored; locks (a second user's push
to a locked file refused, unlock by the owner, --force by an admin); lfs-gc."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.httpkit import get, http_env, make_http_server, token
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(300)

CONF = """
repo gitolite-admin
    RW+ = admin
repo assets
    RW+ = alice
    RW = bob
    R = dave
repo other
    RW+ = carol
repo big2
    RW+ = alice
repo built
    RW+ = alice
    option build.enable = 1
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    require_tool("git-lfs")
    server = make_http_server(tmp_path_factory.mktemp("lfs-srv"), conf=CONF,
                              users=("alice", "bob", "carol", "dave"))
    try:
        server.tokens = {u: token(server, u, "lfs") for u in ("alice", "bob", "carol", "dave")}
        yield server
    finally:
        server.stop()


def lfs_env(srv, user: str, home: Path) -> dict[str, str]:
    """git + git-lfs as USER: ssh with USER's key, http with USER's token (a credential
    helper that answers it), a HOME of its own with `git lfs install` done."""
    env = srv.client_env(user)
    env["HOME"] = str(home)
    env["GIT_TERMINAL_PROMPT"] = "0"
    home.mkdir(parents=True, exist_ok=True)
    helper = home / "cred.sh"
    helper.write_text(f"#!/bin/sh\necho username={user}\necho password={srv.tokens[user]}\n")
    helper.chmod(0o755)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "config", "--global", "credential.helper", str(helper)], env=env,
                   check=True)
    subprocess.run(["git", "config", "--global", "init.defaultBranch", "main"], env=env,
                   check=True)
    return env


def run(env, *args, cwd=None, check=True):
    out = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=240)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def http_remote(srv, repo: str) -> str:
    return f"{srv.http_base}/{repo}.git"


def basic(srv, user: str) -> dict[str, str]:
    raw = f"{user}:{srv.tokens[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def batch(srv, repo: str, op: str, objects, user: str | None = None):
    headers = {"Content-Type": "application/vnd.git-lfs+json",
               "Accept": "application/vnd.git-lfs+json"}
    if user:
        headers.update(basic(srv, user))
    body = json.dumps({"operation": op, "transfers": ["basic"],
                       "objects": [{"oid": o, "size": s} for o, s in objects]}).encode()
    status, _, data = get(f"{srv.http_base}/{repo}.git/info/lfs/objects/batch", headers, body)
    return status, json.loads(data or b"{}")


def store_path(srv, repo: str, oid: str) -> Path:
    return srv.home / "lfs" / f"{repo}.git" / "objects" / oid[:2] / oid[2:4] / oid


@pytest.fixture(scope="module")
def pushed(srv, tmp_path_factory):
    """alice tracks *.bin in `assets` and pushes a 3 MB file over http."""
    tmp = tmp_path_factory.mktemp("lfs-alice")
    env = lfs_env(srv, "alice", tmp / "home")
    work = tmp / "work"
    run(env, "git", "clone", "-q", http_remote(srv, "assets"), str(work))
    run(env, "git", "lfs", "track", "*.bin", cwd=work)
    data = os.urandom(3 * 1024 * 1024)
    (work / "big.bin").write_bytes(data)
    (work / "locked.bin").write_bytes(b"lock me\n")
    run(env, "git", "add", ".gitattributes", "big.bin", "locked.bin", cwd=work)
    run(env, "git", "commit", "-qm", "assets", cwd=work)
    run(env, "git", "push", "-q", "origin", "HEAD:main", cwd=work)
    return env, work, data, hashlib.sha256(data).hexdigest()


def test_http_push_stores_and_clone_gets_content(srv, pushed, tmp_path):
    _, _, data, oid = pushed
    assert store_path(srv, "assets", oid).read_bytes() == data
    env = lfs_env(srv, "dave", tmp_path / "home")
    run(env, "git", "clone", "-q", http_remote(srv, "assets"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "big.bin").read_bytes() == data


def test_reader_cannot_upload(srv, pushed):
    oid = hashlib.sha256(b"dave's").hexdigest()
    status, body = batch(srv, "assets", "upload", [(oid, 6)], "dave")
    assert status == 403, body
    status, _, _ = get(f"{srv.http_base}/assets.git/info/lfs/objects/{oid}",
                       {**basic(srv, "dave"), "Content-Length": "6"}, b"dave's")
    assert status in (403, 405)
    assert not store_path(srv, "assets", oid).exists()


def test_stranger_learns_nothing(srv, pushed):
    _, _, _, oid = pushed
    missing = hashlib.sha256(b"nothing").hexdigest()
    answers = set()
    for objects in ([(oid, 3 * 1024 * 1024)], [(missing, 7)]):
        for repo in ("assets", "no-such-repo"):
            status, body = batch(srv, repo, "download", objects, "carol")
            answers.add((status, json.dumps(body)))
    assert len(answers) == 1, answers
    status, _ = answers.pop()
    assert status == 404
    status, _, _ = get(f"{srv.http_base}/assets.git/info/lfs/objects/{oid}", basic(srv, "carol"))
    assert status == 404
    # anonymous: the challenge git-lfs answers with credentials, whatever exists
    status, _ = batch(srv, "assets", "download", [(oid, 1)])
    assert status == 401


def test_corrupt_upload_refused_and_not_stored(srv, pushed):
    claimed = hashlib.sha256(b"the real content").hexdigest()
    status, body = batch(srv, "assets", "upload", [(claimed, 16)], "alice")
    assert status == 200, body
    action = body["objects"][0]["actions"]["upload"]
    req_headers = {**action["header"], "Content-Type": "application/octet-stream"}
    status, _, answer = put(action["href"], req_headers, b"not the content!")
    assert status == 422, answer
    assert b"does not match" in answer
    assert not store_path(srv, "assets", claimed).exists()
    assert not list((srv.home / "lfs" / "assets.git" / "tmp").iterdir())


def put(url: str, headers: dict[str, str], data: bytes):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=data, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_locks_over_http(srv, pushed, tmp_path):
    alice_env, alice_work, _, _ = pushed
    out = run(alice_env, "git", "lfs", "lock", "locked.bin", cwd=alice_work)
    assert "Locked locked.bin" in out.stdout + out.stderr
    bob_env = lfs_env(srv, "bob", tmp_path / "bob-home")
    bob_work = tmp_path / "bob"
    run(bob_env, "git", "clone", "-q", http_remote(srv, "assets"), str(bob_work))
    (bob_work / "locked.bin").write_bytes(b"bob was here\n")
    run(bob_env, "git", "commit", "-qam", "bob edits a locked file", cwd=bob_work)
    # git-lfs's own pre-push check is off: the server is the one that refuses
    run(bob_env, "git", "config", "lfs.locksverify", "false", cwd=bob_work)
    push = run(bob_env, "git", "push", "origin", "HEAD:main", cwd=bob_work, check=False)
    assert push.returncode != 0
    assert "locked.bin is locked by alice" in push.stderr
    # bob cannot unlock alice's lock, not even with --force (he has no RW+)
    out = run(bob_env, "git", "lfs", "unlock", "locked.bin", "--force", cwd=bob_work,
              check=False)
    assert out.returncode != 0
    # the owner can
    run(alice_env, "git", "lfs", "unlock", "locked.bin", cwd=alice_work)
    push = run(bob_env, "git", "push", "origin", "HEAD:main", cwd=bob_work, check=False)
    assert push.returncode == 0, push.stderr
    # bob locks, alice (RW+) breaks his lock with --force
    run(bob_env, "git", "lfs", "lock", "big.bin", cwd=bob_work)
    out = run(alice_env, "git", "lfs", "unlock", "big.bin", cwd=alice_work, check=False)
    assert out.returncode != 0  # without --force, even an admin is told it is not hers
    run(alice_env, "git", "lfs", "unlock", "big.bin", "--force", cwd=alice_work)
    listed = run(alice_env, "git", "lfs", "locks", cwd=alice_work)
    assert "big.bin" not in listed.stdout


def test_lfs_gc_removes_only_unreferenced(srv, pushed):
    _, _, _, oid = pushed
    stray = b"never referenced"
    stray_oid = hashlib.sha256(stray).hexdigest()
    path = store_path(srv, "assets", stray_oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stray)
    os.utime(path, (1, 1))  # old: past the grace period
    out = srv.admin_cli("admin", "lfs-gc", "assets")
    assert "removed 1" in out.stdout, out.stdout
    assert not path.exists()
    assert store_path(srv, "assets", oid).exists()


def test_tools_present_in_ci():
    assert subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0


__all__ = ["http_env"]


def ssh_remote(srv, repo: str) -> str:
    return srv.url(repo)


def test_ssh_pure_transfer_push_clone_pull(srv, pushed, tmp_path):
    env = lfs_env(srv, "alice", tmp_path / "home")
    env["GIT_TRACE"] = "1"
    work = tmp_path / "work"
    run(env, "git", "init", "-q", str(work))
    run(env, "git", "remote", "add", "origin", ssh_remote(srv, "assets"), cwd=work)
    run(env, "git", "fetch", "-q", "origin", cwd=work)
    run(env, "git", "checkout", "-q", "-b", "ssh-branch", "origin/main", cwd=work)
    data = os.urandom(1024 * 1024 + 17)
    (work / "ssh.bin").write_bytes(data)
    run(env, "git", "add", "ssh.bin", cwd=work)
    run(env, "git", "commit", "-qm", "over ssh", cwd=work)
    push = run(env, "git", "push", "origin", "HEAD:refs/heads/ssh-branch", cwd=work)
    trace = push.stderr
    assert "git-lfs-transfer" in trace, trace[-3000:]
    assert "git-lfs-authenticate" not in trace and "HTTP: POST" not in trace, trace[-3000:]
    oid = hashlib.sha256(data).hexdigest()
    assert store_path(srv, "assets", oid).read_bytes() == data
    # a reader (dave) clones and pulls over ssh, again without HTTP
    denv = lfs_env(srv, "dave", tmp_path / "dave-home")
    denv["GIT_TRACE"] = "1"
    clone = run(denv, "git", "clone", "-q", "-b", "ssh-branch", ssh_remote(srv, "assets"),
                str(tmp_path / "d"))
    assert "HTTP: " not in clone.stderr and "git-lfs-transfer" in clone.stderr
    assert (tmp_path / "d" / "ssh.bin").read_bytes() == data
    more = os.urandom(4096)
    (work / "ssh.bin").write_bytes(more)
    run(env, "git", "commit", "-qam", "again", cwd=work)
    run(env, "git", "push", "-q", "origin", "HEAD:refs/heads/ssh-branch", cwd=work)
    run(denv, "git", "pull", "-q", cwd=tmp_path / "d")
    assert (tmp_path / "d" / "ssh.bin").read_bytes() == more


def test_ssh_reader_cannot_upload_stranger_denied(srv, tmp_path):
    denv = lfs_env(srv, "dave", tmp_path / "home")
    out = subprocess.run(srv.ssh_command(srv.key_for("dave")) + ["git@127.0.0.1",
                         "git-lfs-transfer", "/assets", "upload"],
                         env=denv, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "FATAL: W any assets dave DENIED by fallthru" in out.stderr
    for repo in ("assets", "no-such-repo"):
        out = subprocess.run(srv.ssh_command(srv.key_for("carol")) + [
            "git@127.0.0.1", "git-lfs-transfer", repo, "download"],
            env=denv, capture_output=True, text=True, timeout=30)
        assert out.returncode != 0
        assert f"FATAL: R any {repo} carol DENIED by fallthru" in out.stderr
        assert "(or you mis-spelled the reponame)" in out.stderr


def test_git_lfs_authenticate(srv, pushed):
    _, _, data, oid = pushed
    out = srv.ssh("dave", "git-lfs-authenticate", "assets", "download")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["href"] == f"{srv.http_base}/assets.git/info/lfs"
    status, _, body = get(f"{answer['href']}/objects/{oid}", answer["header"])
    assert status == 200 and body == data
    # a download token never uploads
    status, _, _ = put(f"{answer['href']}/objects/{oid}", answer["header"], b"tiny")
    assert status == 403
    denied = srv.ssh("carol", "git-lfs-authenticate", "assets", "download")
    assert denied.returncode != 0 and "DENIED" in denied.stderr


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


BIG_MB = int(os.environ.get("GITSERVE_LFS_BIG_MB", "1024"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_gib_object_flat_memory(tmp_path_factory):
    """A 1 GiB object pushed over ssh and over http and cloned back: the server's peak RSS
    stays under 150 MB (objects stream through; nothing holds them)."""
    require_tool("git-lfs")
    tmp = tmp_path_factory.mktemp("lfs-big")
    srv = make_http_server(tmp, conf=CONF, users=("alice",))
    try:
        srv.tokens = {"alice": token(srv, "alice", "big")}
        env = lfs_env(srv, "alice", tmp / "home")
        work = tmp / "work"
        run(env, "git", "init", "-q", str(work))
        run(env, "git", "lfs", "track", "*.iso", cwd=work)
        digest = hashlib.sha256()
        with open(work / "big.iso", "wb") as f:
            block = os.urandom(1024 * 1024)
            for i in range(BIG_MB):
                chunk = block[:-8] + i.to_bytes(8, "big")
                digest.update(chunk)
                f.write(chunk)
        run(env, "git", "add", ".", cwd=work)
        run(env, "git", "commit", "-qm", "big", cwd=work)
        run(env, "git", "remote", "add", "origin", ssh_remote(srv, "assets"), cwd=work)
        run(env, "git", "push", "-q", "origin", "HEAD:main", cwd=work)
        oid = digest.hexdigest()
        assert store_path(srv, "assets", oid).stat().st_size == BIG_MB * 1024 * 1024
        clone = tmp / "clone-ssh"
        run(env, "git", "clone", "-q", ssh_remote(srv, "assets"), str(clone))
        assert (clone / "big.iso").stat().st_size == BIG_MB * 1024 * 1024
        shutil_rmtree(clone)
        # over http: the same object uploaded into another repository (one store per
        # repository), and cloned back from there
        run(env, "git", "remote", "add", "web", http_remote(srv, "big2"), cwd=work)
        run(env, "git", "push", "-q", "web", "HEAD:main", cwd=work)
        assert store_path(srv, "big2", oid).stat().st_size == BIG_MB * 1024 * 1024
        (work / "big.iso").unlink()
        clone = tmp / "clone-http"
        run(env, "git", "clone", "-q", http_remote(srv, "big2"), str(clone))
        assert (clone / "big.iso").stat().st_size == BIG_MB * 1024 * 1024
        peak = peak_rss_mb(srv.proc.pid)
        assert peak < 150, f"server peak RSS {peak:.0f} MB"
    finally:
        srv.stop()


def shutil_rmtree(path: Path) -> None:
    import shutil
    shutil.rmtree(path)


def test_build_sees_real_lfs_content(srv, tmp_path):
    """The build's workspace holds the LFS file's content, not its pointer (a local worker
    copies it from HOME/lfs; no git-lfs in the sandbox, no network)."""
    env = lfs_env(srv, "alice", tmp_path / "home")
    work = tmp_path / "work"
    run(env, "git", "init", "-q", str(work))
    run(env, "git", "lfs", "track", "*.dat", cwd=work)
    (work / "secret.dat").write_text("the real LFS content, line one\n")
    script = work / ".gitserve" / "build"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\nhead -c 200 secret.dat\n")
    script.chmod(0o755)
    run(env, "git", "add", ".", cwd=work)
    run(env, "git", "commit", "-qm", "lfs build", cwd=work)
    run(env, "git", "remote", "add", "origin", ssh_remote(srv, "built"), cwd=work)
    push = run(env, "git", "push", "origin", "HEAD:main", cwd=work)
    assert "remote: the real LFS content, line one" in push.stderr, push.stderr
    assert "version https://git-lfs" not in push.stderr


def test_web_ui_marks_lfs_files(srv, pushed):
    from tests.support.httpkit import login_cookie

    cookie = login_cookie(srv, "alice").split(";", 1)[0]
    status, _, body = get(f"{srv.http_base}/r/assets", {"Cookie": cookie})
    assert status == 200
    page = body.decode()
    row = next(line for line in page.splitlines() if "<td>big.bin</td>" in line)
    assert ">LFS<" in row and "3.1 MB" in row, row  # the object's size, not the pointer's
    plain = next(line for line in page.splitlines() if "<td>.gitattributes</td>" in line)
    assert ">LFS<" not in plain
