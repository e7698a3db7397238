"""Run Gitolite's own test suite (t/*.t of Gitolite v3.6.12) against gitserve and against
Debian's gitolite3, and print planned/passed/failed per file side by side.

    python3 -m tests.gitolite_t.suite [--target gitserve|gitolite|both] [-j N] [FILE...]
    ./scripts/gitolite-t ...                      (the same)

Gitolite's tree is never copied into this project: it is cloned at run time from the git
bundle in `shared/gitolite/` (env GITSERVE_GITOLITE_DIR, default: `../shared/gitolite`
relative to this checkout, else the nearest `shared/gitolite` beside an ancestor directory;
CI clones the project with shared/ beside it, so the default finds it there). The .t files run
unchanged; only the plumbing they call (`glt`, its two pack helpers and the `gitolite`
command of the preamble) is ours: tests/gitolite_t/plumbing.py. Each file runs in its own
temporary HOME (the suite deletes `~/repositories` and friends) with the test users' keys
from Gitolite's t/keys in ~/.ssh; against gitserve, each file gets its own server.

Tests that differ from Gitolite on purpose are listed with their reason in differences.py.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
PLUMBING = Path(__file__).resolve().parent / "plumbing.py"
TAG = "v3.6.12"
BUNDLE = "gitolite-v3.6.12.bundle"
# the t/*.t files that talk to the server only through glt (the others need a local
# gitolite: its rc file, triggers, mirroring, http, or ssh to localhost)
WIRE_FILES = (
    "0-me-first", "C-vs-C", "basic", "branch-perms", "deleg-1", "deleg-2", "deny-create",
    "include-subconf", "info", "info-json", "invalid-refnames-filenames", "merge-check",
    "perms-groups", "rule-seq", "sequence", "vrefs-1", "vrefs-2", "wild-1", "wild-2",
)
TARGETS = ("gitserve", "gitolite")
FILE_TIMEOUT = 600.0
KEY_USERS = ("admin", "u1", "u2", "u3", "u4", "u5", "u6")
# `glt CMD USER`, `CLONE USER`, `PUSH USER` (the DEFs of Gitolite's Test.pm) in a .t file
USER_IN_T = re.compile(r"(?:\bglt [a-z-]+|\bCLONE|\bPUSH) +([a-z][a-z0-9]*)\b")


class SuiteError(Exception):
    """The suite could not be set up (no bundle, no perl, ...)."""


def bundle_dir() -> Path | None:
    """Where Gitolite's bundle is: $GITSERVE_GITOLITE_DIR, else ../shared/gitolite next to
    this checkout, else the same beside the nearest ancestor (a worktree under wt/)."""
    env = os.environ.get("GITSERVE_GITOLITE_DIR")
    if env:
        return Path(env)
    for parent in CHECKOUT.parents:
        candidate = parent / "shared" / "gitolite"
        if (candidate / BUNDLE).is_file():
            return candidate
    return None


# Debian's source of the same release (its t/ and src/ are byte for byte the bundle's at TAG):
# fetched from the machine's Debian mirror, a package registry, when no bundle is beside the
# checkout; pinned by the sha256 Debian's gitolite3_3.6.12-1.dsc lists.
DEBIAN_ORIG = "pool/main/g/gitolite3/gitolite3_3.6.12.orig.tar.gz"
DEBIAN_ORIG_SHA256 = "8c55976ed561b8eabf39097b7fcb9c6e8741c2ceea85ef4529a06b1adff850b6"


def debian_mirror() -> str:
    """The Debian archive apt uses here (deb822 `URIs:` or a sources.list `deb` line)."""
    import glob
    import re

    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def fetch_debian_source(dest: Path) -> Path:
    """Gitolite's tree from Debian's orig tarball, checked against the pinned sha256."""
    import hashlib
    import tarfile
    import urllib.request

    url = f"{debian_mirror()}/{DEBIAN_ORIG}"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data = resp.read()
    except OSError as exc:
        raise SuiteError(f"Gitolite's bundle not found and {url} unreachable: {exc}") from None
    if hashlib.sha256(data).hexdigest() != DEBIAN_ORIG_SHA256:
        raise SuiteError(f"{url}: sha256 mismatch")
    archive = dest / "gitolite3.orig.tar.gz"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.startswith("/") or ".." in Path(member.name).parts or \
                    not (member.isfile() or member.isdir() or member.issym()):
                raise SuiteError(f"{url}: unexpected member {member.name}")
        tar.extractall(dest)
    tree = dest / "gitolite-src"
    (dest / "gitolite-3.6.12").rename(tree)
    return tree


def clone_gitolite(dest: Path) -> Path:
    """A checkout of Gitolite at TAG from the bundle (else Debian's source of it), in DEST."""
    src = bundle_dir()
    if src is None or not (src / BUNDLE).is_file():
        return fetch_debian_source(dest)
    tree = dest / "gitolite-src"
    for argv in (["git", "clone", "-q", "--no-checkout", str(src / BUNDLE), str(tree)],
                 ["git", "-C", str(tree), "-c", "advice.detachedHead=false", "checkout", "-q",
                  TAG]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SuiteError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return tree


@dataclass
class FileResult:
    name: str
    target: str
    planned: int = 0
    passed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int = 0
    log: Path | None = None

    @property
    def not_run(self) -> list[int]:
        seen = set(self.passed) | set(self.failed)
        return [n for n in range(1, self.planned + 1) if n not in seen]


TAP_PLAN = re.compile(r"^1\.\.(\d+)\s*$")
TAP_LINE = re.compile(r"^(not )?ok \((\d+)\)")


def parse_tap(text: str, result: FileResult) -> None:
    for line in text.splitlines():
        if m := TAP_PLAN.match(line):
            result.planned = int(m.group(1))
        elif m := TAP_LINE.match(line):
            (result.failed if m.group(1) else result.passed).append(int(m.group(2)))


def make_bin(root: Path, target: str) -> Path:
    """The directory first on PATH: this project's plumbing under Gitolite's names."""
    bindir = root / f"bin-{target}"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("glt", "gitolite-upload-pack", "gitolite-receive-pack", "gitolite"):
        link = bindir / name
        if not link.exists():
            link.symlink_to(PLUMBING)
    return bindir


def file_env(home: Path, bindir: Path, target: str, tree: Path, tmp: Path) -> dict[str, str]:
    keep = ("LANG", "TERM")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({
        "HOME": str(home), "USER": "git", "LOGNAME": "git", "LC_ALL": "C",
        "PATH": os.pathsep.join([str(bindir), str(home / "bin"), "/usr/local/bin", "/usr/bin",
                                 "/bin", "/usr/sbin", "/sbin"]),
        "PWD": str(tree), "TMPDIR": str(tmp), "GITOLITE_TEST": "y", "HARNESS_ACTIVE": "1", "TSH_VERBOSE": "1",
        "GLT_TARGET": target, "GLT_BIN": str(bindir), "GLT_PYTHON": sys.executable,
        "PYTHONPATH": str(CHECKOUT), "GIT_CONFIG_NOSYSTEM": "1",
    })
    return env


def run_file(tree: Path, root: Path, target: str, name: str) -> FileResult:
    result = FileResult(name=name, target=target)
    base = root / target / name
    home, tmp = base / "home", base / "tmp"
    (home / ".ssh").mkdir(parents=True)
    tmp.mkdir()
    for user in KEY_USERS:
        for suffix in ("", ".pub"):
            dest = home / ".ssh" / f"{user}{suffix}"
            shutil.copy(tree / "t" / "keys" / f"{user}{suffix}", dest)
            dest.chmod(0o600)
    # over ssh the key is the identity: users the file names that t/keys has no key for
    # (e.g. basic.t's `tester`, `dev2`) get a fresh keypair; setup puts them all in keydir
    for user in sorted(set(USER_IN_T.findall((tree / "t" / f"{name}.t").read_text()))):
        key = home / ".ssh" / user
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", user, "-f",
                            str(key)], check=True, timeout=60, stdout=subprocess.DEVNULL)
    env = file_env(home, make_bin(root, target), target, tree, tmp)
    result.log = base / "stderr.log"
    start = time.monotonic()
    try:
        with open(result.log, "w") as err:
            proc = subprocess.run(["perl", f"t/{name}.t"], cwd=tree, env=env, stdout=subprocess.PIPE,
                                  stderr=err, stdin=subprocess.DEVNULL, text=True,
                                  timeout=FILE_TIMEOUT)
        result.exit_code = proc.returncode
        (base / "stdout.tap").write_text(proc.stdout)
        parse_tap(proc.stdout, result)
    except subprocess.TimeoutExpired as exc:
        result.exit_code = -1
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        parse_tap(out, result)
    finally:
        if target == "gitserve":
            subprocess.run([str(env["GLT_BIN"]) + "/gitolite", "stop-server"], env=env,
                           timeout=30, capture_output=True)
    result.seconds = time.monotonic() - start
    return result


