"""The site pages: the list (`/sites`), one site with its releases, and rollback (a
CSRF-checked POST). A site is visible with R on the repo that deploys it; rolling it back
needs W on its `deploy.ref`."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gitserve import adminrepo, audit, repos
from gitserve.settings import Settings

from ..auth import Visitor
from ..logins import csrf_ok
from .base import Pages, same_origin, visitor


def deploy_ref(settings: Settings, state: Any, repo: str) -> str:
    """The only ref whose builds go live (SPEC §7), as `ssh ... deploy rollback` finds it:
    `deploy.ref`, else the branch pinned when the site was configured (never HEAD)."""
    from gitserve.options import deploy_ref as option_ref

    head = repos.deploy_default(settings, settings.repo_path(repo))
    try:
        options = state.rules.options(repo, wild=repos.wild_info(settings, repo))
    except Exception:  # noqa: BLE001 - unreadable options: the default branch
        options = {}
    return option_ref(options, head) or head


class SitePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.settings = pages.settings

    def _site(self, state: Any, v: Visitor, site: str) -> tuple[str | None, bool]:
        """(repo of SITE if the visitor may see it, may they roll it back)."""
        from deploy.options import SITE_RE
        from deploy.status import site_repo

        if not SITE_RE.match(site):
            return None, False
        from deploy.agents import record

        repo = site_repo(self.settings, site) or record.site_repo(self.settings, site)
        if repo is None or not self.pages.can(state, repo, v.acts_as):
            return None, False
        if v.user is None:
            return repo, False
        ref = deploy_ref(self.settings, state, repo)
        return repo, self.pages.can(state, repo, v.user, "W", ref)

    def _hosted(self) -> list[str]:
        """Sites served by deploy agents (deploy.hosts, SPEC §7.1)."""
        from deploy.agents import record

        return record.list_sites(self.settings)

    def _status(self, site: str) -> dict[str, Any]:
        """A site's status; for one on deploy agents, with each host's report."""
        from deploy.agents import record
        from deploy.agents.coordinator import Coordinator
        from deploy.status import site_status

        if record.exists(self.settings, site):
            return Coordinator.for_settings(self.settings).status(self.settings, site)
        return site_status(self.settings, site)

    def sites(self, request: Request) -> Response:
        from deploy.status import list_sites

        v = visitor(request)
        state = adminrepo.current(self.settings)
        rows = []
        for site in sorted({*list_sites(self.settings), *self._hosted()}):
            repo, _ = self._site(state, v, site)
            if repo is None:
                continue
            try:
                rows.append(self._status(site))
            except Exception:  # noqa: BLE001 - a half-made site: list it without details
                rows.append({"site": site, "repo": repo, "live_side": None, "releases": []})
        return self.pages.page("sites.html", v, sites=rows)

    def site(self, request: Request, error: str = "", status: int = 200) -> Response:
        v = visitor(request)
        state = adminrepo.current(self.settings)
        name = request.path_params["site"]
        repo, may_rollback = self._site(state, v, name)
        if repo is None:
            return self.pages.message(v, "Not found", "No such site, or you may not read its repo.",
                                      404)
        try:
            st = self._status(name)
        except Exception as exc:  # noqa: BLE001
            return self.pages.message(v, "Site unavailable", str(exc), 500)
        return self.pages.page("site.html", v, status=status, st=st, may_rollback=may_rollback,
                               error=error, deploy_ref=deploy_ref(self.settings, state, repo))

    async def rollback(self, request: Request) -> Response:
        if not same_origin(request):
            return self.pages.message(visitor(request), "Forbidden", "Cross-site request.", 403)
        form = await request.form()
        return await anyio.to_thread.run_sync(self._rollback, request, dict(form))

    def _rollback(self, request: Request, form: dict[str, Any]) -> Response:
        from deploy.bluegreen import rollback
        from deploy.errors import DeployError

        v = visitor(request)
        name = request.path_params["site"]
        if not csrf_ok(v.session, str(form.get("csrf", ""))):
            return self.pages.message(v, "Forbidden", "Missing or wrong form token: reload the "
                                      "page and try again.", 403)
        state = adminrepo.current(self.settings)
        repo, may_rollback = self._site(state, v, name)
        if repo is None:
            return self.pages.message(v, "Not found", "No such site, or you may not read its repo.",
                                      404)
        if not may_rollback:
            self.pages.metrics.access_denied.labels("http", "rollback").inc()
            audit.record(self.settings, user=v.user, ip=v.client.ip, repo=repo,
                         op="deploy rollback", result="denied",
                         reason=f"W on {deploy_ref(self.settings, state, repo)} needed")
            return self.pages.message(v, "Forbidden", "Rolling back this site needs W on its "
                                      f"deploy.ref ({deploy_ref(self.settings, state, repo)}).",
                                      403)
        to = str(form.get("to") or "") or None
        lines: list[str] = []
        try:
            if name in self._hosted():  # every host or none (deploy/agents/coordinator.py)
                from deploy.agents.coordinator import Coordinator

                Coordinator.for_settings(self.settings).rollback(self.settings, name, to=to, by=v.user,
                                                                 log=lines.append)
            else:
                rollback(self.settings, name, to=to, by=v.user, log=lines.append)
        except DeployError as exc:
            return self.site(request, error=f"rollback failed: {exc}", status=409)
        return RedirectResponse(f"/sites/{name}", status_code=303)
