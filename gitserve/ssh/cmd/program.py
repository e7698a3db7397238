"""Site commands: an executable HOME/commands/NAME, enabled by naming it in `[server]
commands`, runs as Gitolite runs its commands (a Gitolite site's LOCAL_CODE/commands move
here with `init --from-gitolite`).

The program gets the command's arguments, GL_USER, GL_REPO_BASE, GL_ADMIN_BASE and HOME,
the session's stdin (as Gitolite execs its commands with the client's stdin), its stdout and
stderr go to the client as they come, its exit status is the command's. A thread copies the
client's input to the program until either ends; once the program exits, whatever the client
still sends is not read for it (as with Gitolite), and the waiting thread ends with the
session (a paramiko channel or StdioChannel wakes its reader when closed). The admin installs
these programs on the server; the arguments went through Gitolite's REMOTE_COMMAND_PATT check
like every command's.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from gitserve.settings import Settings

from .base import Command, CommandContext

COMMANDS_DIR = "commands"
CHUNK = 65536


def commands_dir(settings: Settings) -> Path:
    return settings.home / COMMANDS_DIR


def find(settings: Settings, name: str) -> Path | None:
    """HOME/commands/NAME if it is an executable file (NAME is one path component)."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        return None
    path = commands_dir(settings) / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def command(name: str, summary: str = "site command (HOME/commands)") -> Command:
    def run(ctx: CommandContext, args: list[str]) -> int:
        path = find(ctx.settings, name)
        if path is None:
            from gitserve.errors import CommandError

            raise CommandError(f"unknown git/gitolite command: '{name}'")
        return run_program(ctx, path, args)

    return Command(name, run, summary)


def run_program(ctx: CommandContext, path: Path, args: list[str]) -> int:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(ctx.settings.home)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "GL_USER": ctx.user,
        "GL_REPO_BASE": str(ctx.settings.repos_dir),
        "GL_ADMIN_BASE": str(ctx.settings.home),
    }
    proc = subprocess.Popen([str(path), *args], cwd=ctx.settings.home, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    done = threading.Event()

    def pump_in() -> None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        try:
            while not done.is_set():
                chunk = ctx.read(CHUNK)
                if not chunk or done.is_set():
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except (OSError, EOFError, ValueError):
            pass  # the program closed its stdin or exited; the client went away
        finally:
            proc.stdin.close()  # the program's EOF

    threading.Thread(target=pump_in, name=f"cmd-{path.name}-in", daemon=True).start()

    def pump_err() -> None:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        for chunk in iter(lambda: os.read(fd, CHUNK), b""):
            ctx.err(chunk.decode("utf-8", "replace"))

    err = threading.Thread(target=pump_err, name=f"cmd-{path.name}-err", daemon=True)
    err.start()
    out_fd = proc.stdout.fileno()
    for chunk in iter(lambda: os.read(out_fd, CHUNK), b""):
        if ctx.write is not None:
            ctx.write(chunk)
        else:
            ctx.out(chunk.decode("utf-8", "replace"))
    status = proc.wait()
    done.set()
    err.join(10)
    return status if status >= 0 else 128 - status
