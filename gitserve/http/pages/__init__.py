"""The web UI (SPEC §9): repos, builds (with the live log), sites (with rollback), login.

One module per page group (repos.py, builds.py, sites.py, login.py) over base.py's
templates and checks. Every page route runs behind Starlette's AuthenticationMiddleware
with gitserve.http.auth.VisitorBackend, so a handler reads the visitor from
`request.user`: a logged-in visitor is their Gitolite user; an anonymous one acts as
Gitolite's `gitweb` user (what gitweb may read is what the world may browse, as with
Gitolite). The git and LFS routes authenticate with tokens instead and do not use it.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route

from gitserve.settings import Settings

from ..auth import Authenticator, VisitorBackend
from ..logins import LoginLinks, Sessions
from .base import Pages
from .builds import BuildPages
from .login import LoginPages
from .repos import RepoPages
from .sites import SitePages, deploy_ref

__all__ = ["Pages", "deploy_ref", "routes"]


def routes(settings: Settings, auth: Authenticator, links: LoginLinks, sessions: Sessions,
           metrics: Any) -> list[Route]:
    """Every page's route, each behind the authentication middleware."""
    pages = Pages(settings, metrics)
    repo, build = RepoPages(pages), BuildPages(pages)
    site, login = SitePages(pages), LoginPages(pages, links, sessions)
    mw = [Middleware(AuthenticationMiddleware, backend=VisitorBackend(auth))]
    return [
        Route("/", repo.index, middleware=mw),
        Route("/r/{name:path}", repo.repo, middleware=mw),
        Route("/builds", build.builds, middleware=mw),
        Route("/builds/{build_id}", build.build, middleware=mw),
        Route("/builds/{build_id}/events", build.build_events, middleware=mw),
        Route("/sites", site.sites, middleware=mw),
        Route("/sites/{site}", site.site, middleware=mw),
        Route("/sites/{site}/rollback", site.rollback, methods=["POST"], middleware=mw),
        Route("/login/{nonce}", login.login_page, middleware=mw),
        Route("/login", login.login, methods=["POST"], middleware=mw),
        Route("/logout", login.logout, methods=["POST"], middleware=mw),
    ]
