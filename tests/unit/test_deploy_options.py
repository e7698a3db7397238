"""Option validation: every bad `option deploy.*` value is refused with one clear line."""

from __future__ import annotations

import pytest

from deploy.errors import DeployError
from deploy.options import Listen, parse
from deploy.render import nginx_quote

BASE = {"deploy.port": "8080", "deploy.preview-port": "8081"}


def test_defaults_follow_spec() -> None:
    opts = parse("www", BASE, 5)
    assert opts.dir == "public" and opts.check == "/" and opts.keep == 5 and opts.post is None
    assert opts.listen == Listen("", 8080) and opts.listen.nginx() == "8080"
    # the unchecked preview is local unless a host is given
    assert opts.preview == Listen("127.0.0.1", 8081) and opts.preview.url() == "http://127.0.0.1:8081"


def test_host_port_and_overrides() -> None:
    opts = parse("www", {"deploy.port": "127.0.0.1:9000", "deploy.preview-port": "0.0.0.0:9001",
                         "deploy.check": "/health?full=1", "deploy.keep": "2",
                         "deploy.post": ".gitserve/post", "deploy.dir": "build/site",
                         "deploy.server-name": "example.com www.example.com"}, 5)
    assert opts.listen.nginx() == "127.0.0.1:9000" and opts.preview.connect_host() == "127.0.0.1"
    assert (opts.check, opts.keep, opts.post, opts.dir) == ("/health?full=1", 2, ".gitserve/post", "build/site")
    assert opts.server_name == "example.com www.example.com"


@pytest.mark.parametrize("site, options, words", [
    ("www", {"deploy.preview-port": "1"}, "deploy.port is required"),
    ("www", {"deploy.port": "1"}, "deploy.preview-port is required"),
    ("www", {**BASE, "deploy.preview-port": "8080"}, "both 8080"),
    ("www", {**BASE, "deploy.port": "70000"}, "port 1-65535"),
    ("www", {**BASE, "deploy.port": "80; include /etc/passwd"}, "port"),
    ("www", {**BASE, "deploy.port": "a b:80"}, "bad host"),
    ("www", {**BASE, "deploy.check": "health"}, "deploy.check"),
    ("www", {**BASE, "deploy.check": "/a b"}, "deploy.check"),
    ("www", {**BASE, "deploy.keep": "0"}, "deploy.keep"),
    ("www", {**BASE, "deploy.keep": "many"}, "deploy.keep"),
    ("www", {**BASE, "deploy.dir": "../etc"}, "deploy.dir"),
    ("www", {**BASE, "deploy.dir": "/srv"}, "deploy.dir"),
    ("www", {**BASE, "deploy.post": "../../bin/sh"}, "deploy.post"),
    ("www", {**BASE, "deploy.server-name": "a;b"}, "server-name"),
    ("../x", BASE, "invalid site name"),
    ("", BASE, "invalid site name"),
])
def test_bad_options_are_refused(site: str, options: dict[str, str], words: str) -> None:
    with pytest.raises(DeployError) as err:
        parse(site, options, 5)
    assert err.value.step == "options"
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("path", ["/srv/a$b", '/srv/a"b', "/srv/a;b", "/srv/a{b", "/srv/a\nb"])
def test_paths_nginx_would_misread_are_refused(path: str) -> None:
    with pytest.raises(DeployError):
        nginx_quote(path)
    assert nginx_quote("/srv/with space/x") == '"/srv/with space/x"'
