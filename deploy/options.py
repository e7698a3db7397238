"""A site's `option deploy.*` lines, validated before anything on disk changes.

Every value ends up in an nginx config or a filesystem path, so each one is checked
against a strict pattern: a bad conf line must fail the deploy with one clear line, never
inject nginx directives or publish outside the site directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from .errors import DeployError

SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|\*)$")
_CHECK_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$")
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9.*~^_:-]+( [A-Za-z0-9.*~^_:-]+)*$")

DEFAULT_DIR = "public"
DEFAULT_CHECK = "/"
DEFAULT_DRAIN = 10


@dataclass(frozen=True)
class Listen:
    """An nginx `listen` address; host "" means every address."""

    host: str
    port: int

    def nginx(self) -> str:
        return f"{self.host}:{self.port}" if self.host else str(self.port)

    def connect_host(self) -> str:
        """Where a local client reaches this listener (for the health check)."""
        if self.host in ("", "*", "0.0.0.0"):
            return "127.0.0.1"
        if self.host in ("[::]",):
            return "::1"
        return self.host.strip("[]")

    def url(self) -> str:
        host = self.connect_host()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class SiteOptions:
    site: str
    listen: Listen
    preview: Listen
    check: str
    dir: str
    keep: int
    post: str | None
    server_name: str
    web: str = "web"                                  # the process type nginx proxies / to
    routes: tuple[tuple[str, str], ...] = ()          # (path prefix, process type)
    drain: int = DEFAULT_DRAIN                        # seconds the old side keeps running
    tls: str = ""                                     # "", "acme" or "CERT KEY" (HOME/tls)
    tls_listen: Listen | None = None                  # https listener (deploy.tls-port)


def check_site_name(site: str) -> str:
    if not isinstance(site, str) or not SITE_RE.match(site):
        raise DeployError("options", f"invalid site name {site!r} (letters, digits, . _ -; at most 64)")
    return site


def check_release_id(release: Any) -> str:
    release = str(release)
    if not RELEASE_RE.match(release):
        raise DeployError("options", f"invalid build id {release!r} for a release name")
    return release


def parse_listen(name: str, value: str, default_host: str) -> Listen:
    value = value.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = default_host, value
    elif not host or not _HOST_RE.match(host):
        raise DeployError("options", f"option {name} = {value!r}: bad host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DeployError("options", f"option {name} = {value!r}: need a port 1-65535 or HOST:PORT")
    return Listen(host, int(port_text))


def relative_path(name: str, value: str) -> str:
    """A path inside the build output or the commit: relative, no '..', no odd characters."""
    value = value.strip()
    p = PurePosixPath(value)
    if (not value or p.is_absolute() or ".." in p.parts or "\x00" in value or "\n" in value):
        raise DeployError("options", f"option {name} = {value!r}: need a relative path without '..'")
    return str(p)


def parse(site: str, options: Mapping[str, str], default_keep: int) -> SiteOptions:
    """SiteOptions from the repo's `option` dict; DeployError('options', ...) on any bad value."""
    check_site_name(site)
    if "deploy.port" not in options:
        raise DeployError("options", f"site {site}: option deploy.port is required")
    if "deploy.preview-port" not in options:
        raise DeployError("options", f"site {site}: option deploy.preview-port is required")
    listen = parse_listen("deploy.port", options["deploy.port"], "")
    # the preview shows a release nobody has checked yet: local only unless a host is given
    preview = parse_listen("deploy.preview-port", options["deploy.preview-port"], "127.0.0.1")
    if listen.port == preview.port:
        raise DeployError("options", f"site {site}: deploy.port and deploy.preview-port are both {listen.port}")
    check = options.get("deploy.check", DEFAULT_CHECK).strip()
    if not _CHECK_RE.match(check):
        raise DeployError("options", f"option deploy.check = {check!r}: need a URL path starting with /")
    keep_text = options.get("deploy.keep", str(default_keep)).strip()
    if not keep_text.isdigit() or int(keep_text) < 1:
        raise DeployError("options", f"option deploy.keep = {keep_text!r}: need a whole number >= 1")
    post = options.get("deploy.post")
    server_name = options.get("deploy.server-name", "").strip()
    if server_name and not _SERVER_NAME_RE.match(server_name):
        raise DeployError("options", f"option deploy.server-name = {server_name!r}: bad server name")
    from gitserve.options import PROCESS_TYPE_RE, ROUTE_RE

    web = options.get("deploy.web", "web").strip()
    if not PROCESS_TYPE_RE.match(web):
        raise DeployError("options", f"option deploy.web = {web!r}: need a Procfile process type")
    routes = []
    for word in options.get("deploy.routes", "").split():
        m = ROUTE_RE.match(word)
        if not m:
            raise DeployError("options", f"option deploy.routes: {word!r} is not /PREFIX=TYPE")
        routes.append((m.group(1), m.group(2)))
    drain_text = options.get("deploy.drain", str(DEFAULT_DRAIN)).strip()
    if not drain_text.isdigit() or int(drain_text) > 3600:
        raise DeployError("options", f"option deploy.drain = {drain_text!r}: need seconds 0-3600")
    tls = " ".join(options.get("deploy.tls", "").split())
    if tls:
        from .tls import parse_option

        parse_option(tls)
    tls_listen = (parse_listen("deploy.tls-port", options.get("deploy.tls-port", "443"), listen.host)
                  if tls else None)
    return SiteOptions(
        tls=tls, tls_listen=tls_listen,
        web=web, routes=tuple(routes), drain=int(drain_text),
        site=site,
        listen=listen,
        preview=preview,
        check=check,
        dir=relative_path("deploy.dir", options.get("deploy.dir", DEFAULT_DIR)),
        keep=int(keep_text),
        post=relative_path("deploy.post", post) if post and post.strip() else None,
        server_name=server_name,
    )
