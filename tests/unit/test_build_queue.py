"""Builds end to end below the SSH layer: the push hook enqueues on a real Redis, real
`rq worker` processes (started like on a build host) run the script, the log streams back."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from buildqueue import commands, enqueue, logs, records, rqconn
from gitserve.secrets import crypt as secrets_mod
from buildqueue.pushhook import BuildHook
from gitserve.git.pushhooks import ZERO_SHA, PushContext, RefUpdate
from gitserve.options import RepoOptions
from gitserve.settings import Settings
from tests.support.builds import commit_to, git, make_bare, set_ref, wait_for

pytestmark = pytest.mark.timeout(60)


class Pusher:
    """What the SSH session gives the hook: a progress callback; we keep lines with arrival times."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.monotonic(), line))

    @property
    def text(self) -> list[str]:
        return [line for _, line in self.lines]


@pytest.fixture
def env(tmp_path, redis_server, workers):
    settings = Settings(home=tmp_path / "home")
    settings.redis.url = redis_server.url
    settings.server.listen = "127.0.0.1:2299"
    settings.home.mkdir()
    shutil.copy(workers.key_file, settings.secrets_key_file)
    return settings


def push(settings, name, files, options=None, ref="refs/heads/main", move=True, user="alice"):
    bare = settings.repo_path(name)
    if not bare.exists():
        make_bare(bare)
    sha = commit_to(bare, files)
    old = git("--git-dir", str(bare), "rev-parse", "--verify", "-q", ref) if _has(bare, ref) else ZERO_SHA
    update = RefUpdate(ref, old, sha)
    pusher = Pusher()
    ctx = PushContext(settings=settings, repo_name=name, repo_path=bare, user=user,
                      options={"build.enable": "1", **(options or {})}, progress=pusher)
    hook = BuildHook()
    reason = hook.before_update(ctx, update)
    if reason is None and move:
        set_ref(bare, ref, sha)
        hook.after_push(ctx, [update])
    return pusher, reason, sha, bare


def _has(bare, ref):
    try:
        git("--git-dir", str(bare), "rev-parse", "--verify", "-q", ref)
        return True
    except AssertionError:
        return False


def summary_id(pusher: Pusher) -> str:
    last = pusher.text[-1]
    assert last.startswith("build "), pusher.text
    return last.split()[1]


def test_sync_build_streams_lines_live(env):
    script = "#!/bin/sh\necho first line\nsleep 4\necho second line\n"
    pusher, reason, _, _ = push(env, "live", {".gitserve/build": script})
    assert reason is None
    times = {line: t for t, line in pusher.lines}
    assert "first line" in times and "second line" in times, pusher.text
    assert times["second line"] - times["first line"] >= 3.5
    assert pusher.text[-1].startswith(f"build {summary_id(pusher)} passed in ")


def test_failing_build_and_environment(env):
    script = ("#!/bin/sh\necho repo=$GITSERVE_REPO ref=$GITSERVE_REF pusher=$GITSERVE_PUSHER\n"
              "echo new=$GITSERVE_NEWREV old=$GITSERVE_OLDREV id=$GITSERVE_BUILD_ID\n"
              "echo out=$GITSERVE_OUTPUT\n"
              "read x && echo stdin-had-data || echo stdin-empty\n"
              "test -d \"$GITSERVE_OUTPUT\" && echo output-exists\n"
              "echo oops >&2\nexit 3\n")
    pusher, reason, sha, _ = push(env, "env/repo", {".gitserve/build": script}, user="bob")
    build_id = summary_id(pusher)
    text = pusher.text
    assert "repo=env/repo ref=refs/heads/main pusher=bob" in text
    assert f"new={sha} old={ZERO_SHA} id={build_id}" in text
    assert "stdin-empty" in text and "output-exists" in text and "oops" in text
    assert "gitserve: exit code 3" in text
    assert text[-1].startswith(f"build {build_id} failed in ")
    r = rqconn.connect(env.effective_redis_url)
    assert records.get(r, build_id).status == "failed"


