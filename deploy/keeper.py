"""One site process's keeper: a small process that runs one Procfile process in its sandbox
and outlives `gitserve sites` (SPEC §7.1: restarting or upgrading the supervisor must not
restart the sites' processes).

The supervisor (deploy/processes.py ProcessKeeper) starts one keeper per process, in its own
session, with the process's spec as JSON on stdin (`python -m deploy.keeper HOME`). The keeper
owns everything that would otherwise die with the supervisor: the bwrap sandbox (started
with --die-with-parent: the keeper is its parent), the user-mode network stack and the
site's port forward (slirp4netns exits when the keeper's end of its exit pipe closes), the
process's output (masked, appended to processes.log) and its cgroups. It records itself in
HOME/run/sites/SITE/keepers/NAME.json (its pid and start time, the process's pid) so that a
new supervisor adopts it instead of starting the process again, and wakes the supervisor
when the process runs.

It watches the process tree as builds are watched (gitserve/sandbox_limits.py: resident
memory and tasks sampled from /proc, the run's cgroups' OOM kills and refused forks): a
process over `[sites] memory` or `pids` is killed with one line in processes.log
(`killed: memory limit 1G reached`), and the keeper exits; the supervisor restarts it with
backoff. The keeper exits when its process does (with its status: 128+N for a signal), and
on SIGTERM stops it: SIGTERM to what runs inside the sandbox, STOP_GRACE seconds, then the
namespace is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitserve import procscan, sandbox, sandbox_limits
from gitserve.errors import GitserveError
from gitserve.fsutil import atomic_write
from gitserve.settings import Settings
from gitserve.sigevent import SignalEvent

from . import sitesctl
from .proclogfile import ProcessLog, mask_for

STOP_GRACE = 5.0       # SIGTERM, then the sandbox's namespace is killed
TICK = 0.5             # how often the process tree is sampled
HOT_TICK = 0.1         # near a limit: a fork bomb's numbers swing, catch it at a peak
LIMIT_EXIT = 137       # the keeper's status when a limit killed its process


def keeper_dir(settings: Settings, site: str) -> Path:
    return sitesctl.state_dir(settings) / site / "keepers"


def keeper_name(side: str, kind: str, generation: str) -> str:
    return f"{side}.{kind}.{generation}"


def keeper_file(settings: Settings, site: str, side: str, kind: str, generation: str) -> Path:
    return keeper_dir(settings, site) / f"{keeper_name(side, kind, generation)}.json"


def read_keepers(settings: Settings) -> list[dict[str, Any]]:
    """Every keeper record of this home whose keeper still runs (the same process: pid and
    start time); records of keepers gone are removed."""
    found: list[dict[str, Any]] = []
    root = sitesctl.state_dir(settings)
    for path in sorted(root.glob("*/keepers/*.json")) if root.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
            alive = procscan.alive(int(rec["keeper"]), int(rec["keeper_start"]))
        except (OSError, ValueError, KeyError, TypeError):
            alive, rec = False, {}
        if alive:
            found.append(rec)
        else:
            path.unlink(missing_ok=True)
    return found


def site_policy(settings: Settings) -> sandbox.Policy:
    """The builds' sandbox (user, network) with the [sites] limits."""
    from gitserve.sandbox_limits import Limits

    return replace(sandbox.Policy.from_settings(settings.builds),
                   limits=Limits.from_settings(settings.sites))


def limit_reached(jail: sandbox.Run) -> tuple[str | None, bool]:
    """(memory / pids reached or None, near one?), as builds are watched: the run's cgroups
    when it has them (an OOM kill, a refused fork: exact), else /proc samples of its tree."""
    if jail.limits is None or jail.init_pid is None:
        return None, False
    if jail.cgroup is not None and jail.cgroup.refused_forks():
        return "pids", False
    if jail.cgroup is not None and jail.cgroup.oom_kills():
        return "memory", False
    usage = sandbox_limits.tree_usage(jail.init_pid)
    hot = usage.tasks * 2 >= jail.limits.pids or usage.rss * 2 >= jail.limits.memory
    return sandbox_limits.over(usage, jail.limits), hot


