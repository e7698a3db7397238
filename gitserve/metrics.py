"""Prometheus metrics of one server process, passed to the code paths that count.

One `Metrics` object owns its own `CollectorRegistry` (never prometheus-client's global
one), so nothing is counted by importing a module and tests can run several servers in
one process. The SSH server, the HTTP face and the git services get the object from
whoever builds them (`gitserve serve`); code without one gets `NULL`, which counts
nothing. Numbers that live in Redis or on disk (builds, queue depth, deploys) are read
at scrape time by collectors in gitserve/http/metrics.py.
"""

from __future__ import annotations

from typing import Any

# build and deploy switch durations: seconds, from a quick script to a long test suite
BUILD_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))
SWITCH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, float("inf"))
# mirror lag: tens of milliseconds on a LAN, minutes for a slave that was down
MIRROR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, float("inf"))


class Metrics:
    """Counters and gauges the serving code updates directly."""

    def __init__(self) -> None:
        # imported here: `gitserve shell` (a process per connection behind sshd) only needs
        # NULL, and prometheus-client is a tenth of its start-up
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections_open = Gauge(
            "gitserve_connections_open", "Connections open now", ["transport"], registry=r)
        self.connections = Counter(
            "gitserve_connections", "Connections accepted", ["transport"], registry=r)
        self.connections_refused = Counter(
            "gitserve_connections_refused", "Connections or logins refused by limits",
            ["transport"], registry=r)
        self.git_requests = Counter(
            "gitserve_git_operations", "Git operations served (clone/fetch: upload-pack)",
            ["transport", "service"], registry=r)
        self.git_bytes = Counter(
            "gitserve_git_bytes", "Bytes of git protocol sent (upload) and received (push)",
            ["transport", "direction"], registry=r)
        self.access_denied = Counter(
            "gitserve_access_denied", "Access denials (check #1, check #2 and login failures)",
            ["transport", "check"], registry=r)
        self.pushes = Counter(
            "gitserve_pushes", "Pushes that moved at least one ref", ["transport"], registry=r)
        self.builds = Counter(
            "gitserve_builds", "Builds that ended, by result", ["result"], registry=r)
        self.build_seconds = Histogram(
            "gitserve_build_duration_seconds", "Build duration", buckets=BUILD_BUCKETS,
            registry=r)
        self.deploys = Counter(
            "gitserve_deploys", "Switches of a site's live side", ["action"], registry=r)
        self.queue_depth = Gauge(
            "gitserve_queue_depth", "Jobs waiting in an RQ queue (read at scrape time)",
            ["queue"], registry=r)
        self.switch_seconds = Histogram(
            "gitserve_deploy_switch_seconds", "Time to switch a site's live side",
            buckets=SWITCH_BUCKETS, registry=r)
        self.mirror_pushes = Counter(
            "gitserve_mirror_pushes", "Mirror pushes from this master to a slave, by result",
            ["slave", "result"], registry=r)
        self.mirror_lag = Histogram(
            "gitserve_mirror_lag_seconds", "From a push's refs moving on this master to a "
            "slave having them", ["slave"], buckets=MIRROR_BUCKETS, registry=r)


def pushed(result: Any) -> bool:
    """Did a receive-pack (its PushResult, None before the update step) move at least one
    ref? Check #2 denials are counted by the push policy (gitserve.gitrequest)."""
    return result is not None and any(s == "ok" for s in result.statuses.values())


class NullMetric:
    """A counter, gauge or histogram that keeps nothing (shellmetrics' counts keep inc)."""

    def labels(self, *_a: Any, **_k: Any) -> "NullMetric":
        return self

    def inc(self, *_a: Any) -> None:
        pass

    def dec(self, *_a: Any) -> None:
        pass

    def set(self, *_a: Any) -> None:
        pass

    def observe(self, *_a: Any) -> None:
        pass


class NullMetrics:
    """Counts nothing; lets code run without a Metrics (CLI, tests, `gitserve shell`)."""

    def __init__(self) -> None:
        for name in METRIC_NAMES:
            setattr(self, name, NullMetric())


METRIC_NAMES = ("connections_open", "connections", "connections_refused", "git_requests",
                "git_bytes", "access_denied", "pushes", "builds", "build_seconds", "deploys",
                "switch_seconds", "queue_depth", "mirror_pushes", "mirror_lag")
NULL: Any = NullMetrics()
