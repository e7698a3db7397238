"""Notify jobs forged in Redis (redteam2).

The `notify` queue is worked only by `gitserve serve`'s notify workers, which hold the SMTP
password and every repo's webhook signing key. Whoever holds just the Redis password (a
leaked URL, a deploy agent's web host) queued jobs of gitserve's own functions there:
1. `send_mail` with a message and recipients of his own: the server logged in to its SMTP
   server and sent his phishing mail to anyone, from the server's address;
2. `deliver_event` for repo `plain` naming his own URL as `notify.webhook` (the targets
   came from the event, or from the build record in Redis): the server POSTed a body it
   signed with plain's webhook key to him, and with his own ref/commit/pusher to plain's
   real receiver, which took it as a push that never happened.
Now delivery jobs are signed by the notify worker that made them (secrets.key) and checked
before sending; push events are signed by the push hook that saw the push; the targets are
the repo's notify options in the conf in force, never what Redis says.
"""

from __future__ import annotations

import time

import pytest

from tests.support.builds import wait_for
from tests.support.notify import SmtpReceiver, WebhookReceiver
from tests.support.server import make_server

pytestmark = pytest.mark.timeout(180)

SMTP_PASSWORD = "smtp-pw-forge-81"
WEBHOOK_KEY = "whk-forge-signing"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notify-forge")
    smtp = SmtpReceiver.start(tmp / "smtp", "mailer", SMTP_PASSWORD)
    hooks = WebhookReceiver.start(tmp / "hooks", WEBHOOK_KEY)
    conf = f"""
repo gitolite-admin
    RW+ = admin
repo plain
    RW+ = alice
    option notify.webhook = {hooks.url('/plain')}
    option notify.events = push
"""
    settings = {
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "starttls": True, "user": "mailer",
                 "password_secret": "SMTP_PASSWORD", "sender": "gitserve@example.com",
                 "ca_file": str(smtp.cert), "timeout": 5.0},
        "notify": {"attempts": 1, "timeout": 5.0, "allow_private": True},
    }
    srv = None
    try:
        srv = make_server(tmp / "srv", conf=conf, users=("alice",), settings=settings)
        srv.admin_cli("admin", "secrets", "set", "@server", "SMTP_PASSWORD", input=SMTP_PASSWORD + "\n")
        srv.admin_cli("admin", "secrets", "set", "plain", "webhook", input=WEBHOOK_KEY)
        yield srv, smtp, hooks
    finally:
        if srv is not None:
            srv.stop()
        smtp.stop()
        hooks.stop()


def forge(srv, function: str, data: dict) -> str:
    """Queue FUNCTION(DATA) on the notify queue with nothing but the Redis password; wait
    until a notify worker has run it. Returns rq's final status."""
    import redis
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer

    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    try:
        job = Queue("notify", connection=r, serializer=JSONSerializer).enqueue(
            f"buildqueue.notify.notifier.{function}", data)
        return wait_for(lambda: (s := Job.fetch(job.id, connection=r, serializer=JSONSerializer)
                                 .get_status(refresh=True)) in ("finished", "failed") and s,
                        timeout=60)
    finally:
        r.close()


def test_a_forged_mail_job_is_not_sent(env):
    srv, smtp, _hooks = env
    message = ("From: gitserve@example.com\nTo: victim@example.org\nSubject: reset your "
               "password\n\nhttps://evil.example/reset\n")
    forge(srv, "send_mail", {"repo": "plain", "event": "build", "build_id": "", "ts": time.time(),
                             "to": "victim@example.org", "message": message})
    assert not [meta for _m, meta in smtp.mails() if "victim@example.org" in meta["to"]]


def drained(srv) -> None:
    """Until the notify queue is empty and no delivery runs (the deliveries a job queued too)."""
    import redis
    from rq.registry import StartedJobRegistry

    from buildqueue import rqconn

    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    try:
        q = rqconn.queue(r, "notify")
        wait_for(lambda: q.count == 0 and StartedJobRegistry(queue=q).count == 0, timeout=60)
    finally:
        r.close()


def test_a_forged_event_gets_no_signature_and_no_target_of_its_own(env):
    srv, _smtp, hooks = env
    forge(srv, "deliver_event", {
        "event": "push", "repo": "plain", "ts": time.time(),
        "data": {"ref": "refs/heads/main", "old": "0" * 40, "new": "1" * 40, "pusher": "alice",
                 "options": {"notify.webhook": hooks.url("/attacker"), "notify.events": "push"}}})
    drained(srv)
    assert [r for r in hooks.requests() if r["path"] == "/attacker"] == []
    assert [r for r in hooks.requests() if "1" * 40 in r["body"]] == []

    # a real push still notifies plain's receiver, signed
    work = srv.clone("alice", "plain")
    (work / "f").write_text("x\n")
    srv.git("alice", "add", "f", cwd=work)
    srv.git("alice", "commit", "-qm", "x", cwd=work)
    srv.git("alice", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    got = wait_for(lambda: [r for r in hooks.requests() if r["path"] == "/plain"], timeout=30)
    assert got[0]["verified"], got


def test_a_forged_build_record_sends_no_mail(env):
    """The variant: a build event points at a record (in Redis), whose options name the
    targets; a record the attacker wrote names his recipient."""
    import redis

    from buildqueue import keys, records

    srv, smtp, _hooks = env
    r = redis.Redis(unix_socket_path=str(srv.home / "run" / "redis.sock"))
    try:
        build_id = records.new_id(r)
        records.create(r, records.Build(
            id=build_id, repo="plain", ref="refs/heads/main", old="0" * 40, new="1" * 40,
            pusher="alice", mode="async", queue="builds", job_id=keys.build_job(build_id),
            options={"notify.email": "victim@example.org", "notify.events": "build"}), 100)
        records.finish(r, build_id, "failed", "reset your password at https://evil.example/")
    finally:
        r.close()
    forge(srv, "deliver_event", {"event": "build", "repo": "plain", "ts": time.time(),
                                 "data": {"build_id": build_id}})
    drained(srv)
    assert not [meta for _m, meta in smtp.mails() if "victim@example.org" in meta["to"]]
