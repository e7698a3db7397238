"""Hardening tests share the e2e server fixture (a real `gitserve serve` child process)."""

from tests.e2e.conftest import (  # noqa: F401 - pytest finds fixtures by name
    gitserve_factory,
    gitserve_module_factory,
    gitserve_server,
)
