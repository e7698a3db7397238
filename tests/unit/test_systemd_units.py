"""The systemd units in contrib/systemd: systemd itself accepts them (systemd-analyze
verify), every ExecStart is a gitserve command line this checkout parses, and serve's unit
pulls in the sites unit so that a restart of serve never takes the sites along."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path

from tests.support.tools import REPO_ROOT, gitserve_cmd, require_tool, subprocess_env

UNITS = Path(REPO_ROOT) / "contrib" / "systemd"


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    fake = tmp_path / "gitserve"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    paths = []
    for unit in sorted(UNITS.glob("*.service")):
        name = unit.name.replace("@.service", "@1.service")
        text = unit.read_text().replace("/usr/local/bin/gitserve", str(fake))
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    assert len(paths) == 4
    res = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines()
                if any(Path(p).name in ln for p in paths)]
    assert res.returncode == 0 and problems == [], res.stdout + res.stderr


def test_exec_lines_are_gitserve_commands_and_serve_wants_sites() -> None:
    serve = _unit("gitserve.service")
    assert "gitserve-sites.service" in serve["Unit"]["Wants"]
    assert "gitserve-sites.service" in serve["Unit"]["After"]
    agent = _unit("gitserve-deploy-agent.service")  # a web host's sites outlive its agent too
    assert "gitserve-sites.service" in agent["Unit"]["Wants"]
    for name in ("gitserve.service", "gitserve-sites.service", "gitserve-worker@.service",
                 "gitserve-deploy-agent.service"):
        line = _unit(name)["Service"]["ExecStart"]
        argv = shlex.split(line)
        if argv[0] == "/bin/sh":  # sh -c 'exec gitserve worker|deploy-agent ...'
            argv = shlex.split(re.sub(r"^exec ", "", argv[2]))
        assert argv[0] == "/usr/local/bin/gitserve", line
        words = [a for a in argv[1:] if not a.startswith("-") and "$" not in a]
        res = subprocess.run(gitserve_cmd(words[0], "--help"), capture_output=True, text=True,
                             env=subprocess_env(), timeout=60)
        assert res.returncode == 0, (name, res.stderr)
        for opt in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
            assert opt in res.stdout, (name, opt)
