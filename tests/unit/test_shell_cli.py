"""`gitserve shell USER` as sshd runs it: environment in, protocol on stdout, one-line errors."""

from __future__ import annotations

import subprocess

from gitserve.ssh import shell
from tests.support.keys import copy_home
from tests.support.tools import gitserve_cmd, subprocess_env


def run_shell(home, user: str, command: str | None, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = subprocess_env(SSH_CONNECTION="192.0.2.7 51234 127.0.0.1 22")
    env.pop("SSH_ORIGINAL_COMMAND", None)
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return subprocess.run(gitserve_cmd("--home", str(home), "shell", user), input=stdin, env=env,
                          capture_output=True, timeout=60, check=False)


def test_no_command_is_info_and_the_audit_has_the_peer(home_template, tmp_path):
    home = copy_home(home_template, tmp_path)
    r = run_shell(home, "alice", None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("hello alice, this is ")
    assert " R W\tgitolite-admin" in r.stdout.decode() and r.stderr == b""
    r = run_shell(home, "alice", "git-upload-pack 'testing'", stdin=b"0000")
    assert r.returncode == 0 and r.stdout.endswith(b"0000")  # advertisement, then the client's flush
    audit = (home / "logs" / "audit.log").read_text()
    assert '"ip": "192.0.2.7"' in audit or '"ip":"192.0.2.7"' in audit


def test_refusals_are_one_line(home_template, tmp_path):
    home = copy_home(home_template, tmp_path)
    r = run_shell(home, "alice", "git-upload-pack '../etc'")
    assert r.returncode == 25 and r.stdout == b"" and r.stderr.decode().count("\n") == 1
    assert r.stderr.startswith(b"FATAL: ")  # and Gitolite's FATAL status (Perl's die: ENOTTY)
    r = run_shell(home, "alice; rm -rf /", "info")
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1 and b"invalid user" in r.stderr
    r = run_shell(tmp_path / "nohome", "alice", "info")
    assert r.returncode == 1 and b"not a gitserve home" in r.stderr and r.stderr.count(b"\n") == 1


def test_plugins_only_where_needed():
    cases = {"": False, "info": False, "git-upload-pack 'foo'": False, "git upload-pack 'foo'": False,
             "git-upload-archive 'foo'": False, "perms x -l": False,
             "git-receive-pack 'x'": True, "help": True, "builds list": True, "deploy status x": True}
    assert {c: shell.needs_plugins(c) for c in cases} == cases
    assert shell.peer_address({"SSH_CONNECTION": "2001:db8::1 5 ::1 22"}) == "2001:db8::1"
    assert shell.peer_address({}) == "local"


def test_behind_sshd_the_follow_command_and_build_clone_url_name_port_22(tmp_path):
    from buildqueue import enqueue
    from gitserve.settings import Settings

    s = Settings(home=tmp_path)
    s.server.listen, s.server.public_host = "127.0.0.1:2222", "git.example.com"
    assert enqueue.follow_command(s, "7") == "ssh -p 2222 git@git.example.com builds log 7 --follow"
    s.server.public_port = 22
    assert enqueue.follow_command(s, "7") == "ssh git@git.example.com builds log 7 --follow"
    assert enqueue.clone_url(s, "foo") == "ssh://git@git.example.com:22/foo.git"


def test_shell_sessions_reach_the_servers_metrics(home_template, tmp_path):
    """Behind the system sshd each connection is its own process: what it counted reaches the
    running server's /metrics (the Observer reads the sessions' spool before a scrape)."""
    from prometheus_client import generate_latest

    from gitserve import settings as settings_mod
    from gitserve.http.metrics import Observer
    from gitserve.metrics import Metrics

    home = copy_home(home_template, tmp_path)
    settings = settings_mod.load(home)
    assert run_shell(home, "alice", None).returncode == 0  # before the server started
    metrics = Metrics()
    observer = Observer(settings, metrics)
    observer.seed()
    assert run_shell(home, "alice", "info").returncode == 0
    assert run_shell(home, "alice", "git-upload-pack 'testing'", stdin=b"0000").returncode == 0
    assert run_shell(home, "alice", "git-receive-pack 'nope'").returncode == 25
    observer.sync()
    text = generate_latest(metrics.registry).decode()
    assert 'gitserve_connections_total{transport="sshd"} 3.0' in text
    assert 'gitserve_git_operations_total{service="git-upload-pack",transport="sshd"} 1.0' in text
    assert 'gitserve_access_denied_total{check="1",transport="sshd"} 1.0' in text
    assert 'gitserve_git_bytes_total{direction="sent",transport="sshd"}' in text
    observer.sync()  # nothing is counted twice
    assert generate_latest(metrics.registry).decode() == text


def test_the_shell_imports_neither_typer_nor_prometheus(home_template, tmp_path):
    """sshd starts one process per connection: `gitserve shell` must stay a light import."""
    import sys

    home = copy_home(home_template, tmp_path)
    probe = ("import runpy, sys; sys.argv = ['gitserve', '--home', sys.argv[1], 'shell', "
             "'alice']\ntry:\n    runpy.run_module('gitserve', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in ('typer', 'pydantic', 'prometheus_client', 'buildqueue',"
             " 'redis', 'rq') if m in sys.modules), file=sys.stderr)")
    env = subprocess_env(SSH_ORIGINAL_COMMAND="info")
    r = subprocess.run([sys.executable, "-c", probe, str(home)], env=env, capture_output=True,
                       timeout=60, check=False)
    assert r.stdout.decode().startswith("hello alice")
    assert r.stderr.decode().strip().splitlines()[-1] == "[]", r.stderr


def test_a_running_server_serves_the_shells_connection(home_template, tmp_path):
    """With the server up, `gitserve shell` hands its sshd pipes to it (ssh/handoff.py): the
    same answers and exit codes, counted in the server's own /metrics as sshd, nothing left
    for the spool; without the server (or once it stops) the shell serves it itself."""
    from prometheus_client import generate_latest

    from gitserve import app as app_mod
    from gitserve import settings as settings_mod
    from gitserve.metrics import Metrics
    from gitserve.ssh.handoff import HandoffService, socket_path

    home = copy_home(home_template, tmp_path)
    settings = settings_mod.load(home)
    alone = run_shell(home, "alice", "info")
    metrics = Metrics()
    service = HandoffService(settings, app_mod.ssh_commands_table(settings), [], metrics)
    service.start()
    spool = home / "run" / "shell-metrics.jsonl"
    spool.unlink(missing_ok=True)
    try:
        assert socket_path(settings.run_dir).exists()
        served = run_shell(home, "alice", "info")
        assert (served.returncode, served.stdout, served.stderr) == \
            (alone.returncode, alone.stdout, alone.stderr)
        denied = run_shell(home, "alice", "git-upload-pack 'nope'")
        assert denied.returncode == 25 and denied.stderr.startswith(b"FATAL: R any nope alice")
        adv = run_shell(home, "alice", "git-upload-pack 'testing'", stdin=b"0000")
        assert adv.returncode == 0 and adv.stdout.endswith(b"0000")
        text = generate_latest(metrics.registry).decode()
        assert 'gitserve_connections_total{transport="sshd"} 3.0' in text
        assert 'gitserve_access_denied_total{check="1",transport="sshd"} 1.0' in text
        assert not spool.exists()
    finally:
        service.stop()
    assert not socket_path(settings.run_dir).exists()
    assert run_shell(home, "alice", "info").stdout == alone.stdout  # served by itself again


def _sshd_run(command: str, home, ssh_command: str | None, stdin: bytes = b"",
              python_flags: str = "") -> subprocess.CompletedProcess:
    """COMMAND as sshd runs a forced command: the user's shell, sshd's small environment (no
    PYTHONPATH: the forced command must find its gitserve by itself)."""
    import os

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home.parent),
           "LANG": "C.UTF-8", "SSH_CONNECTION": "192.0.2.7 51234 127.0.0.1 22"}
    if ssh_command is not None:
        env["SSH_ORIGINAL_COMMAND"] = ssh_command
    return subprocess.run(["sh", "-c", command], input=stdin, env=env, capture_output=True,
                          timeout=60, check=False)


