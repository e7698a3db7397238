"""VREF/partial-copy: a repo whose git config says `gitolite.partialCopyOf = MAIN` sends each
allowed ref update on to MAIN (Gitolite's partial-copy: same config key, same FATAL lines,
everything on stderr)."""

from __future__ import annotations

import os
import subprocess
import sys

ZERO = "0" * 40


def die(msg: str) -> int:
    sys.stderr.write(msg + "\n")
    return 1


def run(*args: str, cwd: str | None = None) -> bool:
    proc = subprocess.run(list(args), cwd=cwd, stdout=sys.stderr, stderr=sys.stderr,
                          check=False)
    return proc.returncode == 0


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        return die("not meant to be run manually")
    repo, base = os.environ.get("GL_REPO", ""), os.environ.get("GL_REPO_BASE", "")
    ref, old, new = argv[0], argv[1], argv[2]
    got = subprocess.run(["git", "config", "--file", f"{base}/{repo}.git/config", "--get",
                          "gitolite.partialCopyOf"], capture_output=True, text=True, check=False)
    main_repo = got.stdout.strip()
    if not main_repo:
        return 0
    target = f"{base}/{main_repo}.git"
    os.environ["GL_BYPASS_ACCESS_CHECKS"] = "1"
    if new == ZERO:
        if not run("git", "push", "-f", target, f":{ref}"):
            return die(f"FATAL: failed to delete {ref}")
        return 0
    temp = f"refs/partial/br-{os.getpid()}"
    if not run("git", "push", "-f", target, f"{new}:{temp}"):
        return die(f"FATAL: failed to send {new}")
    env_dir = {k: v for k, v in os.environ.items() if k != "GIT_DIR"}
    os.environ.clear()
    os.environ.update(env_dir)
    run("git", "update-ref", "-d", temp, cwd=target)
    if not run("git", "update-ref", ref, new, old, cwd=target):
        return die(f"FATAL: update-ref for {ref} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
