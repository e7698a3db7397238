"""Real receivers for notification tests, run as their own processes by tests/support/notify.py.

    python -m tests.support.notify_receivers smtp PORT DIR      (env SMTP_USER, SMTP_PASSWORD, TLS_CERT,
                                                          TLS_KEY, SMTP_FAIL_FIRST)
    python -m tests.support.notify_receivers webhook PORT FILE   (env WEBHOOK_KEY, README, WEBHOOK_FAIL_FIRST)

smtp: aiosmtpd with STARTTLS required and AUTH LOGIN/PLAIN checked against the given user and
password; each accepted mail is DIR/N.eml plus DIR/N.json (envelope, auth login, arrival time).
The first SMTP_FAIL_FIRST mails get a temporary `451` (the sender must retry).

webhook: an HTTP server that checks X-Gitserve-Signature with the `verify` function of the
README (the very snippet users copy), and appends one JSON line per request to FILE: path,
headers, raw body, whether the signature verified, arrival time. Paths: /fail answers 503 to
the first WEBHOOK_FAIL_FIRST requests, /gone always 404, others 200 (401 if unverified and
/strict).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gitserve.sigevent import SignalEvent

VERIFY_MARK = "<!-- webhook-verify -->"


def readme_verify(readme: Path) -> Any:
    """The `verify(secret, body, header)` function from the README's code block after the mark."""
    text = readme.read_text()
    after = text.split(VERIFY_MARK, 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    if code is None:
        raise SystemExit("README: no python block after the webhook-verify mark")
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - the documented snippet is what we test
    return scope["verify"]


def run_smtp(port: int, out: Path) -> None:
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    user, password = os.environ["SMTP_USER"].encode(), os.environ["SMTP_PASSWORD"].encode()
    fail_first = [int(os.environ.get("SMTP_FAIL_FIRST", "0"))]
    out.mkdir(parents=True, exist_ok=True)
    count = [0]

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if fail_first[0] > 0:
                fail_first[0] -= 1
                return "451 4.3.0 try again later"
            count[0] += 1
            n = count[0]
            (out / f"{n}.eml").write_bytes(envelope.original_content or envelope.content)
            (out / f"{n}.json").write_text(json.dumps({
                "from": envelope.mail_from, "to": envelope.rcpt_tos, "t": time.time(),
                "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword)
                else None, "authenticated": session.authenticated, "tls": session.ssl is not None}))
            return "250 OK"

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx,
                            require_starttls=True, authenticator=authenticator, auth_required=True,
                            auth_require_tls=True)
    controller.start()
    print("ready", flush=True)
    stop = SignalEvent()  # set in a signal handler: not threading.Event (gitserve/sigevent.py)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


def run_webhook(port: int, out: Path) -> None:
    verify = readme_verify(Path(os.environ["README"]))
    key = os.environ.get("WEBHOOK_KEY", "").encode()
    fail_first = [int(os.environ.get("WEBHOOK_FAIL_FIRST", "0"))]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            header = self.headers.get("X-Gitserve-Signature")
            verified = bool(header) and verify(key, body, header)
            code = 200
            with lock:
                if self.path.startswith("/fail") and fail_first[0] > 0:
                    fail_first[0] -= 1
                    code = 503
                elif self.path.startswith("/gone"):
                    code = 404
                elif self.path.startswith("/strict") and not verified:
                    code = 401
                with open(out, "a") as f:
                    f.write(json.dumps({"path": self.path, "headers": dict(self.headers.items()),
                                        "body": body.decode("utf-8", "replace"), "verified": verified,
                                        "code": code, "t": arrived}) + "\n")
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    kind, port_arg, path_arg = sys.argv[1:4]
    {"smtp": run_smtp, "webhook": run_webhook}[kind](int(port_arg), Path(path_arg))