def test_no_build_without_script_or_on_unmatched_ref(env):
    pusher, _, _, _ = push(env, "noscript", {"README": "x"})
    assert pusher.text == []
    pusher, _, _, _ = push(env, "refs", {".gitserve/build": "#!/bin/sh\necho hi\n"},
                           options={"build.refs": "release/ refs/tags/v"}, ref="refs/heads/feature")
    assert pusher.text == []
    pusher, _, _, _ = push(env, "refs", {".gitserve/build": "#!/bin/sh\necho hi\n", "x": "1"},
                           options={"build.refs": "release/ refs/tags/v"}, ref="refs/heads/release/1")
    assert pusher.text[0] == "hi"


def test_custom_script_path_not_executable_runs_with_sh(env):
    pusher, _, _, _ = push(env, "custom", {"ci/run.sh": "echo via sh $0\n"},
                           options={"build.script": "./ci/run.sh"})
    assert pusher.text[0].startswith("via sh ") and "passed" in pusher.text[-1]


def test_async_returns_at_once_and_log_follow(env):
    script = "#!/bin/sh\necho begin\nsleep 2\necho end\n"
    pusher, _, _, _ = push(env, "async", {".gitserve/build": script}, options={"build.mode": "async"})
    assert len(pusher.text) == 1
    line = pusher.text[0]
    build_id = line.split()[1]
    r = rqconn.connect(env.effective_redis_url)
    assert not records.get(r, build_id).is_final  # the push did not wait for the build
    assert line == f"build {build_id} queued: ssh -p 2299 git@127.0.0.1 builds log {build_id} --follow"
    out = Pusher()
    r = rqconn.connect(env.effective_redis_url)
    final = logs.follow(r, build_id, out)
    assert out.text == ["begin", "end"] and final.status == "passed"


def test_gate_rejects_failed_build_and_leaves_refs(env):
    pusher, reason, sha, bare = push(env, "gate", {".gitserve/build": "#!/bin/sh\necho ok\n"},
                                     options={"build.mode": "gate"})
    assert reason is None and git("--git-dir", str(bare), "rev-parse", "main") == sha
    before = git("--git-dir", str(bare), "for-each-ref")
    pusher, reason, bad, _ = push(env, "gate", {".gitserve/build": "#!/bin/sh\necho broken\nexit 1\n"},
                                  options={"build.mode": "gate"})
    build_id = summary_id(pusher)
    assert reason == f"build {build_id} failed"
    assert "broken" in pusher.text
    assert git("--git-dir", str(bare), "for-each-ref") == before  # hidden ref gone too


def test_timeout_kills_grandchildren(env, tmp_path):
    # the script runs sandboxed (it cannot write to tmp_path): its processes are found on the
    # host by their unique command line
    script = "#!/bin/sh\n(sleep 301.25 & wait) &\necho started\nsleep 300\n"
    pusher, _, _, _ = push(env, "timeout", {".gitserve/build": script}, options={"build.timeout": "2"})
    assert pusher.text[-1].startswith(f"build {summary_id(pusher)} timed out in "), pusher.text
    assert float(pusher.text[-1].split()[-1].rstrip("s")) < 10  # 2 s, plus the kill, not 300
    assert any("timed out after 2s" in line for line in pusher.text)
    wait_for(lambda: not host_pids("sleep 301.25"), timeout=5)


