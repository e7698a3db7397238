"""The real `gitserve admin access` / `admin check` processes (stdin, stdout, exit status)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.tools import gitserve_cmd, subprocess_env

from .cases import ADMIN

CONF = ADMIN + """
@devs = alice bob
repo app
    RW+ master = alice
    -   master = bob
    RW         = @devs
    R          = carol
repo w/..*
    C = @all
    RW+ = CREATOR
"""


def _gitserve(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(gitserve_cmd(*args), input=stdin, capture_output=True, text=True,
                          env=subprocess_env(), timeout=60)


def _write(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "gitolite.conf").write_text(text)
    return conf / "gitolite.conf"


def test_access_matches_gitolite_access(gitolite, tmp_path):
    path = _write(tmp_path, CONF)
    assert gitolite.load({"gitolite.conf": CONF}).returncode == 0
    pairs = "".join(f"{r} {u}\n" for r in ("app", "w/x", "testing", "nosuch")
                    for u in ("alice", "bob", "carol", "dave"))
    for args, stdin in [
        (["app", "bob", "W", "master"], ""),
        (["app", "alice"], ""),
        (["-q", "app", "carol", "W"], ""),
        (["%", "%", "W", "master"], pairs),
        (["app", "%", "R"], "alice\ncarol\ndave\n"),
        (["app", "bad%user", "W"], ""),
        (["app", "alice", "X"], ""),
    ]:
        theirs = gitolite.access(*args, stdin=stdin)
        ours = _gitserve("admin", "access", "--conf", str(path), *args, stdin=stdin)
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr), args


def test_check_reports_file_line(tmp_path):
    path = _write(tmp_path, CONF + "repo x\n    RW = ok\ninclude \"extra.conf\"\n")
    (path.parent / "extra.conf").write_text("repo y\n\n    RW+ = not/ok\n")
    r = _gitserve("admin", "check", "--conf", str(path))
    assert r.returncode == 1
    assert r.stderr == "gitserve: conf/extra.conf:3: bad username 'not/ok'\n"
    assert r.stdout == ""


def test_check_ok_and_strict(tmp_path):
    path = _write(tmp_path, CONF + "junk line\n")
    r = _gitserve("admin", "check", "--conf", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: ")
    assert "WARNING: conf/gitolite.conf:15: syntax error, ignoring: 'junk line'" in r.stderr
    r = _gitserve("admin", "check", "--strict", "--conf", str(path))
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "gitserve: 1 warning(s) and --strict"
