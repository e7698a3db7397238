"""Build secrets from a real OpenBao (`bao server -dev`, KV v2 at secret/) through `gitserve serve`:
the server reads them when it queues a build, the build uses them, its log masks them, Redis
never holds them in clear, and a Vault that is down fails the build with one clear line."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.builds import wait_for
from tests.support.server import make_server
from tests.support.pushes import new_work, remote, timed_push
from tests.support.notify import (
    OpenBao,
    WebhookReceiver,
    files_under,
    leaks,
    redis_dump,
)

pytestmark = pytest.mark.timeout(240)

DB_PASSWORD = "vault-db-pw-4411aa"
WEBHOOK_KEY = "vault-webhook-key-0b0b"

CONF = """
repo gitolite-admin
    RW+ = admin
repo vaulted
    RW+ = alice
    option build.enable = 1
    option notify.webhook = {hook}
repo vgate
    RW+ = alice
    option build.enable = 1
    option build.mode = gate
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vault")
    bao = OpenBao.start(tmp / "bao")
    hooks = WebhookReceiver.start(tmp / "hooks", WEBHOOK_KEY)
    srv = None
    cred_dir = None
    try:
        kv = bao.client().secrets.kv.v2
        kv.create_or_update_secret(path="gitserve/vaulted", secret={"DB_PASSWORD": DB_PASSWORD, "webhook": WEBHOOK_KEY})
        kv.create_or_update_secret(path="gitserve/vgate", secret={"DB_PASSWORD": DB_PASSWORD})
        # where an admin puts it (like /etc/gitserve/): outside HOME and outside /tmp and /var/tmp
        # (private in the sandbox), in a directory anyone may enter; removed at the end
        cred_dir = Path(tempfile.mkdtemp(prefix="gitserve-test-vault-", dir="/srv"))
        cred_dir.chmod(0o755)
        token_file = cred_dir / "bao-token"
        token_file.write_text(bao.token + "\n")
        token_file.chmod(0o644)  # readable by the build's uid: only the sandbox's hiding protects it
        settings = {"secrets": {"backend": "vault", "address": bao.address, "token_file": str(token_file),
                                "timeout": 3.0},
                    "notify": {"backoff": 0.2, "allow_private": True}}
        srv = make_server(tmp / "srv", conf=CONF.format(hook=hooks.url("/v")), users=("alice",), settings=settings)
        yield srv, bao, hooks
    finally:
        if srv is not None:
            srv.stop()
        hooks.stop()
        bao.stop()
        if cred_dir is not None:
            shutil.rmtree(cred_dir, ignore_errors=True)


SCRIPT = f"""#!/bin/sh
echo "db password is $DB_PASSWORD"
[ "$DB_PASSWORD" = "{DB_PASSWORD}" ] && echo "the build got the real value"
echo "webhook env: ${{webhook:-unset}}"
"""


def test_vault_secret_reaches_build_masked(env):
    srv, _, hooks = env
    work = new_work(srv, "vaulted", SCRIPT)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    msgs = remote(lines)
    assert code == 0, lines
    assert "db password is ***" in msgs and "the build got the real value" in msgs, msgs
    assert "webhook env: unset" in msgs
    assert re.fullmatch(r"build \d+ passed in \d+\.\ds", msgs[-1])
    build_id = msgs[-1].split()[1]
    log = srv.admin_cli("builds", "log", build_id).stdout
    assert "db password is ***" in log and DB_PASSWORD not in log
    # the webhook is signed with the `webhook` key held in Vault
    body = wait_for(lambda: hooks.bodies("build"), timeout=30)[0]
    assert body["_req"]["verified"] is True and body["build_id"] == build_id


def test_a_build_cannot_read_the_vault_credentials(env):
    """The token file lives outside HOME and is world-readable (an admin's slip): a local build
    must still not see it, or it could read every repo's secrets from Vault."""
    srv, bao, _ = env
    token_file = srv.settings.secrets.token_file
    script = f"#!/bin/sh\ncat '{token_file}' 2>&1 | head -2\necho read-attempt-done\n"
    work = new_work(srv, "vaulted", script)
    code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
    out = "\n".join(remote(lines))
    assert code == 0 and "read-attempt-done" in out, out
    assert bao.token not in out, out


