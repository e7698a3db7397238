"""`option hook.post-receive = NAME`: Gitolite's repo-specific hook, run from HOME/hooks/.

Like Gitolite, the hook gets the standard post-receive stdin ("OLD NEW REF" lines), runs in
the bare repository with GL_USER/GL_REPO set; unlike a plain git hook its output reaches
the pusher line by line as it is printed, the same way a build's does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from gitserve.git import pushopts
from gitserve.git.pushhooks import PushContext, RefUpdate
from gitserve.options import hook_name_problem

from . import runner



def hook_path(hooks_dir: Path, name: str) -> Path:
    """HOME/hooks/NAME; NAME may name a subdirectory but never leave HOME/hooks."""
    problem = hook_name_problem(name)
    if problem:
        raise ValueError(problem)
    return hooks_dir / name


def run_post_receive(ctx: PushContext, updates: list[RefUpdate], name: str,
                     emit: Callable[[str], None]) -> int | None:
    """Run the hook; returns its exit code (None when it could not run)."""
    try:
        path = hook_path(ctx.settings.hooks_dir, name)
    except ValueError as exc:
        emit(f"gitserve: hook.post-receive: {exc}")
        return None
    if not path.is_file() or not os.access(path, os.X_OK):
        emit(f"gitserve: hook.post-receive: {name} is not an executable file in the hooks directory")
        return None
    stdin = "".join(f"{u.old} {u.new} {u.ref}\n" for u in updates).encode()
    env = dict(os.environ)
    env.update({"GL_USER": ctx.user, "GL_REPO": ctx.repo_name,
                "GL_REPO_BASE": str(ctx.settings.repos_dir),
                "GL_ADMIN_BASE": str(ctx.settings.home), "GIT_DIR": "."})
    env.update(pushopts.hook_env(ctx.push_options))  # as git: COUNT=0 without options
    timeout = ctx.repo_options.build.timeout
    result = runner.run_script([str(path)], ctx.repo_path, env, timeout, emit, stdin_data=stdin)
    if result.status == "timed out":
        emit(f"gitserve: hook.post-receive {name} timed out after {timeout}s")
    elif result.exit_code:
        emit(f"gitserve: hook.post-receive {name} exited with {result.exit_code}")
    return result.exit_code
