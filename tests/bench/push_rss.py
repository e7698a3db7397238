"""Peak memory of the server process for one big push (#11: a push's memory must not grow
with the size of its blobs).

    python -m tests.bench.push_rss [--total-mb 1024] [--blobs 4] [--keep]

Starts `gitserve serve --workers 0` on a free port, commits BLOBS random files totalling
TOTAL_MB in a client repo and pushes them with the real git over ssh. Prints the serve
process's resident memory before the push and its peaks during it: VmHWM (the kernel's
high-water mark, which also counts pages of the pack file dulwich maps) and RssAnon (the
process's own memory, sampled every 50 ms). Random data does not compress, so the pack on the wire is ~TOTAL_MB.
The push limits are lifted for the run (max_push_bytes and max_blob_bytes = 0 where the
settings have them), so the same script measures a build without them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-mb", type=int, default=1024)
    ap.add_argument("--blobs", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    from gitserve.settings import ServerSettings
    from tests.support.server import make_server

    tmp = Path(tempfile.mkdtemp(prefix="gitserve-push-rss-"))
    server_settings = {}
    if hasattr(ServerSettings, "max_push_bytes"):
        server_settings = {"max_push_bytes": 0, "max_blob_bytes": 0}
    conf = "repo gitolite-admin\n    RW+ = admin\nrepo big\n    RW+ = alice\n"
    srv = make_server(tmp / "srv", settings={"server": server_settings} if server_settings else None,
                      conf=conf, users=("alice",), serve_args=("--workers", "0"))
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        work = srv.clone("alice", "big")
        # random data: no compression, no delta search (git's own choice for big files)
        srv.git("alice", "config", "core.compression", "0", cwd=work)
        srv.git("alice", "config", "core.bigFileThreshold", "1m", cwd=work)
        each = args.total_mb * 1024 * 1024 // args.blobs
        for i in range(args.blobs):
            with open(work / f"blob{i}.bin", "wb") as f:
                left = each
                while left:
                    chunk = os.urandom(min(left, 8 << 20))
                    f.write(chunk)
                    left -= len(chunk)
        srv.git("alice", "add", "-A", cwd=work, timeout=600)
        srv.git("alice", "commit", "-q", "-m", "big", cwd=work, timeout=600)
        before = _status_kb(pid, "VmRSS")
        peak_anon = [0]
        done = threading.Event()

        def sample() -> None:  # RssAnon has no high-water mark of its own
            while not done.wait(0.05):
                try:
                    peak_anon[0] = max(peak_anon[0], _status_kb(pid, "RssAnon"))
                except (OSError, KeyError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        push = srv.git("alice", "push", "origin", "HEAD:main", cwd=work, timeout=1800, check=False)
        took = time.monotonic() - t0
        done.set()
        sampler.join()
        peak = _status_kb(pid, "VmHWM")
        print(f"push of {args.blobs} random blobs, {args.total_mb} MiB in all: exit {push.returncode} "
              f"in {took:.1f}s")
        if push.returncode:
            print(push.stderr.strip())
        # VmHWM counts the pack file's pages that dulwich reads through mmap (page cache the
        # kernel may drop at any time); RssAnon is the process's own memory
        print(f"serve process RSS before the push: {before / 1024:.0f} MiB; peak during it: "
              f"{peak / 1024:.0f} MiB (VmHWM, incl. mapped pack file), "
              f"{peak_anon[0] / 1024:.0f} MiB anonymous (RssAnon sampled every 50 ms)")
        return 0 if push.returncode == 0 else 1
    finally:
        srv.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
