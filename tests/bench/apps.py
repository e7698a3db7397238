"""Apps and sites outliving serve (issue 20), measured with the real thing:

- switch: a Procfile site's blue -> green switch (the nginx reload that points the live
  server at the new side, until its old workers stop accepting) and a static site's rename,
  under 8 clients, with the requests served and failed;
- process start to healthy: `processes.start_side` of a python3 web process (its keeper,
  bwrap, own PID and network namespace, port forwarded by slirp4netns) until it answers 200;
- sites restart to processes adopted: kill -9 of `gitserve sites`, a new one started, until it
  reports every process running again with the same pids (under 8 clients: failed requests);
- serve restart to first served push: SIGTERM of `gitserve serve`, a new one started, until a
  `git push` over ssh to it has completed (what an upgrade costs pushers; sites lose nothing).

    python3 -m tests.bench.apps [--rounds 5] [--burn 2]

--burn N runs N CPU busy-loops meanwhile (the machine under load: the failed-request count
is the point); every failed request is printed with its status and body.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from deploy import bluegreen, nginx, processes, sitesctl
from gitserve.settings import Settings
from tests.support.appkit import write_app
from tests.support.pushes import timed_push
from tests.support.server import make_server
from tests.support.tools import HttpLoad, find_tool, free_port


def _stats(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"median {statistics.median(ms):.0f} ms, min {min(ms):.0f}, max {max(ms):.0f} (n={len(ms)})"


def _burn(stop: "multiprocessing.synchronize.Event") -> None:
    while not stop.is_set():
        pass


def _healthy(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def bench_sites(rounds: int, tmp: Path) -> None:
    settings = Settings(home=tmp / "home")
    settings.home.mkdir()
    settings.deploy.nginx_binary = find_tool("nginx") or "nginx"
    live, preview = free_port(), free_port()
    opts = {"deploy.port": f"127.0.0.1:{live}", "deploy.preview-port": str(preview),
            "deploy.check": "/health", "deploy.drain": "0"}
    static_opts = {"deploy.port": f"127.0.0.1:{free_port()}", "deploy.preview-port": str(free_port()),
                   "deploy.check": "/health"}
    meta = {"repo": "app", "ref": "refs/heads/main", "commit": "c" * 40, "pusher": "bench"}
    try:
        proc_switch, static_switch, deploys, served, failed = [], [], [], 0, 0
        for i in range(rounds + 1):
            out = write_app(tmp / f"app{i}", f"v{i}")
            static = tmp / f"static{i}"
            static.mkdir()
            (static / "health").write_text("ok\n")
            (static / "index.html").write_text(f"v{i}\n" * 1000)
            with HttpLoad(live, "/", threads=8) as load:
                t0 = time.monotonic()
                r = bluegreen.deploy_release(settings, "app", out, opts, {**meta, "build_id": str(i + 1)},
                                             lambda _line: None)
                took = time.monotonic() - t0
            rs = bluegreen.deploy_release(settings, "static", static, static_opts,
                                          {**meta, "repo": "static", "build_id": str(i + 1)},
                                          lambda _line: None)
            if i == 0:
                continue  # the first deploy has nothing to switch from
            proc_switch.append(r.switch_seconds)
            static_switch.append(rs.switch_seconds)
            deploys.append(took)
            served += len(load.results)
            failed += len(load.failures())
            for line in load.failures():
                print(f"  failed: {line}")
        print(f"switch, Procfile site (reload until old workers stop accepting): {_stats(proc_switch)}")
        print(f"switch, static site (rename of `live`):                          {_stats(static_switch)}")
        print(f"whole deploy of a Procfile release (start, check, switch):       {_stats(deploys)}")
        print(f"requests during those deploys: {served} served, {failed} failed")

        starts = []
        for i in range(rounds):
            release = tmp / f"start{i}"
            write_app(release, f"s{i}")
            t0 = time.monotonic()
            ports = processes.start_side(settings, "probe", "blue", f"s{i}", release,
                                         {"web": "python3 web.py"}, {})
            ok = _healthy(ports["web"], time.monotonic() + 30)
            starts.append(time.monotonic() - t0)
            assert ok, "the probe never answered"
            processes.stop_side(settings, "probe", "blue")
        print(f"process start to healthy (keeper, sandbox, netns, forward, python3): {_stats(starts)}")

        adopt_start, adopt_kill, served, failed = [], [], 0, 0
        side = bluegreen.Site(settings.sites_dir, "app").live_side()

        def pids() -> dict[str, int | None]:
            return {r["type"]: r["pid"] for r in processes.current_rows(settings, "app", side)
                    if r["state"] == "running"}

        before = pids()
        with HttpLoad(live, "/", threads=8) as load:
            for _ in range(rounds):
                old = sitesctl.running_pid(settings)
                assert old is not None
                t_kill = time.monotonic()
                os.kill(old, signal.SIGKILL)
                while sitesctl.running_pid(settings) is not None:
                    time.sleep(0.005)
                t0 = time.monotonic()
                sitesctl.ensure_running(settings)
                log = settings.logs_dir / "sites.log"
                want = log.read_text().count("adopted (pid") + len(before)
                while log.read_text().count("adopted (pid") < want:
                    time.sleep(0.005)
                adopt_start.append(time.monotonic() - t0)
                adopt_kill.append(time.monotonic() - t_kill)
                assert pids() == before, (pids(), before)
        served, failed = len(load.results), len(load.failures())
        for line in load.failures():
            print(f"  failed: {line}")
        print(f"sites kill -9 + start to processes adopted (same pids):          {_stats(adopt_start)}")
        print(f"  from the kill:                                                  {_stats(adopt_kill)}")
        print(f"requests meanwhile: {served} served, {failed} failed")
    finally:
        sitesctl.stop(settings)
        nginx.stop_embedded(settings)


def bench_serve_restart(rounds: int, tmp: Path) -> None:
    conf = "repo gitolite-admin\n    RW+ = admin\nrepo r\n    RW+ = alice\n"
    srv = make_server(tmp / "srv", conf=conf, users=("alice",))
    try:
        work = srv.clone("alice", "r")
        times = []
        for i in range(rounds):
            (work / "f.txt").write_text(f"{i}\n")
            srv.git("alice", "add", "-A", cwd=work)
            srv.git("alice", "commit", "-q", "-m", str(i), cwd=work)
            t0 = time.monotonic()
            srv.stop()
            srv.start()
            code, lines = timed_push(srv, "alice", work, "origin", "HEAD:main", timeout=60)
            assert code == 0, lines
            times.append(time.monotonic() - t0)
        print(f"serve SIGTERM + restart to first served push:                    {_stats(times)}")
    finally:
        srv.stop()
        srv.stop_sites()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--burn", type=int, default=0, help="CPU busy-loops meanwhile")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gitserve-bench-apps-"))
    tmp.chmod(0o755)  # as root, nginx's workers (nobody) must reach the sites under it
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.burn)]
    for b in burners:
        b.start()
    try:
        bench_sites(args.rounds, tmp)
        bench_serve_restart(args.rounds, tmp)
    finally:
        stop.set()
        for b in burners:
            b.join()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
