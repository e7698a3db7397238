"""One mail delivery through the SMTP server of gitserve.toml `[smtp]`, with retries.

The password is the server secret named by `[smtp] password_secret` (scope `@server`,
set with `gitserve admin secrets set @server NAME`); gitserve.toml never holds it. A
temporary failure (no connection, timeout, a 4xx reply) is retried with exponential backoff;
a permanent one (5xx: bad password, recipient refused) is final.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from gitserve.errors import GitserveError

from .webhook import Outcome


class MailConfigError(GitserveError):
    """[smtp] is incomplete; one line for the delivery log."""


def message(smtp: Any, to: list[str], subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    sender = smtp.sender or (f"{smtp.user}" if "@" in smtp.user else f"gitserve@{socket.getfqdn()}")
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


def _context(smtp: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=smtp.ca_file or None)


def _send_once(smtp: Any, password: str | None, msg: EmailMessage) -> None:
    if smtp.tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout,
                                                context=_context(smtp))
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    with client:
        client.ehlo()
        if smtp.starttls and not smtp.tls:
            client.starttls(context=_context(smtp))
            client.ehlo()
        if smtp.user:
            if password is None:
                raise MailConfigError(f"[smtp] user is set but server secret "
                                      f"{smtp.password_secret or '(password_secret unset)'} is missing")
            client.login(smtp.user, password)
        client.send_message(msg)


def send(smtp: Any, password: str | None, msg: EmailMessage, *, attempts: int, backoff: float,
         sleep: Callable[[float], None] = time.sleep) -> Outcome:
    if not smtp.host:
        return Outcome(False, None, 0, "[smtp] host is not set in gitserve.toml")
    code: int | None = None
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            _send_once(smtp, password, msg)
            return Outcome(True, 250, attempt)
        except MailConfigError as exc:
            return Outcome(False, None, attempt, str(exc))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            code = max(codes) if codes else None
            error = f"recipients refused ({code})"
            if code is None or code >= 500:
                return Outcome(False, code, attempt, error)
        except smtplib.SMTPResponseException as exc:
            code, error = exc.smtp_code, f"SMTP {exc.smtp_code}"
            if exc.smtp_code >= 500:
                return Outcome(False, code, attempt, error)
        except ssl.SSLError as exc:
            return Outcome(False, None, attempt, f"TLS: {exc.reason or type(exc).__name__}")
        except (smtplib.SMTPException, OSError) as exc:
            code = None
            error = ("timeout" if isinstance(exc, (socket.timeout, TimeoutError))
                     else getattr(exc, "strerror", None) or type(exc).__name__)
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    return Outcome(False, code, attempts, error)
