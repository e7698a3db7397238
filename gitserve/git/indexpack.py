"""The git route for a push's pack: `git index-pack` into the quarantine, git's checks.

Used whenever a git binary is installed (clones already use `git pack-objects`). The ref
advertisement, commands, check #2, hooks, compare-and-swap and report-status stay
gitserve's (receive.py); only the pack work is git's, as in git's own receive-pack:

- the pack streams into `git index-pack --stdin --fix-thin --strict` whose object directory
  is the quarantine and whose alternate is the repository (GIT_OBJECT_DIRECTORY,
  GIT_ALTERNATE_OBJECT_DIRECTORIES, GIT_QUARANTINE_PATH), `--max-input-size` for
  max_push_bytes; `--strict` fscks every object and fails on any link to an object that is
  neither in the pack nor in the repository;
- its `Resolving deltas` progress goes to the client on side band 2, as receive-pack's does;
- blob sizes for max_blob_bytes come from `git cat-file --batch-all-objects --batch-check`
  over the quarantine alone (object headers; no blob is loaded);
- the connectivity check is receive-pack's check_connected: `git rev-list --objects
  --stdin --not --all` over the new tips, and tip by tip when that fails.

The client sends nothing after its pack and waits for our report, so the reader that feeds
index-pack may stay blocked on the channel once index-pack has what it needs; it is a
daemon thread and ends when the channel does (or with EPIPE on index-pack's stdin).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from dulwich.object_store import DiskObjectStore

from gitserve._compat.dulwich import pack_basename

from .quarantine import BadPack, Quarantine, human_bytes

CHUNK = 1 << 16
# after index-pack, packs of fewer objects (git's receive.unpackLimit) are checked in-process
# (blob sizes from entry headers, links, tips: quarantine.Quarantine.check): two more git
# processes would cost a small push more than its objects do (the gate-build latency)
UNPACK_LIMIT = 100
BIG_FILE_THRESHOLD = 16 << 20
PROGRESS_PREFIXES = (b"Resolving deltas",)
_ERRORS_KEPT = 20


def available() -> bool:
    return shutil.which("git") is not None


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(extra)
    return env


_FSCK_LEVELS = ("error", "warn", "ignore")


def fsck_msg_types(config: Path) -> str:
    """`=ID=LEVEL,...` from the repository's `receive.fsck.<msg-id>` settings (and
    `receive.fsck.skipList`), as git's receive-pack hands them to index-pack's --strict: a
    repo whose conf says `config receive.fsck.missingEmail = ignore` (Gitolite's `config`
    lines, [server] git_config_keys) accepts what native git would. "" when none is set.
    Read in-process (dulwich's parser): a git spawn would cost every push."""
    from dulwich.config import ConfigFile

    try:
        cfg = ConfigFile.from_path(str(config))
    except (OSError, ValueError):
        return ""
    types: list[str] = []
    for key, raw in cfg.items((b"receive", b"fsck")):
        name, value = key.decode("utf-8", "replace"), raw.decode("utf-8", "replace").strip()
        if name.lower() == "skiplist":
            if value and "," not in value and "=" not in value:
                types.append(f"skiplist={os.path.expanduser(value)}")
        elif name.isalnum() and value.lower() in _FSCK_LEVELS:
            types.append(f"{name}={value.lower()}")
    return "=" + ",".join(types) if types else ""


class GitQuarantine(Quarantine):
    """A push's quarantine filled and checked by git (see the module doc)."""

    def __init__(self, repo_objects: Path, object_format=None,
                 progress: Callable[[bytes], None] | None = None,
                 unpack_limit: int | None = None) -> None:
        super().__init__(repo_objects, object_format)
        self.progress = progress
        self.unpack_limit = UNPACK_LIMIT if unpack_limit is None else unpack_limit
        self.in_process = False  # a small pack: Quarantine's own checks after index-pack
        self.git_dir = str(Path(repo_objects).parent)
        self.pack_name: str | None = None
        self._errors: list[str] = []
        self._too_large = False

    def _git(self, *args: str, quarantine_only: bool = False, input: bytes | None = None
             ) -> subprocess.CompletedProcess[bytes]:
        extra = {"GIT_OBJECT_DIRECTORY": str(self.path)} if quarantine_only else self.env()
        return subprocess.run(["git", "--git-dir", self.git_dir, *args], input=input,
                              env=_clean_env(extra), capture_output=True, check=False)

    # -- receiving -----------------------------------------------------------------------
    def receive(self, read_all: Callable[[int], bytes], read_some: Callable[[int], bytes] | None,
                max_input_size: int | None = None, max_blob_bytes: int = 0) -> None:
        read = read_some or read_all
        head = _read_exact(read, 12)
        if len(head) < 12 or head[:4] != b"PACK":
            raise BadPack("not a pack (bad header)" if head else "no pack received")
        count = int.from_bytes(head[8:12], "big")
        if count == 0:  # nothing new (e.g. a branch on a known commit)
            trailer = _read_exact(read, 20)
            if trailer != hashlib.sha1(head).digest():
                raise BadPack("pack checksum mismatch")
            return
        # blobs over bigFileThreshold are hashed as they stream, never held whole: a push's
        # memory stays flat however big its files (git's default threshold is 512 MiB)
        argv = ["git", "-c", f"core.bigFileThreshold={BIG_FILE_THRESHOLD}", "--git-dir",
                self.git_dir, "index-pack", "--stdin", "--fix-thin",
                "--strict" + fsck_msg_types(Path(self.git_dir) / "config")]
        if self.progress is not None:
            argv.append("--show-resolving-progress")
        if max_input_size:
            argv.append(f"--max-input-size={max_input_size}")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=_clean_env(self.env()),
                                cwd=self.git_dir)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pump = threading.Thread(target=self._pump, args=(proc, read, head, max_input_size),
                                daemon=True, name="gitserve-index-pack-in")
        errs = threading.Thread(target=self._stderr, args=(proc,), daemon=True,
                                name="gitserve-index-pack-err")
        pump.start()
        errs.start()
        out = proc.stdout.read()
        rc = proc.wait()
        errs.join()
        if rc != 0:
            if self._too_large or any("maximum allowed size" in e for e in self._errors):
                raise BadPack(f"push refused: it is larger than this server's limit of "
                              f"{human_bytes(max_input_size or 0)} (max_push_bytes)")
            raise BadPack(self._reason(rc))
        words = out.split()
        if len(words) != 2 or words[0] not in (b"pack", b"keep"):
            raise BadPack(f"index-pack said {out[:200]!r}")
        self.pack_name = words[1].decode()
        if count < self.unpack_limit:
            self.in_process = True
            self.store.close()  # a fresh view that lists the new pack
            self.store = DiskObjectStore(str(self.path), alternates=[str(self.repo_objects)])
            pack = next(p for p in self.store.packs if self.pack_name in pack_basename(p))
            self.new_ids = list(pack)

    def _pump(self, proc: subprocess.Popen[bytes], read: Callable[[int], bytes], head: bytes,
              max_input_size: int | None) -> None:
        stdin = proc.stdin
        assert stdin is not None
        total = len(head)
        try:
            stdin.write(head)
            while proc.poll() is None:
                data = read(CHUNK)
                if not data:
                    break
                total += len(data)
                if max_input_size and total > max_input_size:
                    self._too_large = True  # set before index-pack can see the early EOF
                    break
                stdin.write(data)
        except (OSError, ValueError):
            pass  # index-pack is gone (it has the whole pack, or refused it)
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """Progress segments (ending in CR or LF) to the client; the rest kept for the reason."""
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        buf = b""
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            buf += data
            while True:
                cut = min((i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0), default=-1)
                if cut < 0:
                    break
                segment, buf = buf[:cut + 1], buf[cut + 1:]
                self._segment(segment)
        if buf:
            self._segment(buf)

    def _segment(self, segment: bytes) -> None:
        if segment.startswith(PROGRESS_PREFIXES):
            if self.progress is not None:
                try:
                    self.progress(segment)
                except Exception:  # noqa: BLE001 - a vanished client must not fail the push
                    self.progress = None
            return
        text = segment.decode("utf-8", "replace").strip()
        if text and len(self._errors) < _ERRORS_KEPT:
            self._errors.append(text)

    def _reason(self, rc: int) -> str:
        fatal = [e.split(":", 1)[1].strip() for e in self._errors if e.startswith("fatal:")]
        errors = [e.split(":", 1)[1].strip() for e in self._errors if e.startswith("error:")]
        reason = fatal[-1] if fatal else (errors[0] if errors else f"index-pack exit {rc}")
        if errors and fatal:
            reason += f" ({errors[0]})"
        return " ".join(reason.split())

    # -- checks --------------------------------------------------------------------------
    def check(self, max_blob_bytes: int = 0) -> None:
        """index-pack --strict already fscked every object and every link; what is left is
        max_blob_bytes, answered from object headers."""
        if self.in_process:
            super().check(max_blob_bytes)
            return
        if not max_blob_bytes or self.pack_name is None:
            return
        proc = self._git("cat-file", "--batch-all-objects", "--unordered",
                         "--batch-check=%(objecttype) %(objectsize) %(objectname)",
                         quarantine_only=True)
        if proc.returncode != 0:
            raise BadPack(_last_line(proc.stderr) or "cannot list the pushed objects")
        biggest, name = 0, ""
        for line in proc.stdout.splitlines():
            if line.startswith(b"blob "):
                _kind, size, sha = line.split(b" ")
                if int(size) > biggest:
                    biggest, name = int(size), sha.decode()
        if biggest > max_blob_bytes:
            raise BadPack(f"push refused: it holds a blob of {human_bytes(biggest)}, over this "
                          f"server's limit of {human_bytes(max_blob_bytes)} (max_blob_bytes): "
                          f"{name}")

    def missing(self, tips: Sequence[str]) -> set[str]:
        """The tips that are not connected: git's check_connected, all at once and then one by
        one to name the failing ones."""
        if self.in_process:  # check() followed every new object's links already
            return super().missing(tips)
        tips = [t for t in dict.fromkeys(tips)]
        if not tips or self._connected(tips):
            return set()
        return {t for t in tips if not self._connected([t])}

    def _connected(self, tips: Sequence[str]) -> bool:
        proc = self._git("rev-list", "--objects", "--stdin", "--not", "--all", "--quiet",
                         input="".join(t + "\n" for t in tips).encode())
        return proc.returncode == 0


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = read(n - len(out))
        if not data:
            break
        out += data
    return out


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""