def host_pids(cmdline: str) -> list[int]:
    """Live (non-zombie) processes whose command line is CMDLINE."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip().decode()
        except OSError:
            continue
        if raw == cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie whose parent has not reaped it yet is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_cancel_running_build(env, tmp_path):
    script = "#!/bin/sh\nsleep 302.5 &\necho running\nwait\n"
    _, _, _, _ = push(env, "cancel", {".gitserve/build": script}, options={"build.mode": "async"})
    r = rqconn.connect(env.effective_redis_url)
    build_id = records.list_ids(r, "cancel")[0]
    wait_for(lambda: host_pids("sleep 302.5"))
    out = Pusher()
    out.write = lambda s: out(s.rstrip("\n"))  # type: ignore[attr-defined]
    code = commands.run(env, ["cancel", build_id], lambda *_: True, out, user="carol")
    assert code == 0 and out.text == [f"build {build_id} cancelled"]
    assert records.get(r, build_id).status == "cancelled"
    wait_for(lambda: not host_pids("sleep 302.5"), timeout=5)
    with pytest.raises(commands.CommandError, match="already cancelled"):
        commands.run(env, ["cancel", build_id], lambda *_: True, out)


def test_cancel_stops_a_build_waiting_in_its_lane(env, tmp_path):
    """rq's stop-job command reaches a build whose worker waits for an earlier build of the
    same ref: it ends `cancelled while waiting`, its workspace goes, the earlier one runs on."""
    first = "#!/bin/sh\nsleep 303.5 &\necho first\nwait\n"
    push(env, "lane", {".gitserve/build": first}, options={"build.mode": "async"})
    r = rqconn.connect(env.effective_redis_url)
    wait_for(lambda: host_pids("sleep 303.5"))
    push(env, "lane", {".gitserve/build": "#!/bin/sh\necho second\n"}, options={"build.mode": "async"})
    first_id, second_id = sorted(records.list_ids(r, "lane"), key=int)
    wait_for(lambda: any("waiting for build" in e.get("l", "") for e in logs.entries(r, second_id)))
    workdir = (r.hget(f"gitserve:build:{second_id}", "workdir") or b"").decode()
    assert workdir and Path(workdir).is_dir()
    out = Pusher()
    out.write = lambda s: out(s.rstrip("\n"))  # type: ignore[attr-defined]
    assert commands.run(env, ["cancel", second_id], lambda *_: True, out, user="dave") == 0
    assert out.text == [f"build {second_id} cancelled"]
    second = records.get(r, second_id)
    assert (second.status, second.reason) == ("cancelled", "cancelled while waiting")
    assert not Path(workdir).exists()
    assert records.get(r, first_id).status == "running" and host_pids("sleep 303.5")
    assert commands.run(env, ["cancel", first_id], lambda *_: True, out, user="dave") == 0
    assert records.get(r, first_id).reason == "cancelled by dave: process group killed"
    wait_for(lambda: not host_pids("sleep 303.5"), timeout=5)


def test_same_ref_builds_run_in_push_order(env, tmp_path):
    opts = {"build.mode": "async"}
    for n in range(3):
        script = "#!/bin/sh\necho start $(date +%s.%N)\nsleep 0.5\necho end $(date +%s.%N)\n"
        push(env, "order", {".gitserve/build": script + f"# {n}\n"}, options=opts)
    r = rqconn.connect(env.effective_redis_url)
    ids = sorted(records.list_ids(r, "order"), key=int)
    spans = []
    for build_id in ids:
        assert logs.wait_quietly(r, build_id, 20).status == "passed"
        lines = [e.get("l", "") for e in logs.entries(r, build_id)]
        stamps = dict(line.split() for line in lines if line.startswith(("start ", "end ")))
        spans.append((float(stamps["start"]), float(stamps["end"])))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


def test_secrets_masked_everywhere(env, redis_server):
    secret = "s3cr3t-Value-42"
    secrets_mod.set_secret(env.home / "secrets", env.secrets_key_file, "sec", "API_TOKEN", secret)
    assert secret not in (env.home / "secrets" / "sec.json").read_text()
    script = "#!/bin/sh\necho token is $API_TOKEN\necho \"$API_TOKEN\" | rev | rev >&2\nexit 1\n"
    pusher, _, _, _ = push(env, "sec", {".gitserve/build": script})
    assert "token is ***" in pusher.text and "***" in pusher.text
    assert all(secret not in line for line in pusher.text)
    r = redis_server.client()
    for key in r.scan_iter("*"):
        t = r.type(key).decode()
        read = {"string": r.get, "hash": r.hgetall, "stream": r.xrange,
                "zset": lambda k: r.zrange(k, 0, -1), "list": lambda k: r.lrange(k, 0, -1),
                "set": r.smembers, "none": lambda k: b""}[t]
        dump = repr(read(key))
        assert secret not in dump, key


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []
    fail_first = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_posts_on_end_with_retry(env):
    """The build ends on a build-host worker; the server's notifier (as `gitserve serve` runs
    it) delivers the webhook, retrying the 503."""
    from buildqueue.notify.service import NotifierService
    from gitserve import settings as settings_mod

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    _Receiver.fail_first = 1
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env.notify.backoff = 0.1
    env.notify.allow_private = True  # the receiver is on 127.0.0.1
    settings_mod.write(env)  # what the notify workers read (they run as serve's do)
    notifier = NotifierService(env)
    notifier.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        pusher, _, sha, _ = push(env, "hooked", {".gitserve/build": "#!/bin/sh\nexit 1\n"},
                                 options={"notify.webhook": url, "notify.events": "build"})
        build_id = summary_id(pusher)
        body = wait_for(lambda: _Receiver.bodies and _Receiver.bodies[0], timeout=15)
        assert body["build_id"] == build_id and body["status"] == "failed"
        assert body["text"].startswith(f"gitserve: build {build_id} of hooked refs/heads/main ({sha[:7]}) by alice failed")
    finally:
        notifier.stop()
        server.shutdown()
        server.server_close()


def test_redis_down_push_still_completes(env, tmp_path):
    from buildqueue import spool

    up = env.redis.url
    env.redis.url = f"unix://{tmp_path}/nothing.sock"
    env.redis.outage_wait = 1.0  # how long a push waits for Redis to come back
    t0 = time.monotonic()
    pusher, reason, sha, bare = push(env, "down", {".gitserve/build": "#!/bin/sh\necho hi\n"})
    assert 1.0 <= time.monotonic() - t0 < 10
    assert reason is None and git("--git-dir", str(bare), "rev-parse", "main") == sha
    assert len(pusher.text) == 1 and pusher.text[0].startswith("build of refs/heads/main could not be queued: Redis unreachable")
    assert pusher.text[0].endswith("it is kept and queued when Redis is back (`builds list` shows it then)")
    (held,) = spool.pending(env)  # kept on disk, its commit pinned where no user sees it
    pin = f"refs/gitserve/spool/{held.stem}"
    assert git("--git-dir", str(bare), "rev-parse", pin) == sha
    pusher, reason, _, _ = push(env, "down", {".gitserve/build": "#!/bin/sh\necho hi\n", "y": "1"},
                                options={"build.mode": "gate"})
    assert reason.startswith("build could not be queued: Redis unreachable")
    assert git("--git-dir", str(bare), "rev-parse", "main") == sha
    assert len(spool.pending(env)) == 1  # a rejected gate keeps nothing
    env.redis.url = up  # Redis is back: the held build is queued once and runs
    r = rqconn.connect(up)
    (build_id,) = spool.drain(env, r)
    assert spool.drain(env, r) == [] and spool.pending(env) == []
    assert not _has(bare, pin)
    build = logs.wait_quietly(r, build_id, 30)
    assert (build.status, build.new, build.pusher) == ("passed", sha, "alice")


def test_post_receive_hook_streams(env):
    env.hooks_dir.mkdir(parents=True)
    hook = env.hooks_dir / "announce"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do echo \"got $ref $new by $GL_USER in $GL_REPO\"; done\n")
    hook.chmod(0o755)
    pusher, _, sha, _ = push(env, "withhook", {"README": "no build here"},
                             options={"hook.post-receive": "announce"})
    assert pusher.text == [f"got refs/heads/main {sha} by alice in withhook"]
    pusher, _, _, _ = push(env, "withhook", {"R2": "x"}, options={"hook.post-receive": "../etc/passwd"})
    assert pusher.text[0].startswith("gitserve: hook.post-receive: invalid hook name")
    (env.hooks_dir / "team").mkdir()
    (env.hooks_dir / "team" / "second").write_text("#!/bin/sh\necho second; exit 4\n")
    (env.hooks_dir / "team" / "second").chmod(0o755)
    pusher, _, sha, _ = push(env, "withhook", {"R3": "x"},
                             options={"hook.post-receive": "announce  team/second",
                                      "hook.post-receive.zz": "missing"})
    assert pusher.text == [f"got refs/heads/main {sha} by alice in withhook", "second",
                           "gitserve: hook.post-receive team/second exited with 4",
                           "gitserve: hook.post-receive: missing is not an executable file in the hooks directory"]


def _admin_conf(settings, conf: str) -> None:
    from gitserve import adminrepo

    if not settings.admin_repo.exists():
        adminrepo.create_admin_repo(settings, {adminrepo.MAIN_CONF: conf.encode()}, "test", "conf")
    else:
        adminrepo.set_conf(settings, conf, "test")


def test_builds_commands_respect_access(env):
    _admin_conf(env, "repo private\n    RW+ = alice\n    option build.enable = 1\n")
    pusher, _, _, _ = push(env, "private", {".gitserve/build": "#!/bin/sh\necho private stuff\n"})
    build_id = summary_id(pusher)

    class Out(list):
        def write(self, s):
            self.append(s)

        def flush(self):
            pass

    out = Out()
    deny = lambda repo, perm, ref="any": repo != "private"  # noqa: E731
    for argv in (["show", build_id], ["log", build_id], ["retry", build_id]):
        with pytest.raises(commands.CommandError, match=f"no build {build_id}"):
            commands.run(env, argv, deny, out)
    read_only = lambda repo, perm, ref="any": perm == "R"  # noqa: E731
    with pytest.raises(commands.CommandError, match="W access"):
        commands.run(env, ["retry", build_id], read_only, out)
    commands.run(env, ["list"], deny, out)
    assert "private" not in "".join(out)
    out.clear()
    commands.run(env, ["log", build_id], read_only, out)
    assert "".join(out).splitlines() == ["private stuff", pusher.text[-1]]
    out.clear()
    commands.run(env, ["retry", build_id], lambda *_: True, out, user="bob")
    new_id = "".join(out).split()[1]
    r = rqconn.connect(env.effective_redis_url)
    final = logs.wait_quietly(r, new_id, 20)
    assert final.status == "passed" and final.retry_of == build_id and final.pusher == "bob"
    with pytest.raises(commands.CommandError, match="invalid choice"):
        commands.run(env, ["frobnicate"], lambda *_: True, out)
    # W on another ref is not enough to retry a build of main
    dev_only = lambda repo, perm, ref="any": perm == "R" or ref.startswith("refs/heads/dev/")  # noqa: E731
    with pytest.raises(commands.CommandError, match="W access to refs/heads/main of private"):
        commands.run(env, ["retry", build_id], dev_only, out)
    # a retry obeys the conf in force now: builds switched off -> refused
    _admin_conf(env, "repo private\n    RW+ = alice\n")
    with pytest.raises(commands.CommandError, match="builds are off for private"):
        commands.run(env, ["retry", build_id], lambda *_: True, out)


def test_no_build_without_build_enable_but_the_admins_hook_runs(env):
    """Pushed code never runs without build.enable; a hook the admin installed in HOME/hooks
    runs as Gitolite's repo-specific hooks ran (a site moved over keeps its hooks working)."""
    env.hooks_dir.mkdir(parents=True, exist_ok=True)
    (env.hooks_dir / "say").write_text("#!/bin/sh\necho hook ran\n")
    (env.hooks_dir / "say").chmod(0o755)
    for enable in ("0", ""):
        pusher, reason, _, _ = push(env, "off", {".gitserve/build": "#!/bin/sh\necho ran\n", "n": enable},
                                    options={"build.enable": enable, "hook.post-receive": "say"})
        assert reason is None and pusher.text == ["hook ran"]
        pusher, reason, _, _ = push(env, "off", {".gitserve/build": "#!/bin/sh\necho ran\n", "g": enable},
                                    options={"build.enable": enable, "build.mode": "gate"})
        assert reason is None and pusher.text == []