def test_the_forced_command_hands_off_without_site_packages_or_serves_itself(home_template,
                                                                            tmp_path):
    """`admin authorized-keys` writes `PYTHON -I -S .../shellclient.py --home H shell USER`:
    with the server up it hands the connection over having imported only modules built into
    the interpreter; without one it execs the full `gitserve shell` of the same tree. Both
    answer exactly as `gitserve shell` does."""
    import re
    import shlex

    from gitserve import app as app_mod
    from gitserve import authkeys
    from gitserve import settings as settings_mod
    from gitserve.metrics import Metrics
    from gitserve.ssh.handoff import HandoffService

    home = copy_home(home_template, tmp_path)
    settings = settings_mod.load(home)
    command = authkeys.forced_command(settings, "alice")
    argv = shlex.split(command)
    assert argv[1:3] == ["-I", "-S"] and argv[3].endswith("/gitserve/ssh/shellclient.py")
    assert argv[4:] == ["--home", str(home.resolve()), "shell", "alice"]
    cases = [("info", b""), ("git-upload-pack 'nope'", b""),
             ("git-upload-pack 'testing'", b"0000"), (None, b"")]
    expected = [run_shell(home, "alice", c, stdin=s) for c, s in cases]
    assert expected[1].returncode == 25 and expected[2].stdout.endswith(b"0000")

    def same(got: subprocess.CompletedProcess, want: subprocess.CompletedProcess) -> None:
        assert (got.returncode, got.stdout, got.stderr) == \
            (want.returncode, want.stdout, want.stderr)

    for (c, s), want in zip(cases, expected):  # no server: the full shell, exec'd
        same(_sshd_run(command, home, c, s), want)
    metrics = Metrics()
    service = HandoffService(settings, app_mod.ssh_commands_table(settings), [], metrics)
    service.start()
    try:
        for (c, s), want in zip(cases, expected):
            same(_sshd_run(command, home, c, s), want)
        from prometheus_client import generate_latest

        text = generate_latest(metrics.registry).decode()
        assert 'gitserve_connections_total{transport="sshd"} 4.0' in text
        # what the fast client loaded: nothing beyond the interpreter's own start
        timed = command.replace(" -I -S ", " -I -S -X importtime ", 1)
        r = _sshd_run(timed, home, "info")
        assert r.returncode == 0 and r.stdout == expected[0].stdout
        loaded = set(re.findall(r"\|\s+(\S+)\s*$", r.stderr.decode(), re.M))
        assert not loaded & {"json", "re", "socket", "os", "logging", "threading", "gitserve",
                             "pathlib", "typing", "enum", "collections", "site"}, loaded
    finally:
        service.stop()


