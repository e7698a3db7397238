"""Notifications through the real thing: `git push` over OpenSSH to `gitserve serve` (embedded
Redis, local workers, embedded nginx), delivered by the server to real receivers it does not
know are tests: an aiosmtpd SMTP server demanding STARTTLS and AUTH, and an HTTP receiver that
checks signatures with the README's own snippet. Then every place a secret could leak to
(mail, webhook bodies, server/worker/audit/notify logs, all of Redis and its AOF) is searched."""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import pytest

from tests.support.builds import wait_for
from tests.support.server import GitServer, make_server
from tests.support.pushes import new_work, remote, timed_push
from tests.support.tools import free_port, require_tool
from tests.support.notify import (
    SmtpReceiver,
    WebhookReceiver,
    files_under,
    leaks,
    redis_dump,
)

pytestmark = pytest.mark.timeout(240)

SMTP_PASSWORD = "smtp-pw-Zq81!x"
WEBHOOK_KEY = "whk-5c0ffee-signing"
API_TOKEN = "api-tok-77d1e0c4"
SECRETS = [SMTP_PASSWORD, WEBHOOK_KEY, API_TOKEN]

BUILD = """#!/bin/sh
echo "token is $API_TOKEN"
echo "webhook env: ${webhook:-unset}"
i=1
while [ $i -le 60 ]; do echo "line $i"; i=$((i+1)); done
echo "again: $API_TOKEN"
echo done
"""
SITE_BUILD = """#!/bin/sh
echo "site build with $API_TOKEN"
cp -R site/. "$GITSERVE_OUTPUT/"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notify")
    nginx = require_tool("nginx")
    smtp = SmtpReceiver.start(tmp / "smtp", "mailer", SMTP_PASSWORD, fail_first=1)
    hooks = WebhookReceiver.start(tmp / "hooks", WEBHOOK_KEY, fail_first=2)
    ports = {"live": free_port(), "preview": free_port()}
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo notified
    RW+ = alice
    option build.enable = 1
    option notify.webhook = {hooks.url('/hook?token=abc123secretish')} {hooks.url('/fail')}
    option notify.email = dev@example.com
repo plain
    RW+ = alice
    option notify.webhook = {hooks.url('/plain')}
    option notify.events = push
repo quiet
    RW+ = alice
    option build.enable = 1
    option notify.webhook = {hooks.url('/gone')}
    option notify.events = build
repo web
    RW+ = alice
    option build.enable = 1
    option deploy.site = notifysite
    option deploy.port = 127.0.0.1:{ports['live']}
    option deploy.preview-port = {ports['preview']}
    option deploy.check = /health.txt
    option notify.webhook = {hooks.url('/site')}
    option notify.email = ops@example.com
"""
    settings = {
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "starttls": True, "user": "mailer",
                 "password_secret": "SMTP_PASSWORD", "sender": "gitserve@example.com",
                 "ca_file": str(smtp.cert), "timeout": 5.0},
        "notify": {"attempts": 4, "backoff": 0.2, "timeout": 5.0, "allow_private": True},
        "deploy": {"nginx_binary": nginx},
    }
    srv = None
    try:
        srv = make_server(tmp / "srv", conf=conf, users=("alice", "bob"), settings=settings)
        srv.admin_cli("admin", "secrets", "set", "@server", "SMTP_PASSWORD", input=SMTP_PASSWORD + "\n")
        for repo in ("notified", "web"):
            srv.admin_cli("admin", "secrets", "set", repo, "webhook", input=WEBHOOK_KEY)
            srv.admin_cli("admin", "set-secret", repo, "API_TOKEN", input=API_TOKEN + "\n")
        yield srv, smtp, hooks
    finally:
        if srv is not None:
            srv.stop()
            from deploy import nginx as nginx_mod

            from deploy import sitesctl
            sitesctl.stop(srv.settings)  # `gitserve sites` (serve never stops it), nginx with it
            nginx_mod.stop_embedded(srv.settings)
        smtp.stop()
        hooks.stop()


def _redis(srv: GitServer):
    import redis

    return redis.Redis.from_url(srv.settings.effective_redis_url)


def _summary_id(msgs: list[str]) -> str:
    assert re.fullmatch(r"build \d+ \w+ in \d+\.\ds", msgs[-1]), msgs
    return msgs[-1].split()[1]