def test_worker_killed_mid_build_reports_worker_lost(env, redis_server, tmp_path):
    import signal

    script = "#!/bin/sh\necho working\nsleep 60.75\n"
    pusher_holder: dict = {}

    def do_push():
        pusher_holder["p"] = push(env, "lost", {".gitserve/build": script})[0]

    t = threading.Thread(target=do_push)
    t.start()
    wait_for(lambda: host_pids("sleep 60.75"))
    horse = host_pids("sleep 60.75")[0]  # up to the rq work-horse running the job (python)
    while b"python" not in Path(f"/proc/{horse}/cmdline").read_bytes().split(b"\0")[0]:
        horse = _ppid(horse)
    os.kill(horse, signal.SIGKILL)
    t.join(30)
    assert not t.is_alive()
    text = pusher_holder["p"].text
    assert "gitserve: worker lost" in text and text[-1].startswith(f"build {summary_id(pusher_holder['p'])} failed in ")


def test_annotated_tag_builds_its_commit(env):
    bare = make_bare(env.repo_path("tagged"))
    sha = commit_to(bare, {".gitserve/build": "#!/bin/sh\necho tag $GITSERVE_REF $(git rev-parse HEAD) $GITSERVE_NEWREV\n"})
    git("--git-dir", str(bare), "tag", "-a", "tmp", "-m", "release", sha)
    tag = git("--git-dir", str(bare), "rev-parse", "refs/tags/tmp")
    git("--git-dir", str(bare), "update-ref", "-d", "refs/tags/tmp")
    assert tag != sha
    pusher = Pusher()
    ctx = PushContext(settings=env, repo_name="tagged", repo_path=bare, user="alice",
                      options={"build.enable": "1", "build.refs": "refs/tags/v"}, progress=pusher)
    update = RefUpdate("refs/tags/v1.0", ZERO_SHA, tag)
    set_ref(bare, "refs/tags/v1.0", tag)
    BuildHook().after_push(ctx, [update])
    assert pusher.text[0] == f"tag refs/tags/v1.0 {sha} {tag}", pusher.text
    assert " passed in " in pusher.text[-1]