def test_the_fast_clients_request_is_json_the_server_reads(tmp_path):
    import json
    import random

    from gitserve.ssh import shellclient

    rnd = random.Random(5)
    alphabet = ["a", '"', "\\", "\n", "\x00", "\x7f", "é", "\udcff", "\U0001f600", "'", " "]
    for _ in range(300):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        data = shellclient.request("alice", {"SSH_ORIGINAL_COMMAND": text})
        body = json.loads(data[4:])
        assert int.from_bytes(data[:4], "big") == len(data) - 4
        assert body == {"user": "alice", "SSH_ORIGINAL_COMMAND": text, "SSH_CONNECTION": "",
                        "GIT_PROTOCOL": ""}


def test_the_fast_client_passes_a_hostile_command_as_data(home_template, tmp_path):
    """What the ssh user controls (SSH_ORIGINAL_COMMAND) reaches the server as one string:
    quotes cannot add a second "user" to the handoff request, odd bytes cannot break it."""
    import os

    from gitserve import app as app_mod
    from gitserve import authkeys
    from gitserve import settings as settings_mod
    from gitserve.ssh.handoff import HandoffService

    home = copy_home(home_template, tmp_path)
    settings = settings_mod.load(home)
    command = authkeys.forced_command(settings, "alice")
    service = HandoffService(settings, app_mod.ssh_commands_table(settings), [], None)
    service.start()
    try:
        for hostile in ('info", "user": "admin', 'info\\", "user": "admin", "x": "',
                        "info\n{\"user\": \"admin\"}"):
            r = _sshd_run(command, home, hostile)
            assert b"admin" not in r.stdout and r.returncode in (0, 25), (hostile, r)
            assert r.stdout.startswith(b"hello alice") or r.stderr.startswith(b"FATAL: ")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home.parent)}
        raw = subprocess.run(["sh", "-c", command], env={**env, "SSH_ORIGINAL_COMMAND": "info"},
                             capture_output=True, timeout=60, check=False)
        odd = subprocess.run(["sh", "-c", command],
                             env={k.encode(): v.encode() for k, v in env.items()}
                             | {b"SSH_ORIGINAL_COMMAND": b"info \xff\xfe"},
                             capture_output=True, timeout=60, check=False)
        assert raw.returncode == 0 and raw.stdout.startswith(b"hello alice")
        assert b"Traceback" not in odd.stderr and odd.returncode in (0, 25), odd
    finally:
        service.stop()
