"""pytest configuration shared by all tests: the fixtures of tests/support/ by name."""

import os
import shutil
import signal
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.server", "tests.support.builds", "tests.support.keys",
                  "tests.support.durations", "tests.support.phases"]


def _restore_sigint() -> None:
    """A suite started as a background job (`cmd &` in a non-interactive shell, `nohup`, as a
    CI script may be) has SIGINT ignored, and an ignored signal stays ignored in every child
    through exec: a test's Ctrl-C (SIGINT to a `git push`, tests/e2e/test_first_day.py) would
    do nothing there. Python's own handler instead: exec resets it to the default in children."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, builds and nginx workers run as an unprivileged user (never root), who must
    reach the server homes tests make. pytest's default /tmp/pytest-of-root is kept 0700 by
    every pytest run (and several may run at once), so root runs get their own base temp
    directory, removed at the end; pytest_sessionstart opens it (and what is made in it) for search."""
    _restore_sigint()
    if os.geteuid() != 0 or config.option.basetemp:
        return
    config.option.basetemp = f"/tmp/gitserve-tests-{os.getpid()}"
    config.stash[_OWN_KEY] = config.option.basetemp


_OWN_KEY = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_KEY, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Search permission (not listing) on the base temp directory and every directory
    tmp_path_factory makes (tmp_path included), the moment it is made: pytest makes them 0700,
    and module fixtures start servers (and their first deploy) before any test runs."""
    if os.geteuid() != 0:
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    made = factory.mktemp

    def mktemp(basename: str, numbered: bool = True) -> Path:
        path = made(basename, numbered)
        base = factory.getbasetemp()
        # an xdist worker's base is popen-gwN inside the controller's: open that one too
        parents = [base.parent] if base.parent.name.startswith("gitserve-tests-") else []
        for d in (path, base, *parents):
            mode = os.stat(d).st_mode
            if not mode & 0o001:
                os.chmod(d, mode | 0o001)
        return path

    factory.mktemp = mktemp
