"""A deploy agent's signed status report replayed from Redis (redteam2).

The report is sealed with the agent's key, so nobody forges one; but it carried its time
and nothing checked it. Whoever holds the Redis password kept a report of web1 from an
hour ago (a dead agent's) and SET it back without expiry: the server took web1 for up,
`deploy status` showed its old sides and releases as today's, and deploys went on to phase
one. Now a report older than the reports' own lifetime (plus clock slack) counts as down.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from deploy.agents import auth, status_key
from deploy.agents.coordinator import Coordinator
from gitserve.settings import Settings


def test_an_old_signed_report_counts_as_down(redis_server, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    r = redis_server.client()
    key = auth.ensure_server_key(settings, "web1")
    old = {"agent": "web1", "at": time.time() - 3600, "instance": "web1 pid 7",
           "sites": {"www": {"live_side": "blue", "live_release": "3"}}}
    r.set(status_key("web1"), json.dumps(auth.seal(key, "status", old)))  # no expiry
    report, why = Coordinator(r).report(settings, "web1")
    assert report is None and "stale" in why, (report, why)
    fresh = {**old, "at": time.time()}
    r.set(status_key("web1"), json.dumps(auth.seal(key, "status", fresh)), ex=10)
    assert Coordinator(r).report(settings, "web1")[0] is not None
    # and another agent's report under web1's name is refused as before
    other = auth.ensure_server_key(settings, "web2")
    r.set(status_key("web1"), json.dumps(auth.seal(other, "status", {**fresh, "agent": "web2"})))
    assert Coordinator(r).report(settings, "web1")[0] is None