def test_build_mail_and_signed_webhooks(env):
    srv, smtp, hooks = env
    work = new_work(srv, "notified", BUILD)
    sha = srv.git("alice", "rev-parse", "HEAD", cwd=work).stdout.strip()
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0, lines
    msgs = remote(lines)
    build_id = _summary_id(msgs)
    assert "token is ***" in msgs and "webhook env: unset" in msgs  # the signing key is no build env

    # push event: to both URLs, signed; /fail answered 503 twice first, so it took three attempts
    pushes = wait_for(lambda: len(hooks.bodies("push")) >= 2 and hooks.bodies("push"), timeout=30)
    for body in pushes:
        assert body["_req"]["verified"] is True
        assert body["_req"]["headers"]["X-Gitserve-Event"] == "push"
        assert body["_req"]["headers"]["X-Gitserve-Delivery"] == body["delivery"]
        assert (body["repo"], body["ref"], body["new"], body["pusher"]) == ("notified", "refs/heads/main", sha, "alice")
        assert body["text"] == f"gitserve: alice created main at {sha[:7]} in notified"
        assert "log_tail" not in body and "build_id" not in body
    fails = [r for r in hooks.requests() if r["path"] == "/fail"]
    assert [r["code"] for r in fails].count(503) == 2  # retried, then delivered

    builds = wait_for(lambda: len(hooks.bodies("build")) >= 2 and hooks.bodies("build"), timeout=30)
    b = builds[0]
    assert b["_req"]["verified"] is True and b["_req"]["headers"]["X-Gitserve-Event"] == "build"
    assert (b["build_id"], b["result"], b["status"], b["commit"]) == (build_id, "passed", "passed", sha)
    assert b["text"].startswith(
        f"gitserve: build {build_id} of notified refs/heads/main ({sha[:7]}) by alice passed in ")
    assert b["log_command"] == f"ssh -p {srv.port} git@127.0.0.1 builds log {build_id}"
    assert b["log_tail"][-1] == "done" and isinstance(b["duration"], float)

    # the mail: first attempt got a 451, the retry went through, over STARTTLS, authenticated
    (msg, meta), *_ = wait_for(lambda: smtp.mails(), timeout=30)
    assert meta["to"] == ["dev@example.com"] and meta["tls"] is True
    assert meta["authenticated"] is True and meta["login"] == "mailer"
    assert msg["Subject"] == f"[gitserve] notified main: build {build_id} passed"
    assert msg["From"] == "gitserve@example.com"
    body = msg.get_content().replace("\r\n", "\n")
    assert "  again: ***\n" in body and "  line 60\n" in body and "  done\n" in body
    assert "Last 50 log lines:" in body
    assert "  line 13\n" in body and "  line 12\n" not in body  # exactly the last 50
    assert f"ssh -p {srv.port} git@127.0.0.1 builds log {build_id}" in body
    assert API_TOKEN not in body


def test_forged_signature_is_detected(env):
    _, _, hooks = env
    genuine = wait_for(lambda: [r for r in hooks.requests() if r["path"].startswith("/hook") and r["verified"]],
                       timeout=30)[0]
    body, sig = genuine["body"].encode(), genuine["headers"]["X-Gitserve-Signature"]
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", sig)
    import hashlib
    import hmac

    forged_body = body.replace(b'"pusher": "alice"', b'"pusher": "mallory"')
    assert forged_body != body
    hooks.post(forged_body, sig, "/forged-1")                      # altered body, old signature
    wrong = "sha256=" + hmac.new(b"guessed-key", body, hashlib.sha256).hexdigest()
    hooks.post(body, wrong, "/forged-2")                            # signed with another key
    hooks.post(body, None, "/forged-3")                             # no signature at all
    hooks.post(body, sig.upper().replace("SHA256=", "sha256="), "/forged-4")  # case games
    hooks.post(body, sig, "/replayed")                              # the genuine pair checks out
    got = {r["path"]: r["verified"] for r in hooks.requests() if r["path"].startswith(("/forged", "/replayed"))}
    assert got == {"/forged-1": False, "/forged-2": False, "/forged-3": False, "/forged-4": False,
                   "/replayed": True}


