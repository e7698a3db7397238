"""A gitserve server with its HTTP face on, and helpers to talk to it like git and a browser do.

`make_http_server(tmp, conf=..., users=...)` is `make_server` plus `--http 127.0.0.1:PORT`;
the returned server has `.http_port` and `.http_base`. Every server is stopped by its test.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.server import GitServer, make_server
from tests.support.tools import free_port


def make_http_server(tmp: Path, **options: Any) -> GitServer:
    port = free_port()
    extra = tuple(options.pop("serve_args", ()))
    srv = make_server(tmp, serve_args=("--http", f"127.0.0.1:{port}", *extra), **options)
    srv.http_port = port  # type: ignore[attr-defined]
    srv.http_base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    wait_http(srv.http_base + "/healthz")
    return srv


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (503 while workers start is fine)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def http_url(srv: GitServer, repo: str, user: str | None = None, token: str | None = None) -> str:
    cred = f"{user}:{token}@" if user and token else (f"{user}@" if user else "")
    return f"http://{cred}127.0.0.1:{srv.http_port}/{repo}.git"  # type: ignore[attr-defined]


def http_env(srv: GitServer) -> dict[str, str]:
    """git's environment without ssh, credential helpers or prompts."""
    env = srv.client_env("admin")
    env.pop("GIT_SSH_COMMAND", None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_ASKPASS"] = "/bin/false"
    return env


def hgit(srv: GitServer, *args: str, cwd: Path | str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    """`git ARGS` with http_env (never raises)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env=http_env(srv), timeout=timeout)


def token(srv: GitServer, user: str, name: str, *extra: str) -> str:
    out = srv.ssh(user, "token", "create", name, *extra)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
        timeout: float = 30) -> tuple[int, Any, bytes]:
    """(status, headers (case-insensitive), body) of one request; never raises on 4xx/5xx."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def audit_since(srv: GitServer, count: int) -> list[dict[str, Any]]:
    return srv.audit_lines()[count:]


def loads(body: bytes) -> Any:
    return json.loads(body.decode())


def post_form(base: str, path: str, form: str, headers: dict[str, str] | None = None
              ) -> tuple[int, Any, bytes]:
    """POST an urlencoded FORM without following redirects: (status, headers, body)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", path, body=form.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded",
                              **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def login_cookie(srv: GitServer, user: str, headers: dict[str, str] | None = None) -> str:
    """The Set-Cookie header of a login through a fresh one-time link."""
    link = srv.ssh(user, "login").stdout.strip()
    nonce = link.rsplit("/", 1)[1]
    status, h, _ = post_form(srv.http_base, "/login", f"nonce={nonce}", headers)  # type: ignore[attr-defined]
    assert status == 303, status
    return str(h["Set-Cookie"])
