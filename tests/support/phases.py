"""The suite runs in two phases (scripts/test): most files on two pytest-xdist workers at
once, then the files marked `serial` alone. Why: the suite spends much of its time waiting
(servers starting, pushes, builds, deploys), so two files at a time use the second core; but
some files measure time, load or memory, or run a site under a request loop while they kill
its server, and a neighbour on the other core would make them measure the neighbour.

What is serial is listed here, by file, with the reason, rather than marked in each file: the
list is what a reviewer of the split reads. A file not listed runs in the parallel phase."""

from __future__ import annotations

from typing import Any

import pytest

# file -> why it runs alone
SERIAL: dict[str, str] = {
    # zero failed requests through deploys, switches, drains, serve's SIGTERM and kill -9
    "tests/e2e/test_apps.py": "zero failed requests under a request loop",
    "tests/e2e/test_deploy.py": "zero failed requests under a request loop",
    "tests/unit/test_deploy_processes.py": "zero failed requests; a shared sites supervisor",
    "tests/unit/test_deploy_bluegreen.py": "zero failed requests under a request loop",
    "tests/unit/test_deploy_previews.py": "deploys under a request loop",
    "tests/unit/test_deploy_commands.py": "time bounds (took < 15)",
    "tests/cluster/test_deploy_agents.py": "zero failed requests; kill bounds (< 1 s, 5 s)",
    # failover and outage timing
    "tests/cluster/test_redis_outage.py": "outage timing",
    "tests/cluster/test_sentinel.py": "failover timing",
    "tests/cluster/test_sentinel_outage.py": "failover timing",
    "tests/cluster/test_sentinel_wait.py": "WAIT time bounds",
    # load, floods, faults, admission: they load the machine on purpose and measure it
    "tests/hardening/test_admission.py": "admission under load",
    "tests/hardening/test_faults.py": "kill -9 and faults under load",
    "tests/hardening/test_floods.py": "floods, memory bounds",
    "tests/hardening/test_stampede.py": "clone stampede",
    "tests/hardening/test_repack_race.py": "a race it provokes on purpose",
    "tests/e2e/test_load.py": "clones under load",
    # time, memory and CPU bounds, and build limits measured on the machine
    "tests/security/test_build_containment.py": "resource limits; clone < 2 s",
    "tests/security/test_sandbox_attacks.py": "resource limits, build uids",
    "tests/security/test_sandbox_nonroot.py": "a system user of its own",
    "tests/security/test_refex_expr_bounds.py": "evaluation < 0.2 s",
    "tests/security/test_http_caps.py": "time bound, server RSS",
    "tests/security/test_redis_cancel_pgid.py": "process groups of builds",
    "tests/unit/test_admin.py": "per call < 1 ms",
    "tests/unit/test_packgen_repack.py": "pusher waits < 0.5 s",
    "tests/unit/test_build_runner.py": "timeouts measured",
    "tests/unit/test_build_queue.py": "timeouts measured",
    "tests/unit/test_sigevent.py": "signal bursts",
    "tests/unit/test_root_home.py": "the system home /var/lib/gitserve",
    "tests/e2e/test_builds.py": "push < 10 s",
    "tests/e2e/test_push_option_builds.py": "push < 5 s",
    "tests/e2e/test_first_day.py": "Ctrl-C during a push",
}

# the longest parallel files go first, so the phase does not end on one of them alone
FIRST = ("tests/gitolite_t/test_gitolite_t.py", "tests/e2e/test_protocol_matrix.py",
         "tests/e2e/test_gitolite_site_moves.py", "tests/cluster/test_mirroring.py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "serial: runs alone, after the parallel phase (tests/support/phases.py)")


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _file(item) in SERIAL:
            item.add_marker(pytest.mark.serial)
    rank = {path: i for i, path in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(_file(item), len(FIRST)))  # stable: order kept within


def _encodable(value: Any) -> Any:
    """VALUE with every string UTF-8-encodable: a lone surrogate (bytes a test sent, decoded
    with surrogateescape and captured in a log) is written as its escape."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, dict):
        return {k: _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_encodable(v) for v in value)
    return value


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Any:
    """An xdist worker sends each report to the controller through execnet, which refuses a
    string that UTF-8 cannot encode: the whole worker died of one captured log line."""
    data = yield
    return _encodable(data)
