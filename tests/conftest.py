"""pytest configuration shared by all tests: the fixtures of tests/support/ by name."""

import os
import shutil

import pytest

pytest_plugins = ["tests.support.server", "tests.support.builds", "tests.support.keys"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, builds and nginx workers run as an unprivileged user (never root), who must
    reach the server homes tests make. pytest's default /tmp/pytest-of-root is kept 0700 by
    every pytest run (and several may run at once), so root runs get their own base temp
    directory, removed at the end; _tmp_searchable_by_sandbox_user opens it for search."""
    if os.geteuid() != 0 or config.option.basetemp:
        return
    config.option.basetemp = f"/tmp/gitserve-tests-{os.getpid()}"
    config.stash[_OWN_KEY] = config.option.basetemp


_OWN_KEY = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_KEY, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(autouse=True)
def _tmp_searchable_by_sandbox_user(request: pytest.FixtureRequest,
                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """Search permission (not listing) on the base temp directory and each test's own, as
    an admin gives the directories above a real server home: pytest makes them 0700."""
    if os.geteuid() != 0:
        return
    if "tmp_path" in request.fixturenames:
        request.getfixturevalue("tmp_path")
    base = tmp_path_factory.getbasetemp()
    dirs = [base, *base.parents]
    dirs += [e for e in base.iterdir() if e.is_dir() and not e.is_symlink()]
    for d in dirs:
        if str(d) in ("/", "/tmp"):
            continue
        mode = os.stat(d).st_mode
        if not mode & 0o001:
            os.chmod(d, mode | 0o001)