class Keeper:
    def __init__(self, settings: Settings, spec: dict[str, Any]) -> None:
        self.settings = settings
        self.spec = spec
        self.site, self.side, self.kind = str(spec["site"]), str(spec["side"]), str(spec["type"])
        self.generation, self.port = str(spec["generation"]), int(spec["port"])
        self.release = str(spec["release"])
        self.stopping = SignalEvent()  # set by SIGTERM's handler (gitserve/sigevent.py says why)
        self.log = ProcessLog(sitesctl.state_dir(settings) / self.site / "processes.log")
        self.mask = mask_for(spec.get("env") or {})
        self.record = keeper_file(settings, self.site, self.side, self.kind, self.generation)

    def say(self, pid: int | None, text: str) -> None:
        self.log.write(self.side, self.kind, pid, text)

    def run(self) -> int:
        env = {str(k): str(v) for k, v in (self.spec.get("env") or {}).items()}
        env.update(PORT=str(self.port), SITE=self.site, SIDE=self.side, RELEASE=self.release)
        uid = self.spec.get("uid")
        policy = site_policy(self.settings)
        policy = policy.with_uid(int(uid)) if uid is not None else policy
        work: Path | None = None
        try:
            if policy.network == "none":
                raise sandbox.SandboxError("[builds] network = none: nginx could not reach a site "
                                           "process (it needs outbound or host)")
            work = sandbox.new_workdir(sandbox.work_root(sitesctl.state_dir(self.settings) / "work"))
            sandbox.hand_over(policy, work)
            jail = sandbox.prepare(policy, work, ["/bin/sh", "-c", str(self.spec["command"])], env,
                                   hide=[self.settings.home], src=Path(self.spec["dir"]),
                                   forward=[self.port] if policy.network != "host" else [])
            popen = subprocess.Popen(jail.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     **jail.popen_kwargs())
            try:
                jail.started()  # the network (port forward) is set up here
            except BaseException:
                jail.reap()
                jail.close()
                popen.kill()
                popen.wait()
                raise
        except (sandbox.SandboxError, OSError, GitserveError) as exc:
            self.say(None, f"not started: {exc}")
            if work is not None:
                sandbox.remove_workdir(work)
            self._record({"error": str(exc)})  # the supervisor reads why, then removes it
            return 2
        app_pid = _app_pid(popen.pid) or popen.pid
        started = time.time()
        self._record({"app_pid": app_pid, "started": started})
        self.say(app_pid, f"started release {self.release} on port {self.port}: {self.spec['command']}")
        sitesctl.wake(self.settings)  # the supervisor reports it running now, not at its next tick
        reader = threading.Thread(target=self._read, args=(popen, app_pid), daemon=True)
        reader.start()
        try:
            code = self._watch(popen, jail)
        finally:
            jail.reap()
            jail.close()
            if popen.poll() is None:
                popen.kill()
            popen.wait()
            reader.join(2.0)
            sandbox.remove_workdir(work)
            self.record.unlink(missing_ok=True)
        return code

    def _record(self, extra: dict[str, Any]) -> None:
        me = procscan.read(os.getpid())
        self.record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.record, json.dumps({
            "keeper": os.getpid(), "keeper_start": me.starttime if me else 0, "site": self.site,
            "side": self.side, "type": self.kind, "generation": self.generation, "port": self.port,
            "release": self.release, **extra}), mode=0o600)

    def _watch(self, popen: subprocess.Popen, jail: sandbox.Run) -> int:
        while popen.poll() is None:
            if self.stopping.is_set():
                self._terminate(popen)
                self.say(None, "stopped")
                return 0
            what, hot = limit_reached(jail)
            if what is not None:
                assert jail.limits is not None
                jail.kill()
                self.say(None, f"killed: {what.replace('_', ' ')} limit {jail.limits.show(what)} reached")
                return LIMIT_EXIT
            self.stopping.wait(HOT_TICK if hot else TICK)
        code = popen.returncode
        what, _ = limit_reached(jail)  # an OOM kill in its cgroup ends it by itself
        if what is not None and jail.limits is not None:
            self.say(None, f"killed: {what.replace('_', ' ')} limit {jail.limits.show(what)} reached")
            return LIMIT_EXIT
        code = 128 - code if code < 0 else code
        self.say(None, f"exited with {code}")
        return code

    def _terminate(self, popen: subprocess.Popen) -> None:
        """SIGTERM to the app's processes (not the bwrap parents, which follow them), GRACE
        seconds to exit; the caller kills the namespace after."""
        for pid in procscan.tree(popen.pid)[1:]:
            if not procscan.cmdline(pid).startswith(b"bwrap"):
                try:
                    os.kill(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            popen.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass

    def _read(self, popen: subprocess.Popen, pid: int) -> None:
        assert popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            self.say(pid, self.mask(raw.decode(errors="replace")))
        popen.stdout.close()


def _app_pid(bwrap_pid: int) -> int | None:
    """The pid of the command itself (below bwrap and its namespace init): what `deploy ps`
    shows and what a user would signal. Found within a second, else None."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        for pid in procscan.tree(bwrap_pid)[1:]:
            cmd = procscan.cmdline(pid)
            if cmd and not cmd.startswith((b"bwrap", b"setpriv")):
                return pid
        time.sleep(0.01)
    return None


def main(argv: list[str]) -> int:
    from gitserve import settings as settings_mod

    if len(argv) != 1:
        print("usage: python -m deploy.keeper HOME  (the process's spec as JSON on stdin)", file=sys.stderr)
        return 2
    spec = json.loads(sys.stdin.read())
    keeper = Keeper(settings_mod.load(Path(argv[0])), spec)

    def on_stop(_signum: int, _frame: Any) -> None:
        keeper.stopping.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # its session's leader may go: it stays
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    code = keeper.run()
    sitesctl.wake(keeper.settings)  # the supervisor restarts it now, not at its next tick
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
