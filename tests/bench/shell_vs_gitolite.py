"""A forced-command connection: `gitserve shell` against Gitolite's `gitolite-shell`.

    python tests/bench/shell_vs_gitolite.py [--runs 15]

Behind the system OpenSSH every connection starts a new process, so its start-up is part of
every clone, fetch and `ssh git@host info`. This times the process sshd would run, for
`info` and for an upload-pack advertisement (`git ls-remote`'s server half), side by side:
gitserve's (this checkout, a fresh home) and Debian's gitolite3 (a home made by `gitolite
setup`), each as sshd runs a forced command (`sh -c COMMAND`, sshd's clean environment),
interleaved so machine load hits all alike; prints medians and ratios. gitserve runs as
deployed: `gitserve serve` is up, and the command is the one `gitserve admin authorized-keys`
writes (the fast client, gitserve/ssh/shellclient.py, which hands the connection to the
server); the `gitserve shell` column is the full command it replaced (it hands off too, after
importing gitserve's CLI with site-packages).
Target (issue 24): gitserve no slower than Gitolite (ratio <= 1.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GITOLITE_SHELL = "/usr/share/gitolite3/gitolite-shell"


def timed(argv: list[str], env: dict[str, str], stdin: bytes) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, input=stdin, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {r.stderr.decode()[:300]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if not Path(GITOLITE_SHELL).exists() or not shutil.which("gitolite"):
        print("gitolite3 is not installed", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-shell-"))
    try:
        key = tmp / "admin"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        glhome = tmp / "gl"
        glhome.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GL_", "GIT_"))}
        subprocess.run(["gitolite", "setup", "-pk", f"{key}.pub"], env=dict(base, HOME=str(glhome)),
                       check=True, capture_output=True)
        gshome = tmp / "gs"
        env_py = dict(base, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "gitserve", "--home", str(gshome), "init",
                        "--admin", "admin", "--admin-key", f"{key}.pub"], env=env_py, check=True,
                       capture_output=True)
        conn = {"SSH_CONNECTION": "127.0.0.1 5000 127.0.0.1 22"}
        # as deployed: `gitserve serve` runs, and the shell hands it the connection
        serve = subprocess.Popen([sys.executable, "-m", "gitserve", "--home", str(gshome), "serve",
                                  "--listen", "127.0.0.1:0"], env=env_py, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert serve.stdout is not None
        for line in serve.stdout:
            if "listening on" in line:
                break
        line = subprocess.run([sys.executable, "-m", "gitserve", "--home", str(gshome), "admin",
                               "authorized-keys", "--user", "admin"], env=env_py, check=True,
                              capture_output=True, text=True).stdout.splitlines()[0]
        forced = line[len('command="'):line.index('",no-pty')].replace('\\"', '"')
        forced = forced.replace("\\\\", "\\")
        classic = (f"PYTHONPATH={ROOT} {sys.executable} -m gitserve --home {gshome} "
                   "shell admin")
        print(f"forced command: {forced}")
        cases = {"info": ("info", b""), "ls-remote": ("git-upload-pack 'testing'", b"0000")}
        print(f"{'command':<10} {'gitolite':>9} {'gitserve':>9} {'ratio':>6} "
              f"{'gitserve shell':>15} {'ratio':>6}   (median of {args.runs})")
        worst = 0.0
        sshd_env = {"PATH": base.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                    "USER": base.get("USER", "git"), **conn}
        for name, (command, stdin) in cases.items():
            gl_env = dict(sshd_env, HOME=str(glhome), SSH_ORIGINAL_COMMAND=command)
            gs_env = dict(sshd_env, HOME=str(tmp), SSH_ORIGINAL_COMMAND=command)
            gl, gs, old = [], [], []
            for _ in range(args.runs):
                gl.append(timed(["sh", "-c", f"{GITOLITE_SHELL} admin"], gl_env, stdin))
                gs.append(timed(["sh", "-c", forced], gs_env, stdin))
                old.append(timed(["sh", "-c", classic], gs_env, stdin))
            a, b, c = (statistics.median(x) for x in (gl, gs, old))
            worst = max(worst, b / a)
            print(f"{name:<10} {a * 1000:>7.0f}ms {b * 1000:>7.0f}ms {b / a:>6.2f} "
                  f"{c * 1000:>13.0f}ms {c / a:>6.2f}")
        serve.terminate()
        serve.wait(30)
        return 0 if worst <= 1.0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
