"""A site's processes (SPEC §7.1): what should run per side, and the keeper that runs it.

Deploys (and rollback, restart) say what a side should run by writing
HOME/run/sites/SITE/SIDE.json (0600: it carries the repo's secrets; HOME/run is 0700 and
never under HOME/sites, which nginx workers may traverse):

    {"site", "side", "release", "dir", "generation", "env": {...}, "uid": N | null,
     "procs": {"web": {"command": "...", "port": 40123}, ...}, "stop_at": null | epoch}

and wake `gitserve sites` (SIGHUP). Its ProcessKeeper starts each process through a keeper
of its own (deploy/keeper.py, which outlives the supervisor and is adopted by the next one)
that runs it through gitserve/sandbox.py: the bwrap policy of builds (own PID and network namespaces, the
site's port forwarded from the host's 127.0.0.1, server home hidden, never root: as root
the site's repo's build uid; limits from [sites]), with PORT, SITE, SIDE, RELEASE and the
env in its environment and the release as working directory. A process binds
0.0.0.0:$PORT, as on Heroku: the forward arrives on the namespace's own address.
A process that exits is restarted with backoff (1 s doubling to 30 s; 1 s again after
30 s up). A side's processes are stopped (SIGTERM, then the namespace is killed) when its
generation changes, its file goes or `stop_at` passed (a drained old side) and no process
named in its `hold` list (the nginx workers that may still be answering a request from it,
as [pid, starttime]) is alive any more, HOLD_MAX at most. Ports are
chosen by the deploy, so nginx's config is written before the processes run and a
restarted process gets its port back. Output goes, masked, to HOME/run/sites/SITE/
processes.log, one `TIME SIDE TYPE[PID]: line` each; state to SITE/SIDE.status.json.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gitserve import procscan
from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

from . import sitesctl
from .errors import DeployError
from .proclogfile import ProcessLog
from .site import SIDES

log = logging.getLogger("gitserve.sites")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0   # seconds up after which the backoff starts over
STOP_GRACE = 5.0       # a keeper given SIGTERM stops its process in this long (deploy/keeper.py)
HOLD_MAX = 600.0       # a drained side a request never lets go of stops this long after its drain


# --- the desired state (written by deploys, read by the keeper) ------------------------
def site_dir(settings: Settings, site: str) -> Path:
    return sitesctl.state_dir(settings) / site


PREVIEW_PREFIX = "preview-"
_PREVIEW_SIDE = re.compile(r"preview-[a-z0-9][a-z0-9-]{0,62}")


def preview_side(label: str) -> str:
    """The process set of a branch preview (deploy.previews) is a side of its own, named
    after the branch's DNS label: it runs beside blue and green, never instead of them."""
    side = PREVIEW_PREFIX + label
    if not _PREVIEW_SIDE.fullmatch(side):
        raise DeployError("preview", f"not a preview name: {label!r}")
    return side


def is_side(side: object) -> bool:
    return isinstance(side, str) and (side in SIDES or bool(_PREVIEW_SIDE.fullmatch(side)))


def desired_file(settings: Settings, site: str, side: str) -> Path:
    assert is_side(side)
    return site_dir(settings, site) / f"{side}.json"


def retired_file(settings: Settings, site: str, side: str, generation: str) -> Path:
    """A side's previous process set, replaced while it was still draining: it keeps
    running (on its own ports) until its drain and hold are over, beside the new one."""
    return site_dir(settings, site) / f"{side}.{generation}.retired.json"


def status_file(settings: Settings, site: str, side: str) -> Path:
    return site_dir(settings, site) / f"{side}.status.json"


def log_file(settings: Settings, site: str) -> Path:
    return site_dir(settings, site) / "processes.log"


