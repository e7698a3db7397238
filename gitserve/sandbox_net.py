"""The network of a sandboxed run (SPEC §6): its own network namespace, always.

`option build.network` (or `[builds] network`):
- `outbound` (the default where slirp4netns or pasta is installed): the run reaches the
  outside through a user-mode TCP/IP stack (slirp4netns --disable-host-loopback, or pasta
  --no-map-gw) that refuses the host's loopback, so nothing on the server's 127.0.0.1 (the
  SSH and HTTP ports, /metrics, preview ports, Redis, a local SMTP) is reachable; the run's
  127.0.0.1 is its own. DNS is the stack's forwarder (10.0.2.3 / the host's resolver).
- `none`: loopback only.
- `host`: the server's own network; only as the server setting `[builds] network = "host"`,
  never from a repo's option.

How: bwrap makes the namespace (--unshare-net, its loopback up) and waits on --block-fd
before it runs anything; the worker starts the stack for the namespace's init
(`attach`), configures tap0 with nsenter + ip, and only then lets the script start. The
stack exits with the run (--exit-fd / killed in `close`).
"""

from __future__ import annotations

import fcntl
import contextlib
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field

from .errors import GitserveError

MODES = ("outbound", "none", "host")
ADDR, GATEWAY, DNS = "10.0.2.100/24", "10.0.2.2", "10.0.2.3"
READY_TIMEOUT = 10.0
NS_GET_USERNS = 0xB701  # ioctl on a namespace fd: the user namespace that owns it


class NetworkError(GitserveError):
    """The run's network could not be set up (one line)."""


def outbound_tool() -> str | None:
    """slirp4netns (preferred) or pasta, whichever is installed and usable here: both open
    /dev/net/tun, which some hosts (containers) keep root-only."""
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return None
    for tool in ("slirp4netns", "pasta"):
        if shutil.which(tool):
            return tool
    return None


def default_mode() -> str:
    return "outbound" if outbound_tool() else "none"


def effective(server: str, option: str = "") -> tuple[str, list[str]]:
    """The mode of one run: the repo's option, within what the server allows. `host` only
    from the server; `outbound` falls back to `none` when no stack is installed."""
    warnings: list[str] = []
    server = (server or default_mode()).strip()
    if server not in MODES:
        raise NetworkError(f"[builds] network must be one of {', '.join(MODES)}, not {server!r}")
    mode = server
    option = (option or "").strip()
    if option:
        if option == "host" and server != "host":
            warnings.append("gitserve: option build.network = host is a server setting only; "
                            f"using {server}")
        elif option not in MODES:
            warnings.append(f"gitserve: option build.network = {option!r} is not outbound or none; "
                            f"using {server}")
        elif option == "outbound" and server == "none":
            warnings.append("gitserve: this server gives builds no network (`[builds] network = none`)")
        else:
            mode = option
    if mode == "outbound" and outbound_tool() is None:
        warnings.append("gitserve: no usable slirp4netns or pasta on this worker: build.network = none")
        mode = "none"
    return mode, warnings


