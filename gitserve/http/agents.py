"""GET /-/agents/releases/SITE/RELEASE.tar.gz: a release for a deploy agent (SPEC §7.1).

Only a deploy agent gets it: the request must be signed with the key the server shares with
that agent (deploy/agents/auth.py: HMAC over method, path and a timestamp within 5 minutes;
the key itself never crosses the wire), and the agent must be one of the hosts the site is
being deployed to. The file exists only while a deploy of that release runs. Anything else
is 401 (bad signature) or 404 (no such release for this agent), in one line, logged.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from gitserve.settings import Settings

log = logging.getLogger("gitserve.http.agents")

PATH = "/-/agents/releases/{site}/{release}.tar.gz"


class AgentReleases:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def release(self, request: Request) -> Response:
        return await anyio.to_thread.run_sync(self._release, request)

    def _release(self, request: Request) -> Response:
        from deploy.agents import auth, record, releases
        from deploy.errors import DeployError
        from deploy.options import check_release_id, check_site_name

        try:  # names checked before anything is logged or opened
            site = check_site_name(request.path_params["site"])
            release = check_release_id(request.path_params["release"])
        except DeployError:
            return PlainTextResponse("no such release\n", status_code=404)
        agent = auth.check_fetch(self.settings, request.headers, request.url.path)
        if agent is None:
            log.warning("release %s/%s refused: not a signed agent request", site, release)
            return PlainTextResponse("a deploy agent's signed request is required\n", status_code=401)
        try:
            path = releases.stored_path(self.settings, site, release)
            hosts = record.load(self.settings, site)["hosts"] if record.exists(self.settings, site) else []
        except DeployError:
            path, hosts = None, []
        if path is None or agent not in hosts or not path.is_file():
            log.warning("release %s/%s refused to agent %s: not deployed to it", site, release, agent)
            return PlainTextResponse("no such release for this agent\n", status_code=404)
        log.info("release %s/%s sent to agent %s", site, release, agent)
        return FileResponse(path, media_type="application/gzip")
