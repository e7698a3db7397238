"""HOME/vrefs/NAME lookup and the way a VREF program is run (Gitolite's conventions)."""

from __future__ import annotations

from pathlib import Path

from gitserve.git import vrefprog


def _program(home: Path, name: str, text: str) -> Path:
    d = home / "vrefs"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text(text)
    p.chmod(0o755)
    return p


def test_only_plain_executable_names_inside_vrefs(tmp_path: Path):
    _program(tmp_path, "OK", "#!/bin/sh\n")
    (tmp_path / "vrefs" / "NOEXEC").write_text("#!/bin/sh\n")
    (tmp_path / "secret").write_text("#!/bin/sh\n")
    (tmp_path / "secret").chmod(0o755)
    assert vrefprog.find(tmp_path, "OK") == tmp_path / "vrefs" / "OK"
    for name in ("NOEXEC", "..", ".hidden", "../secret", "", "a\0b", "MISSING"):
        assert vrefprog.find(tmp_path, name) is None, name


def test_argv_env_cwd_and_status(tmp_path: Path):
    repo = tmp_path / "repositories" / "r.git"
    repo.mkdir(parents=True)
    _program(tmp_path, "SHOW", '#!/bin/sh\necho "VREF/SHOW/$#:$1:$7:$8" msg\n'
             'echo "$GL_USER $GL_REPO $GIT_DIR $(pwd)"\necho oops >&2\nexit 2\n')
    run = vrefprog.runner(tmp_path, tmp_path / "repositories", "r", repo, "alice")
    status, out, err = run("SHOW", ["refs/heads/m", "a", "b", "c", "d", "W", "VREF/SHOW/x", "x"], {})
    assert status == 2 << 8  # Perl's $? for exit 2
    assert out.splitlines() == ["VREF/SHOW/8:refs/heads/m:VREF/SHOW/x:x msg",
                                f"alice r {repo} {repo}"]
    assert err == "oops\n"
    assert run("NOPE", [], {}) is None
