"""Notification pieces against real local servers: webhook retry/backoff rules, redirects,
URL masking for the delivery log, SMTP permanent failures, settings and secret scopes."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from buildqueue.notify import deliverylog as notifylog
from buildqueue.notify import events as notify
from buildqueue.notify import mailer, webhook
from gitserve.secrets import crypt as sec
from gitserve.secrets import store as secretstore
from gitserve import settings as settings_mod
from gitserve.options import NotifyOptions, RepoOptions
from tests.support.notify import SmtpReceiver

pytestmark = pytest.mark.timeout(60)


class _Handler(http.server.BaseHTTPRequestHandler):
    plan: ClassVar[list[int]] = []
    hits: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).hits.append(self.path)
        code = type(self).plan.pop(0) if type(self).plan else 200
        self.send_response(code)
        if code in (301, 302, 307, 308):
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.plan, _Handler.hits = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _post(url: str) -> webhook.Outcome:
    return webhook.post(url, b"{}", signature=webhook.sign(b"{}", "k"), event="build", delivery="d",
                        timeout=2, user_agent="t",
                        allow_private=True)  # the receiver is on 127.0.0.1


def test_5xx_worth_a_retry_4xx_final(receiver):
    _Handler.plan = [503, 500, 200, 404]
    assert [(o.ok, o.status, o.final) for o in (_post(receiver + "/a") for _ in range(4))] == [
        (False, 503, False), (False, 500, False), (True, 200, True), (False, 404, True)]
    assert _post(receiver + "/b").attempts == 1  # one attempt per call: rq runs the retries


def test_retry_policy_doubles_the_backoff_in_whole_seconds():
    from buildqueue.notify.notifier import retry_policy

    policy = retry_policy(4, 1.0)
    assert policy is not None and (policy.max, policy.intervals) == (3, [1, 2, 4])
    policy = retry_policy(5, 0.2)  # rq counts whole seconds: a fraction waits one
    assert policy is not None and policy.intervals == [1, 1, 1, 2]
    assert retry_policy(1, 1.0) is None


def test_redirect_not_followed(receiver):
    _Handler.plan = [302]
    out = _post(receiver + "/moved")
    assert (out.ok, out.status, out.attempts, out.final) == (False, 302, 1, True)
    assert _Handler.hits == ["/moved"]  # the signed body never went to /elsewhere


def test_connection_refused_is_worth_a_retry():
    from tests.support.tools import free_port

    out = _post(f"http://127.0.0.1:{free_port()}/x")
    assert (out.ok, out.status, out.error, out.final) == (False, None, "Connection refused", False)


def test_signature_is_hmac_sha256_of_raw_body():
    import hashlib
    import hmac

    body = b'{"text": "x"}'
    assert webhook.sign(body, "key") == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0001/B0001/abcdefghijklmnopqrstuvwx",
     "https://hooks.slack.com/services/T0001/B0001/***"),
    ("https://bob:hunter2@example.com/hook?token=s3cret&x=1", "https://bob:***@example.com/hook?token=***&x=***"),
    ("https://tok3n@example.com/h", "https://***@example.com/h"),
    ("http://127.0.0.1:8080/plain", "http://127.0.0.1:8080/plain"),
])
def test_delivery_log_masks_credentials_in_urls(url, shown):
    assert notifylog.mask_url(url) == shown


def test_events_option():
    def read(options: dict[str, str]) -> NotifyOptions:
        return NotifyOptions.lenient(options)

    assert read({}).events == {"push", "build", "deploy"}
    assert read({"notify.events": "build  deploy"}).events == {"build", "deploy"}
    assert read({"notify.events": "nonsense"}).events == set()
    assert not read({"notify.email": "a@b"}).wants("push")  # mail is for builds and deploys
    assert read({"notify.email": "a@b"}).wants("deploy")
    assert not read({"notify.webhook": "ftp://x"}).wants("build")


def test_emit_never_raises_without_redis(tmp_path):
    import redis

    r = redis.Redis(unix_socket_path=str(tmp_path / "none.sock"), socket_connect_timeout=0.2)
    notify.emit(r, "push", "repo", {"ref": "refs/heads/main"})  # logged, not raised


def test_smtp_settings_and_password_never_in_toml(tmp_path: Path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "gitserve.toml").write_text('[smtp]\nhost = "mx"\nfrom = "ci@example.com"\n')
    s = settings_mod.load(home)
    assert (s.smtp.host, s.smtp.sender) == ("mx", "ci@example.com")
    assert 'from = "ci@example.com"' in settings_mod.render(s)
    (home / "gitserve.toml").write_text('[smtp]\npassword = "hunter2"\n')
    with pytest.raises(settings_mod.SettingsError) as err:
        settings_mod.load(home)
    assert "hunter2" not in str(err.value) and "password_secret" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_file_store_scopes_and_notify_only_secrets(tmp_path: Path):
    s = settings_mod.Settings(home=tmp_path)
    store = secretstore.store_for(s, "app")
    store.set("app", "TOKEN", "t-value")
    store.set("app", "webhook", "signing-key")
    secretstore.store_for(s, sec.SERVER_SCOPE).set(sec.SERVER_SCOPE, "SMTP_PASSWORD", "pw")
    names = [n for n, _ in store.list("app")]
    assert names == ["TOKEN", "webhook"] and all(ts for _, ts in store.list("app"))
    tokens = secretstore.build_tokens(s, "app")
    assert list(tokens) == ["TOKEN"]  # the signing key never goes to a build
    assert sec.decrypt(tokens, s.secrets_key_file) == {"TOKEN": "t-value"}
    with pytest.raises(sec.SecretError):
        secretstore.scope_name("@other")
    store.remove("app", "webhook")
    store.remove("app", "TOKEN")
    assert store.list("app") == [] and not (tmp_path / "secrets" / "app.json").exists()
    with pytest.raises(sec.SecretError, match="app has no secret TOKEN"):
        store.remove("app", "TOKEN")
    s.secrets.backend = "consul"
    with pytest.raises(sec.SecretError, match="backend must be one of file, vault"):
        secretstore.store_for(s, "app")


def test_smtp_wrong_password_is_final_and_retries_temporary(tmp_path: Path):
    rx = SmtpReceiver.start(tmp_path / "smtp", "mailer", "right-password", fail_first=1)
    try:
        conf = settings_mod.SmtpSettings(host="127.0.0.1", port=rx.port, user="mailer",
                                         sender="ci@example.com", ca_file=str(rx.cert), timeout=5)
        msg = mailer.message(conf, ["dev@example.com"], "subject", "body")
        out = mailer.send(conf, "wrong-password", msg)
        assert (out.ok, out.status, out.final) == (False, 535, True)
        out = mailer.send(conf, "right-password", msg)
        assert (out.ok, out.status, out.final) == (False, 451, False)  # temporary: rq retries it
        out = mailer.send(conf, "right-password", msg)
        assert (out.ok, out.status, out.final) == (True, 250, True)
        assert len(rx.mails()) == 1
        out = mailer.send(conf, None, msg)
        assert not out.ok and out.final and "server secret" in out.error
        conf.ca_file = ""  # our self-signed cert is not trusted by the system CAs
        out = mailer.send(conf, "right-password", msg)
        assert not out.ok and out.final and out.error.startswith("TLS: ")
    finally:
        rx.stop()


def test_deliveries_wait_in_redis_and_rq_retries_them(tmp_path: Path, redis_server, receiver):
    """An event queued while no notify worker runs is delivered when one starts; a delivery
    answered 503 is retried by rq (its Retry, re-queued by rq's scheduler) and logged once,
    with its attempts; a delivery waiting for its retry survives the workers' stop."""
    import redis as redis_mod

    from buildqueue.notify.service import NotifierService
    from gitserve.git.pushhooks import RefUpdate
    from gitserve.names import ZERO_SHA
    from tests.support.builds import wait_for

    r = redis_mod.Redis.from_url(redis_server.url)
    s = settings_mod.Settings(home=tmp_path)
    s.redis.url = redis_server.url
    s.notify.backoff, s.notify.attempts, s.notify.senders = 0.5, 4, 1
    s.notify.allow_private = True  # the receiver is on 127.0.0.1
    settings_mod.write(s)  # the notify workers read HOME/gitserve.toml, as serve's do
    options = RepoOptions.parse({"notify.webhook": receiver + "/restart"})
    notify.push_event(r, "app", "alice", options, [RefUpdate("refs/heads/main", ZERO_SHA, "1" * 40)],
                      s.secrets_key_file)
    assert r.llen("rq:queue:notify") == 1  # queued, nobody delivers yet
    _Handler.plan = [503, 502]
    first = NotifierService(s)
    first.start()
    try:
        wait_for(lambda: len(_Handler.hits) >= 1, timeout=30)
    finally:
        first.stop()
    assert not notifylog.log_path(s).exists()  # not final: waiting for its retry in Redis
    second = NotifierService(s)
    second.start()
    try:
        wait_for(lambda: notifylog.log_path(s).exists() and list(notifylog.read(s)), timeout=30)
    finally:
        second.stop()
    (entry,) = list(notifylog.read(s))
    assert (entry["event"], entry["status"], entry["result"], entry["attempts"]) == ("push", 200, "delivered", 3)
    assert _Handler.hits == ["/restart"] * 3


def test_vault_backend_without_hvac_is_one_line(tmp_path: Path):
    """In a child process where `import hvac` fails (this one keeps its hvac modules intact)."""
    import subprocess
    import sys

    from tests.support.tools import subprocess_env

    code = (
        "import sys; sys.modules['hvac'] = None\n"
        "from gitserve.secrets import store as secretstore\nfrom gitserve.secrets.crypt import SecretError\n"
        "from gitserve.settings import Settings\n"
        f"s = Settings(home={str(tmp_path)!r})\n"
        "s.secrets.backend, s.secrets.address, s.secrets.token_file = 'vault', 'http://127.0.0.1:1', '/x'\n"
        "try:\n    secretstore.build_tokens(s, 'app')\nexcept SecretError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=subprocess_env())
    assert out.stdout.strip() == "[secrets] backend = \"vault\" needs the hvac package: pip install 'gitserve[vault]'", \
        out.stderr
    s = settings_mod.Settings(home=tmp_path)
    s.secrets.backend, s.secrets.address, s.secrets.token_file = "vault", "http://127.0.0.1:1", "/nonexistent"
    with pytest.raises(sec.SecretError) as err:  # with hvac: the token file is the problem
        secretstore.build_tokens(s, "app")
    assert str(err.value) == "Vault token file /nonexistent: No such file or directory"
    s.secrets.token_file = ""
    with pytest.raises(sec.SecretError, match="needs token_file, or role_id_file and secret_id_file"):
        secretstore.build_tokens(s, "app")


def test_push_texts_for_create_update_delete(tmp_path: Path):
    from buildqueue.notify import format as notify_format
    from gitserve.names import ZERO_SHA

    s = settings_mod.Settings(home=tmp_path)
    a, b = "a" * 40, "b" * 40
    texts = [notify_format.push_notice(s, "app", {"ref": ref, "old": old, "new": new, "pusher": "bob"}, 0).text
             for ref, old, new in (("refs/heads/main", ZERO_SHA, a), ("refs/heads/main", a, b),
                                   ("refs/tags/v1", b, ZERO_SHA))]
    assert texts == ["gitserve: bob created main at aaaaaaa in app",
                     "gitserve: bob pushed main aaaaaaa..bbbbbbb in app",
                     "gitserve: bob deleted v1 in app"]


@pytest.mark.parametrize("name, value, reason", [
    ("notify.webhook", "https://a.example/x http://127.0.0.1:8080/h?t=1", None),
    ("notify.webhook", "https://a.example/x ftp://b", "'ftp://b' is not an http(s) URL"),
    ("notify.email", "dev@example.com ops@example.org", None),
    ("notify.email", "dev@example.com, ops@example.org", "'dev@example.com,' is not a mail address"),
    ("notify.email", "nobody", "'nobody' is not a mail address"),
    ("notify.events", "push deploy", None),
    ("notify.events", "build deplyo", "must be some of push build deploy (not 'deplyo')"),
    ("notify.events", "", "must be some of push build deploy"),
    ("notify.emails", "a@b.c", "unknown gitserve option 'notify.emails'"),
])
def test_notify_options_validated_like_other_gitserve_options(name, value, reason):
    from gitserve import options as gsoptions

    got = gsoptions.problem(name, value, gsoptions.Env())
    if reason is None:
        assert got is None
    else:
        assert got is not None and got.endswith(reason), got
