"""A push to a slave that redirectOK allows, carried to the master (Gitolite's redirect).

Gitolite's slave execs `ssh MASTER USER=u SOC=git-receive-pack 'repo'` with its own
stdin/stdout: the user's git talks to the master through the slave and never notices. Here
the same ssh runs as a child of the session and three pumps copy bytes: the user's stdin to
the master, the master's stdout and stderr back. The master applies every rule as user u
(it runs check #1 and #2 itself); its exit status becomes the session's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from typing import Callable

from .transport import Transport

log = logging.getLogger(__name__)

CHUNK = 65536


def forward(transport: Transport, master: str, user: str, repo: str,
            recv: Callable[[int], bytes], send: Callable[[bytes], None],
            send_err: Callable[[bytes], None], lfs_upload: bool = False) -> int:
    """Run the push of USER to REPO on MASTER with the client's streams (LFS_UPLOAD: the
    user's `git-lfs-transfer REPO upload` session instead); its exit status."""
    peer = transport.peer(master)  # the syncer's multiplexed connection is used if up
    soc = f"git-lfs-transfer '{repo}' upload" if lfs_upload else f"git-receive-pack '{repo}'"
    argv = transport.ssh_argv(peer) + [f"{peer.user}@{peer.host}", f"USER={user} SOC={soc}"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=transport.env(peer))
    assert proc.stdin and proc.stdout and proc.stderr
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    def upstream() -> None:
        try:
            while True:
                data = recv(CHUNK)
                if not data:
                    break
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def errors() -> None:
        try:
            for data in iter(lambda: os.read(stderr.fileno(), CHUNK), b""):
                send_err(data)
        except (OSError, ValueError):
            pass

    up = threading.Thread(target=upstream, name="redirect-up", daemon=True)
    err = threading.Thread(target=errors, name="redirect-err", daemon=True)
    up.start()
    err.start()
    try:
        for data in iter(lambda: os.read(stdout.fileno(), CHUNK), b""):
            send(data)
    except OSError:
        proc.kill()
    rc = proc.wait()
    err.join(10)
    log.info("redirected %s of %s to %s for %s: exit %s", "LFS upload" if lfs_upload else "push",
             repo, master, user, rc)
    return rc
