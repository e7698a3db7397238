"""`gitserve serve`: the SSH server plus the services a push needs on this host.

What runs is built by gitserve.app from the settings (push hooks, ssh commands, services);
this module only parses options, configures logging (HOME/logs/server.log), starts the
services in order, then the SSH server, and stops them in reverse on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gitserve import logsetup
from gitserve.errors import GitserveError
from gitserve.settings import Settings
from gitserve.sigevent import SignalEvent

from .common import HomeOption, fail, load_settings

log = logging.getLogger("gitserve.serve")
# a service stop slower than this is a console warning (below it: the log file)
SLOW_STOP = 5.0

LogLevelOption = Annotated[str, typer.Option(
    "--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO).")]
LogFormatOption = Annotated[str, typer.Option(
    "--log-format", help="text (default) or json: one JSON object per line.")]


def setup_logging(home: Path, filename: str, level: str, fmt: str, console: bool = True) -> Path:
    """Configure logging to HOME/logs/FILENAME; bad --log-* values are one-line errors."""
    try:
        return logsetup.configure(home, filename, level, fmt, console)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {logsetup.log_path(home, filename)}: {exc.strerror or exc}")


def serve(
    home: HomeOption = None,
    listen: Annotated[Optional[str], typer.Option("--listen", help="HOST:PORT to listen on.")] = None,
    redis_url: Annotated[Optional[str], typer.Option(
        "--redis-url", help="Use this Redis; no embedded Redis or local workers.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="Local build workers (with the embedded Redis).")] = None,
    http: Annotated[Optional[str], typer.Option(
        "--http", help="HOST:PORT for git over http, the web UI and /metrics.")] = None,
    log_level: LogLevelOption = "INFO",
    log_format: LogFormatOption = "text",
) -> None:
    """Run the SSH git server (and the embedded Redis, build workers and nginx)."""
    try:
        logsetup.check_options(log_level, log_format)
    except ValueError as exc:
        fail(str(exc))
    settings = load_settings(home)
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            fail(f"--listen must be HOST:PORT, got {listen!r}")
        settings.server.listen = listen if host else f"127.0.0.1:{port}"
    if redis_url is not None:
        settings.redis.url = redis_url
    if workers is not None:
        settings.builds.workers = workers
    if http is not None:
        settings.http.listen = http
    if not settings.admin_repo.exists():
        fail(f"{settings.home} is not a gitserve home (run `gitserve init` first)")
    from buildqueue.rqconn import insecure_reason

    insecure = insecure_reason(settings.redis.url) if settings.redis.url else None
    if insecure is not None and not settings.redis.allow_insecure:
        fail(insecure)

    log_file = setup_logging(settings.home, "server.log", log_level, log_format)
    serve_lock = _lock_home(settings)  # held until exit; the kernel drops it if killed
    _migrate_admin_branch(settings)
    from gitserve import app as app_mod  # here, not at import: `gitserve shell` skips paramiko

    wired = app_mod.build(settings)
    services: list[Any] = []
    stop = SignalEvent()  # set by the handler below (gitserve/sigevent.py: not threading.Event)

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            ssh = wired.ssh_server()
            ssh.bind(*settings.listen_host_port())
        except OSError as exc:
            fail(f"cannot listen on {settings.server.listen}: {exc.strerror or exc}")
        except RuntimeError as exc:
            fail(str(exc))
        web = wired.http_service()  # GitserveError (taken port...): main() prints one line
        for service in [*wired.services, ssh, *([web] if web else [])]:
            try:
                service.start()
            except GitserveError as exc:  # main() prints it as one line on stderr
                log.error("cannot start %s: %s", type(service).__name__, exc,
                          extra=logsetup.FILE_ONLY)
                raise
            except Exception:
                log.exception("cannot start %s", type(service).__name__)
                raise
            services.append(service)
            summary = getattr(service, "summary", "")  # e.g. "embedded nginx serving 2 site(s)"
            if summary:
                print(f"gitserve: {summary}", flush=True)
        bound_host, bound_port = ssh.address
        log.info("listening on %s:%s (pid %s); log %s", bound_host, bound_port, os.getpid(),
                 log_file)
        pid_file = settings.run_dir / "serve.pid"
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
        print(f"gitserve: listening on {bound_host}:{bound_port}", flush=True)
        print(f"gitserve: clone with {clone_line(settings, bound_host, bound_port)}", flush=True)
        if web is not None:
            web_host, web_port = web.address
            log.info("http on %s:%s", web_host, web_port)
            print(f"gitserve: http on {_url_host(web_host)}:{web_port} "
                  "(web UI, git over http, /metrics)", flush=True)
            anonymous = anonymous_repos(settings)
            if anonymous:
                warning = (f"WARNING: http is on: {len(anonymous)} repo(s) can be cloned over "
                           "http WITHOUT LOGIN, because their rules let @all (or daemon) read "
                           "them, as Gitolite's http mode does: "
                           + ", ".join(anonymous[:10]) + (" ..." if len(anonymous) > 10 else ""))
                log.warning("%s", warning, extra=logsetup.FILE_ONLY)
                print(f"gitserve: {warning}", flush=True)
        while not stop.wait(1):
            pass
    finally:
        for service in reversed(services):
            began = time.monotonic()
            try:
                service.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                log.error("stopping %s: %s", type(service).__name__, exc)
            took = time.monotonic() - began
            if took > 1.0:  # a slow exit delays the next serve: say which part was slow
                # (on the console only when it is really slow: a second or two is normal)
                log.log(logging.WARNING if took > SLOW_STOP else logging.INFO,
                        "stopping %s took %.1fs", type(service).__name__, took)
        try:
            pid_file = settings.run_dir / "serve.pid"
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass
    log.info("stopped")
    print("gitserve: stopped", flush=True)
    os.close(serve_lock)


def _lock_home(settings: Settings) -> int:
    """One serve per home: HOME/run/serve.lock, flocked for serve's whole life. A second
    serve fails at once; a serve that finds it free knows every leftover (a Redis still
    flushing after its killed predecessor) is stale and may be replaced."""
    from gitserve.fsutil import try_flock

    settings.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(settings.run_dir / "serve.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if not try_flock(fd):
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        message = f"another gitserve serve runs on {settings.home} (pid {other})"
        log.error("not started: %s", message, extra=logsetup.FILE_ONLY)
        fail(message)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _migrate_admin_branch(settings: Settings) -> None:
    """A home made when the admin branch was `main` moves to Gitolite's `master` (SPEC §2);
    the authorized_keys block (behind a system sshd) is brought up to date."""
    from gitserve import adminrepo

    try:
        note = adminrepo.migrate_branch(settings)
    except adminrepo.AdminError as exc:
        fail(str(exc))
    if note:
        log.info("%s", note)
        print(f"gitserve: {note}", flush=True)
    adminrepo.sync_authorized_keys(settings)  # [server] authorized_keys, if set (logs a failure)


def clone_line(settings: Settings, bound_host: str, bound_port: int) -> str:
    """The clone command users type: public_host and public_port when set (behind the system
    sshd or a port forward, the port users reach is not the one this process listens on)."""
    host = _url_host(settings.server.public_host or bound_host)
    port = settings.server.public_port or bound_port
    user = settings.server.ssh_user
    if port == 22:
        return f"git clone {user}@{host}:REPO"
    return f"git clone ssh://{user}@{host}:{port}/REPO"


def anonymous_repos(settings: Settings) -> list[str]:
    """Repos the anonymous http user (`daemon`, in Gitolite's @all) may read."""
    from gitserve import adminrepo, repos

    try:
        rules = adminrepo.current(settings).rules
        names = repos.list_names(settings)
    except Exception as exc:  # noqa: BLE001 - the session reports a broken admin repo
        log.info("anonymous repos not listed: %s", exc)
        return []
    out = []
    for name in names:
        wild = repos.wild_info(settings, name)
        if rules.check(name, "daemon", "R", wild=wild).allowed:
            out.append(name)
    return out


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def add_commands(app: typer.Typer) -> None:
    app.command("serve")(serve)
