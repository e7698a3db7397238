"""buildqueue: push-triggered builds on RQ workers, logs streamed live to the pusher (SPEC §6).

Importing it has no side effect: gitserve.app puts `pushhook.BuildHook` in the server's push
hooks and `sshcommands.COMMAND` in its ssh command table. The modules a worker runs (jobs,
runner, workspace, secrets) do not need the server's home.
"""
