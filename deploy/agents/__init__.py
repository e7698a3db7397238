"""Sites on several web hosts (SPEC §7.1, `option deploy.hosts = web1 web2`).

Each web host runs `gitserve deploy-agent --name NAME --redis-url URL`: an rq worker on the
queue `deploy-agent:NAME` with its own home, its own `gitserve sites` supervisor, nginx and
site processes. The server coordinates (coordinator.py): phase one (fetch the release over
the server's HTTP face, publish, start processes, check through the idle side's preview) on
every host, then phase two (switch) on every host; if any host fails phase one, none
switches. Every job and result is signed with the agent's key (auth.py).

    auth.py         agent keys; signed jobs, results and status reports; signed fetches
    releases.py     the release as a tar.gz: stored on the server, fetched and checked (sha256)
                    by the agent, extracted by the data filter's rules
    phases.py       the agent's side of a deploy: prepare / switch / abort / rollback, on the
                    same local blue-green code (deploy/bluegreen.py) a single host uses
    jobs.py         the one rq job function the agents run (verifies, dispatches, signs)
    worker.py       `gitserve deploy-agent`'s worker (its own rq Job class) and status reports
    record.py       the server's record of a site on hosts (hosts, releases, history)
    coordinator.py  the server's side: two phases over rq, rollback, per-host status
"""

from __future__ import annotations

from gitserve.options import AGENT_RE

QUEUE_PREFIX = "deploy-agent:"


def queue_name(agent: str) -> str:
    """The rq queue agent AGENT works: `deploy-agent:NAME`."""
    return QUEUE_PREFIX + agent


def status_key(agent: str) -> str:
    """Where agent AGENT's signed status report lives in Redis (it expires: no report, down)."""
    return f"gitserve:agent:{agent}:status"


__all__ = ["AGENT_RE", "QUEUE_PREFIX", "queue_name", "status_key"]
