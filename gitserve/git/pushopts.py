"""Push options (`git push -o X`): receive-pack's `push-options` capability.

The client sends them after the ref commands and before the pack, one pkt-line each, ended
by a flush. They reach push hooks as `PushContext.push_options`; buildqueue acts on
`build.skip` and `build.mode=async`, and `hook.post-receive` scripts get them as git's hooks
do (GIT_PUSH_OPTION_COUNT, GIT_PUSH_OPTION_0...). Limits keep a hostile client from growing
the server's memory or the hooks' environment without bound.
"""

from __future__ import annotations

from typing import Any

from dulwich.errors import GitProtocolError

CAPABILITY = b"push-options"
MAX_OPTIONS = 100
MAX_OPTION_BYTES = 4096


def read(proto: Any) -> list[str]:
    """The push options up to the flush-pkt; GitProtocolError past the limits."""
    options: list[str] = []
    while True:
        line = proto.read_pkt_line()
        if line is None:
            return options
        if len(options) >= MAX_OPTIONS:
            raise GitProtocolError(f"too many push options (at most {MAX_OPTIONS})")
        line = line.rstrip(b"\n")
        if len(line) > MAX_OPTION_BYTES or b"\0" in line or b"\n" in line:
            raise GitProtocolError("invalid push option")
        options.append(line.decode("utf-8", "surrogateescape"))


def hook_env(options: list[str]) -> dict[str, str]:
    """The environment git gives hooks for these push options."""
    env = {"GIT_PUSH_OPTION_COUNT": str(len(options))}
    for i, value in enumerate(options):
        env[f"GIT_PUSH_OPTION_{i}"] = value
    return env
