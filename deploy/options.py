"""A site's `option deploy.*` lines, validated before anything on disk changes.

Every value ends up in an nginx config or a filesystem path, so each one is checked
strictly (gitserve.options.SiteOptions declares them): a bad conf line must fail the deploy
with one clear line, never inject nginx directives or publish outside the site directory.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from gitserve.options import SITE_RE, BadValue, Listen, ListenAddress, OptionError, SiteOptions

from .errors import DeployError

__all__ = ["SITE_RE", "Listen", "SiteOptions", "check_site_name", "check_release_id", "parse"]

RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REQUIRED = ("deploy.port", "deploy.preview-port")


def check_site_name(site: str) -> str:
    if not isinstance(site, str) or not SITE_RE.match(site):
        raise DeployError("options", f"invalid site name {site!r} (letters, digits, . _ -; at most 64)")
    return site


def check_release_id(release: Any) -> str:
    release = str(release)
    if not RELEASE_RE.match(release):
        raise DeployError("options", f"invalid build id {release!r} for a release name")
    return release


def parse(site: str, options: Mapping[str, str], default_keep: int) -> SiteOptions:
    """SiteOptions from the repo's `option` dict; DeployError('options', ...) on any bad value.
    DEFAULT_KEEP ([deploy] keep) stands in for an unset deploy.keep."""
    check_site_name(site)
    for name in REQUIRED:
        if name not in options:
            raise DeployError("options", f"site {site}: option {name} is required")
    try:
        opts = SiteOptions.parse({**options, "deploy.site": site},
                                 defaults={"deploy.keep": str(default_keep)})
    except OptionError as exc:
        raise DeployError("options", str(exc)) from None
    if opts.listen.port == opts.preview.port:
        raise DeployError("options", f"site {site}: deploy.port and deploy.preview-port are both {opts.listen.port}")
    if opts.tls:
        from .tls import parse_option

        tls = " ".join(opts.tls.split())
        parse_option(tls)
        raw = (options.get("deploy.tls-port") or "443").strip()
        try:  # a bare port listens on deploy.port's host
            tls_listen = ListenAddress(opts.listen.host).parse(raw)
        except BadValue as exc:
            raise DeployError("options", f"option deploy.tls-port = {raw!r}: {exc}") from None
        opts = dataclasses.replace(opts, tls=tls, tls_listen=tls_listen)
    return opts