@dataclass
class Network:
    """One run's network: the bwrap arguments, then `attach` once bwrap reported its pid."""

    mode: str
    unprivileged: bool  # bwrap made a user namespace: the stack and ip must join it
    # host 127.0.0.1:PORT -> the run's PORT (a site's process behind nginx, SPEC §7.1): the
    # stack listens on the host's loopback and delivers into the namespace (slirp4netns: to
    # the run's address, so the process binds 0.0.0.0; pasta: to its loopback too)
    forward: tuple[int, ...] = ()
    # the run's 127.0.0.1:PORT -> the host's 127.0.0.1:PORT, for these ports only (deploy.post
    # reaching the new live side's processes, PORT_<TYPE>): a relay (_Relay) whose listening
    # socket lives in the run's namespace; every other host port stays out of reach
    reach: tuple[int, ...] = ()
    _api: str | None = None
    _relays: list["_Relay"] = field(default_factory=list)
    _block_r: int | None = None
    _block_w: int | None = None
    _exit_w: int | None = None
    _stack: subprocess.Popen | None = None
    _resolv: str | None = None
    _fds: list[int] = field(default_factory=list)
    _userns_fd: int | None = None

    def bwrap_args(self) -> list[str]:
        """What bwrap needs: a new network namespace (not for `host`), and for `outbound` a
        fd to wait on until the stack is up, and a resolv.conf naming its DNS forwarder."""
        if self.mode == "host":
            return []
        args = ["--unshare-net"]
        if self.mode == "outbound":
            self._block_r, self._block_w = os.pipe()
            self._fds.append(self._block_r)
            fd, path = tempfile.mkstemp(prefix="gitserve-resolv-")
            with os.fdopen(fd, "w") as f:
                f.write(f"nameserver {DNS}\n")
            os.chmod(path, 0o644)
            self._resolv = path
            args += ["--block-fd", str(self._block_r), "--ro-bind", path, "/etc/resolv.conf"]
        return args

    def pass_fds(self) -> list[int]:
        return list(self._fds)

    def started(self) -> None:
        """After Popen: bwrap holds its end of the block pipe (the Run closed ours with the
        other pass_fds)."""
        self._block_r = None
        self._fds = []

    def attach(self, pid: int) -> None:
        """Start the user-mode stack for PID's namespace, configure tap0, release the run."""
        if self.reach:
            self._relays = [_Relay(pid, port) for port in self.reach]
        if self.mode != "outbound":
            return
        tool = outbound_tool()
        try:
            if tool == "slirp4netns":
                self._slirp(pid)
            elif tool == "pasta":
                self._pasta(pid)
            else:
                raise NetworkError("no slirp4netns or pasta on this worker")
        finally:
            if self._block_w is not None:  # released either way: a failed run is killed after
                try:
                    os.write(self._block_w, b"1")
                except OSError:
                    pass
                os.close(self._block_w)
                self._block_w = None

    def _userns(self, pid: int) -> str:
        """The user namespace that owns PID's network namespace (unprivileged bwrap runs the
        script in a nested one, --disable-userns): joining it gives the stack and `ip` the
        right to configure the network. A path to an fd this process holds and passes on."""
        if self._userns_fd is None:
            net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._userns_fd = fcntl.ioctl(net, NS_GET_USERNS)
            except OSError as exc:
                raise NetworkError(f"network setup failed: NS_GET_USERNS: {exc.strerror}") from None
            finally:
                os.close(net)
        return f"/proc/self/fd/{self._userns_fd}"

    def _inherit(self) -> tuple[int, ...]:
        return (self._userns_fd,) if self._userns_fd is not None else ()

    def _nsenter(self, pid: int) -> list[str]:
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net"]
        if self.unprivileged:
            argv[1:1] = [f"--user={self._userns(pid)}", "--preserve-credentials"]
        return argv

    def _slirp(self, pid: int) -> None:
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        argv = ["slirp4netns", "--disable-host-loopback", "--mtu=65520", "--enable-seccomp",
                f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
        if self.forward:
            self._api = tempfile.mktemp(prefix="gitserve-slirp-", suffix=".sock")
            argv.append(f"--api-socket={self._api}")
        if self.unprivileged:
            argv.append(f"--userns-path={self._userns(pid)}")
        argv += [str(pid), "tap0"]
        try:
            self._stack = subprocess.Popen(argv, pass_fds=(ready_w, exit_r, *self._inherit()),
                                           stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           start_new_session=True)
        finally:
            os.close(ready_w)
            os.close(exit_r)
        try:
            ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
            if not ready or not os.read(ready_r, 1):
                raise NetworkError("slirp4netns did not start: " + self._stack_error())
        finally:
            os.close(ready_r)
        script = (f"link set tap0 mtu 65520\naddr add {ADDR} dev tap0\nlink set tap0 up\n"
                  f"route add default via {GATEWAY} dev tap0\n")
        res = subprocess.run([*self._nsenter(pid), "ip", "-batch", "-"], input=script.encode(),
                             capture_output=True, timeout=READY_TIMEOUT, pass_fds=self._inherit())
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip().splitlines() or ["?"]
            raise NetworkError(f"network setup failed: {err[-1]}")
        for port in self.forward:
            self._slirp_api({"execute": "add_hostfwd", "arguments": {
                "proto": "tcp", "host_addr": "127.0.0.1", "host_port": port, "guest_port": port}})
            _widen_backlog(self._stack.pid, port)

    def _slirp_api(self, request: dict[str, object]) -> None:
        import json
        import socket

        assert self._api is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(READY_TIMEOUT)
            sock.connect(self._api)
            sock.sendall(json.dumps(request).encode())
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        reply = json.loads(answer or b"{}")
        if "error" in reply or "return" not in reply:
            raise NetworkError(f"port forward failed: {reply.get('error') or answer!r}")

    def _pasta(self, pid: int) -> None:
        inbound = ["-t", ",".join(f"127.0.0.1/{p}" for p in self.forward)] if self.forward \
            else ["-t", "none"]
        argv = ["pasta", "--config-net", "--no-map-gw", "-q", "-f", *inbound, "-u", "none",
                "-T", "none", "-U", "none", "--netns", f"/proc/{pid}/ns/net"]
        if self.unprivileged:
            argv += ["--userns", self._userns(pid)]
        self._stack = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, start_new_session=True,
                                       pass_fds=self._inherit())
        # pasta configures the namespace before it forwards anything: wait for tap's route
        import time

        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            res = subprocess.run([*self._nsenter(pid), "ip", "route", "show", "default"],
                                 capture_output=True, timeout=READY_TIMEOUT, pass_fds=self._inherit())
            if res.stdout.strip():
                return
            if self._stack.poll() is not None:
                break
            time.sleep(0.02)
        raise NetworkError("pasta did not start: " + self._stack_error())

    def _stack_error(self) -> str:
        if self._stack is None:
            return "not started"
        if self._stack.poll() is None:
            return "no answer"
        err = self._stack.stderr.read().decode(errors="replace") if self._stack.stderr else ""
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {self._stack.returncode}"

    def close(self) -> None:
        """The run ended: stop its stack, drop the temporary files and fds."""
        for relay in self._relays:
            relay.close()
        self._relays = []
        for name in ("_block_r", "_block_w", "_exit_w", "_userns_fd"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)
        if self._stack is not None:
            try:
                self._stack.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._stack.kill()
                self._stack.wait()
            if self._stack.stderr is not None:
                self._stack.stderr.close()
            self._stack = None
        for path in (self._resolv, self._api):
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._resolv = self._api = None