def run_suite(files: list[str], targets: list[str], root: Path,
              jobs: int = 2) -> dict[tuple[str, str], FileResult]:
    tree = clone_gitolite(root)
    for t in targets:  # before the threads: two files of one target would race to make it
        make_bin(root, t)
    work = [(t, f) for f in files for t in targets]
    results: dict[tuple[str, str], FileResult] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(run_file, tree, root, t, f): (t, f) for t, f in work}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
    return results


def table(results: dict[tuple[str, str], FileResult], files: list[str],
          targets: list[str]) -> str:
    head = f"{'file':<28} {'planned':>7}"
    for t in targets:
        head += f" | {t + ' pass':>13} {'fail':>5} {'not run':>7}"
    lines = [head, "-" * len(head)]
    totals = {t: [0, 0, 0] for t in targets}
    planned_total = 0
    for f in files:
        planned = max(results[(t, f)].planned for t in targets)
        planned_total += planned
        row = f"{f:<28} {planned:>7}"
        for t in targets:
            r = results[(t, f)]
            not_run = max(0, planned - len(r.passed) - len(r.failed))
            row += f" | {len(r.passed):>13} {len(r.failed):>5} {not_run:>7}"
            for i, v in enumerate((len(r.passed), len(r.failed), not_run)):
                totals[t][i] += v
        lines.append(row)
    lines.append("-" * len(head))
    row = f"{'total':<28} {planned_total:>7}"
    for t in targets:
        row += f" | {totals[t][0]:>13} {totals[t][1]:>5} {totals[t][2]:>7}"
    lines.append(row)
    return "\n".join(lines)


