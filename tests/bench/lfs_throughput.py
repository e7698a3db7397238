"""Git LFS throughput (SPEC §11): one big object uploaded and downloaded with Debian's git-lfs
over ssh (pure SSH protocol) and over http, against a plain `cp` of the same file on the same
disk, with the server's peak memory.

    python -m tests.bench.lfs_throughput [--mb 1024] [--runs 1] [--keep]

Upload = `git lfs push --object-id`, download = `git lfs fetch` into an empty clone (both the
real client, so protocol framing, hashing on both sides and the store's fsync are counted).
Ratios are time / cp time (1.0 = disk speed). VmHWM is the serve process's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.monotonic()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)

    from tests.support.httpkit import make_http_server, token

    tmp = Path(tempfile.mkdtemp(prefix="gitserve-lfs-bench-"))
    conf = ("repo gitolite-admin\n    RW+ = admin\n"
            "repo viassh\n    RW+ = alice\nrepo viahttp\n    RW+ = alice\n")
    srv = make_http_server(tmp / "srv", conf=conf, users=("alice",),
                           serve_args=("--workers", "0"))
    try:
        assert srv.proc is not None
        tok = token(srv, "alice", "bench")
        env = srv.client_env("alice")
        env["HOME"] = str(tmp / "home")
        (tmp / "home").mkdir()
        helper = tmp / "home" / "cred.sh"
        helper.write_text(f"#!/bin/sh\necho username=alice\necho password={tok}\n")
        helper.chmod(0o755)
        subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True,
                       capture_output=True)
        subprocess.run(["git", "config", "--global", "credential.helper", str(helper)],
                       env=env, check=True)
        work = tmp / "work"
        subprocess.run(["git", "init", "-q", str(work)], env=env, check=True)
        subprocess.run(["git", "lfs", "track", "*.bin"], env=env, cwd=work, check=True,
                       capture_output=True)
        digest = hashlib.sha256()
        with open(work / "big.bin", "wb") as f:
            block = os.urandom(1024 * 1024)
            for i in range(args.mb):
                chunk = block[:-8] + i.to_bytes(8, "big")
                digest.update(chunk)
                f.write(chunk)
        oid = digest.hexdigest()
        subprocess.run(["git", "add", "."], env=env, cwd=work, check=True)
        subprocess.run(["git", "commit", "-qm", "big"], env=env, cwd=work, check=True)
        remotes = {"ssh": srv.url("viassh"), "http": f"{srv.http_base}/viahttp.git"}
        for name, url in remotes.items():
            subprocess.run(["git", "remote", "add", name, url], env=env, cwd=work, check=True)
        local = work / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        rows = []
        for _ in range(args.runs):
            copy = tmp / "copy.bin"
            start = time.monotonic()
            shutil.copyfile(local, copy)
            with open(copy, "rb") as f:
                os.fsync(f.fileno())
            cp = time.monotonic() - start
            copy.unlink()
            for name, url in remotes.items():
                up = _timed(["git", "lfs", "push", "--object-id", name, oid], env, work)
                clone = tmp / f"clone-{name}"
                shutil.rmtree(clone, ignore_errors=True)
                subprocess.run(["git", "init", "-q", str(clone)], env=env, check=True)
                subprocess.run(["git", "remote", "add", "origin", url], env=env, cwd=clone,
                               check=True)
                down = _fetch_object(env, clone, url, oid, work)
                rows.append((name, up, down, cp))
                store = srv.home / "lfs" / ("viassh.git" if name == "ssh" else "viahttp.git")
                shutil.rmtree(store / "objects", ignore_errors=True)  # next run uploads again
        print(f"object: {args.mb} MiB, runs: {args.runs}")
        print(f"{'transport':9} {'upload s':>9} {'ratio':>6} {'MiB/s':>7} {'download s':>11} "
              f"{'ratio':>6} {'MiB/s':>7} {'cp s':>6}")
        for name, up, down, cp in rows:
            print(f"{name:9} {up:9.2f} {up / cp:6.2f} {args.mb / up:7.0f} {down:11.2f} "
                  f"{down / cp:6.2f} {args.mb / down:7.0f} {cp:6.2f}")
        print(f"server peak RSS (VmHWM): {_peak_mb(srv.proc.pid):.0f} MB")
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _fetch_object(env: dict[str, str], clone: Path, url: str, oid: str, work: Path) -> float:
    """Download time of OID alone: push the commit (pointer only) so the clone can name it,
    then `git lfs fetch` it into the empty clone's store."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], env=env, cwd=work, check=True,
                          capture_output=True, text=True).stdout.strip()
    remote = "ssh" if url.startswith("ssh://") else "http"
    subprocess.run(["git", "push", "-q", "--no-verify", remote, "HEAD:refs/heads/main"],
                   env=env, cwd=work, check=True, capture_output=True)
    subprocess.run(["git", "fetch", "-q", "origin", "main"], env=env, cwd=clone, check=True,
                   capture_output=True)
    start = time.monotonic()
    subprocess.run(["git", "lfs", "fetch", "origin", head], env=env, cwd=clone, check=True,
                   capture_output=True)
    took = time.monotonic() - start
    assert (clone / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).exists()
    return took


if __name__ == "__main__":
    raise SystemExit(main())
