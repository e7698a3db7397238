"""What every page group shares: templates, the visitor's rights, Redis, URLs.

Pages are plain HTML from jinja2 templates with autoescape on, so they work without
JavaScript; only the live log of a running build uses a small script (EventSource).
Page handlers are sync functions: Starlette runs them in its thread pool, so reading repos,
Redis and the admin repo never blocks the event loop. Who the visitor is comes from the
authentication middleware (`request.user`, a gitserve.http.auth.Visitor).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gitserve import acl, repos
from gitserve.settings import Settings

from ..auth import Visitor

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def when(ts: float | str | None) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SSZ` ("-" for none)."""
    try:
        value = float(ts or 0)
    except (TypeError, ValueError):
        return str(ts)
    if not value:
        return "-"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ssh_host_port(settings: Settings) -> tuple[str, int]:
    """The host and port users reach the SSH side at: public_host/public_port when set (22
    behind the system sshd), else the listen address (its machine's name for a wildcard)."""
    return settings.public_ssh()


def ssh_command(settings: Settings) -> str:
    """`ssh [-p PORT] USER@HOST`, as a user types it (the pages' "ssh ... login" hints)."""
    host, port = ssh_host_port(settings)
    return f"ssh {'' if port == 22 else f'-p {port} '}{settings.server.ssh_user}@{host}"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["short_ref"] = lambda ref: str(ref).removeprefix("refs/heads/")
    return env


def visitor(request: Request) -> Visitor:
    """The visitor the authentication middleware put on the request."""
    user = request.user
    assert isinstance(user, Visitor), "page route without the authentication middleware"
    return user


class Pages:
    """Rendering and the checks every page group needs; one per HTTP face."""

    def __init__(self, settings: Settings, metrics: Any) -> None:
        self.settings = settings
        self.metrics = metrics
        self.env = _env()

    def page(self, template: str, visitor: Visitor, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("ssh_command", ssh_command(self.settings))
        html = self.env.get_template(template).render(visitor=visitor, **ctx)
        return HTMLResponse(html, status_code=status)

    def message(self, visitor: Visitor, title: str, text: str, status: int) -> HTMLResponse:
        return self.page("message.html", visitor, status=status, title=title, text=text)

    def can(self, state: Any, repo: str, user: str, perm: str = "R", ref: str = "any") -> bool:
        """acl.can for a repository that exists (pages never show a missing one)."""
        try:
            repo_dir = repos.path(self.settings, repo)
        except repos.RepoError:
            return False
        return acl.repo_exists(repo_dir) and acl.can(state.rules, repo, user, perm, ref,
                                                      repo_dir=repo_dir)

    def redis(self) -> Any:
        """A Redis connection for build records, or None when Redis is down."""
        from buildqueue import rqconn

        try:
            return rqconn.connect(self.settings.effective_redis_url)
        except rqconn.RedisUnavailable:
            return None


def same_origin(request: Request) -> bool:
    """A browser's POST names its page's origin; it must be this host (an absent Origin is a
    non-browser client or an old browser: the CSRF token still guards what matters)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
