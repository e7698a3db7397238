"""Root homes that work (issue 20): as root the default home is /var/lib/gitserve, where
nginx's unprivileged workers can reach the sites; a root ~/.gitserve made earlier keeps
being used, and a home someone points below a directory the workers cannot search still
gets the one-line refusal, naming that directory, before anything changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy import nginx, sitesctl
from deploy.errors import DeployError
from gitserve import settings as settings_mod
from gitserve.settings import Settings
from tests.support.deploykit import deploy, get, make_output, page
from tests.support.tools import free_port, require_tool

ROOT = os.geteuid() == 0


def test_default_home_for_root_is_var_lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITSERVE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if ROOT:
        assert settings_mod.resolve_home() == Path("/var/lib/gitserve")
        (tmp_path / ".gitserve").mkdir()
        (tmp_path / ".gitserve" / "gitserve.toml").write_text("")
        assert settings_mod.resolve_home() == tmp_path / ".gitserve"  # an existing one stays
    else:
        assert settings_mod.resolve_home() == tmp_path / ".gitserve"
    monkeypatch.setenv("GITSERVE_HOME", str(tmp_path / "elsewhere"))
    assert settings_mod.resolve_home() == tmp_path / "elsewhere"


def _settings(home: Path) -> Settings:
    home.mkdir(parents=True)
    s = Settings(home=home)
    s.deploy.nginx_binary = require_tool("nginx")
    return s


def test_home_below_a_closed_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    s = _settings(closed / "home")
    ports = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port())}
    try:
        if ROOT:
            assert nginx.unreachable_parent(s) == closed
            with pytest.raises(DeployError) as err:
                deploy(s, ports, make_output(tmp_path, "v1"), "1")
            assert (f"nginx workers run as nobody, who cannot reach the server home: {closed} is "
                    "not searchable") in str(err.value)
            assert not nginx.site_confs(s)
        else:  # nginx cannot switch users: it runs as us and reaches whatever we reach
            assert nginx.unreachable_parent(s) is None
    finally:
        sitesctl.stop(s)
        nginx.stop_embedded(s)


def test_home_in_a_searchable_tree_deploys_with_no_extra_step(tmp_path: Path) -> None:
    """What /var/lib/gitserve is for root: every parent searchable, the home made by us."""
    opened = tmp_path / "var-lib"
    opened.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    s = _settings(opened / "gitserve")
    os.chmod(s.home, 0o700)  # as `gitserve init` leaves it: deploy opens what nginx needs
    ports = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port())}
    try:
        assert nginx.unreachable_parent(s) is None
        result, log = deploy(s, ports, make_output(tmp_path, "v1"), "1")
        assert "Enable: blue" in log
        assert get(ports["deploy.port"]) == (200, page("v1").encode())
        if ROOT:
            assert "user nobody" in nginx.main_conf(s).read_text()
            assert not os.stat(s.home).st_mode & 0o004  # searchable, never listable
    finally:
        sitesctl.stop(s)
        nginx.stop_embedded(s)
