"""authorized_keys lines for running behind the system OpenSSH (SPEC §4), as Gitolite does.

Each keydir key becomes one line whose forced command is `gitserve shell USER`, so sshd
verifies the key and gitserve only ever sees the user it names. The lines are printed by
`gitserve admin authorized-keys` (install them, or run it as sshd's AuthorizedKeysCommand),
and, with `[server] authorized_keys = PATH`, every admin change rewrites the block between
`# gitserve start` and `# gitserve end` in PATH, keeping every other line. A Gitolite block
(`# gitolite start` ... `# gitolite end`) is replaced by ours the first time: both would name
the same keys, and sshd uses the first line that matches.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gitserve import keys
from gitserve.errors import GitserveError
from gitserve.fsutil import locked
from gitserve.settings import Settings, default_home

log = logging.getLogger(__name__)

START = "# gitserve start"
END = "# gitserve end"
GITOLITE_START = "# gitolite start"
GITOLITE_END = "# gitolite end"
OPTIONS = "no-pty,no-port-forwarding,no-X11-forwarding,no-agent-forwarding"
BUILDER = ":builder"  # adminrepo.BUILDER: HOME/worker_key, for build hosts that fetch over port 22


class AuthKeysError(GitserveError, ValueError):
    """The authorized_keys file cannot be read or written (message is one line)."""


@dataclass(frozen=True)
class Entry:
    user: str
    key: keys.PublicKey


def gitserve_command(settings: Settings) -> list[str]:
    """argv prefix that runs this gitserve, absolute so sshd finds it whatever its PATH.

    `[server] shell_command` wins; else the `gitserve` script this process was started as
    (a virtualenv's bin/gitserve stays that one); else the `gitserve` on PATH; else this
    interpreter with `-m gitserve`."""
    configured = settings.server.shell_command.strip()
    if configured:
        return shlex.split(configured)
    started_as = sys.argv[0] if sys.argv else ""
    if os.path.basename(started_as) == "gitserve" and os.access(started_as, os.X_OK):
        return [os.path.abspath(started_as)]
    found = shutil.which("gitserve")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "gitserve"]


def fast_command() -> list[str] | None:
    """`PYTHON -I -S .../gitserve/ssh/shellclient.py`: this gitserve's client that hands the
    connection to the running server after a start without site-packages (ssh/shellclient.py),
    else execs this gitserve's full `shell`; None where this interpreter is unknown."""
    from gitserve.ssh import shellclient

    python = sys.executable
    if not python or not os.path.isabs(python):
        return None
    return [python, "-I", "-S", os.path.abspath(shellclient.__file__)]


def forced_command(settings: Settings, user: str) -> str:
    """The command sshd runs for USER, shell-quoted (sshd runs it with the user's shell):
    `[server] shell_command [--home HOME] shell USER` when set, else the fast client
    `PYTHON -I -S .../shellclient.py --home HOME shell USER` (its home always spelled out:
    it reads no settings), else `gitserve [--home HOME] shell USER`."""
    fast = None if settings.server.shell_command.strip() else fast_command()
    if fast is not None:
        argv = [*fast, "--home", str(Path(settings.home).resolve()), "shell", user]
        return " ".join(shlex.quote(a) for a in argv)
    argv = gitserve_command(settings)
    if Path(settings.home).resolve() != default_home().resolve():
        argv += ["--home", str(settings.home)]
    argv += ["shell", user]
    return " ".join(shlex.quote(a) for a in argv)


def line(settings: Settings, entry: Entry) -> str:
    command = forced_command(settings, entry.user).replace("\\", "\\\\").replace('"', '\\"')
    key = f"{entry.key.key_type} {base64.b64encode(entry.key.blob).decode()}"
    return f'command="{command}",{OPTIONS} {key}'


def entries(settings: Settings, state: object) -> list[Entry]:
    """Every key of the admin state (sk-* keys too: sshd verifies those) plus the builder's."""
    found = [Entry(e.user, e.key) for e in getattr(state, "keys", ())]
    try:
        worker = keys.parse_file_text((settings.home / "worker_key.pub").read_text())
        found.append(Entry(BUILDER, worker))
    except (OSError, keys.InvalidKey):
        pass
    return found


def select(found: Iterable[Entry], *, user: str | None = None, key_b64: str | None = None,
           key_type: str | None = None, fingerprint: str | None = None) -> list[Entry]:
    """The entries matching every filter given (AuthorizedKeysCommand's %u/%k/%t/%f)."""
    out = []
    for e in found:
        if user is not None and e.user != user:
            continue
        if key_b64 is not None and base64.b64encode(e.key.blob).decode() != key_b64:
            continue
        if key_type is not None and e.key.key_type != key_type:
            continue
        if fingerprint is not None and e.key.fingerprint != fingerprint:
            continue
        out.append(e)
    return out


def render_block(settings: Settings, found: Iterable[Entry]) -> list[str]:
    return [START, *(line(settings, e) for e in found), END]


def replace_block(text: str, block: list[str]) -> tuple[str, str]:
    """TEXT with our block put in place; returns (new text, what happened)."""
    lines = text.splitlines()
    for start, end, what in ((START, END, "updated"),
                             (GITOLITE_START, GITOLITE_END, "replaced the gitolite block")):
        if start in lines:
            i = lines.index(start)
            try:
                j = lines.index(end, i + 1)
            except ValueError:
                raise AuthKeysError(f"'{start}' without '{end}'; fix the file by hand") from None
            new = lines[:i] + block + lines[j + 1:]
            return "\n".join(new) + "\n", what
    sep = [""] if lines and lines[-1].strip() else []
    return "\n".join(lines + sep + block) + "\n", "added"


def write_block(settings: Settings, path: Path, block: list[str] | Callable[[], list[str]]) -> str:
    """Rewrite PATH's gitserve block atomically (same mode and owner); other lines are kept.

    Not fsutil.atomic_write: the temp file must get the file's owner before the rename, or
    sshd (StrictModes) would see a root-owned authorized_keys in ~git for a moment."""
    path = Path(path).expanduser()
    with locked(settings.run_dir / "authorized_keys.lock"):
        try:
            st: os.stat_result | None = path.stat()
            text = path.read_text()
        except FileNotFoundError:
            st, text = None, ""
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthKeysError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
        # a callable is evaluated under the lock: two admin changes racing each other never
        # leave the older key set written last
        new, what = replace_block(text, block() if callable(block) else block)
        if new == text:
            return "unchanged"
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".authorized_keys.", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(new)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, (st.st_mode & 0o777) if st else 0o600)
                if st is not None and os.geteuid() == 0:
                    os.chown(tmp, st.st_uid, st.st_gid)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise AuthKeysError(f"{path}: {exc.strerror or exc}") from None
        return what


def sync(settings: Settings, current_state: Callable[[], object]) -> str | None:
    """Rewrite `[server] authorized_keys` for the keys in force (CURRENT_STATE(), read under
    the file's lock); None when the setting is off."""
    target = settings.server.authorized_keys.strip()
    if not target:
        return None
    what = write_block(settings, Path(target),
                       lambda: render_block(settings, entries(settings, current_state())))
    if what != "unchanged":
        log.info("authorized_keys %s: %s", target, what)
    return what
