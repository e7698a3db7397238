"""Fixtures of the access-engine tests: a private gitolite3 install (the oracle).

One install per test process (setup costs seconds); every test starts with `load()`,
which resets repositories and conf, so tests do not depend on each other's state."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool

from .oracle import Gitolite


@pytest.fixture(scope="session")
def gitolite(tmp_path_factory: pytest.TempPathFactory) -> Gitolite:
    require_tool("gitolite")
    require_tool("ssh-keygen")
    return Gitolite(tmp_path_factory.mktemp("gitolite"))
