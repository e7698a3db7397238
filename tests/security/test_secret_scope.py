"""Issue 21 finding 6 (secrets): a repo's secrets reached the builds of every branch, so a
`dev/` writer printed the deploy token from her own build; and `echo "$T" | base64` (or hex,
or url-encoding) passed the masking. Now `secrets set REPO NAME --ref refs/heads/main` keeps a
secret to the builds of that ref, and the masker hides the value's common encodings.

Both failed before the fix: mallory's dev/ build printed the token; alice's build showed its
base64 and hex forms in clear.
"""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import quote

import pytest

from tests.support.server import GitServer

pytestmark = pytest.mark.timeout(240)

TOKEN = f"deploy-{uuid.uuid4().hex}/x+y="
OTHER = f"shared-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def srv(gitserve_module_factory) -> GitServer:
    conf = """
repo gitolite-admin
    RW+ = admin
repo app
    RW+ = alice
    RW+ dev/ = mallory
    option build.enable = 1
"""
    server = gitserve_module_factory(conf=conf, users=("alice", "mallory"))
    out = server.admin_cli("admin", "secrets", "set", "app", "DEPLOY_TOKEN", "--ref", "refs/heads/main",
                           input=TOKEN + "\n").stdout
    assert out.strip() == "secret DEPLOY_TOKEN set for app: only builds of refs/heads/main", out
    # over ssh too (admins), unscoped: every ref's builds get it
    res = server.ssh("admin", "secrets", "set", "app", "SHARED", input=OTHER + "\n")
    assert res.returncode == 0, res.stderr
    return server


def push(srv: GitServer, user: str, ref: str, script: str) -> str:
    work = srv.tmp / "work" / uuid.uuid4().hex[:8]
    srv.git(user, "clone", "-q", srv.url("app"), str(work))
    p = work / ".gitserve" / "build"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(script + f"# {uuid.uuid4().hex}\n")
    p.chmod(0o755)
    srv.git(user, "add", "-A", cwd=work)
    srv.git(user, "commit", "-q", "-m", uuid.uuid4().hex, cwd=work)
    return srv.git(user, "push", "origin", f"HEAD:{ref}", cwd=work, timeout=120).stderr


PRINT = ('#!/bin/sh\necho "token=[$DEPLOY_TOKEN] shared=[$SHARED]"\n'
         'printf %s "$DEPLOY_TOKEN" | od -An -tx1 | tr -d " \\n"; echo\n'
         'echo "$DEPLOY_TOKEN" | base64\n'
         'printf %s "$DEPLOY_TOKEN" | xxd -p -c 256 2>/dev/null || printf %s "$DEPLOY_TOKEN" | od -An -tx1\n'
         'python3 -c "import os, urllib.parse as u; print(u.quote(os.environ.get(\'DEPLOY_TOKEN\', \'\'), safe=\'\'))"\n'
         'echo "$SHARED" | base64\necho done-printing\n')


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [value, base64.b64encode(raw + b"\n").decode()[:-8], raw.hex(), quote(value, safe="")]


def test_a_scoped_secret_never_reaches_another_refs_build(srv):
    out = push(srv, "mallory", "refs/heads/dev/steal", PRINT)
    assert "done-printing" in out and re.search(r"build \d+ passed", out), out
    assert "token=[]" in out, out  # not given to this ref's build at all
    assert not [f for f in forms(TOKEN) if f in out], out
    assert "shared=[***]" in out and OTHER not in out  # the unscoped one still is (masked)


def test_the_deploy_refs_build_gets_it_masked_in_every_common_encoding(srv):
    out = push(srv, "alice", "refs/heads/main", PRINT)
    assert "done-printing" in out and "token=[***]" in out, out
    leaked = [f for f in forms(TOKEN) + forms(OTHER) if f in out]
    assert not leaked, (leaked, out)
    listed = srv.admin_cli("admin", "secrets", "list", "app").stdout
    assert "DEPLOY_TOKEN\t" in listed and "only builds of refs/heads/main" in listed, listed
    assert TOKEN not in listed