def describe(mode: str) -> str:
    if mode == "outbound":
        return f"network outbound via {outbound_tool()} (host loopback refused)"
    if mode == "none":
        return "network: loopback only"
    return "network: the host's (no namespace)"



FORWARD_BACKLOG = 511   # nginx's own listen backlog


def _widen_backlog(stack_pid: int, port: int) -> bool:
    """libslirp listens on a forwarded port with a backlog of 1 (its tcp_listen calls
    listen(s, 1)): with a few clients at once the kernel drops the SYNs nginx sends to a site
    process, each drop costing 1 s, then 2 s more, and a third one a 504 from nginx's 5 s
    proxy_connect_timeout (seen under load: a 504 after 5.00 s). listen() on a listening
    socket sets a new backlog, so the stack's socket, fetched from it with pidfd_getfd (it is
    our child), is given nginx's. Best effort: False when it could not be done."""
    import ctypes
    import socket

    inode = None
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                # local 0100007F:PORT (127.0.0.1), state 0A (LISTEN), inode
                if cols[1] == f"0100007F:{port:04X}" and cols[3] == "0A":
                    inode = cols[9]
    except (OSError, IndexError):
        return False
    if inode is None:
        return False
    target = None
    try:
        for name in os.listdir(f"/proc/{stack_pid}/fd"):
            if os.readlink(f"/proc/{stack_pid}/fd/{name}") == f"socket:[{inode}]":
                target = int(name)
    except OSError:
        return False
    if target is None:
        return False
    try:
        pidfd = os.pidfd_open(stack_pid)
    except OSError:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(438, pidfd, target, 0)  # pidfd_getfd
        if fd < 0:
            return False
        with socket.socket(fileno=fd) as sock:  # a duplicate: closing it leaves the stack's
            sock.listen(FORWARD_BACKLOG)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


class _Relay:
    """127.0.0.1:PORT inside a run's network namespace, relayed to 127.0.0.1:PORT of the
    host. A socket belongs to the namespace it was made in: a short-lived thread joins the
    run's namespace (setns affects only the calling thread), makes and binds the listening
    socket, and ends; the relay threads then accept on it from the host's namespace and
    connect out there. Needs CAP_SYS_ADMIN over the namespace: root, or the user that made
    the (unprivileged bwrap's) user namespace owning it."""

    def __init__(self, pid: int, port: int) -> None:
        self.port = port
        made: list[object] = []

        def make() -> None:
            import ctypes

            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(64)
                made.append(sock)
            except OSError as exc:
                made.append(exc)

        t = threading.Thread(target=make, name=f"netns-relay-{port}")
        t.start()
        t.join()
        if not made or isinstance(made[0], OSError):
            raise NetworkError(f"cannot give the sandbox port {port}: {made[0] if made else '?'}")
        self.sock: socket.socket = made[0]  # type: ignore[assignment]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name=f"relay-{port}").start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                out = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                out.settimeout(None)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, out), (out, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.close()
        except OSError:
            pass


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if src.fileno() != -1:
            try:
                src.shutdown(socket.SHUT_RD)
            except OSError:
                pass