def read_desired(settings: Settings, site: str, side: str) -> dict[str, Any] | None:
    try:
        data = json.loads(desired_file(settings, site, side).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def used_ports(settings: Settings) -> set[int]:
    """Every port some side of some site was given (free or not right now)."""
    found: set[int] = set()
    root = sitesctl.state_dir(settings)
    for path in root.glob("*/*.json") if root.is_dir() else []:
        if path.name.endswith(".status.json"):
            continue
        try:
            procs = json.loads(path.read_text()).get("procs", {})
            found |= {int(p["port"]) for p in procs.values()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def start_side(settings: Settings, site: str, side: str, release: str, release_dir: Path,
               commands: dict[str, str], env: dict[str, str], uid: int | None = None
               ) -> dict[str, int]:
    """Ask for COMMANDS of RELEASE on SIDE (replacing whatever that side ran), each on a new
    free port; returns {type: port}. The supervisor is started if needed and woken."""
    from .nginx import free_port

    taken = used_ports(settings)
    procs: dict[str, dict[str, Any]] = {}
    for kind, command in sorted(commands.items()):
        port = free_port(taken)
        taken.add(port)
        procs[kind] = {"command": command, "port": port}
    desired = {"site": site, "side": side, "release": release, "dir": str(release_dir),
               "generation": secrets.token_hex(8), "env": dict(env), "procs": procs,
               "stop_at": None, "written_at": time.time(), "uid": uid}
    path = desired_file(settings, site, side)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    before = read_desired(settings, site, side)
    if before is not None and before.get("stop_at") and before.get("generation"):
        # still draining (a deploy or rollback right after a switch): nginx's old workers
        # may be waiting on it, so it is not replaced in place but finishes beside the new
        atomic_write(retired_file(settings, site, side, str(before["generation"])),
                     json.dumps(before, indent=1), mode=0o600)
    atomic_write(path, json.dumps(desired, indent=1), mode=0o600)
    sitesctl.ensure_running(settings)
    sitesctl.wake(settings)
    return {kind: int(p["port"]) for kind, p in procs.items()}


def stop_side(settings: Settings, site: str, side: str, after: float = 0.0,
              hold: Iterable[int] = ()) -> None:
    """Stop SIDE's processes AFTER seconds (a drain: requests already sent to the old side
    finish); 0 stops them now. HOLD: pids (the nginx workers of the config before a switch)
    that may still be waiting on an answer from SIDE: it keeps running until they are gone,
    however long the drain, so no request in flight is cut (HOLD_MAX at most). Idempotent;
    a side with nothing is left alone."""
    desired = read_desired(settings, site, side)
    if desired is None:
        return
    desired["stop_at"] = time.time() + max(0.0, after)
    desired["hold"] = [[p.pid, p.starttime] for p in map(procscan.read, hold)
                       if p is not None and not p.zombie]
    atomic_write(desired_file(settings, site, side), json.dumps(desired, indent=1), mode=0o600)
    sitesctl.wake(settings)


def restart_in_place(settings: Settings, site: str, side: str, kind: str) -> None:
    """Ask for KIND on SIDE to be stopped and started again on its port (a type nginx sends
    no traffic to: a worker, a scheduler); the supervisor does it at its next pass."""
    desired = read_desired(settings, site, side)
    if desired is None or kind not in desired.get("procs", {}):
        raise DeployError("restart", f"site {site} runs no {kind} process on {side}")
    desired["procs"][kind]["restart"] = secrets.token_hex(4)
    atomic_write(desired_file(settings, site, side), json.dumps(desired, indent=1), mode=0o600)
    sitesctl.wake(settings)


def side_ports(settings: Settings, site: str, side: str | None) -> dict[str, int]:
    """{type: port} SIDE should be serving (not stopping), or {} (static, or nothing)."""
    if side is None:
        return {}
    desired = read_desired(settings, site, side)
    if desired is None or desired.get("stop_at"):
        return {}
    return {kind: int(p["port"]) for kind, p in desired.get("procs", {}).items()}


def read_status(settings: Settings, site: str) -> list[dict[str, Any]]:
    """The processes of SITE as the supervisor last wrote them (blue, green, then previews)."""
    rows: list[dict[str, Any]] = []
    found = sorted(site_dir(settings, site).glob("*.status.json"))
    for path in sorted(found, key=lambda p: (p.name.split(".")[0] not in SIDES, p.name)):
        if not is_side(path.name.split(".")[0]):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.extend(data.get("procs", []))
    return rows


def current_rows(settings: Settings, site: str, side: str) -> list[dict[str, Any]]:
    """SIDE's processes of its current generation, not an earlier one draining beside it."""
    generation = (read_desired(settings, site, side) or {}).get("generation")
    return [r for r in read_status(settings, site)
            if r.get("side") == side and r.get("generation", generation) == generation]


def wait_running(settings: Settings, site: str, side: str, timeout: float) -> None:
    """Until the supervisor reports every process of SIDE's current generation started."""
    deadline = time.monotonic() + timeout
    while True:
        desired = read_desired(settings, site, side) or {}
        try:
            status = json.loads(status_file(settings, site, side).read_text())
        except (OSError, ValueError):
            status = {}
        generation = desired.get("generation")
        current = desired and status.get("generation") == generation
        rows = [p for p in status.get("procs", []) if p.get("generation", generation) == generation
                ] if current else []
        failed = [p for p in rows if p.get("state") == "failed"]
        if failed:
            raise DeployError("processes", f"{side} {failed[0].get('type')} of {site} could not "
                              f"start: {failed[0].get('error') or 'see deploy logs ' + site}")
        # started: running, or ran and exited (a crash loop is for the check to judge, not a hang)
        if current and all(p.get("pid") or p.get("restarts") or p.get("state") == "backoff" for p in rows) \
                and len(rows) == len(desired.get("procs", {})):
            return
        if time.monotonic() > deadline:
            where = ", ".join(f"{p.get('type')} {p.get('state')}" for p in rows) if rows else \
                f"gitserve sites (pid {sitesctl.running_pid(settings) or 'none'}) reported none"
            raise DeployError("processes", f"{side} processes of {site} did not start in {timeout:.0f}s: "
                              f"{where} (see deploy logs {site})")
        time.sleep(0.02)


# --- the keeper (inside `gitserve sites`) -------------------------------------------------
@dataclass
class Instance:
    site: str
    side: str
    kind: str
    generation: str
    release: str
    port: int
    popen: subprocess.Popen | None = None   # the keeper, when this supervisor started it
    keeper: int | None = None               # the keeper's pid (ours or adopted)
    keeper_start: int | None = None         # and its start time: the same process for good
    started: float = 0.0        # wall clock, for `deploy ps` uptime and the backoff
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    next_start: float = 0.0
    state: str = "starting"
    last_exit: int | None = None
    error: str = ""
    app_pid: int | None = None
    restart_token: str | None = None   # desired proc["restart"] last acted on
    retired: bool = False       # from a retired file: an earlier generation still draining
    draining: bool = False      # its side has a stop_at (a drain, and maybe a hold)

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.keeper is not None and procscan.alive(self.keeper, self.keeper_start)

    def row(self) -> dict[str, Any]:
        running = self.running()
        state = "draining" if self.draining and self.state == "running" else self.state
        return {"site": self.site, "side": self.side, "type": self.kind, "release": self.release,
                "pid": self.app_pid if running else None, "port": self.port,
                "started": self.started if running else None, "restarts": self.restarts,
                "state": state, "last_exit": self.last_exit, "error": self.error,
                "generation": self.generation, "keeper": self.keeper if running else None,
                "keeper_start": self.keeper_start if running else None}


class ProcessKeeper:
    """Runs every site's desired processes (a keeper of deploy/supervisor.py), each through
    its own keeper process (deploy/keeper.py) that outlives this supervisor: a new one
    adopts the keepers it finds running instead of starting their processes again."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.instances: dict[tuple[str, str, str, str], Instance] = {}  # site, side, type, generation
        self.logs: dict[str, ProcessLog] = {}
        self.found: dict[tuple[str, str, str, str], dict[str, Any]] | None = None  # keepers to adopt

    # reading what should run
    def _desired(self) -> Iterator[dict[str, Any]]:
        root = sitesctl.state_dir(self.settings)
        for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
            if path.name.endswith(".status.json"):
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and is_side(data.get("side")) and data.get("site") == path.parent.name:
                data["_path"] = str(path)
                data["_retired"] = path.name != f"{data['side']}.json"
                yield data

    def _running_keepers(self) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        """Keepers left running by an earlier supervisor, with what it last reported of
        them (restarts): what the first pass adopts."""
        from .keeper import read_keepers

        rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        root = sitesctl.state_dir(self.settings)
        for path in root.glob("*/*.status.json") if root.is_dir() else []:
            try:
                for row in json.loads(path.read_text()).get("procs", []):
                    rows[(row["site"], row["side"], row["type"], str(row.get("generation")))] = row
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        found = {}
        for rec in read_keepers(self.settings):
            key = (rec["site"], rec["side"], rec["type"], str(rec["generation"]))
            found[key] = {**rec, "restarts": int(rows.get(key, {}).get("restarts") or 0)}
        return found

    def reconcile(self) -> None:
        now = self.clock()
        first = self.found is None
        if self.found is None:
            self.found = self._running_keepers()
        wanted: dict[tuple[str, str, str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        finished: list[dict[str, Any]] = []
        for desired in self._desired():
            if desired.get("stop_at") and float(desired["stop_at"]) <= now and not self._held(desired, now):
                finished.append(desired)
                continue
            for kind, proc in desired.get("procs", {}).items():
                wanted[(desired["site"], desired["side"], kind, str(desired["generation"]))] = (desired, proc)
        for key, inst in list(self.instances.items()):
            if key not in wanted:
                self._stop(inst)
                del self.instances[key]
        for key, (desired, proc) in wanted.items():
            found = self.instances.get(key)
            if found is None:
                inst = Instance(key[0], key[1], key[2], key[3], str(desired["release"]),
                                int(proc["port"]), restart_token=proc.get("restart"))
                self.instances[key] = inst
                inst.retired, inst.draining = bool(desired["_retired"]), bool(desired.get("stop_at"))
                if key in self.found:
                    self._adopt(inst, self.found.pop(key))
                else:
                    self._start(inst, desired, proc)
                continue
            found.retired, found.draining = bool(desired["_retired"]), bool(desired.get("stop_at"))
            if proc.get("restart") != found.restart_token:  # `deploy restart SITE TYPE`
                found.restart_token = proc.get("restart")
                self._stop_now(found)
                found.restarts += 1
                self._start(found, desired, proc)
                continue
            self._watch(found, desired, proc)
        if first:  # keepers nothing wants any more (their side was stopped meanwhile)
            for rec in self.found.values():
                self._signal_keeper(int(rec["keeper"]), int(rec["keeper_start"]))
                log.info("%s %s %s: stopped a keeper no site wants (pid %s)", rec["site"], rec["side"],
                         rec["type"], rec["keeper"])
            self.found = {}
        for desired in finished:  # drained: its processes are stopped above; forget the side
            path = Path(desired["_path"])
            try:  # unless a deploy just wrote a new generation there
                if json.loads(path.read_text()).get("generation") == desired["generation"]:
                    path.unlink()
            except (OSError, ValueError):
                pass
        self._write_status()

    def _held(self, desired: dict[str, Any], now: float) -> bool:
        """Is a drained side still held by an nginx worker that may be waiting on it?"""
        holders = [(int(pid), int(start)) for pid, start in desired.get("hold") or []
                   if procscan.alive(int(pid), int(start))]
        if not holders:
            return False
        if now < float(desired["stop_at"]) + HOLD_MAX:
            return True
        log.warning("%s %s: stopped %.0fs after its drain though nginx worker %s still runs",
                    desired["site"], desired["side"], HOLD_MAX, holders[0][0])
        return False

    def _adopt(self, inst: Instance, rec: dict[str, Any]) -> None:
        inst.keeper, inst.keeper_start = int(rec["keeper"]), int(rec["keeper_start"])
        inst.app_pid = int(rec["app_pid"]) if rec.get("app_pid") else None
        inst.started = float(rec.get("started") or self.clock())
        inst.restarts = int(rec.get("restarts") or 0)
        inst.state = "running"
        log.info("%s %s %s: adopted (pid %s, keeper %s)", inst.site, inst.side, inst.kind,
                 inst.app_pid, inst.keeper)

    def _watch(self, inst: Instance, desired: dict[str, Any], proc: dict[str, Any]) -> None:
        if inst.keeper is not None and inst.app_pid is None:
            self._learn_app_pid(inst)
        if inst.keeper is not None and not inst.running():
            code = inst.popen.wait() if inst.popen is not None else None
            error = self._keeper_error(inst)
            inst.popen, inst.keeper, inst.keeper_start, inst.app_pid = None, None, None, None
            inst.last_exit = code
            up = self.clock() - inst.started
            healthy = up >= HEALTHY_AFTER
            inst.backoff = BACKOFF_FIRST if healthy else min(BACKOFF_MAX, inst.backoff * 2)
            inst.next_start = time.monotonic() + (BACKOFF_FIRST if healthy else inst.backoff)
            inst.state, inst.error = ("failed", error) if error else ("backoff", "")
            # the keeper said why (exited with N, killed: ... limit, not started: ...)
            self._log(inst).write(inst.side, inst.kind, None,
                                  f"restarting in {inst.next_start - time.monotonic():.0f}s")
            log.warning("%s %s %s %s", inst.site, inst.side, inst.kind,
                        f"not started: {error}" if error else
                        "exited" + (f" with {code}" if code is not None else ""))
        if inst.keeper is None and time.monotonic() >= inst.next_start:
            inst.restarts += 1
            self._start(inst, desired, proc)

    def _keeper_error(self, inst: Instance) -> str:
        """Why a keeper could not start its process (it leaves that in its record), or ""."""
        from .keeper import keeper_file

        path = keeper_file(self.settings, inst.site, inst.side, inst.kind, inst.generation)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return ""
        path.unlink(missing_ok=True)
        return str(rec.get("error") or "") if rec.get("keeper") == inst.keeper else ""

    def _learn_app_pid(self, inst: Instance) -> None:
        """The keeper records the process's pid once it runs (deploy/keeper.py)."""
        from .keeper import keeper_file

        try:
            rec = json.loads(keeper_file(self.settings, inst.site, inst.side, inst.kind,
                                         inst.generation).read_text())
        except (OSError, ValueError):
            return
        if rec.get("keeper") == inst.keeper and rec.get("app_pid"):
            inst.app_pid = int(rec["app_pid"])
            inst.started = float(rec.get("started") or inst.started)
            inst.state = "running"

    def _log(self, inst: Instance) -> ProcessLog:
        if inst.site not in self.logs:
            self.logs[inst.site] = ProcessLog(log_file(self.settings, inst.site))
        return self.logs[inst.site]

    def _start(self, inst: Instance, desired: dict[str, Any], proc: dict[str, Any]) -> None:
        """A keeper for INST (deploy/keeper.py), in its own session: nothing of it dies
        with this supervisor. Its spec (with the secrets) goes through a pipe."""
        spec = {"site": inst.site, "side": inst.side, "type": inst.kind, "generation": inst.generation,
                "release": inst.release, "port": inst.port, "command": str(proc["command"]),
                "dir": str(desired["dir"]), "env": desired.get("env") or {}, "uid": desired.get("uid")}
        code_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH", "")
        env = dict(os.environ, PYTHONPATH=code_root + (os.pathsep + path if path else ""))
        try:
            self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
            with open(self.settings.logs_dir / "sites-console.log", "ab") as console:  # crashes only
                popen = subprocess.Popen([sys.executable, "-m", "deploy.keeper", str(self.settings.home)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=console, start_new_session=True,
                                         close_fds=True, cwd="/", env=env)
            assert popen.stdin is not None
            popen.stdin.write(json.dumps(spec).encode())
            popen.stdin.close()
            me = procscan.read(popen.pid)
        except OSError as exc:
            inst.state, inst.error = "failed", str(exc)
            inst.next_start = time.monotonic() + inst.backoff
            inst.backoff = min(BACKOFF_MAX, inst.backoff * 2)
            log.warning("%s %s %s not started: %s", inst.site, inst.side, inst.kind, exc)
            return
        inst.popen, inst.keeper = popen, popen.pid
        inst.keeper_start = me.starttime if me is not None else None
        inst.app_pid = None
        inst.started = self.clock()
        inst.state = "starting"
        inst.error = ""

    def _signal_keeper(self, pid: int, start: int | None, sig: int = signal.SIGTERM) -> None:
        if procscan.alive(pid, start):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _stop(self, inst: Instance) -> None:
        """SIGTERM to the keeper (it stops its process: SIGTERM, STOP_GRACE, the namespace
        killed); a thread reaps it, so a slow stopper holds up no other site."""
        if inst.keeper is None:
            return
        inst.state = "stopping"
        self._signal_keeper(inst.keeper, inst.keeper_start)
        threading.Thread(target=self._wait_gone, args=(inst, STOP_GRACE + 5), daemon=True,
                         name=f"stop-{inst.site}-{inst.kind}").start()

    def _stop_now(self, inst: Instance) -> None:
        """Here, not in a thread (its port is wanted back at once)."""
        if inst.keeper is None:
            return
        self._signal_keeper(inst.keeper, inst.keeper_start)
        self._wait_gone(inst, STOP_GRACE + 5)
        inst.popen, inst.keeper, inst.keeper_start, inst.app_pid = None, None, None, None

    def _wait_gone(self, inst: Instance, timeout: float) -> None:
        popen, pid, start = inst.popen, inst.keeper, inst.keeper_start
        assert pid is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen is not None:
                try:
                    popen.wait(0.05)
                    return
                except subprocess.TimeoutExpired:
                    continue
            if not procscan.alive(pid, start):
                return
            time.sleep(0.05)
        self._signal_keeper(pid, start, signal.SIGKILL)  # its bwrap dies with it (--die-with-parent)
        if popen is not None:
            popen.wait()

    def _write_status(self) -> None:
        by_side: dict[tuple[str, str], list[Instance]] = {}
        for inst in self.instances.values():
            by_side.setdefault((inst.site, inst.side), []).append(inst)
        root = sitesctl.state_dir(self.settings)
        for path in root.glob("*/*.status.json") if root.is_dir() else []:
            site, side = path.parent.name, path.name.split(".")[0]
            if (site, side) not in by_side:
                path.unlink(missing_ok=True)
        for (site, side), insts in by_side.items():
            generation = ([i for i in insts if not i.retired] or insts)[0].generation
            rows = [i.row() for i in sorted(insts, key=lambda i: (i.retired, i.kind))]
            text = json.dumps({"generation": generation, "procs": rows}, indent=1)
            path = status_file(self.settings, site, side)
            try:
                if not path.exists() or path.read_text() != text:
                    atomic_write(path, text, mode=0o600)
            except OSError:
                pass

    def stop(self) -> None:
        """The supervisor stops (SIGTERM: `systemctl stop gitserve-sites`): every process
        stops with it. (A supervisor that dies or hands over leaves its keepers running.)"""
        for inst in self.instances.values():
            self._stop(inst)
        deadline = time.monotonic() + STOP_GRACE + 6
        while time.monotonic() < deadline and any(i.running() for i in self.instances.values()):
            time.sleep(0.05)
        self.instances.clear()
        self._write_status()

    def hand_over(self) -> None:
        """The supervisor exits for a new one (an upgrade): keepers keep running, their
        state stays written for the next supervisor to adopt."""
        self._write_status()
        self.instances.clear()
