"""A push hook the e2e tests load into `gitserve serve` (GITSERVE_PLUGINS=tests.e2e.hookplugin:push_hooks).

It stands in for buildqueue: rejects refs named `gated` in before_update (as a gate build
would) and streams a few progress lines, slowly, from after_push (as a sync build does).
"""

from __future__ import annotations

import threading
import time

from gitserve.git import pushhooks
from gitserve.settings import Settings


class SlowReporter:
    def before_update(self, ctx, update):  # noqa: ANN001
        if update.ref == "refs/heads/gated":
            return "build 7 failed"
        return None

    def after_push(self, ctx, updates):  # noqa: ANN001
        refs = ",".join(u.ref for u in updates)
        ctx.progress(f"hook saw {refs} pushed by {ctx.user} to {ctx.repo_name}")
        # lines from another thread, with pauses longer than the keepalive interval
        worker = threading.Thread(target=lambda: [ctx.progress(f"step {i}") or time.sleep(1.2)
                                                  for i in range(3)])
        worker.start()
        worker.join()
        ctx.progress("build 7 passed in 3.6s")


def push_hooks(settings: Settings) -> list[pushhooks.PushHook]:
    """The factory gitserve.app calls for GITSERVE_PLUGINS."""
    return [SlowReporter()]
