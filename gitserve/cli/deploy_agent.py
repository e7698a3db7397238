"""`gitserve deploy-agent --name NAME --redis-url URL`: serve sites on this web host for a
gitserve server (SPEC §7.1, `option deploy.hosts`).

The agent's home (--home, as every command) holds its sites, its embedded nginx, the
`gitserve sites` supervisor it starts (which keeps serving while the agent is stopped or
upgraded) and agent.key, the key shared with the server (`gitserve deploy agent-key NAME`
there). Logs go to HOME/logs/agent.log.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from .common import HomeOption, fail, load_settings
from .serve import LogFormatOption, LogLevelOption, setup_logging


def deploy_agent(
    name: Annotated[str, typer.Option("--name", help="This host's name in deploy.hosts.")],
    redis_url: Annotated[str, typer.Option("--redis-url", help="The server's Redis (with its password).")],
    home: HomeOption = None,
    burst: Annotated[bool, typer.Option("--burst", hidden=True, help="Stop when the queue is empty.")] = False,
    log_level: LogLevelOption = "INFO",
    log_format: LogFormatOption = "text",
) -> None:
    """Run this web host's deploy agent: publish, check and switch the sites assigned to it."""
    from buildqueue.rqconn import RedisUnavailable, connect, insecure_reason
    from deploy import DeployError, sitesctl
    from deploy.agents import auth, jobs
    from deploy.agents.worker import run_agent

    settings = load_settings(home)
    try:
        auth.check_agent_name(name)
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = auth.agent_key(settings.home)
    except DeployError as exc:
        fail(exc.message)
    insecure = insecure_reason(redis_url)
    if insecure is not None and not settings.redis.allow_insecure:
        fail(insecure)
    setup_logging(settings.home, "agent.log", log_level, log_format)
    try:
        r = connect(redis_url)
    except RedisUnavailable as exc:
        fail(str(exc))
    # the job function in rq's work horse learns who it is from here (jobs.AgentContext)
    os.environ[jobs.HOME_ENV] = str(settings.home)
    os.environ[jobs.NAME_ENV] = name
    if sitesctl.has_sites(settings):
        try:  # sites deployed earlier keep serving (a reboot, an upgrade of the agent)
            sitesctl.ensure_running(settings)
        except DeployError as exc:
            logging.getLogger("gitserve.agent").warning("sites not started: %s", exc.message)
    try:
        run_agent(settings, name, key, r, burst=burst,
                  ready=lambda: print(f"gitserve: deploy agent {name} working deploy-agent:{name}", flush=True))
    except DeployError as exc:
        fail(exc.message)


def add_commands(app: typer.Typer) -> None:
    app.command("deploy-agent")(deploy_agent)