def test_secrets_commands_act_on_vault(env):
    srv, bao, _ = env
    out = srv.admin_cli("admin", "secrets", "list", "vaulted").stdout
    assert [line.split("\t")[0] for line in out.splitlines()] == ["DB_PASSWORD", "webhook"]
    assert DB_PASSWORD not in out and re.search(r"\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", out.splitlines()[0])
    srv.admin_cli("admin", "secrets", "set", "vaulted", "NEW_ONE", input="from-cli-value\n")
    kv = bao.client().secrets.kv.v2
    data = kv.read_secret_version(path="gitserve/vaulted", raise_on_deleted_version=False)["data"]["data"]
    assert data == {"DB_PASSWORD": DB_PASSWORD, "webhook": WEBHOOK_KEY, "NEW_ONE": "from-cli-value"}
    res = srv.ssh("admin", "secrets", "remove", "vaulted", "NEW_ONE")
    assert res.returncode == 0, res.stderr
    data = kv.read_secret_version(path="gitserve/vaulted", raise_on_deleted_version=False)["data"]["data"]
    assert "NEW_ONE" not in data and data["DB_PASSWORD"] == DB_PASSWORD


def test_approle_login(env, tmp_path):
    """AppRole (role_id + secret_id from files) with a policy that may only read gitserve/*."""
    srv, bao, _ = env
    from gitserve.secrets.crypt import SecretError
    from gitserve.secrets.vault import VaultStore

    root = bao.client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy("gitserve-read", 'path "secret/data/gitserve/*" { capabilities = ["read"] }')
    root.auth.approle.create_or_update_approle("gitserve", token_policies=["gitserve-read"])
    (tmp_path / "role_id").write_text(root.auth.approle.read_role_id("gitserve")["data"]["role_id"])
    (tmp_path / "secret_id").write_text(root.auth.approle.generate_secret_id("gitserve")["data"]["secret_id"])
    conf = SimpleNamespace(**{**vars(srv.settings.secrets), "token_file": "",
                              "role_id_file": str(tmp_path / "role_id"),
                              "secret_id_file": str(tmp_path / "secret_id")})
    store = VaultStore(conf)
    assert store.values("vaulted")["DB_PASSWORD"] == DB_PASSWORD
    with pytest.raises(SecretError) as err:  # the policy allows reading, not writing
        store.set("vaulted", "X", "y")
    assert str(err.value) == f"Vault at {bao.address} refused access to secret/gitserve/vaulted (permission denied)"
    (tmp_path / "secret_id").write_text("not-a-secret-id")
    with pytest.raises(SecretError) as err:
        store.values("vaulted")
    assert str(err.value).startswith(f"Vault at {bao.address}")


def test_vault_down_fails_build_with_one_line(env):
    srv, bao, hooks = env
    bao.stop()
    try:
        work = new_work(srv, "vaulted", SCRIPT + "echo second\n")
        code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
        msgs = remote(lines)
        assert code == 0, lines  # sync: the ref moved, the build failed
        line = f"gitserve: secrets: Vault at {bao.address} is unreachable (connection refused)"
        assert msgs[-2:] == [line, msgs[-1]] and re.fullmatch(r"build \d+ failed in 0\.0s", msgs[-1]), msgs
        # its webhook is not sent unsigned: the notifier cannot read the signing key either
        build_id = msgs[-1].split()[1]

        def logged():
            out = srv.admin_cli("admin", "notify-log", "vaulted", "--json").stdout.splitlines()
            return [e for e in map(json.loads, out) if e["build_id"] == build_id]
        (entry,) = wait_for(logged, timeout=30)
        assert entry["result"] == "failed" and entry["attempts"] == 0
        assert entry["error"] == f"not sent: secrets unavailable: {line[len('gitserve: secrets: '):]}"
        assert not [b for b in hooks.bodies("build") if b["build_id"] == build_id]
        # gate mode: the ref is rejected with that build's failure, refs unchanged
        work = new_work(srv, "vgate", SCRIPT)
        code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main")
        assert code != 0
        assert line in remote(lines)
        assert any(re.search(r"\[remote rejected\] HEAD -> main \(build \d+ failed\)", x) for _, x in lines), lines
        assert srv.git("alice", "ls-remote", srv.url("vgate")).stdout == ""
        res = srv.admin_cli("admin", "secrets", "list", "vaulted", check=False)
        assert res.returncode == 1 and res.stderr.strip() == f"gitserve: {line[len('gitserve: secrets: '):]}"
    finally:
        bao.run()  # a fresh dev server (in-memory: empty) for whatever runs next


def test_vault_values_never_in_clear(env):
    srv, _, hooks = env
    found = leaks([DB_PASSWORD, WEBHOOK_KEY],
                  redis=redis_dump(srv.settings.effective_redis_url),
                  redis_aof=files_under(srv.home / "redis"),
                  server_log=files_under(srv.tmp / "serve.log"),
                  home_logs=files_under(srv.home / "logs"),
                  webhooks=hooks.file.read_bytes() if hooks.file.exists() else b"",
                  home_files=files_under(srv.home / "secrets", srv.home / "gitserve.toml"))
    assert found == {}
