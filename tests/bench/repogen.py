"""Deterministic benchmark repositories, generated with `git fast-import`.

No package on this machine ships a large real history, so the large repository is synthetic
but shaped like a real project: a three-level tree of text files, each commit editing a few
lines of a few files (so the repack finds long delta chains, as in git.git), occasional new
files, one branch and a tag every 1000 commits. The same parameters always give the same
object ids (fixed seed, fixed dates), so numbers from different runs compare.

Generated repositories are cached (they take a minute or two for the large one) under
$GITSERVE_BENCH_CACHE or ~/.cache/gitserve-bench, named by parameters and generator version.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GENERATOR_VERSION = 1
WORDS = (
    "alpha beta gamma delta object tree blob commit pack index delta chain ref head tag merge "
    "branch remote fetch push clone server client socket buffer stream window frame channel "
    "return value error result parse write read close open update insert delete select count"
).split()


@dataclass(frozen=True)
class RepoSpec:
    name: str
    commits: int
    dirs: int  # top-level dirs; each holds `dirs` subdirs of `files` files
    files: int
    edits_per_commit: int
    lines: int  # initial lines per file

    @property
    def key(self) -> str:
        return (f"{self.name}-v{GENERATOR_VERSION}-c{self.commits}-d{self.dirs}-f{self.files}"
                f"-e{self.edits_per_commit}-l{self.lines}")


SMALL = RepoSpec("small", commits=1000, dirs=4, files=12, edits_per_commit=2, lines=60)
# ~25k commits x (3 blobs + ~6 trees + 1 commit) + 4k initial files: ~300k objects
LARGE = RepoSpec("large", commits=25000, dirs=16, files=16, edits_per_commit=3, lines=80)
SPECS = {"small": SMALL, "large": LARGE}


def cache_dir() -> Path:
    raw = os.environ.get("GITSERVE_BENCH_CACHE") or "~/.cache/gitserve-bench"
    return Path(raw).expanduser()


def _line(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))


def _stream(spec: RepoSpec, out) -> None:
    """Write the fast-import stream for SPEC to OUT (a binary file)."""
    rng = random.Random(f"gitserve-bench-{spec.key}")
    files: dict[str, list[str]] = {}
    for a in range(spec.dirs):
        for b in range(spec.dirs):
            for c in range(spec.files):
                files[f"src/m{a:02d}/p{b:02d}/f{c:03d}.txt"] = [
                    _line(rng) for _ in range(spec.lines)]
    paths = sorted(files)
    base_time = 1_600_000_000
    w = out.write
    for n in range(spec.commits):
        if n == 0:
            changed = paths
        else:
            changed = []
            for _ in range(spec.edits_per_commit):
                if rng.random() < 0.03:
                    a, b = rng.randrange(spec.dirs), rng.randrange(spec.dirs)
                    path = f"src/m{a:02d}/p{b:02d}/n{n:06d}.txt"
                    files[path] = [_line(rng) for _ in range(rng.randint(5, spec.lines))]
                    paths.append(path)
                else:
                    path = rng.choice(paths)
                    body = files[path]
                    for _ in range(rng.randint(1, 4)):
                        op = rng.random()
                        i = rng.randrange(len(body) + 1)
                        if op < 0.5:
                            body.insert(i, _line(rng))
                        elif op < 0.8 and len(body) > 3:
                            body[min(i, len(body) - 1)] = _line(rng)
                        elif len(body) > 3:
                            del body[min(i, len(body) - 1)]
                changed.append(path)
        when = base_time + n * 600
        msg = f"commit {n}: edit {len(changed)} file(s)\n\n{_line(rng)}\n".encode()
        w(b"commit refs/heads/main\n")
        w(f"mark :{n + 1}\n".encode())
        w(f"author Bench Author <bench@example.com> {when} +0000\n".encode())
        w(f"committer Bench Author <bench@example.com> {when} +0000\n".encode())
        w(f"data {len(msg)}\n".encode() + msg)
        if n:
            w(f"from :{n}\n".encode())
        for path in dict.fromkeys(changed):
            data = ("\n".join(files[path]) + "\n").encode()
            w(f"M 100644 inline {path}\ndata {len(data)}\n".encode())
            w(data)
            w(b"\n")
        w(b"\n")
        if n and n % 1000 == 0:
            tag_msg = f"release {n // 1000}\n".encode()
            w(f"tag v{n // 1000}.0\nfrom :{n + 1}\n".encode())
            w(f"tagger Bench Author <bench@example.com> {when} +0000\n".encode())
            w(f"data {len(tag_msg)}\n".encode() + tag_msg)
    w(b"reset refs/heads/side\n")
    w(f"from :{max(1, spec.commits // 2)}\n\n".encode())
    w(b"done\n")


def generate(spec: RepoSpec, dest: Path) -> None:
    """Create the bare repository DEST for SPEC: fast-import, then one fully deltified pack."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(dest.parent))
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(tmp)], check=True, env=env)
    proc = subprocess.Popen(["git", "-C", str(tmp), "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    with proc.stdin:
        _stream(spec, proc.stdin)
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {spec.name}")
    # One pack, as a fresh `git clone --mirror` has: the state the baseline measured.
    subprocess.run(["git", "-C", str(tmp), "repack", "-a", "-d", "-f", "-q", "--window=10",
                    "--depth=50"], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp), "prune-packed"], check=True, env=env)
    os.replace(tmp, dest)


def ensure(name: str) -> Path:
    """Path of the cached bare repository NAME (small|large), generating it if needed."""
    spec = SPECS[name]
    dest = cache_dir() / f"{spec.key}.git"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        generate(spec, dest)
    return dest


def copy_repo(src: Path, dest: Path) -> None:
    """A private copy of a cached repository; pack files are hard links (git never edits them)."""
    def link_or_copy(s: str, d: str) -> None:
        if "/objects/pack/" in s:
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link_or_copy)


def count_objects(path: Path) -> int:
    out = subprocess.run(["git", "-C", str(path), "count-objects", "-v"], check=True,
                         capture_output=True, text=True).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    return int(fields["count"]) + int(fields["in-pack"])


if __name__ == "__main__":
    import sys
    import time

    for which in sys.argv[1:] or ["small", "large"]:
        t = time.monotonic()
        path = ensure(which)
        print(f"{which}: {path} {count_objects(path)} objects "
              f"({time.monotonic() - t:.1f}s)")
