"""authorized_keys lines and the in-place block rewrite (behind the system OpenSSH)."""

from __future__ import annotations

import base64
import shlex
import pytest

from gitserve import authkeys, keys
from gitserve.settings import Settings
from tests.support.keys import keygen


@pytest.fixture
def entries(tmp_path) -> list[authkeys.Entry]:
    return [authkeys.Entry(u, keys.parse_file_text(keygen(tmp_path, u).read_text()))
            for u in ("alice", "carol@example.com")]


def test_line_is_a_forced_command_sshd_can_parse(tmp_path, entries):
    s = Settings(home=tmp_path / 'odd "home" dir')
    s.server.shell_command = "/opt/git serve/bin/gitserve"
    line = authkeys.line(s, entries[1])
    opts, key = line.split(" ssh-ed25519 ")
    assert key == entries[1].key.openssh().split()[1]
    assert opts.endswith('",no-pty,no-port-forwarding,no-X11-forwarding,no-agent-forwarding')
    command = opts[len('command="'):-len('",no-pty,no-port-forwarding,no-X11-forwarding,'
                                        'no-agent-forwarding')].replace('\\"', '"')
    assert shlex.split(command) == ["/opt/git", "serve/bin/gitserve", "--home", str(s.home),
                                    "shell", "carol@example.com"]


def test_default_home_is_not_spelled_out(entries, monkeypatch, tmp_path):
    """... by a configured shell_command; the fast client always names its home (it reads
    no settings, so it cannot work out the default)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".gitserve").mkdir()
    (tmp_path / ".gitserve" / "gitserve.toml").write_text("")  # an existing home (root too)
    s = Settings(home=(tmp_path / ".gitserve"))
    fast = shlex.split(authkeys.forced_command(s, "alice"))
    assert fast[-4:] == ["--home", str(s.home.resolve()), "shell", "alice"]
    s.server.shell_command = "/usr/local/bin/gitserve"
    assert "--home" not in authkeys.forced_command(s, "alice")
    assert authkeys.forced_command(s, "alice").endswith(" shell alice")
    from gitserve.settings import default_home

    classic = Settings(home=default_home())
    classic.server.shell_command = "gitserve"
    assert "--home" not in authkeys.forced_command(classic, "alice")


def test_block_replaces_ours_or_gitolites_and_keeps_the_rest(tmp_path, entries):
    s = Settings(home=tmp_path / "h")
    block = authkeys.render_block(s, entries)
    text = "ssh-ed25519 AAAA other\n# gitolite start\ncommand=\"gitolite-shell a\" k\n# gitolite end\n# tail\n"
    new, what = authkeys.replace_block(text, block)
    assert what == "replaced the gitolite block"
    assert new == "ssh-ed25519 AAAA other\n" + "\n".join(block) + "\n# tail\n"
    again, what = authkeys.replace_block(new, block[:1] + block[2:])
    assert what == "updated" and again.count(" shell ") == 1 and again.endswith("# tail\n")
    added, what = authkeys.replace_block("x\n", block)
    assert what == "added" and added == "x\n\n" + "\n".join(block) + "\n"
    with pytest.raises(authkeys.AuthKeysError, match="without '# gitserve end'"):
        authkeys.replace_block("# gitserve start\nx\n", block)


def test_write_block_keeps_mode_and_is_atomic(tmp_path, entries):
    s = Settings(home=tmp_path / "h")
    ak = tmp_path / "ssh" / "authorized_keys"
    assert authkeys.write_block(s, ak, authkeys.render_block(s, entries)) == "added"
    assert ak.stat().st_mode & 0o777 == 0o600
    ak.chmod(0o640)
    assert authkeys.write_block(s, ak, authkeys.render_block(s, entries[:1])) == "updated"
    assert ak.stat().st_mode & 0o777 == 0o640
    assert authkeys.write_block(s, ak, authkeys.render_block(s, entries[:1])) == "unchanged"
    assert [p.name for p in ak.parent.iterdir()] == ["authorized_keys"]  # no temp file left


def test_select_filters_as_authorized_keys_command(entries):
    b64 = base64.b64encode(entries[0].key.blob).decode()
    assert authkeys.select(entries, key_b64=b64, key_type="ssh-ed25519") == entries[:1]
    assert authkeys.select(entries, key_b64=b64, key_type="ssh-rsa") == []
    assert authkeys.select(entries, fingerprint=entries[1].key.fingerprint) == entries[1:]
    assert authkeys.select(entries, user="alice") == entries[:1]


def test_admin_changes_rewrite_the_configured_file(home_template, tmp_path):
    from gitserve import adminrepo, settings as settings_mod
    from tests.support.keys import copy_home

    home = copy_home(home_template, tmp_path)
    s = settings_mod.load(home)
    ak = tmp_path / "ak"
    ak.write_text("# mine\n")
    s.server.authorized_keys = str(ak)
    adminrepo.add_key(s, "bob", keygen(tmp_path, "bob").read_text(), "t <t@t>")
    lines = ak.read_text().splitlines()
    assert lines[0] == "# mine" and sum(" shell bob\"," in x for x in lines) == 1
    assert sum(" shell alice\"," in x for x in lines) == 1
    adminrepo.remove_key(s, "bob", author="t <t@t>")
    assert " shell bob\"," not in ak.read_text() and ak.read_text().startswith("# mine\n")
    # a file that cannot be written: the commit stands, the failure is one warning line
    s.server.authorized_keys = str(tmp_path)  # a directory
    _, sha = adminrepo.add_key(s, "carol", keygen(tmp_path, "carol").read_text(), "t <t@t>")
    assert adminrepo.current(s).commit == sha
    warning = adminrepo.sync_authorized_keys(s)
    assert warning is not None and warning.startswith("WARNING: authorized_keys not updated: ")
    assert "\n" not in warning


def test_command_is_the_gitserve_script_this_process_runs_as(tmp_path, monkeypatch):
    script = tmp_path / "venv" / "bin" / "gitserve"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr("sys.argv", [str(script), "admin", "authorized-keys"])
    s = Settings(home=tmp_path / "h")
    assert authkeys.gitserve_command(s) == [str(script)]
    monkeypatch.setattr("sys.argv", ["/x/gitserve/__main__.py"])
    assert authkeys.gitserve_command(s)[0].startswith("/")
    s.server.shell_command = "/opt/gs/bin/gitserve"
    assert authkeys.gitserve_command(s) == ["/opt/gs/bin/gitserve"]
