"""Secrets: encrypted at rest, masked in every line, and the set-secret command."""

from __future__ import annotations

import json
import subprocess

import pytest
from cryptography.fernet import Fernet

from gitserve.secrets import crypt as secrets
from gitserve.secrets.masker import Masker
from tests.support.tools import gitserve_cmd, subprocess_env


def test_masker_hides_every_occurrence_and_each_line():
    mask = Masker(["abc123", "line-one\nline-two", ""])
    assert mask("x abc123 y abc123") == "x *** y ***"
    assert mask("line-two only") == "*** only"
    assert mask("nothing here") == "nothing here"
    assert Masker([])("abc") == "abc"


def test_longest_value_wins():
    assert Masker(["pass", "password1"])("password1 pass") == "*** ***"


def test_store_is_encrypted_and_private(tmp_path):
    key = tmp_path / "secrets.key"
    secrets.set_secret(tmp_path / "secrets", key, "team/app", "TOKEN", "hunter2")
    path = tmp_path / "secrets" / "team" / "app.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(key.stat().st_mode & 0o777) == "0o600"
    assert "hunter2" not in path.read_text()
    tokens = secrets.load_tokens(tmp_path / "secrets", "team/app")
    assert secrets.decrypt(tokens, key) == {"TOKEN": "hunter2"}
    other = tmp_path / "other.key"
    other.write_bytes(Fernet.generate_key())
    with pytest.raises(secrets.SecretError, match="cannot decrypt"):
        secrets.decrypt(tokens, other)
    with pytest.raises(secrets.SecretError, match="no key"):
        secrets.decrypt(tokens, tmp_path / "missing.key")


@pytest.mark.parametrize("name", ["1ABC", "A-B", "PATH", "GITSERVE_REPO", "", "A B"])
def test_bad_names_refused(tmp_path, name):
    with pytest.raises(secrets.SecretError):
        secrets.set_secret(tmp_path / "s", tmp_path / "k", "r", name, "v")
    assert not (tmp_path / "s").exists()


def _cli(home, *args, input=""):
    return subprocess.run(gitserve_cmd("--home", str(home), "admin", "set-secret", *args),
                          input=input, capture_output=True, text=True, env=subprocess_env(), timeout=60)


def test_set_secret_cli(tmp_path):
    home = tmp_path / "home"
    res = _cli(home, "web/site", "DEPLOY_TOKEN", input="tok-value\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "secret DEPLOY_TOKEN set for web/site"
    data = json.loads((home / "secrets" / "web" / "site.json").read_text())
    assert list(data) == ["DEPLOY_TOKEN"] and "tok-value" not in json.dumps(data)
    assert secrets.decrypt(data, home / "secrets.key") == {"DEPLOY_TOKEN": "tok-value"}
    res = _cli(home, "web/site", "BAD-NAME", input="x")
    assert res.returncode == 1 and res.stderr.strip() == \
        "gitserve: invalid secret name 'BAD-NAME': use letters, digits and _ (an env var name)"


@pytest.mark.parametrize("args, stdin, msg", [
    (("web/site", "PATH"), "x", "reserved"),
    (("../x", "OK"), "x", "invalid repo name"),
    (("web/site", "EMPTY"), "", "empty secret value"),
])
def test_set_secret_cli_refuses_and_changes_nothing(tmp_path, args, stdin, msg):
    from typer.testing import CliRunner

    from gitserve.cli import app

    home = tmp_path / "home"
    secrets.set_secret(home / "secrets", home / "secrets.key", "web/site", "KEEP", "old")
    before = (home / "secrets" / "web" / "site.json").read_text()
    res = CliRunner().invoke(app, ["--home", str(home), "admin", "set-secret", *args], input=stdin)
    assert res.exit_code == 1 and msg in res.output
    assert (home / "secrets" / "web" / "site.json").read_text() == before


def test_raw_32_byte_key_file_as_init_writes_it(tmp_path):
    import os

    key = tmp_path / "secrets.key"
    key.write_bytes(os.urandom(32))
    secrets.set_secret(tmp_path / "s", key, "r", "A", "value")
    assert secrets.decrypt(secrets.load_tokens(tmp_path / "s", "r"), key) == {"A": "value"}
