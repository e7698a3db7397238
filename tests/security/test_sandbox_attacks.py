"""#11 attacks 2, 3, 4 and the suspected publish hole, as a user with a key works: hostile
build scripts and deploy.post pushed with the real git and ssh to a running server.

Every test names what it tried; each failed on the code before the sandbox (builds in the
server's /tmp as the server user, deploy.post unsandboxed with the server's environment,
daemons left by `setsid`, root builds as uid 0, output read by path).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.support.deploykit import get
from tests.support.server import GitServer, make_server
from tests.support.tools import free_port, require_tool

pytestmark = pytest.mark.timeout(300)

CANARY = f"CANARY-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    require_tool("bwrap")
    nginx = require_tool("nginx")
    tmp = tmp_path_factory.mktemp("sandbox-attacks")
    # the server user's own home, with an ssh key and the quickstart demo key in it
    user_home = tmp / "server-user"
    (user_home / ".ssh").mkdir(parents=True)
    for name in ("id_ed25519", "gitserve-demo"):
        (user_home / ".ssh" / name).write_text(f"{CANARY} {name}\n")
    ports = {"live": free_port(), "preview": free_port()}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo probe victim attacker
    RW+ = alice
    option build.enable = 1
repo site
    RW+ = alice
    option build.enable = 1
    option deploy.site = www
    option deploy.port = 127.0.0.1:{ports['live']}
    option deploy.preview-port = {ports['preview']}
    option deploy.check = /index.html
    option deploy.post = .gitserve/post
"""
    server = make_server(tmp, conf=conf, users=("alice",),
                         settings={"deploy": {"nginx_binary": nginx}, "builds": {"workers": 3}},
                         env={"HOME": str(user_home), "GITSERVE_SERVER_CANARY": CANARY,
                              "AWS_SECRET_ACCESS_KEY": CANARY})
    (server.home / "secrets.key").write_text(f"{CANARY} secrets.key\n") \
        if not (server.home / "secrets.key").exists() else None
    server.user_home = user_home  # type: ignore[attr-defined]
    server.ports = ports  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        from deploy import nginx as nginx_mod

        from deploy import sitesctl
        sitesctl.stop(server.settings)  # `gitserve sites` (serve never stops it), nginx with it
        nginx_mod.stop_embedded(server.settings)


def secret_files(srv: GitServer) -> list[Path]:
    home = srv.home
    files = [home / "secrets.key", home / "worker_key", *sorted((home / "host_keys").glob("*_key")),
             srv.user_home / ".ssh" / "id_ed25519", srv.user_home / ".ssh" / "gitserve-demo"]  # type: ignore[attr-defined]
    assert all(f.is_file() for f in files), files
    return files


def probe_script(srv: GitServer) -> str:
    """Tries every way in it knows; prints READ/LISTED lines for what worked."""
    lines = ["#!/bin/sh", 'echo "uid=$(id -u)"']
    for f in secret_files(srv):
        lines.append(f'if cat "{f}" >/dev/null 2>&1; then echo "READ {f}"; cat "{f}"; fi')
    for d in (srv.home, srv.home / "repositories", srv.user_home, srv.user_home / ".ssh"):  # type: ignore[attr-defined]
        lines.append(f'ls -A "{d}" 2>/dev/null | sed "s|^|LISTED {d}/|"')
    lines.append('env | sed "s/^/ENV /"')
    return "\n".join(lines) + "\n"


def commit_files(srv: GitServer, repo: str, files: dict[str, str], user: str = "alice") -> Path:
    work = srv.tmp / "work" / f"{repo}-{uuid.uuid4().hex[:8]}"
    if not work.exists():
        srv.git(user, "clone", "-q", srv.url(repo), str(work))
    for name, text in files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if name.startswith(".gitserve/"):
            p.chmod(0o755)
    srv.git(user, "add", "-A", cwd=work)
    srv.git(user, "commit", "-q", "-m", f"push {uuid.uuid4().hex[:6]}", cwd=work)
    return work


def push(srv: GitServer, repo: str, files: dict[str, str], *opts: str) -> str:
    """Push FILES to REPO's main; returns what the pusher saw (the build log as remote:)."""
    work = commit_files(srv, repo, files)
    args = ["push"] + [f"--push-option={o}" for o in opts] + ["origin", "HEAD:main"]
    res = srv.git("alice", *args, cwd=work, check=False, timeout=240)
    return res.stderr