def test_delivery_log_statuses_and_masked_urls(env):
    srv, _, hooks = env
    work = new_work(srv, "quiet", "#!/bin/sh\necho quiet\n")
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    assert code == 0
    build_id = _summary_id(remote(lines))

    def entries():
        return [json.loads(x) for x in srv.admin_cli("admin", "notify-log", "--json").stdout.splitlines()]
    wait_for(lambda: any(e["repo"] == "quiet" for e in entries()), timeout=30)
    quiet = [e for e in entries() if e["repo"] == "quiet"]
    # notify.events = build: no push event; a 404 is final, one attempt
    assert [(e["event"], e["status"], e["attempts"], e["result"]) for e in quiet] == [("build", 404, 1, "failed")]
    assert quiet[0]["build_id"] == build_id
    everything = entries()
    # /fail answered 503 to its first two requests: the push and build deliveries (running at
    # once) shared them, retried, and were delivered; every attempt is one request it received
    fail = [e for e in everything if e["target"].endswith("/fail") and e["repo"] == "notified"]
    assert {(e["status"], e["result"]) for e in fail} == {(200, "delivered")}
    first_two = fail[:2]
    assert sum(e["attempts"] for e in first_two) == 4
    assert len([r for r in hooks.requests() if r["path"] == "/fail"]) == sum(e["attempts"] for e in fail)
    mail = [e for e in everything if e["channel"] == "email"]
    assert mail and (mail[0]["status"], mail[0]["attempts"], mail[0]["target"]) == (250, 2, "dev@example.com")
    table = srv.admin_cli("admin", "notify-log", "notified").stdout
    assert table.splitlines()[0].split() == ["TIME", "REPO", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "RESULT"]
    assert "token=***" in table and "abc123secretish" not in table
    assert "quiet" not in table
    assert "abc123secretish" not in (srv.home / "logs" / "notify.log").read_text()


