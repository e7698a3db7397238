"""Smart HTTP git with the real git client: tokens, anonymous `daemon` reads, Gitolite's
messages and audit lines as over SSH, a sync build's log streamed into an http push,
revocation, the failed-login limit, and /metrics after the work (parsed by prometheus-client)."""

from __future__ import annotations

import re
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.httpkit import (audit_since, get, hgit, http_env, http_url, loads, login_cookie,
                                   make_http_server, token, wait_http)
from tests.support.pushes import remote, timed_git

pytestmark = pytest.mark.timeout(180)

CONF = """
repo gitolite-admin
    RW+ = admin
repo pub
    RW+ = alice
    R = daemon
repo priv
    RW+ = alice
    RW dev = bob
    R = bob
repo live
    RW+ = alice
    option build.enable = 1
repo wild/CREATOR/..*
    C = @all
    RW+ = CREATOR
    R = @all
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = make_http_server(tmp_path_factory.mktemp("http-srv"), conf=CONF,
                              users=("alice", "bob", "carol"),
                              settings={"http": {"trusted_proxies": "127.0.0.1",
                                                 "auth_failures_per_minute": 5}})
    try:
        work = server.clone("alice", "priv")
        server.commit("alice", work, "README", "hello from priv\n")
        server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        work = server.clone("alice", "pub")
        server.commit("alice", work, "README", "hello from pub\n")
        server.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
        yield server
    finally:
        server.stop()


def test_anonymous_read_only_where_daemon_may(srv, tmp_path):
    ok = hgit(srv, "clone", http_url(srv, "pub"), str(tmp_path / "pub"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "pub" / "README").read_text() == "hello from pub\n"
    denied = hgit(srv, "clone", http_url(srv, "priv"), str(tmp_path / "priv"))
    assert denied.returncode != 0 and not (tmp_path / "priv").exists()
    # what git's credential helpers need: 401 with a Basic challenge (no hint the repo exists)
    for repo in ("priv", "no-such-repo"):
        status, headers, _ = get(f"{srv.http_base}/{repo}.git/info/refs?service=git-upload-pack")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="gitserve"'
    # a push always needs a token, even where daemon may read
    (tmp_path / "pub" / "x").write_text("x\n")
    hgit(srv, "add", "x", cwd=tmp_path / "pub")
    hgit(srv, "commit", "-qm", "x", cwd=tmp_path / "pub")
    push = hgit(srv, "push", "origin", "HEAD:main", cwd=tmp_path / "pub")
    assert push.returncode != 0
    status, headers, _ = get(f"{srv.http_base}/pub.git/info/refs?service=git-receive-pack")
    assert status == 401 and "WWW-Authenticate" in headers


def test_token_clone_fetch_push_with_audit(srv, tmp_path):
    tok = token(srv, "alice", "laptop")
    assert re.fullmatch(r"gst_[A-Za-z0-9_-]{43}", tok)
    stored = (srv.home / "http" / "tokens.json").read_text()
    assert tok not in stored and tok[4:] not in stored  # only the hash is kept
    before = len(srv.audit_lines())
    url = http_url(srv, "priv", "alice", tok)
    clone = hgit(srv, "clone", url, str(tmp_path / "a"))
    assert clone.returncode == 0, clone.stderr
    (tmp_path / "a" / "new.txt").write_text("over http\n")
    hgit(srv, "add", "new.txt", cwd=tmp_path / "a")
    hgit(srv, "commit", "-qm", "over http", cwd=tmp_path / "a")
    push = hgit(srv, "push", "origin", "HEAD:main", "HEAD:refs/heads/topic", cwd=tmp_path / "a")
    assert push.returncode == 0, push.stderr
    head = hgit(srv, "rev-parse", "HEAD", cwd=tmp_path / "a").stdout.strip()
    # the same refs over ssh, and a fetch over http from another clone sees the push
    assert f"{head}\trefs/heads/topic" in srv.git("alice", "ls-remote", srv.url("priv")).stdout
    other = srv.clone("alice", "priv")
    srv.git("alice", "remote", "set-url", "origin", url, cwd=other)
    srv.git("alice", "reset", "-q", "--hard", "HEAD~1", cwd=other)
    fetch = hgit(srv, "pull", "-q", "--ff-only", "origin", "main", cwd=other)
    assert fetch.returncode == 0, fetch.stderr
    assert (other / "new.txt").read_text() == "over http\n"
    lines = audit_since(srv, before)
    reads = [e for e in lines if e["op"] == "R" and e["repo"] == "priv" and e["user"] == "alice"]
    assert reads and all(e["result"] == "allowed" and e["ip"] == "127.0.0.1" for e in reads)
    pushed = {e["ref"] for e in lines if e["op"] == "push" and e["result"] == "updated"}
    assert pushed == {"refs/heads/main", "refs/heads/topic"}


def test_denied_ref_has_gitolite_message_as_over_ssh(srv, tmp_path):
    tok = token(srv, "bob", "ci")
    url = http_url(srv, "priv", "bob", tok)
    assert hgit(srv, "clone", url, str(tmp_path / "b")).returncode == 0
    work = tmp_path / "b"
    (work / "bob.txt").write_text("bob\n")
    hgit(srv, "add", "bob.txt", cwd=work)
    hgit(srv, "commit", "-qm", "bob", cwd=work)
    over_http = hgit(srv, "push", "origin", "HEAD:main", cwd=work)
    srv.git("bob", "remote", "add", "ssh", srv.url("priv"), cwd=work)
    over_ssh = srv.git("bob", "push", "ssh", "HEAD:main", cwd=work, check=False)
    assert over_http.returncode != 0 and over_ssh.returncode != 0

    def said(stderr: str) -> list[str]:
        return [line.strip() for line in stderr.splitlines()
                if line.startswith("remote:") or "[remote rejected]" in line]

    assert "remote: FATAL: W refs/heads/main priv bob DENIED by fallthru" in said(over_http.stderr)
    assert said(over_http.stderr) == said(over_ssh.stderr)
    status, _, body = get(f"{srv.http_base}/metrics")
    assert re.search(r'^gitserve_access_denied_total\{check="2",transport="http"\} [1-9]',
                     body.decode(), re.M)
    # the ref bob may write goes through
    ok = hgit(srv, "push", "origin", "HEAD:dev", cwd=work)
    assert ok.returncode == 0, ok.stderr


def test_check1_denial_is_gitolite_text(srv, tmp_path):
    tok = token(srv, "carol", "c")
    out = hgit(srv, "clone", http_url(srv, "priv", "carol", tok), str(tmp_path / "c"))
    assert out.returncode != 0
    assert "remote: FATAL: R any priv carol DENIED by fallthru" in out.stderr
    assert "remote: (or you mis-spelled the reponame)" in out.stderr
    # an unknown repo looks exactly the same
    out2 = hgit(srv, "clone", http_url(srv, "nope", "carol", tok), str(tmp_path / "d"))
    assert "remote: FATAL: R any nope carol DENIED by fallthru" in out2.stderr


def test_push_creates_wild_repo_over_http_as_over_ssh(srv, tmp_path):
    """A user with C creates a wild repo with their first push over http too (check #1's
    `Initialized ...` line has no stderr to go to before the response: it is logged)."""
    tok = token(srv, "carol", "wild")
    work = tmp_path / "w"
    hgit(srv, "init", "-q", "-b", "main", str(work))
    (work / "f").write_text("wild\n")
    hgit(srv, "add", "f", cwd=work)
    hgit(srv, "commit", "-qm", "wild", cwd=work)
    before = len(srv.audit_lines())
    push = hgit(srv, "push", http_url(srv, "wild/carol/made", "carol", tok), "HEAD:main",
                cwd=work)
    assert push.returncode == 0, push.stderr
    assert srv.repo_path("wild/carol/made").is_dir()
    assert "refs/heads/main" in srv.git("carol", "ls-remote", srv.url("wild/carol/made")).stdout
    created = [e for e in audit_since(srv, before) if e["op"] == "C"]
    assert [(e["repo"], e["user"], e["result"]) for e in created] == [
        ("wild/carol/made", "carol", "created")]
    # bob may read it (R = @all) but not push: Gitolite's check #1 text, a 403
    tok_b = token(srv, "bob", "wild-b")
    denied = hgit(srv, "push", http_url(srv, "wild/carol/made", "bob", tok_b), "HEAD:other",
                  cwd=work)
    assert "remote: FATAL: W any wild/carol/made bob DENIED by fallthru" in denied.stderr


def test_a_domain_error_in_the_handler_thread_is_one_log_line_and_a_generic_500(srv, tmp_path):
    """A pack that cannot be made (a ref to a commit whose tree is missing: a broken
    repository) raises PackGenError in the handler's worker thread. Before any byte of the
    answer: the generic 500, never the error or a traceback; the log gets one line without a
    traceback. With progress, git's own `fatal:` line reaches the client as `remote:`
    progress (as over ssh) from packgen's relay thread, which is no anyio worker thread."""
    tok = token(srv, "alice", "broken")
    work = srv.clone("alice", "wild/alice/broken")
    srv.commit("alice", work, "README", "fine\n")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    repo = srv.repo_path("wild/alice/broken")
    bad = subprocess.run(["git", "hash-object", "-w", "--literally", "-t", "commit", "--stdin"],
                         cwd=repo, capture_output=True, text=True, check=True,
                         input=f"tree {'1' * 40}\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nx\n"
                         ).stdout.strip()
    subprocess.run(["git", "update-ref", "refs/heads/broken", bad], cwd=repo, check=True)
    log_file = srv.home / "logs" / "server.log"
    before = len(log_file.read_text().splitlines())
    want = f"want {bad} side-band-64k thin-pack ofs-delta no-progress\n".encode()
    body = b"%04x" % (len(want) + 4) + want + b"0000" + b"0009done\n"
    status, _, answer = get(f"{srv.http_base}/wild/alice/broken.git/git-upload-pack", data=body,
                            headers={"Content-Type": "application/x-git-upload-pack-request",
                                     "Authorization": _basic("alice", tok)})
    assert (status, answer) == (500, b"FATAL: internal server error (see the server log)\n"), answer
    quiet = hgit(srv, "-c", "protocol.version=0", "clone", "-q",
                 http_url(srv, "wild/alice/broken", "alice", tok), str(tmp_path / "q"))
    assert quiet.returncode != 0 and "error: RPC failed; HTTP 500" in quiet.stderr, quiet.stderr
    loud = hgit(srv, "-c", "protocol.version=0", "clone", "--progress",
                http_url(srv, "wild/alice/broken", "alice", tok), str(tmp_path / "l"))
    assert loud.returncode != 0, loud.stderr
    assert f"remote: fatal: bad tree object {'1' * 40}" in loud.stderr, loud.stderr
    assert not any("Traceback" in r.stderr for r in (quiet, loud))
    new = log_file.read_text().splitlines()[before:]
    failed = [line for line in new if "git-upload-pack of wild/alice/broken failed" in line]
    assert len(failed) == 3 and all(line.endswith(
        f"failed: git pack-objects failed: fatal: bad tree object {'1' * 40}") for line in failed), new
    assert not any("Traceback" in line or "uvicorn" in line for line in new), new


