"""A flood's refusals do not flood the server log (issue 19 leftover).

The stampede bench's 300-connection flood wrote ~160,000 `refused connection from ...` lines
in a few minutes: one WARNING per refused connection (and, for those refused at the
handshake slot, an `open from` and a `closed` line around it), to HOME/logs/server.log and
to stderr. Now each address gets a few lines per minute and then one summary line with the
count (gitserve/peerlog.py); a refused connection has no open/closed lines.
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from gitserve import peerlog
from tests.hardening import floodkit

FLOOD = 300
PENDING = 4  # max_pending_per_ip: the rest of the flood is refused at accept


@pytest.fixture
def srv(gitserve_factory):
    return gitserve_factory(settings={"server": {"max_pending_per_ip": PENDING},
                                      "builds": {"workers": 0}})


def test_a_flood_of_refusals_writes_a_few_lines_and_one_summary(srv):
    flood = []
    try:
        for _ in range(FLOOD):
            try:
                flood.append(floodkit.connect_from("127.0.0.2", srv.host, srv.port))
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while sum(floodkit.is_closed_by_peer(s) for s in flood) < FLOOD - PENDING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        refused = sum(floodkit.is_closed_by_peer(s) for s in flood)
    finally:
        for s in flood:
            s.close()
    srv.git("admin", "ls-remote", srv.url("gitolite-admin"))  # the server serves on
    srv.stop()  # the summary of a window still open is written when the server stops
    log = (srv.home / "logs" / "server.log").read_text()
    one_by_one = [ln for ln in log.splitlines() if "refused connection from 127.0.0.2" in ln]
    assert len(one_by_one) == peerlog.BURST, len(one_by_one)
    summary = [ln for ln in log.splitlines() if "refused connections from 127.0.0.2:" in ln]
    assert len(summary) == 1, log[-3000:]
    m = re.search(r": (\d+) more in the last 60s, not logged one by one \(last: (.+)\)$", summary[0])
    assert m and int(m.group(1)) == refused - peerlog.BURST, (summary, refused)
    assert log.count("open from 127.0.0.2") <= PENDING, log[-3000:]
    assert len(log.splitlines()) < 200, len(log.splitlines())


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_peer_log_windows_summaries_and_bounded_peers(caplog):
    clock = _Clock()
    logger = logging.getLogger("test.peerlog")
    plog = peerlog.PeerLog(logger, burst=2, window=60.0, max_peers=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.peerlog"):
        for _ in range(10):
            plog.warning("10.0.0.1", "refused connection", "too many")
        assert [r.getMessage() for r in caplog.records] == \
            ["refused connection from 10.0.0.1: too many"] * 2
        for i in range(2, 10):  # 8 more addresses: 2 tracked, the rest share one bucket
            plog.warning(f"10.0.0.{i}", "refused connection", "busy")
        caplog.clear()
        clock.now += 61
        plog.warning("10.0.0.1", "refused connection", "again")  # a new window: summaries first
        lines = [r.getMessage() for r in caplog.records]
        assert lines[0] == ("refused connections from 10.0.0.1: 8 more in the last 60s, "
                            "not logged one by one (last: too many)"), lines
        assert lines[-1] == "refused connection from 10.0.0.1: again", lines
        assert len(plog._peers) == 1  # ended windows are forgotten
        for _ in range(5):
            plog.warning("10.0.0.1", "refused connection", "x")
        caplog.clear()
        plog.close()
        assert [r.getMessage() for r in caplog.records] == [
            "refused connections from 10.0.0.1: 4 more in the last 60s, not logged one by one "
            "(last: x)"]
