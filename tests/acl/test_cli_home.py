"""`admin access` without --conf: the server's admin commit and its repositories directory,
wild repos with the roles in their gl-perms."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import gitserve_cmd, require_tool, subprocess_env

CONF = """repo gitolite-admin
    RW+ = alice
repo testing
    RW+ = @all
repo w/CREATOR/..*
    C   = @all
    RW+ = CREATOR
    RW  = WRITERS
    R   = READERS
"""


def _run(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(gitserve_cmd("--home", str(home), *args), input=stdin,
                          capture_output=True, text=True, env=subprocess_env(), timeout=60)


def test_access_uses_server_state(tmp_path: Path):
    require_tool("ssh-keygen")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True, timeout=30)
    home = tmp_path / "home"
    r = _run(home, "init", "--admin", "alice", "--admin-key", str(tmp_path / "k.pub"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "new.conf").write_text(CONF)
    r = _run(home, "admin", "set-conf", str(tmp_path / "new.conf"))
    assert r.returncode == 0, r.stderr

    from gitserve import repos, settings as settings_mod

    settings = settings_mod.load(home)
    repos.create(settings, "w/bob/x", creator="bob")
    repos.write_perms(settings, "w/bob/x", {"WRITERS": ["carol"], "READERS": ["dave"]})

    stdin = "".join(f"w/bob/x {u}\n" for u in ("bob", "carol", "dave", "erin"))
    r = _run(home, "admin", "access", "%", "%", "W", stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "w/bob/x\tbob\trefs/.*",
        "w/bob/x\tcarol\trefs/.*",
        "w/bob/x\tdave\tW any w/bob/x dave DENIED by fallthru",
        "w/bob/x\terin\tW any w/bob/x erin DENIED by fallthru",
    ]
    r = _run(home, "admin", "access", "w/bob/x", "dave", "R")
    assert (r.returncode, r.stdout) == (0, "refs/.*\n")
    # a wild repo nobody created yet: only ^C decides, with GL_USER as the would-be creator
    r = _run(home, "admin", "access", "w/erin/new", "erin", "^C")
    assert (r.returncode, r.stdout) == (1, "^C any w/erin/new erin DENIED by fallthru\n")
    r = subprocess.run(gitserve_cmd("--home", str(home), "admin", "access", "w/erin/new",
                                    "erin", "^C"), capture_output=True, text=True,
                       env=subprocess_env(GL_USER="erin"), timeout=60)
    assert (r.returncode, r.stdout) == (0, "refs/.*\n")
    r = _run(home, "admin", "access", "w/bob/x", "bob", "^C")
    assert (r.returncode, r.stdout) == (1, "^C any w/bob/x bob DENIED by existence\n")