def test_token_revoked_midway_stops_working(srv, tmp_path):
    tok = token(srv, "alice", "short", "--expires", "1")
    listing = srv.ssh("alice", "token", "list").stdout
    assert re.search(r"^short\tactive\tcreated \S+ \S+\texpires \S+ \S+$", listing, re.M), listing
    url = http_url(srv, "priv", "alice", tok)
    assert hgit(srv, "clone", url, str(tmp_path / "r")).returncode == 0
    assert hgit(srv, "fetch", "origin", cwd=tmp_path / "r").returncode == 0
    out = srv.ssh("alice", "token", "revoke", "short")
    assert out.returncode == 0 and out.stdout == "token short revoked\n"
    again = hgit(srv, "fetch", "origin", cwd=tmp_path / "r")
    assert again.returncode != 0 and "Authentication failed" in again.stderr
    assert "short" not in srv.ssh("alice", "token", "list").stdout
    bad = srv.ssh("alice", "token", "revoke", "short")
    assert bad.returncode != 0 and bad.stderr.strip() == "FATAL: you have no token named short"
    bad = srv.ssh("alice", "token", "create", ".x")
    assert bad.returncode != 0 and "FATAL: invalid token name" in bad.stderr
    # another user's name with alice's (live) token is no login either
    tok2 = token(srv, "alice", "other")
    status, headers, _ = get(f"{srv.http_base}/priv.git/info/refs?service=git-upload-pack",
                             headers={"Authorization": _basic("bob", tok2),
                                      "X-Forwarded-For": "198.51.100.1"})
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="gitserve"'


