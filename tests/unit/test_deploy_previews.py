"""Branch previews (SPEC §7.1) through `deploy.bluegreen` with a real nginx: BRANCH.SERVER_NAME
on the site's port, at most deploy.previews-max (the oldest goes), removal, names as DNS
labels, and the options they need."""

from __future__ import annotations

import hashlib
import http.client

import pytest

from deploy import bluegreen, nginx, previews, sitesctl
from deploy.errors import DeployError
from gitserve.settings import Settings
from tests.support.deploykit import deploy, make_output, page
from tests.support.tools import free_port, require_tool


@pytest.fixture
def settings(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    s = Settings(home=home)
    s.deploy.nginx_binary = require_tool("nginx")
    yield s
    sitesctl.stop(s)
    nginx.stop_embedded(s)


def get_host(port: int, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_slug_is_one_dns_label() -> None:
    assert previews.slug("feature/Login_2") == "feature-login-2"
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert len(previews.slug(long_a)) <= 63 and previews.slug(long_a) != previews.slug(long_b)


def test_previews_max_evicts_the_oldest_and_removal_unserves(settings, tmp_path) -> None:
    port = free_port()
    opts = {"deploy.port": f"127.0.0.1:{port}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health.txt", "deploy.server-name": "www.test",
            "deploy.previews": "1", "deploy.previews-max": "2"}
    deploy(settings, opts, make_output(tmp_path, "live"), "1")
    for n, branch in enumerate(("one", "two", "three"), start=2):
        _, log = deploy(settings, {**opts, "deploy.preview": branch}, make_output(tmp_path, branch), str(n))
        assert f"deploy www: preview live at http://{branch}.www.test:{port}/" in log, log
    assert "deploy www: preview one removed (deploy.previews-max = 2)" in " ".join(log)
    assert get_host(port, "three.www.test") == (200, page("three").encode())
    assert get_host(port, "one.www.test") == (200, page("live").encode())  # the default server
    assert bluegreen.remove_branch_preview(settings, "www", "two", log=lambda _l: None)
    assert get_host(port, "two.www.test") == (200, page("live").encode())
    assert not bluegreen.remove_branch_preview(settings, "www", "two", log=lambda _l: None)


def test_branches_with_the_same_slug_keep_their_own_previews(settings, tmp_path) -> None:
    """feature/a and feature-a are one DNS label: the second gets the label with a hash of its
    name, and neither's build or deletion replaces or removes the other's preview."""
    port = free_port()
    opts = {"deploy.port": f"127.0.0.1:{port}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health.txt", "deploy.server-name": "www.test", "deploy.previews": "1"}
    deploy(settings, opts, make_output(tmp_path, "live"), "1")
    deploy(settings, {**opts, "deploy.preview": "feature/a"}, make_output(tmp_path, "slash"), "2")
    _, log = deploy(settings, {**opts, "deploy.preview": "feature-a"}, make_output(tmp_path, "dash"), "3")
    hashed = "feature-a-" + hashlib.sha256(b"feature-a").hexdigest()[:8]
    assert f"deploy www: preview live at http://{hashed}.www.test:{port}/" in log, log
    assert get_host(port, "feature-a.www.test") == (200, page("slash").encode())
    assert get_host(port, f"{hashed}.www.test") == (200, page("dash").encode())
    # a new build of each lands on its own preview
    deploy(settings, {**opts, "deploy.preview": "feature/a"}, make_output(tmp_path, "slash2"), "4")
    assert get_host(port, f"{hashed}.www.test") == (200, page("dash").encode())
    assert get_host(port, "feature-a.www.test") == (200, page("slash2").encode())
    # a branch with no preview of its own removes nothing; each removal takes its own
    assert not bluegreen.remove_branch_preview(settings, "www", "Feature-A", log=lambda _l: None)
    assert bluegreen.remove_branch_preview(settings, "www", "feature-a", log=lambda _l: None)
    assert get_host(port, "feature-a.www.test") == (200, page("slash2").encode())
    assert bluegreen.remove_branch_preview(settings, "www", "feature/a", log=lambda _l: None)
    assert get_host(port, "feature-a.www.test") == (200, page("live").encode())


def test_previews_need_a_server_name(settings, tmp_path) -> None:
    opts = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port()),
            "deploy.previews": "1", "deploy.preview": "x"}
    with pytest.raises(DeployError) as err:
        deploy(settings, opts, make_output(tmp_path, "x"), "1")
    assert "deploy.previews needs deploy.server-name" in str(err.value)
