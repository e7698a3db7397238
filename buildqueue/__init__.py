"""buildqueue: push-triggered builds on RQ workers, logs streamed live to the pusher (SPEC §6).

Importing the package registers its push hook with gitserve.git.pushhooks; the modules a
worker runs (jobs, runner, workspace, secrets) do not need the server's home.
"""

from . import pushhook  # noqa: F401  (registers the PushHook)
