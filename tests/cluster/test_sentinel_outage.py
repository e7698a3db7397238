"""Redis Sentinel with the master and its replica both frozen (SIGSTOP) for outage.OUTAGE s: longer
than a push waits (`[redis] outage_wait`, shortened here to outage.WAIT), and worse than a dead Redis, since a frozen one accepts connections and never
answers (issue 22). Each build mode's push is answered in bounded time with one clear line,
no traceback; sync and async builds are kept on disk and run exactly once when Redis thaws;
the gate rejects its ref with the reason."""

from __future__ import annotations

import pytest

from tests.support import outage
from tests.support.sentinel import (MASTER_NAME, PASSWORD, SentinelCluster, start_workers,
                                    stop_workers, wait_registered)
from tests.support.server import make_server

pytestmark = pytest.mark.timeout(240)


def test_pushes_through_a_freeze_of_every_redis_longer_than_the_wait(tmp_path):
    import os
    import signal

    cluster = SentinelCluster(tmp_path / "cluster").start()
    srv = workers = None
    try:
        redis = {"sentinels": cluster.addresses, "master_name": MASTER_NAME, "password": PASSWORD,
                 **outage.SETTINGS}
        srv = make_server(tmp_path / "srv", conf=outage.CONF, users=("alice",),
                          settings={"redis": redis})
        workers = start_workers(srv.home, 1)
        wait_registered(cluster.url, 1)
        work = outage.works(srv)

        def signal_all(sig: int) -> None:
            for node in cluster.redis:
                assert node.proc is not None
                os.killpg(node.proc.pid, sig)

        results = outage.push_through_outage(srv, work, down=lambda: signal_all(signal.SIGSTOP),
                                             up=lambda: signal_all(signal.SIGCONT))
        # the wait, plus one socket timeout of a reply that never comes
        outage.check_answers(results, bound=outage.WAIT + 10)
        outage.check_ran_once(cluster.url, srv, work)
        took = {repo: round(r[2], 1) for repo, r in results.items()}
        print(f"\n{outage.OUTAGE:g} s freeze of master and replica ({outage.WAIT:g} s wait), "
              f"seconds to answer: {took}")
    finally:
        if workers:
            stop_workers(workers)
        if srv is not None:
            srv.stop()
        cluster.stop()