def _basic(user: str, secret: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_failed_logins_are_limited_per_address(srv):
    url = f"{srv.http_base}/priv.git/info/refs?service=git-upload-pack"
    attacker = {"X-Forwarded-For": "203.0.113.9"}  # the trusted proxy (127.0.0.1) says who
    codes = [get(url, headers={**attacker, "Authorization": _basic("alice", f"gst_guess{i}")})[0]
             for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    # even the right token is refused from that address now; others are unaffected
    tok = token(srv, "alice", "limit")
    assert get(url, headers={**attacker, "Authorization": _basic("alice", tok)})[0] == 429
    assert get(url, headers={"X-Forwarded-For": "203.0.113.10",
                             "Authorization": _basic("alice", tok)})[0] == 200


def test_build_log_streams_into_http_push(srv, tmp_path):
    tok = token(srv, "alice", "builder")
    url = http_url(srv, "live", "alice", tok)
    work = tmp_path / "live"
    assert hgit(srv, "clone", url, str(work)).returncode == 0
    script = work / ".gitserve" / "build"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho first line\nsleep 4\necho second line\n")
    script.chmod(0o755)
    hgit(srv, "add", "-A", cwd=work)
    hgit(srv, "commit", "-qm", "build", cwd=work)
    code, lines = timed_git(http_env(srv), "push", "origin", "HEAD:main", cwd=work)
    assert code == 0, lines
    at = {line[len("remote: "):].strip(): t for t, line in lines if line.startswith("remote: ")}
    assert at["second line"] - at["first line"] >= 3.0, lines
    summary = remote(lines)[-1]
    assert re.fullmatch(r"build \d+ passed in \d+\.\ds", summary), lines
    build_id = summary.split()[1]
    out = srv.ssh("alice", "builds", "log", build_id)
    assert out.stdout.splitlines() == ["first line", "second line", summary]


def test_session_cookie_secure_only_over_https_from_trusted_proxy(srv):
    # this server trusts 127.0.0.1 as its TLS proxy
    cookie = login_cookie(srv, "alice", {"X-Forwarded-Proto": "https"})
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in login_cookie(srv, "alice")


def test_healthz(srv):
    status, headers, body = get(f"{srv.http_base}/healthz")
    report = loads(body)
    assert headers["Content-Type"] == "application/json"
    assert report["redis"] == "ok" and report["workers"] >= 1, report
    # an embedded nginx with no site to serve is not running, and need not be: still healthy
    assert report["nginx"] in ("ok", "no sites (not needed)"), report
    assert status == 200 and report["status"] == "ok", report


def scrape(srv) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = get(f"{srv.http_base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_count_the_work(srv, tmp_path):
    before = scrape(srv)
    # the work: an anonymous clone, a denied clone, a wrong token, a push with a build
    assert hgit(srv, "clone", http_url(srv, "pub"), str(tmp_path / "p")).returncode == 0
    tok = token(srv, "carol", "metrics")
    assert hgit(srv, "clone", http_url(srv, "priv", "carol", tok), str(tmp_path / "c")).returncode
    assert get(f"{srv.http_base}/priv.git/info/refs?service=git-upload-pack",
               headers={"Authorization": _basic("alice", "gst_wrong")})[0] == 401
    tok = token(srv, "alice", "metrics")
    work = tmp_path / "live"
    assert hgit(srv, "clone", http_url(srv, "live", "alice", tok), str(work)).returncode == 0
    script = work / ".gitserve" / "build"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\necho counted\nsleep 1\n")
    script.chmod(0o755)
    hgit(srv, "add", "-A", cwd=work)
    hgit(srv, "commit", "-qm", "metrics", cwd=work)
    push = hgit(srv, "push", "origin", "HEAD:main", cwd=work)
    assert push.returncode == 0 and "passed in" in push.stderr, push.stderr
    # and over ssh: a clone, a push, a denied clone, a denied ref
    ssh_work = srv.clone("alice", "priv")
    srv.commit("alice", ssh_work, "ssh.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=ssh_work)
    assert srv.git("carol", "clone", srv.url("priv"), str(tmp_path / "x"), check=False).returncode
    bob_work = srv.clone("bob", "priv")
    srv.commit("bob", bob_work, "bob.txt")
    assert srv.git("bob", "push", "origin", "HEAD:main", cwd=bob_work, check=False).returncode
    stranger = srv.ssh("alice", "info", key=srv.keygen("mallory"))
    assert stranger.returncode != 0
    after = scrape(srv)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("gitserve_git_operations_total", transport="http", service="git-upload-pack") >= 1
    assert grew("gitserve_git_operations_total", transport="http", service="git-receive-pack") == 1
    assert grew("gitserve_pushes_total", transport="http") == 1
    assert grew("gitserve_git_bytes_total", transport="http", direction="sent") > 0
    assert grew("gitserve_git_bytes_total", transport="http", direction="received") > 0
    assert grew("gitserve_access_denied_total", transport="http", check="1") == 1
    assert grew("gitserve_access_denied_total", transport="http", check="login") == 1
    assert grew("gitserve_connections_total", transport="ssh") >= 7
    assert grew("gitserve_git_operations_total", transport="ssh", service="git-upload-pack") == 2
    assert grew("gitserve_git_operations_total", transport="ssh", service="git-receive-pack") == 2
    assert grew("gitserve_pushes_total", transport="ssh") == 1
    assert grew("gitserve_git_bytes_total", transport="ssh", direction="sent") > 0
    assert grew("gitserve_git_bytes_total", transport="ssh", direction="received") > 0
    assert grew("gitserve_access_denied_total", transport="ssh", check="1") == 1
    assert grew("gitserve_access_denied_total", transport="ssh", check="2") == 1
    assert grew("gitserve_access_denied_total", transport="ssh", check="login") >= 1
    assert grew("gitserve_connections_total", transport="http") >= 6
    assert grew("gitserve_builds_total", result="passed") == 1
    assert grew("gitserve_build_duration_seconds_count") == 1
    assert grew("gitserve_build_duration_seconds_sum") >= 1
    assert after[("gitserve_connections_open", (("transport", "ssh"),))] >= 0
    assert ("gitserve_queue_depth", (("queue", "builds"),)) in after


NGINX_PROXY = """
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 3s;
    }}
  }}
}}
"""


def test_silent_build_survives_proxy_read_timeout(tmp_path):
    """Behind nginx with a 3 s read timeout, a push whose build is silent for 7 s still gets
    its summary: empty progress packets keep the response alive (keepalive_interval)."""
    import os
    import signal
    from tests.support.tools import free_port, require_tool

    nginx = require_tool("nginx")
    server = make_http_server(tmp_path / "srv", conf=CONF, users=("alice",),
                              settings={"server": {"keepalive_interval": 1.0},
                                        "http": {"trusted_proxies": "127.0.0.1"}})
    work_dir = tmp_path / "nginx"
    work_dir.mkdir()
    port = free_port()
    (work_dir / "nginx.conf").write_text(NGINX_PROXY.format(
        user="user root;" if os.geteuid() == 0 else "", work=work_dir, port=port,
        upstream=server.http_port))
    proxy = subprocess.Popen([nginx, "-c", str(work_dir / "nginx.conf"), "-p", str(work_dir)],
                             start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        tok = token(server, "alice", "proxy")
        url = f"http://alice:{tok}@127.0.0.1:{port}/live.git"
        work = tmp_path / "w"
        assert hgit(server, "clone", url, str(work)).returncode == 0
        script = work / ".gitserve" / "build"
        script.parent.mkdir()
        script.write_text("#!/bin/sh\necho before\nsleep 7\necho after\n")
        script.chmod(0o755)
        hgit(server, "add", "-A", cwd=work)
        hgit(server, "commit", "-qm", "silent", cwd=work)
        code, lines = timed_git(http_env(server), "push", "origin", "HEAD:main", cwd=work)
        assert code == 0, lines
        msgs = remote(lines)
        assert msgs[:2] == ["before", "after"] and re.fullmatch(r"build \d+ passed in \d+\.\ds",
                                                                msgs[-1]), lines
        # the audit log has the client's address as the trusted proxy passed it
        assert server.audit_lines()[-1]["ip"] == "127.0.0.1"
    finally:
        os.killpg(proxy.pid, signal.SIGTERM)
        proxy.wait(10)
        server.stop()


def test_hostile_requests(srv):
    """An attacker's requests: a gzip bomb, anonymous wild-repo creation, a cross-site login,
    path tricks. Each gets one clear answer and changes nothing."""
    import gzip
    import http.client

    # 1. 256 MiB of zeros gzipped to ~256 KiB: refused without inflating it into memory
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20

    def peak_rss() -> int:
        status = open(f"/proc/{srv.proc.pid}/status").read()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) << 10

    before = peak_rss()
    tok = token(srv, "alice", "bomb")
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    conn.request("POST", "/priv.git/git-upload-pack", body=bomb, headers={
        "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip",
        "Authorization": _basic("alice", tok)})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (200, 400) and b"Traceback" not in body
    assert peak_rss() - before < 64 << 20
    assert get(f"{srv.http_base}/healthz")[0] in (200, 503)
    # 2. anonymous (daemon) never creates a wild repo, whatever C says
    status, _, _ = get(f"{srv.http_base}/wild/daemon/x.git/info/refs?service=git-upload-pack")
    assert status == 401 and not srv.repo_path("wild/daemon/x").exists()
    # 3. a cross-site form POST to /login is refused (login CSRF)
    from tests.support.httpkit import post_form

    nonce = srv.ssh("alice", "login").stdout.strip().rsplit("/", 1)[1]
    status, headers, _ = post_form(srv.http_base, "/login", f"nonce={nonce}",
                                   {"Origin": "https://evil.example"})
    assert status == 403 and "Set-Cookie" not in headers
    # 4. path tricks
    for path in ("/../priv.git/info/refs?service=git-upload-pack",
                 "/priv.git/../priv.git/info/refs?service=git-upload-pack",
                 "/%2e%2e/priv.git/info/refs?service=git-upload-pack",
                 "/priv.git/info/refs?service=git-upload-archive",
                 "/priv.git/info/refs"):
        status, _, body = get(srv.http_base + path,
                              headers={"Authorization": _basic("alice", tok)})
        assert status in (400, 403, 404), (path, status)
        assert b"Traceback" not in body


def test_web_build_log_masks_secrets_like_the_push(srv, tmp_path):
    value = "hunter2-very-secret"
    srv.admin_cli("admin", "set-secret", "live", "API_KEY", input=value + "\n")
    tok = token(srv, "alice", "secret")
    work = tmp_path / "s"
    assert hgit(srv, "clone", http_url(srv, "live", "alice", tok), str(work)).returncode == 0
    script = work / ".gitserve" / "build"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\necho key=$API_KEY\n")
    script.chmod(0o755)
    hgit(srv, "add", "-A", cwd=work)
    hgit(srv, "commit", "-qm", "secret", cwd=work)
    push = hgit(srv, "push", "origin", "HEAD:main", cwd=work)
    assert "remote: key=***" in push.stderr and value not in push.stderr
    build_id = re.search(r"build (\d+) passed", push.stderr).group(1)
    cookie = login_cookie(srv, "alice").split(";", 1)[0]
    status, _, page = get(f"{srv.http_base}/builds/{build_id}", headers={"Cookie": cookie})
    assert status == 200 and "key=***" in page.decode() and value not in page.decode()
    status, headers, events = get(f"{srv.http_base}/builds/{build_id}/events",
                                  headers={"Cookie": cookie})
    text = events.decode()
    assert headers["Content-Type"].startswith("text/event-stream")
    assert "data: key=***" in text and value not in text
    assert re.search(rf"event: end\nid: \S+\ndata: passed\ndata: build {build_id} passed", text)
    # anonymous (gitweb may not read `live`): no such build
    assert get(f"{srv.http_base}/builds/{build_id}")[0] == 404
    assert get(f"{srv.http_base}/builds/{build_id}/events")[0] == 404


def test_without_redis_health_fails_and_pages_still_work(tmp_path):
    """Redis unreachable: /healthz says so with 503, pages and git over http keep working,
    and `gitserve serve` stops promptly even with a live-log stream open."""
    import socket
    import time

    from tests.support.tools import free_port

    dead = f"redis://:unused@127.0.0.1:{free_port()}"
    server = make_http_server(tmp_path / "srv", conf=CONF, users=("alice",),
                              serve_args=("--redis-url", dead))
    try:
        status, _, body = get(f"{server.http_base}/healthz")
        report = loads(body)
        assert status == 503 and report["redis"].startswith("unreachable") and \
            report["workers"] == 0 and report["status"] == "failing"
        assert "redis://" in report["redis"]
        status, _, page = get(f"{server.http_base}/")
        assert status == 200 and "Redis is not reachable" in page.decode()
        assert hgit(server, "clone", http_url(server, "pub"), str(tmp_path / "p")).returncode == 0
        # an open connection (a browser's keep-alive or event stream) does not hold up a stop
        hold = socket.create_connection(("127.0.0.1", server.http_port))
        hold.sendall(b"GET /builds/1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 15
        hold.close()
    finally:
        server.stop()


def test_build_identity_gets_no_token_or_login(srv):
    key = srv.home / "worker_key"
    assert key.exists()
    for command in (("token", "create", "x"), ("login",)):
        out = srv.ssh("alice", *command, key=key)
        assert out.returncode != 0
        assert out.stderr.strip() == "FATAL: the build identity has no tokens or web logins"


def test_protocol_v2_v1_and_v0_over_http(srv, tmp_path):
    """git picks v2 by itself; v0 and v1 still work; shallow and partial clones over v2."""
    tok = token(srv, "alice", "proto")
    url = http_url(srv, "priv", "alice", tok)
    seen = {}
    for version in ("2", "1", "0"):
        env = http_env(srv)
        env["GIT_TRACE_PACKET"] = str(tmp_path / f"trace-{version}")
        dest = tmp_path / f"v{version}"
        out = subprocess.run(["git", "-c", f"protocol.version={version}", "clone", url, str(dest)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert (dest / "README").read_text() == "hello from priv\n"
        seen[version] = (tmp_path / f"trace-{version}").read_text()
    assert "< version 2" in seen["2"] and "ls-refs" in seen["2"]
    assert "< version 1" in seen["1"] and "< version 2" not in seen["1"]
    assert "< version" not in seen["0"]
    # shallow and partial clones (v2, the default)
    shallow = tmp_path / "shallow"
    assert hgit(srv, "clone", "--depth", "1", url, str(shallow)).returncode == 0
    assert hgit(srv, "rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == "1"
    partial = tmp_path / "partial"
    out = hgit(srv, "clone", "--filter=blob:none", "--no-checkout", url, str(partial))
    assert out.returncode == 0, out.stderr
    missing = hgit(srv, "rev-list", "--objects", "--missing=print", "HEAD", cwd=partial).stdout
    assert any(line.startswith("?") for line in missing.splitlines())
    # a v2 fetch after a push (over ssh) brings the new commit
    work = srv.clone("alice", "priv")
    sha = srv.commit("alice", work, "v2.txt")
    srv.git("alice", "push", "-q", "origin", "HEAD:main", cwd=work)
    assert hgit(srv, "fetch", "origin", cwd=tmp_path / "v2").returncode == 0
    assert hgit(srv, "rev-parse", "origin/main", cwd=tmp_path / "v2").stdout.strip() == sha