def host_pids(cmdline: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip().decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if raw == cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def assert_nothing_leaked(srv: GitServer, out: str, repo: str) -> None:
    """No secret read; nothing listed but the path to the build's own object store (bound
    read-only so that `git` works in the checkout)."""
    assert "READ " not in out and CANARY not in out, out
    own = {f"{srv.home}/repositories", f"{srv.home}/repositories/{repo}.git"}
    listed = [ln.split("LISTED ", 1)[1].strip() for ln in out.splitlines() if "LISTED " in ln]
    assert not [p for p in listed if p not in own], out


# --- attack 2 and 7's key theft: secrets from a build and from deploy.post -----------------------
def test_build_cannot_read_server_keys_or_list_home(srv):
    out = push(srv, "probe", {".gitserve/build": probe_script(srv)})
    assert "uid=" in out, out  # the build ran
    assert_nothing_leaked(srv, out, "probe")


def test_deploy_post_cannot_read_server_keys_or_list_home(srv):
    out = push(srv, "site", {".gitserve/build": "#!/bin/sh\nmkdir -p public\necho post-site > public/index.html\n",
                             ".gitserve/post": probe_script(srv)})
    assert "Enable: " in out and "remote: uid=" in out, out  # deployed, and post ran
    assert_nothing_leaked(srv, out, "site")


def test_deploy_post_runs_as_the_repos_own_uid(srv):
    """As root, deploy.post runs as the uid the repo's builds run as (uid_range), not as the
    shared sandbox_user: a site's post cannot signal another repo's builds, nor share its
    process limit (before: post ran as nobody, 65534)."""
    if os.geteuid() != 0:
        pytest.skip("per-repo uids need a root server")
    out = push(srv, "site", {
        ".gitserve/build": "#!/bin/sh\necho \"build-uid=$(id -u)\"\nmkdir -p public\necho x > public/index.html\n",
        ".gitserve/post": "#!/bin/sh\necho \"post-uid=$(id -u)\"\ntouch /build/src/post-wrote-here && echo POST-WROTE\n"})
    build_uid = int(out.split("build-uid=")[1].split()[0])
    post_uid = int(out.split("post-uid=")[1].split()[0])
    assert 200000 <= build_uid <= 265535 and post_uid == build_uid, out
    assert "POST-WROTE" in out, out  # its checkout is its own (handed over to that uid)


# --- attack 4: never uid 0 ------------------------------------------------------------------------
def test_build_is_never_root(srv):
    out = push(srv, "probe", {".gitserve/build": "#!/bin/sh\necho \"uid=$(id -u) gid=$(id -g) groups=$(id -G)\"\n"})
    line = next(ln for ln in out.splitlines() if "uid=" in ln)
    assert "uid=0 " not in line and "gid=0 " not in line and not line.rstrip().endswith(" 0"), line
    if os.geteuid() == 0:  # as root: each repo its own uid from [builds] uid_range
        other = push(srv, "victim", {".gitserve/build": "#!/bin/sh\necho \"uid=$(id -u)\"\n"})
        uids = [int(next(ln for ln in text.splitlines() if "uid=" in ln).split("uid=")[1].split()[0])
                for text in (out, other)]
        assert all(200000 <= u <= 265535 for u in uids) and uids[0] != uids[1], uids


def test_embedded_nginx_workers_are_not_root(srv):
    push(srv, "site", {".gitserve/build": "#!/bin/sh\nmkdir -p public\necho hi > public/index.html\n"})
    from deploy import nginx

    master = nginx.running_pid(srv.settings)
    assert master is not None
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(master):
                workers.append(os.stat(entry).st_uid)
    assert workers and 0 not in workers, workers


# --- attack 3: daemons, shared /tmp, another repo's workspace ---------------------------------------
def test_daemons_do_not_outlive_their_build(srv):
    tag = f"{time.time_ns() % 1000000}"
    script = (f"#!/bin/sh\nsetsid sh -c 'exec sleep 311.{tag}' >/dev/null 2>&1 < /dev/null &\n"
              f"nohup sleep 312.{tag} >/dev/null 2>&1 &\n"
              f"( ( exec sleep 313.{tag} ) & ) >/dev/null 2>&1\n"
              "echo daemons started\n")
    out = push(srv, "probe", {".gitserve/build": script})
    assert "daemons started" in out and " passed in " in out, out
    deadline = time.monotonic() + 5
    left = [f"sleep {n}.{tag}" for n in (311, 312, 313)]
    while time.monotonic() < deadline and any(host_pids(c) for c in left):
        time.sleep(0.1)
    assert not [c for c in left if host_pids(c)], "a daemon survived its build"


def test_build_cannot_see_another_builds_workspace_or_repo(srv):
    secret = f"VICTIM-{uuid.uuid4().hex}"
    victim = ("#!/bin/sh\n"
              f"echo {secret} > victim-source.txt; echo {secret} > /tmp/victim-tmp.txt\n"
              "echo victim running; sleep 20\n")
    push(srv, "victim", {".gitserve/build": victim}, "build.mode=async")
    attacker = ("#!/bin/sh\nsleep 3\n"
                "for f in /tmp/* /tmp/*/* /tmp/gitserve-build-*/src/* /var/tmp/* "
                f"{srv.home}/work/*/src/* {srv.home}/repositories/victim.git/*; do\n"
                '  [ -f "$f" ] && echo "SAW $f"; grep -rh VICTIM- "$f" 2>/dev/null\ndone\n'
                "echo attacker done\n")
    out = push(srv, "attacker", {".gitserve/build": attacker})
    assert "attacker done" in out, out
    assert secret not in out and "SAW " not in out, out


def test_tmp_is_private(srv):
    host_canary = Path("/tmp") / f"gitserve-host-canary-{uuid.uuid4().hex}"
    host_canary.write_text(CANARY)
    os.chmod(host_canary, 0o644)
    mine = f"gitserve-build-left-{uuid.uuid4().hex}"
    try:
        out = push(srv, "probe", {".gitserve/build": f"#!/bin/sh\nls -A /tmp\ncat {host_canary} 2>/dev/null\n"
                                                     f"echo x > /tmp/{mine} && echo wrote\n"})
        assert "wrote" in out and CANARY not in out and host_canary.name not in out, out
        assert not (Path("/tmp") / mine).exists()
    finally:
        host_canary.unlink()


def test_host_sockets_under_run_are_out_of_reach(srv):
    import socket

    path = Path("/run") / f"gitserve-test-{uuid.uuid4().hex[:8]}.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    os.chmod(path, 0o666)  # as a docker.sock is to its group: permissions are not the barrier
    try:
        probe = (f"#!/bin/sh\nfor p in {path} /var{path}; do\n"
                 "  python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); "
                 "s.connect(sys.argv[1]); print(\"CONNECTED\")' \"$p\" 2>&1 | tail -1\n"
                 "done\necho probe done\n")
        out = push(srv, "probe", {".gitserve/build": probe})
        assert "probe done" in out and "CONNECTED" not in out, out
    finally:
        listener.close()
        path.unlink()


def test_env_is_built_from_scratch(srv):
    out = push(srv, "probe", {".gitserve/build": "#!/bin/sh\nenv | sed 's/^/ENV /'\n"})
    names = {ln.split("ENV ", 1)[1].split("=", 1)[0] for ln in out.splitlines() if "ENV " in ln}
    assert CANARY not in out, out
    assert names, out
    extra = {n for n in names if not n.startswith("GITSERVE_")} - {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_"}
    assert not extra, extra
    home = next(ln for ln in out.splitlines() if "ENV HOME=" in ln)
    assert str(srv.user_home) not in home and str(srv.home) not in home, home  # type: ignore[attr-defined]


# --- the suspected publish hole: symlinks, hard links, swaps ----------------------------------------
def test_output_links_out_of_the_tree_are_not_published(srv):
    good = push(srv, "site", {".gitserve/build": "#!/bin/sh\nmkdir -p public\necho GOOD-PAGE > public/index.html\n"})
    assert "Enable: " in good, good
    port = srv.ports["live"]  # type: ignore[attr-defined]
    for name, body in (
        ("shadow", "ln -s /etc/shadow public/shadow.txt"),
        ("key", f"ln -s {srv.home}/secrets.key public/key.txt"),
        ("relative", "ln -s ../../../../../../../../etc/passwd public/passwd.txt"),
        ("hardlink", "echo SRC-ONLY > outside.txt; ln outside.txt public/hard.txt"),
    ):
        out = push(srv, "site", {".gitserve/build": "#!/bin/sh\nmkdir -p public\n"
                                 f"echo BAD-{name} > public/index.html\n{body}\n"})
        assert "Enable: " not in out, (name, out)
        assert "deploy output refused" in out, (name, out)
        status, page = get(port, "/index.html")
        assert status == 200 and page == b"GOOD-PAGE\n", (name, page)


def test_leftover_daemon_cannot_rewrite_a_deploy(srv):
    port = srv.ports["live"]  # type: ignore[attr-defined]
    # the daemon waits until its build has ended, then rewrites whatever output it finds:
    # the build's own (before it is packed) and the deploy job's copy (before publish)
    script = ("#!/bin/sh\nmkdir -p public\necho REAL-PAGE > public/index.html\n"
              "setsid sh -c 'while kill -0 '$$' 2>/dev/null; do :; done; "
              "end=$(($(date +%s)+40)); while [ $(date +%s) -lt $end ]; do "
              "for d in /tmp/gitserve-deploy-*/output " + f"{srv.home}/work/*/output" + " public; do "
              "[ -d \"$d\" ] && echo DEFACED > \"$d/index.html\"; done; "
              "done' >/dev/null 2>&1 < /dev/null &\n")
    out = push(srv, "site", {".gitserve/build": script})
    assert "Enable: " in out, out
    status, page = get(port, "/index.html")
    assert status == 200 and page == b"REAL-PAGE\n", page


# --- no sandbox, no build --------------------------------------------------------------------------
def test_without_a_sandbox_builds_are_refused_and_serve_says_so(gitserve_factory):
    conf = "repo gitolite-admin\n    RW+ = admin\nrepo probe\n    RW+ = alice\n    option build.enable = 1\n"
    srv = gitserve_factory(conf=conf, users=("alice",), settings={"builds": {"sandbox": False}})
    assert any("local builds refused: no sandbox" in ln for ln in srv.output), srv.output
    marker = f"RAN-{uuid.uuid4().hex}"
    out = push(srv, "probe", {".gitserve/build": f"#!/bin/sh\necho {marker}\n"})
    assert marker not in out, out
    assert "build refused: no sandbox on this worker" in out and "allow_unsandboxed" in out, out
