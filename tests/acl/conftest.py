"""Fixtures of the access-engine tests: a private gitolite3 install (the oracle)."""

from __future__ import annotations

import pytest

from tests.helpers import require_tool

from .oracle import Gitolite


@pytest.fixture(scope="module")
def gitolite(tmp_path_factory: pytest.TempPathFactory) -> Gitolite:
    require_tool("gitolite")
    require_tool("ssh-keygen")
    return Gitolite(tmp_path_factory.mktemp("gitolite"))