def unexpected(results: dict[tuple[str, str], FileResult], files: list[str]) -> list[str]:
    """gitserve's failures (or tests that never ran) that differences.py does not list, and
    listed differences that now pass (the list must stay true)."""
    from tests.gitolite_t.differences import DELIBERATE

    problems = []
    for f in files:
        r = results[("gitserve", f)]
        listed = DELIBERATE.get(f, {})
        for n in sorted(set(r.failed) | set(r.not_run)):
            if n not in listed:
                problems.append(f"{f} #{n}: fails against gitserve (log: {r.log})")
        for n in sorted(listed):
            if n in r.passed:
                problems.append(f"{f} #{n}: listed as a deliberate difference but passes")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="t/ file names without .t (default: the wire files)")
    ap.add_argument("--target", choices=(*TARGETS, "both"), default="both")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args(argv)
    files = args.files or list(WIRE_FILES)
    targets = list(TARGETS) if args.target == "both" else [args.target]
    root = Path(tempfile.mkdtemp(prefix="gitolite-t-"))
    try:
        start = time.monotonic()
        results = run_suite(files, targets, root, args.jobs)
        print(table(results, files, targets))
        slow = sorted(results.values(), key=lambda r: -r.seconds)[:3]
        print("slowest: " + ", ".join(f"{r.target}/{r.name} {r.seconds:.0f} s" for r in slow))
        print(f"({time.monotonic() - start:.0f} s; work dir {root}"
              f"{'' if args.keep else ', removed'})")
        if "gitserve" in targets:
            problems = unexpected(results, files)
            for p in problems:
                print(p)
            return 1 if problems else 0
        return 0
    except SuiteError as exc:
        print(f"gitolite-t: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
