"""One mail delivery attempt through the SMTP server of gitserve.toml `[smtp]`.

The password is the server secret named by `[smtp] password_secret` (scope `@server`,
set with `gitserve admin secrets set @server NAME`); gitserve.toml never holds it. A
temporary failure (no connection, timeout, a 4xx reply) is worth retrying (rq does:
notify/notifier.py); a permanent one (5xx: bad password, recipient refused) is final.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from gitserve.errors import GitserveError
from gitserve.settings import SmtpSettings

from .webhook import Outcome


class MailConfigError(GitserveError):
    """[smtp] is incomplete; one line for the delivery log."""


def message(smtp: SmtpSettings, to: list[str], subject: str, body: str) -> EmailMessage:
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


def _context(smtp: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=smtp.ca_file or None)


def _send_once(smtp: SmtpSettings, password: str | None, msg: EmailMessage) -> None:
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


def send(smtp: SmtpSettings, password: str | None, msg: EmailMessage) -> Outcome:
    """One delivery attempt; `final` unless it failed for a reason a retry may cure (no
    connection, a timeout, a 4xx reply). The retries themselves are rq's (notify/notifier.py)."""
    if not smtp.host:
        return Outcome(False, None, 1, "[smtp] host is not set in gitserve.toml", final=True)
    try:
        _send_once(smtp, password, msg)
        return Outcome(True, 250, 1, final=True)
    except MailConfigError as exc:
        return Outcome(False, None, 1, str(exc), final=True)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [c for c, _ in exc.recipients.values()]
        code = max(codes) if codes else None
        return Outcome(False, code, 1, f"recipients refused ({code})", final=code is None or code >= 500)
    except smtplib.SMTPResponseException as exc:
        return Outcome(False, exc.smtp_code, 1, f"SMTP {exc.smtp_code}", final=exc.smtp_code >= 500)
    except ssl.SSLError as exc:
        return Outcome(False, None, 1, f"TLS: {exc.reason or type(exc).__name__}", final=True)
    except (smtplib.SMTPException, OSError) as exc:
        error = ("timeout" if isinstance(exc, (socket.timeout, TimeoutError))
                 else getattr(exc, "strerror", None) or type(exc).__name__)
        return Outcome(False, None, 1, error)
