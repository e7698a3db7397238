"""Several real gitserve servers that mirror each other, each with its own home and port.

`make_cluster(tmp, ["frodo", "sam", "gollum"], conf)` does what an admin does by hand (the
README's "Mirroring and failover"): init a home per server, set `[server] hostname` and
`[mirror] peers` (ports are chosen first: every server must know where the others
listen), put every server's `gitserve admin server-key` into every keydir as
server-NAME.pub, give all of them the same users and conf, and start them. The first name
is the master of the conf's repos; the users' keys are the same on every server.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gitserve.git import refscan
from tests.support.server import ADMIN, GitServer, _merge_settings, stop_all
from tests.support.tools import free_port, require_tool


@dataclass
class Cluster:
    servers: dict[str, GitServer] = field(default_factory=dict)

    def __getitem__(self, name: str) -> GitServer:
        return self.servers[name]

    def stop(self) -> None:
        stop_all(self.servers.values())

    def kill9(self, name: str) -> None:
        """kill -9 the server's whole process group (its mirror ssh connections included)."""
        srv = self.servers[name]
        assert srv.proc is not None
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)

    def restart(self, name: str) -> None:
        srv = self.servers[name]
        srv.stop()
        srv.start(port=srv.port)


def disk_refs(srv: GitServer, repo: str) -> dict[str, str]:
    """The repo's refs as the server's disk has them now (no protocol in between)."""
    path = srv.repo_path(repo)
    if not path.is_dir():
        return {}
    scan = refscan.scan(str(path))
    return {k.decode(): v.decode() for k, v in scan.refs.items()
            if k != b"HEAD" and not k.startswith(b"refs/gitserve/")}


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def make_cluster(tmp: Path, names: list[str], conf: str, users: tuple[str, ...] = (),
                 mirror: dict | None = None, http: tuple[str, ...] = ()) -> Cluster:
    """HTTP: the servers that also get the HTTP face (`srv.http_port`: /metrics)."""
    for tool in ("git", "ssh", "ssh-keygen"):
        require_tool(tool)
    tmp.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in names}
    peers = " ".join(f"{n}=git@127.0.0.1:{p}" for n, p in ports.items())
    cluster = Cluster()
    keys_home = GitServer(home=tmp / "keys-only", tmp=tmp)  # one key per user, for all
    admin_key = keys_home.keygen(ADMIN)
    user_keys = {u: keys_home.keygen(u) for u in users}
    for name in names:
        srv = GitServer(home=tmp / name / "home", tmp=tmp / name)
        srv.tmp.mkdir(parents=True, exist_ok=True)
        srv.admin_cli("init", "--admin", ADMIN, "--admin-key", f"{admin_key}.pub")
        srv.keys[ADMIN] = admin_key
        srv.keys.update(user_keys)
        extra: dict = {}
        if name in http:
            srv.http_port = free_port()  # type: ignore[attr-defined]
            extra["http"] = {"listen": f"127.0.0.1:{srv.http_port}"}  # type: ignore[attr-defined]
        _merge_settings(srv.home, {**extra, "server": {"hostname": name},
                                   "mirror": {"peers": peers, "catchup_interval": 1.0,
                                              "sync_timeout": 8.0, **(mirror or {})},
                                   "builds": {"workers": 0}})
        srv.port = ports[name]
        cluster.servers[name] = srv
    server_keys = {n: s.admin_cli("admin", "server-key").stdout.strip()
                   for n, s in cluster.servers.items()}
    from gitserve import adminrepo as admin

    for srv in cluster.servers.values():
        settings = srv.settings
        for peer, key in server_keys.items():
            admin.add_key(settings, f"server-{peer}", key, "cluster-test")
        for user, path in user_keys.items():
            admin.add_key(settings, user, Path(f"{path}.pub").read_text(), "cluster-test")
        srv.set_conf(conf)
    try:
        for srv in cluster.servers.values():
            srv.start(port=srv.port)
    except BaseException:
        cluster.stop()
        raise
    return cluster
