"""One git request, whatever carries it: check #1, the handler that serves it, and the
policy a push runs under (check #2, VREFs, audit, admin repo, push hooks, limits, metrics).

The transports are thin adapters over it: gitserve/ssh/session.py (the built-in SSH server
and `gitserve shell` behind sshd) and gitserve/http/smart.py (smart HTTP). So a decision, a
Gitolite message and an audit line cannot differ between them. Collaborators come through
constructors, as dulwich's handlers take their backend: nothing is assigned to a handler
after it is built.

    request = GitRequest(settings, state, user, ip, "git-receive-pack", name,
                         transport="ssh", hooks=hooks, metrics=metrics, notice=say)
    request.authorize()                  # check #1; raises Denied (an AccessError)
    handler = request.handler(proto)     # ReceivePack(..., policy=RepoPushPolicy(...))
    handler.handle()
"""

from __future__ import annotations

from .access import Denied, authorize
from .push import HOOK_DECLINED, RepoPushPolicy
from .request import SERVICES, GitHandler, GitRequest

__all__ = ["HOOK_DECLINED", "SERVICES", "Denied", "GitHandler", "GitRequest", "RepoPushPolicy",
           "authorize"]