def test_deploy_switch_and_failure_notify(env):
    srv, smtp, hooks = env
    work = srv.clone("alice", "web")
    for name, text in {".gitserve/build": SITE_BUILD, "site/index.html": "v1\n", "site/health.txt": "ok\n"}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (work / ".gitserve/build").chmod(0o755)
    srv.git("alice", "add", "-A", cwd=work)
    srv.git("alice", "commit", "-qm", "v1", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main", timeout=120)
    msgs = remote(lines)
    assert code == 0 and "Enable: blue" in msgs, msgs
    first = _summary_id(msgs)
    deploys = wait_for(lambda: hooks.bodies("deploy"), timeout=30)
    d = deploys[0]
    assert d["_req"]["verified"] is True
    assert (d["build_id"], d["site"], d["result"]) == (first, "notifysite", "switched")
    assert (d["side"], d["previous_side"]) == ("blue", "")
    assert d["text"].endswith("Enable: blue")
    # a deploy whose check fails: live untouched, a `failed` deploy event and mail
    (work / "site/health.txt").unlink()
    (work / "site/index.html").write_text("v2\n")
    srv.git("alice", "commit", "-qam", "v2", cwd=work)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main", timeout=120)
    second = _summary_id(remote(lines))
    failed = wait_for(lambda: [b for b in hooks.bodies("deploy") if b["build_id"] == second], timeout=30)[0]
    assert failed["result"] == "failed" and "check" in failed["reason"] and failed["side"] == ""
    subjects = wait_for(lambda: {m["Subject"] for m, meta in smtp.mails() if meta["to"] == ["ops@example.com"]}
                        if len([1 for _, meta in smtp.mails() if meta["to"] == ["ops@example.com"]]) >= 4 else None,
                        timeout=30)
    assert "[gitserve] web main: deploy to notifysite switched (blue)" in subjects
    assert "[gitserve] web main: deploy to notifysite failed" in subjects
    assert f"[gitserve] web main: build {first} passed" in subjects
    assert f"[gitserve] web main: build {second} failed" in subjects


def test_secrets_list_remove_cli_and_ssh(env):
    srv, _, _ = env
    out = srv.admin_cli("admin", "secrets", "list", "notified").stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert [r[0] for r in rows] == ["API_TOKEN", "webhook"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", r[1]) for r in rows)
    assert API_TOKEN not in out and WEBHOOK_KEY not in out
    assert srv.admin_cli("admin", "secrets", "list", "@server").stdout.startswith("SMTP_PASSWORD\t")

    # over ssh: the admin may, alice (no W on gitolite-admin) may not, and learns nothing
    res = srv.ssh("admin", "secrets", "set", "notified", "EXTRA", input="extra-value-93\n")
    assert res.returncode == 0 and res.stdout == "secret EXTRA set for notified\n", res.stderr
    assert "EXTRA\t" in srv.ssh("admin", "secrets", "list", "notified").stdout
    denied = srv.ssh("alice", "secrets", "list", "notified")
    assert denied.returncode != 0 and denied.stdout == ""
    assert denied.stderr.strip() == "FATAL: secrets: only admins (W on gitolite-admin) manage secrets"
    assert srv.ssh("alice", "secrets", "set", "notified", "X", input="v").returncode != 0
    assert "EXTRA\t" in srv.admin_cli("admin", "secrets", "list", "notified").stdout
    res = srv.ssh("admin", "secrets", "remove", "notified", "EXTRA")
    assert res.returncode == 0 and "EXTRA" not in srv.admin_cli("admin", "secrets", "list", "notified").stdout

    # bad input: one clear line, nothing changed
    for args, message in (
        (("remove", "notified", "EXTRA"), "gitserve: notified has no secret EXTRA"),
        (("set", "notified", "PATH"), "gitserve: secret name 'PATH' is reserved"),
        (("list", "../etc"), "gitserve: invalid repo name '../etc'"),
    ):
        res = srv.admin_cli("admin", "secrets", *args, input="x", check=False)
        assert res.returncode == 1 and res.stderr.strip() == message, res.stderr
    res = srv.admin_cli("admin", "secrets", "set", "notified", "EMPTY", input="", check=False)
    assert res.returncode == 1 and res.stderr.strip() == "gitserve: empty secret value (it is read from stdin)"
    res = srv.ssh("admin", "secrets", "frob", "notified")
    assert res.returncode != 0 and res.stderr.startswith("FATAL: usage: secrets list REPO")
    audit = [e for e in srv.audit_lines() if e.get("op") == "secret"]
    assert {e["reason"] for e in audit} >= {"set EXTRA", "remove EXTRA"}


def test_latency(env):
    """push end -> push webhook received; build end -> mail received (numbers for the notes)."""
    srv, smtp, hooks = env
    push_lat, mail_lat = [], []
    work = srv.clone("alice", "plain")
    for i in range(5):
        srv.commit("alice", work, name=f"f{i}")
        before = len(hooks.bodies("push"))
        code, _ = timed_push(srv, "alice", work, "origin", "HEAD:main")
        ended = time.time()
        assert code == 0
        got = wait_for(lambda n=before: len(hooks.bodies("push")) > n and hooks.bodies("push")[-1], timeout=20)
        push_lat.append(got["_req"]["t"] - ended)
    r = _redis(srv)
    work = new_work(srv, "notified", "#!/bin/sh\necho quick\n")
    for i in range(5):
        srv.commit("alice", work, name=f"g{i}")
        before = len(smtp.mails())
        code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
        build_id = _summary_id(remote(lines))
        _msg, meta = wait_for(lambda n=before: len(smtp.mails()) > n and smtp.mails()[-1], timeout=20)
        finished = float(r.hget(f"gitserve:build:{build_id}", "finished"))
        mail_lat.append(meta["t"] - finished)
    plain = [json.loads(x) for x in srv.admin_cli("admin", "notify-log", "plain", "--json").stdout.splitlines()]
    event_to_done = [e["seconds"] for e in plain if e["result"] == "delivered"]
    report = (f"refs moved -> push webhook answered: median {statistics.median(event_to_done) * 1000:.0f} ms; "
              f"push end -> webhook received: median {statistics.median(push_lat) * 1000:.0f} ms, "
              f"max {max(push_lat) * 1000:.0f} ms; build end -> mail received: median "
              f"{statistics.median(mail_lat) * 1000:.0f} ms, max {max(mail_lat) * 1000:.0f} ms")
    print("\nnotify latency:", report)
    Path(srv.tmp / "latency.txt").write_text(report + "\n")
    assert max(push_lat) < 5 and max(mail_lat) < 5


def test_a_build_never_gets_server_or_signing_secrets(env):
    """A hostile build goes after the SMTP password (@server scope) and the webhook signing key."""
    srv, _, _ = env
    home = srv.home
    script = (f"#!/bin/sh\nenv\ncat '{home}/secrets/@server.json' 2>&1 | head -3\n"
              f"od -An -tx1 '{home}/secrets.key' 2>&1 | head -3\nls -la '{home}/secrets' 2>&1\n"
              "echo smtp=${SMTP_PASSWORD:-none} hook=${webhook:-none}\n")
    work = new_work(srv, "notified", script)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    out = "\n".join(remote(lines))
    assert code == 0 and "smtp=none hook=none" in out, out
    key_hex = (home / "secrets.key").read_bytes().hex()
    assert SMTP_PASSWORD not in out and WEBHOOK_KEY not in out and key_hex not in out.replace(" ", "")
    assert "SMTP_PASSWORD=" not in out and "webhook=" not in out


def test_no_secret_in_clear_anywhere(env):
    """Last: everything the tests above produced, searched for every secret value."""
    srv, smtp, hooks = env
    found = leaks(
        SECRETS,
        mail=smtp.raw(),
        webhooks=hooks.file.read_bytes(),
        server_log=files_under(srv.tmp / "serve.log"),
        home_logs=files_under(srv.home / "logs"),
        redis=redis_dump(srv.settings.effective_redis_url),
        redis_aof=files_under(srv.home / "redis"),
        secrets_files=files_under(srv.home / "secrets"),
        gitserve_toml=files_under(srv.home / "gitserve.toml"),
    )
    assert found == {}
    # and the scan does look: the masked marker is there, the mail did arrive
    assert b"again: ***" in smtp.raw() and redis_dump(srv.settings.effective_redis_url)
