"""Logging for `gitserve serve` (HOME/logs/server.log) and `gitserve worker` (workers.log).

Library modules only call `logging.getLogger(__name__)`; the CLI calls `configure` once.
One line per event: time, level, the connection or build it belongs to, logger, message
(`--log-format json`: one JSON object per line, for log shippers). The connection or build
id comes from `log_context`, set by the SSH server per connection and by the worker per build;
threads do not inherit it, so a thread that serves a connection sets it again.

Secrets never reach the file: credentials inside URLs (`redis://user:PASS@host`) and
`password=`/`token=` values are masked before a line is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
# extra= for a record the user already sees another way (e.g. main()'s `gitserve: ...` line)
FILE_ONLY = {"console": False}
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(ctx)s] %(name)s: %(message)s"

_context: contextvars.ContextVar[str] = contextvars.ContextVar("gitserve_log_context", default="-")
_SECRET = re.compile(r"(?P<k>://[^/\s:@]*:)[^@\s]+(?=@)"
                     r"|(?P<kv>\b(?:password|passwd|token|secret)=)[^\s&]+", re.I)


def current_context() -> str:
    return _context.get()


@contextmanager
def log_context(value: str) -> Iterator[None]:
    """Tag every log line of this thread (until the block ends) with VALUE, e.g. `c12`
    for a connection or `build 42` for a build."""
    token = _context.set(value)
    try:
        yield
    finally:
        _context.reset(token)


def redact(text: str) -> str:
    """TEXT with URL passwords and password=/token=/secret= values replaced by ***."""
    return _SECRET.sub(lambda m: (m.group("k") or m.group("kv")) + "***", text)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ctx = _context.get()
        return True


def _not_file_only(record: logging.LogRecord) -> bool:
    return getattr(record, "console", True) is not False


_CLIENT_LEFT = ("Socket exception:", "Exception (server): Error reading SSH protocol banner")


class _QuietHandshakeFailures(logging.Filter):
    """paramiko logs a failed SSH negotiation (`ssh-keyscan` asking for a host key type we do
    not have, a scanner, a client hanging up) as one ERROR line and then its traceback, one
    record per line. Keep the first line for the console, as a warning; the traceback goes
    to the log file only."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(_CLIENT_LEFT):
            # a client that hung up (ssh-keyscan after reading the host key, a port probe):
            # routine, so the log file only, whatever level paramiko gave it
            self._local.failed = message.startswith("Exception (server):")
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.console = False
        elif message.startswith("Exception (server):"):
            self._local.failed = True
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif getattr(self._local, "failed", False) and record.levelno >= logging.ERROR:
            record.console = False  # the traceback of that failure
        return True


def _encodable(text: str) -> str:
    """TEXT with lone surrogates as `\\udcff`: what a client sends (an ssh command's bytes
    that are not UTF-8, decoded with surrogateescape) may reach a line, and a UTF-8 stream
    refuses them: the line was lost and logging printed its own traceback on the console."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # one event, one line: a traceback's newlines are kept escaped on the same line
        return _encodable(redact(super().format(record)).replace("\n", "\\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, ctx, logger, message (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "ctx": getattr(record, "ctx", "-"),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return _encodable(json.dumps(entry, ensure_ascii=False))


def log_path(home: Path, filename: str = "server.log") -> Path:
    return Path(home) / "logs" / filename


def check_options(level: str, fmt: str) -> None:
    """ValueError (one line) unless LEVEL and FMT are ones `configure` takes."""
    if level.upper() not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def configure(home: Path, filename: str = "server.log", level: str = "INFO",
              fmt: str = "text", console: bool = True) -> Path:
    """Send every gitserve/buildqueue/deploy log line to HOME/logs/FILENAME (rotated at
    10 MB, 5 kept); warnings and errors also to stderr when CONSOLE. Returns the path."""
    check_options(level, fmt)
    level = level.upper()
    path = log_path(home, filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter: logging.Formatter = (JsonFormatter() if fmt == "json"
                                    else _TextFormatter(TEXT_FORMAT))
    handler: logging.Handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handlers = [handler]
    if console:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setLevel(logging.WARNING)
        stderr.addFilter(_not_file_only)
        handlers.append(stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(_ContextFilter())
        root.addHandler(h)
    root.setLevel(level)
    # paramiko and dulwich log every negotiation at INFO: keep them to real problems
    for noisy in ("paramiko", "dulwich"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    transport = logging.getLogger("paramiko.transport")
    if not any(isinstance(f, _QuietHandshakeFailures) for f in transport.filters):
        transport.addFilter(_QuietHandshakeFailures())
    return path
