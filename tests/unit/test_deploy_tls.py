"""deploy.tls = acme against Debian's pebble: HTTP-01 answered by the site's own nginx
(pebble validates through its DNS on the site's port), the certificate stored under HOME/tls,
https served on deploy.tls-port and trusted by `curl --cacert PEBBLE_ROOT`; renewal orders
again only within 30 days of expiry; deploy.tls = CERT KEY for files made elsewhere."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest

from deploy import nginx, sitesctl, tls
from gitserve.settings import Settings
from tests.support.deploykit import deploy, make_output, page
from tests.support.pebblekit import Pebble
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


def curl(ca: str, name: str, port: int, path: str = "/") -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("curl"), "-sS", "--cacert", ca, "--resolve", f"{name}:{port}:127.0.0.1",
                           f"https://{name}:{port}{path}"], capture_output=True, text=True, timeout=30)


def test_acme_certificate_from_pebble_serves_https(settings, tmp_path) -> None:
    live, tls_port = free_port(), free_port()
    pebble = Pebble(tmp_path / "pebble", http_port=live)
    try:
        settings.deploy.acme_directory = pebble.directory
        settings.deploy.acme_ca_file = str(pebble.ca_file)
        settings.deploy.acme_email = "admin@example.test"
        opts = {"deploy.port": f"127.0.0.1:{live}", "deploy.preview-port": str(free_port()),
                "deploy.check": "/health.txt", "deploy.server-name": "app.test www.app.test",
                "deploy.tls": "acme", "deploy.tls-port": str(tls_port)}
        _, log = deploy(settings, opts, make_output(tmp_path, "v1"), "1")
        assert any(line.startswith("deploy www: tls: certificate for app.test, www.app.test until ")
                   for line in log), log
        root = str(pebble.root_pem())
        for name in ("app.test", "www.app.test"):
            out = curl(root, name, tls_port)
            assert out.returncode == 0 and out.stdout == page("v1"), out.stderr
        # a second deploy keeps the certificate (not within 30 days of expiry)
        cert_before = tls.site_files(settings, "www").cert.read_bytes()
        _, log = deploy(settings, opts, make_output(tmp_path, "v2"), "2")
        assert tls.site_files(settings, "www").cert.read_bytes() == cert_before
        assert curl(root, "app.test", tls_port).stdout == page("v2")
        soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3650)
        assert tls.needs_order(settings, "www", ["app.test", "www.app.test"], now=soon)
        assert not tls.needs_order(settings, "www", ["app.test", "www.app.test"])
        assert tls.needs_order(settings, "www", ["other.test"])
    finally:
        pebble.stop()


def test_given_certificate_files_under_home_tls(settings, tmp_path) -> None:
    pebble_like = tmp_path / "certs"
    pebble_like.mkdir()
    from tests.support.pebblekit import _make_ca_and_cert

    ca, cert, key = _make_ca_and_cert(pebble_like)
    (settings.home / "tls").mkdir()
    shutil.copy(cert, settings.home / "tls" / "site.pem")
    shutil.copy(key, settings.home / "tls" / "site.key")
    live, tls_port = free_port(), free_port()
    opts = {"deploy.port": f"127.0.0.1:{live}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health.txt", "deploy.tls": "site.pem site.key", "deploy.tls-port": str(tls_port)}
    deploy(settings, opts, make_output(tmp_path, "v1"), "1")
    out = curl(str(ca), "localhost", tls_port)
    assert out.returncode == 0 and out.stdout == page("v1"), out.stderr
