"""Requests served/failed while a site switches blue -> green under load, and how long the
switch and a rollback take. Real nginx, embedded mode, free 127.0.0.1 ports.

    python3 -m tests.bench.deploy_switch [--rounds 5] [--threads 8] [--size 200000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from deploy import bluegreen, nginx
from gitserve.settings import Settings
from tests.support.tools import HttpLoad, find_tool, free_port


def output(root: Path, version: str, size: int, files: int) -> Path:
    out = root / f"out-{version}"
    (out / "assets").mkdir(parents=True)
    (out / "index.html").write_text(version + "\n" + "x" * size)
    (out / "health.txt").write_text("ok\n")
    for i in range(files):
        (out / "assets" / f"{i}.txt").write_text(f"{version} {i}\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=500)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gitserve-bench-"))
    settings = Settings(home=tmp / "home")
    settings.home.mkdir()
    settings.deploy.nginx_binary = find_tool("nginx") or ""
    port = free_port()
    opts = {"deploy.port": f"127.0.0.1:{port}", "deploy.preview-port": str(free_port()),
            "deploy.check": "/health.txt"}
    quiet = lambda line: None  # noqa: E731
    try:
        bluegreen.deploy_release(settings, "bench", output(tmp, "r0", args.size, args.files), opts,
                                 {"build_id": "0"}, quiet)
        deploys, renames, served, failed, mixed = [], [], 0, 0, 0
        for n in range(1, args.rounds + 1):
            out = output(tmp, f"r{n}", args.size, args.files)
            bodies = {f"r{n - 1}", f"r{n}"}
            with HttpLoad(port, "/", threads=args.threads) as load:
                time.sleep(0.3)
                t0 = time.monotonic()
                result = bluegreen.deploy_release(settings, "bench", out, opts, {"build_id": str(n)}, quiet)
                deploys.append(time.monotonic() - t0)
                time.sleep(0.3)
            renames.append(result.switch_seconds)
            served += len(load.results)
            failed += len(load.errors)
            mixed += sum(1 for *_, status, body in load.results
                         if status != 200 or body.split(b"\n", 1)[0].decode() not in bodies)
        rollbacks = []
        for _ in range(min(3, args.rounds)):
            t0 = time.monotonic()
            bluegreen.rollback(settings, "bench", log=quiet)
            rollbacks.append(time.monotonic() - t0)
        print(f"{args.rounds} deploys under {args.threads} client threads "
              f"({args.files} files + {args.size} B page each):")
        print(f"  requests served {served}, failed {failed}, wrong/mixed bodies {mixed}")
        print(f"  switch (rename(2) of live): median {statistics.median(renames) * 1e6:.0f} us, "
              f"max {max(renames) * 1e6:.0f} us")
        print(f"  whole deploy (publish..Enable): median {statistics.median(deploys):.2f} s")
        print(f"  rollback: median {statistics.median(rollbacks) * 1000:.0f} ms, max {max(rollbacks) * 1000:.0f} ms")
    finally:
        from deploy import sitesctl
        sitesctl.stop(settings)  # `gitserve sites` (serve never stops it), nginx with it
        nginx.stop_embedded(settings)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