def test_history_keeps_last_50_and_drops_hidden_refs(env):
    bare = make_bare(env.repo_path("busy"))
    sha = commit_to(bare, {".gitserve/build": "#!/bin/sh\ntrue\n"})
    set_ref(bare, "refs/heads/main", sha)
    r = rqconn.connect(env.effective_redis_url)
    env.builds.history = 10  # below the floor: SPEC says at least 50
    ids = []
    for _ in range(53):
        b = enqueue.enqueue(env, r, "busy", bare, "refs/heads/main", ZERO_SHA, sha, "alice",
                            RepoOptions.parse({"build.queue": "nobody-works-this"}), "async")
        records.finish(r, b.id, "cancelled", "test")
        ids.append(b.id)
    kept = records.list_ids(r, "busy", limit=1000)
    assert sorted(kept, key=int) == ids[3:]
    with pytest.raises(records.BuildNotFound):
        records.get(r, ids[0])
    hidden = git("--git-dir", str(bare), "for-each-ref", "--format=%(refname)", "refs/gitserve/builds/").split()
    assert sorted(h.rsplit("/", 1)[1] for h in hidden) == sorted(ids[3:])
    r.delete("rq:queue:nobody-works-this")


def test_sync_push_waiting_for_a_worker_is_told_and_cancel_while_queued(env, monkeypatch):
    from buildqueue import pushhook

    monkeypatch.setattr(pushhook, "QUEUED_HINT_AFTER", 1.0)
    holder: dict = {}
    opts = {"build.queue": "no-worker-here"}
    t = threading.Thread(target=lambda: holder.update(p=push(env, "idleq", {".gitserve/build": "#!/bin/sh\necho x\n"},
                                                                options=opts)[0]))
    t.start()
    r = rqconn.connect(env.effective_redis_url)
    build_id = wait_for(lambda: records.list_ids(r, "idleq"))[0]
    time.sleep(2.5)  # the hint comes after QUEUED_HINT_AFTER seconds of waiting

    class Out(list):
        def write(self, s):
            self.append(s)

    out = Out()
    assert commands.run(env, ["cancel", build_id], lambda *_: True, out, user="ops") == 0
    t.join(15)
    text = holder["p"].text
    assert text[0].startswith(f"gitserve: build {build_id} waits for a worker on queue 'no-worker-here'")
    assert text[-2:] == ["gitserve: cancelled by ops", f"build {build_id} cancelled in 0.0s"]
    assert r.llen("rq:queue:no-worker-here") == 0  # the RQ job was cancelled too


def test_bad_options_fall_back_and_say_so():
    parsed = RepoOptions.parse({"build.mode": "later", "build.timeout": "-3", "build.queue": "a b",
                                "notify.webhook": "ftp://x", "build.script": "./ci//build"})
    opts = parsed.build
    assert (opts.mode, opts.timeout, opts.queue, opts.script) == ("sync", 600, "builds", "ci/build")
    assert parsed.warnings == (
        "gitserve: unknown build.mode 'later', using sync",
        "gitserve: invalid build.timeout '-3', using 600",
        "gitserve: invalid build.queue 'a b', using builds",
        "gitserve: option notify.webhook must be http(s) URLs; no notification to the others")
    assert parsed.notify.webhook == ()
    assert enqueue.ref_matches("refs/heads/main", ["main"]) and not enqueue.ref_matches("refs/heads/xmain", ["main"])
    assert enqueue.ref_matches("refs/tags/v1", ["refs/tags/v[0-9]"]) and not enqueue.ref_matches("refs/tags/x", ["refs/tags/v"])
