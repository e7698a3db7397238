"""pytest configuration shared by all tests: the fixtures of tests/support/ by name."""

pytest_plugins = ["tests.support.server", "tests.support.builds", "tests.support.keys"]
