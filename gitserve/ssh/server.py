"""The SSH listener: one thread per connection, one per exec channel.

Closing follows what OpenSSH clients expect: exit-status, then EOF, then close, and the
server waits for the client to hang up the TCP connection itself. Closing the socket first
makes a client that is still draining data see "connection reset" after a good clone.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paramiko
from dulwich.errors import HangupException

from gitserve._compat import paramiko as paramiko_compat
from gitserve.logsetup import log_context, log_path
from gitserve.metrics import NULL as NULL_METRICS
from gitserve.peerlog import PeerLog
from gitserve.settings import Settings

from .auth import GitserveAuthHandler, GitSSHServer, KeyLookup
from .limits import Admission

log = logging.getLogger(__name__)

# (channel, command, user, server_iface) -> exit status
CommandRunner = Callable[[paramiko.Channel, str, str, GitSSHServer], int]

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def _own_rsa_key(path: Path) -> paramiko.RSAKey | None:
    """PATH as an RSA key without OpenSSL's consistency check of the private numbers, else None.

    The check (primality tests of a 3072-bit key) costs 0.3-0.8 s of CPU at every server
    start; it guards against keys from elsewhere, and a host key is the server's own file
    (HOME/host_keys, 0600, made by `gitserve init` or copied from sshd's by the admin).
    cryptography documents `unsafe_skip_rsa_key_validation` for keys one trusts."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        data = path.read_bytes()
        load = (serialization.load_ssh_private_key
                if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
                else serialization.load_pem_private_key)
        key: object = load(data, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, OSError, UnsupportedAlgorithm):
        return None
    return paramiko.RSAKey(key=key) if isinstance(key, rsa.RSAPrivateKey) else None


def load_host_keys(directory: Path) -> list[paramiko.PKey]:
    """Every private key in DIRECTORY (ed25519 first: what modern clients prefer)."""
    keys: list[paramiko.PKey] = []
    for path in sorted(Path(directory).glob("*")):
        if path.suffix == ".pub" or not path.is_file():
            continue
        rsa_key = _own_rsa_key(path)
        if rsa_key is not None:
            keys.append(rsa_key)
            continue
        for cls in _KEY_CLASSES:
            try:
                keys.append(cls.from_private_key_file(str(path)))
                break
            except (paramiko.SSHException, ValueError, OSError):
                continue
    keys.sort(key=lambda k: 0 if k.get_name() == "ssh-ed25519" else 1)
    return keys


class SSHServer:
    def __init__(self, settings: Settings, lookup: KeyLookup, run_command: CommandRunner,
                 host_keys: list[paramiko.PKey] | None = None, metrics: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else NULL_METRICS
        self.lookup = lookup
        self.run_command = run_command
        self.host_keys = host_keys if host_keys is not None else load_host_keys(settings.host_keys_dir)
        if not self.host_keys:
            raise RuntimeError(f"no SSH host key in {settings.host_keys_dir} (run `gitserve init`)")
        s = settings.server
        self.admission = Admission(s.max_connections, s.max_unauth_connections,
                                   s.max_unauth_per_ip, s.auth_failures_per_minute,
                                   s.max_pending_per_ip)
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)  # connection ids in the log: c1, c2, ...
        # a flood's refusals: a few lines per address, then one summary per minute
        self._refusals = PeerLog(log)

    # --- lifecycle -----------------------------------------------------------
    def bind(self, host: str, port: int) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.settimeout(0.5)
        self._sock = sock
        return sock.getsockname()[:2]

    def start(self) -> None:
        if self._sock is None:
            self.bind(*self.settings.listen_host_port())
        self._thread = threading.Thread(target=self._accept_loop, name="ssh-accept", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            # wakes the accept loop now (accept fails at once on a shut-down listener) instead
            # of at its next 0.5 s timeout: every serve stop, and every restart, is that faster
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread:
            self._thread.join(5)
        self._refusals.close()
        if self._sock:
            self._sock.close()
        with self._lock:
            transports = list(self._transports)
        for t in transports:
            t.close()

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None
        return self._sock.getsockname()[:2]

    def _auth_failure(self, ip: str) -> None:
        self.metrics.access_denied.labels("ssh", "login").inc()
        self.admission.auth_failure(ip)

    # --- connections -----------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            ip = addr[0]
            refused = self.admission.admit(ip)
            if refused:
                self._refusals.warning(ip, "refused connection", refused)
                self.metrics.connections_refused.labels("ssh").inc()
                _refuse(conn)
                continue
            cid = f"c{next(self._ids)}"
            threading.Thread(target=self._serve_connection, args=(conn, ip, cid),
                             name=f"ssh-{cid}", daemon=True).start()

    def _serve_connection(self, conn: socket.socket, ip: str, cid: str = "-") -> None:
        with log_context(cid):
            started = time.monotonic()
            opened: list[bool] = []

            def open_line() -> None:  # not for a connection refused before its handshake
                log.info("open from %s", ip)
                opened.append(True)
            try:
                self._serve_connection_logged(conn, ip, cid, open_line)
            finally:
                if opened:
                    log.info("closed (%.1fs)", time.monotonic() - started)

    def _serve_connection_logged(self, conn: socket.socket, ip: str, cid: str,
                                 open_line: Callable[[], None] = lambda: None) -> None:
        s = self.settings.server
        holds_slot = logged_in = False
        transport: paramiko.Transport | None = None
        self.metrics.connections.labels("ssh").inc()
        self.metrics.connections_open.labels("ssh").inc()
        try:
            # a burst queues for a handshake slot as long as a client waits for our banner
            refused = self.admission.start_auth(ip, s.banner_timeout, conn)
            if refused:
                self._refusals.warning(ip, "refused connection", refused)
                self.metrics.connections_refused.labels("ssh").inc()
                _refuse(conn)
                return
            open_line()
            holds_slot = True
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = paramiko.Transport(conn)
            transport.banner_timeout = s.banner_timeout
            transport.handshake_timeout = s.banner_timeout
            transport.local_version = "SSH-2.0-gitserve"
            # only SHA-2 RSA signatures (SPEC §4); ssh-rsa keys still work with rsa-sha2-*
            transport.disabled_algorithms = {"pubkeys": ["ssh-rsa"]}
            paramiko_compat.install_auth_handler(transport, GitserveAuthHandler(transport))
            for key in self.host_keys:
                transport.add_server_key(key)
            iface = GitSSHServer(self.lookup, ip, self._auth_failure,
                                 max_channels=s.max_channels_per_connection)
            with self._lock:
                self._transports.add(transport)
            try:
                transport.start_server(server=iface)
            except (paramiko.SSHException, EOFError, OSError):
                return
            if not iface.authenticated.wait(s.auth_timeout) or not transport.is_active():
                log.info("not authenticated (%d failed attempt(s))", iface.failures)
                return
            log.info("authenticated as %s (key %s)", iface.user, iface.key_fingerprint)
            holds_slot = False
            logged_in = True
            self.admission.authenticated(ip, conn)
            transport.set_keepalive(max(1, int(s.keepalive_interval)))
            self._serve_channels(transport, iface, cid)
        except Exception:  # noqa: BLE001 - one broken connection must not take the server down
            log.exception("connection from %s failed", ip)
        finally:
            if transport is not None:
                transport.close()
                with self._lock:
                    self._transports.discard(transport)
            else:
                conn.close()
            self.admission.closed(ip, holds_slot, conn, logged_in)
            self.metrics.connections_open.labels("ssh").dec()

    def _serve_channels(self, transport: paramiko.Transport, iface: GitSSHServer,
                        cid: str) -> None:
        idle = self.settings.server.idle_timeout
        active: list[threading.Thread] = []
        last_activity = time.monotonic()
        served_any = False
        while transport.is_active() and not self._stop.is_set():
            chan = transport.accept(timeout=0.5)
            active = [t for t in active if t.is_alive()]
            if chan is not None:
                th = threading.Thread(target=self._serve_channel, args=(chan, iface, cid),
                                      name=f"ssh-chan-{iface.user}", daemon=True)
                th.start()
                active.append(th)
                served_any = True
            if active:
                last_activity = time.monotonic()
            elif served_any:
                # all work done: give the client a moment to hang up by itself; a client
                # starved of CPU (50 parallel clones on a CI host) may still be reading what
                # the kernel holds for it, and closing now would reset the connection
                if time.monotonic() - last_activity > 60:
                    return
            elif time.monotonic() - last_activity > idle:
                return

    def _serve_channel(self, chan: paramiko.Channel, iface: GitSSHServer, cid: str) -> None:
        with log_context(cid):
            self._serve_channel_logged(chan, iface)

    def _serve_channel_logged(self, chan: paramiko.Channel, iface: GitSSHServer) -> None:
        s = self.settings.server
        chan.settimeout(s.idle_timeout)
        status = 1
        try:
            command = iface.wait_exec(chan.get_id(), min(s.auth_timeout, s.idle_timeout),
                                      gone=lambda: chan.closed or chan.eof_received)
            if command is None:
                # shell/pty/subsystem were refused; the client closes or we give up
                _say(chan, "gitserve: only git commands and the commands `help` lists "
                           "are served here; no shell access\n")
                return
            log.info("run %s", _loggable(command))
            status = self.run_command(chan, command, iface.user or "", iface)
            log.info("exit %d", status)
        except _CLIENT_GONE as exc:
            # the client hung up or went quiet past idle_timeout: nothing to tell anyone
            log.info("session of %s from %s ended early: %s", iface.user, iface.peer,
                     exc or type(exc).__name__)
            status = 1
        except Exception as exc:  # noqa: BLE001
            status = 1
            if isinstance(exc, OSError) and chan.closed:
                # paramiko's "Socket is closed": the client left (Ctrl-C of a push waiting
                # for a build) and the answer had nowhere to go
                log.info("session of %s from %s ended early: %s", iface.user, iface.peer, exc)
                return
            log.exception("command failed for %s", iface.user)
            _say(chan, "FATAL: internal server error (see the server log, "
                       f"{log_path(self.settings.home)})\n")
        finally:
            iface.forget(chan.get_id())
            close_channel(chan, status)


def _loggable(command: str) -> str:
    """The command line as the log shows it: a git service and its repo in full, for
    anything else only its first word (arguments may carry what the log must not)."""
    words = command.split()
    if not words:
        return "''"
    if words[0].startswith("git-") or words[0] == "git":
        return " ".join(words[:3])[:300]
    return words[0][:100]


_CLIENT_GONE = (socket.timeout, EOFError, ConnectionError, paramiko.SSHException,
                HangupException)


def _say(chan: paramiko.Channel, text: str) -> None:
    try:
        chan.sendall_stderr(text.encode())
    except Exception:  # noqa: BLE001
        pass


def close_channel(chan: paramiko.Channel, status: int, wait: float = 10.0) -> None:
    """exit-status, EOF, close; then wait (bounded) for the client's own close."""
    try:
        if not chan.closed:
            chan.send_exit_status(status)
            chan.shutdown_write()
            deadline = time.monotonic() + wait
            chan.close()
            while not chan.closed and time.monotonic() < deadline:
                time.sleep(0.02)
    except Exception:  # noqa: BLE001 - the client already left
        pass


def _refuse(conn: socket.socket) -> None:
    try:
        conn.settimeout(1)
        conn.sendall(b"SSH-2.0-gitserve\r\n")
    except OSError:
        pass
    finally:
        conn.close()
