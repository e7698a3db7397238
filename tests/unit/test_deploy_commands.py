"""`deploy status|rollback` as the CLI and as ssh commands: output, access rules, errors.
A real nginx serves the site; the ssh command runs with a real compiled Gitolite conf."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from deploy import nginx
from gitserve import acl
from gitserve.settings import Settings
from tests.support.tools import free_port, gitserve_cmd, require_tool, subprocess_env
from tests.support.deploykit import deploy, get, make_output, page

CONF = """
repo web
    RW+ = alice
    R   = carol
repo other
    RW+ = dave
"""


@pytest.fixture
def site(tmp_path: Path):
    binary = require_tool("nginx")
    home = tmp_path / "home"
    home.mkdir()
    s = Settings(home=home)
    s.deploy.nginx_binary = binary
    s.deploy.keep = 3
    ports = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port())}
    for v in ("1", "2"):
        deploy(s, ports, make_output(tmp_path, f"v{v}"), v, commit=v * 40)
    yield s, ports
    from deploy import sitesctl
    sitesctl.stop(s)  # `gitserve sites` (serve never stops it), nginx with it
    nginx.stop_embedded(s)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    # the toml carries nginx_binary, as a real home would
    (settings.home / "gitserve.toml").write_text(f'[deploy]\nnginx_binary = "{settings.deploy.nginx_binary}"\n')
    return subprocess.run(gitserve_cmd("--home", str(settings.home), "deploy", *args), capture_output=True,
                          text=True, env=subprocess_env(), timeout=60)


def test_cli_status_and_rollback(site) -> None:
    settings, ports = site
    out = cli(settings, "status", "www")
    assert out.returncode == 0, out.stderr
    assert "live:     green  release 2  build 2  commit 222222222222  ref refs/heads/main" in out.stdout
    assert "idle:     blue  release 1" in out.stdout and "rollback: to 1" in out.stdout
    data = json.loads(cli(settings, "status", "www", "--json").stdout)
    assert [r["release"] for r in data["releases"]] == ["2", "1"] and data["repo"] == "web"
    t0 = time.monotonic()
    out = cli(settings, "rollback", "www")
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    # the switch itself is timed by rollback; the process start (typer import) varies with load
    done = re.search(r"done: live is blue \(release 1\) in ([0-9.]+)s", out.stdout)
    assert "Enable: blue" in out.stdout and done and float(done.group(1)) < 2.0, out.stdout
    assert took < 15, took
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    out = cli(settings, "rollback", "www")
    assert out.returncode == 1 and out.stderr == "gitserve: rollback www: site www has no release before 1 to roll back to\n"
    out = cli(settings, "rollback", "www", "--to", "2")
    assert out.returncode == 0 and get(ports["deploy.port"]) == (200, page("v2").encode())


@pytest.mark.parametrize("args, message", [
    (("status", "nosuch"), "gitserve: no site nosuch\n"),
    (("status", "../etc"), "gitserve: invalid site name '../etc' (letters, digits, . _ -; at most 64)\n"),
    (("rollback", "nosuch"), "gitserve: rollback nosuch: no site nosuch\n"),
    (("rollback", "www", "--to", "9"), "gitserve: rollback www: release 9 of site www is not kept (kept: 2, 1)\n"),
])
def test_cli_errors_are_one_line(site, args, message) -> None:
    settings, ports = site
    out = cli(settings, *args)
    assert (out.returncode, out.stderr, out.stdout) == (1, message, "")
    assert get(ports["deploy.port"]) == (200, page("v2").encode())


def ssh_deploy(settings: Settings, tmp_path: Path, user: str, *args: str) -> tuple[int, str]:
    from gitserve import app
    from gitserve.ssh.cmd import base as commands

    conf = tmp_path / "gitolite.conf"
    conf.write_text(CONF)
    out: list[str] = []
    ctx = commands.CommandContext(settings=settings, user=user, ip="127.0.0.1",
                                  state=SimpleNamespace(rules=acl.load(conf)), out=out.append,
                                  err=out.append, read=lambda n: b"")
    cmd = app.ssh_commands_table(settings).get("deploy")
    assert cmd is not None
    try:
        return cmd.fn(ctx, list(args)), "".join(out)
    except commands.CommandError as exc:
        return -1, f"FATAL: {exc}"


def test_ssh_status_needs_read_on_the_site_repo(site, tmp_path) -> None:
    settings, _ = site
    rc, out = ssh_deploy(settings, tmp_path, "carol", "status", "www")
    assert rc == 0 and "live:     green  release 2" in out
    rc, out = ssh_deploy(settings, tmp_path, "carol", "status", "www", "--json")
    assert rc == 0 and json.loads(out)["live_release"] == "2"
    hidden = "FATAL: site www does not exist, or you are not authorised"
    assert ssh_deploy(settings, tmp_path, "dave", "status", "www") == (-1, hidden)
    # an unknown site looks the same as a forbidden one
    assert ssh_deploy(settings, tmp_path, "dave", "status", "nosuch") == (
        -1, "FATAL: site nosuch does not exist, or you are not authorised")


def test_ssh_rollback_needs_write(site, tmp_path) -> None:
    settings, ports = site
    rc, out = ssh_deploy(settings, tmp_path, "carol", "rollback", "www")
    assert rc == -1 and out == "FATAL: W refs/heads/main web carol DENIED by fallthru"
    assert get(ports["deploy.port"]) == (200, page("v2").encode())
    assert ssh_deploy(settings, tmp_path, "dave", "rollback", "www")[1].startswith("FATAL: site www does not exist")
    rc, out = ssh_deploy(settings, tmp_path, "alice", "rollback", "www")
    assert rc == 0 and "Enable: blue" in out
    assert get(ports["deploy.port"]) == (200, page("v1").encode())
    st = json.loads(cli(settings, "status", "www", "--json").stdout)
    assert (st["by"], st["action"]) == ("alice", "rollback")
    audit = [json.loads(line) for line in (settings.logs_dir / "audit.log").read_text().splitlines()]
    assert audit[-1]["op"] == "deploy rollback" and audit[-1]["user"] == "alice"
    rc, out = ssh_deploy(settings, tmp_path, "alice", "rollback", "www", "--to", "2")
    assert rc == 0 and get(ports["deploy.port"]) == (200, page("v2").encode())
    assert ssh_deploy(settings, tmp_path, "alice", "rollback", "www", "--bogus")[1].startswith("FATAL: Invalid syntax")
