"""Debian's pebble (the ACME test server) for site TLS tests, run for real on free 127.0.0.1
ports: its own HTTPS certificate from a CA made here (Debian ships no test certs), DNS from
pebble-challtestsrv answering every name with 127.0.0.1, and HTTP-01 validated against the
site's own nginx (pebble's httpPort = the site's port). `root_pem()` is the CA that signs
the certificates pebble issues (what `curl --cacert` needs)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.tools import free_port, require_tool


def _make_ca_and_cert(root: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitserve test pebble CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Pebble:
    def __init__(self, root: Path, http_port: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = _make_ca_and_cert(root)
        self.port, self.mgmt, self.dns = free_port(), free_port(), free_port()
        config = {"pebble": {"listenAddress": f"127.0.0.1:{self.port}",
                             "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                             "certificate": str(cert), "privateKey": str(key),
                             "httpPort": http_port, "tlsPort": free_port(),
                             "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        (root / "pebble.json").write_text(json.dumps(config))
        self.procs: list[subprocess.Popen] = []
        challtest = require_tool("pebble-challtestsrv")
        self.procs.append(subprocess.Popen(
            [challtest, "-dns01", f"127.0.0.1:{self.dns}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}"],
            stdout=(root / "challtestsrv.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self.procs.append(subprocess.Popen(
            [require_tool("pebble"), "-config", str(root / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns}"],
            stdout=(root / "pebble.log").open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True))
        deadline = time.monotonic() + 20
        while True:
            if self.procs[0].poll() is not None:
                self.stop()
                raise RuntimeError("pebble-challtestsrv exited: " + (root / "challtestsrv.log").read_text()[-500:])
            try:
                self._get(f"https://127.0.0.1:{self.port}/dir")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("pebble did not start: " + (root / "pebble.log").read_text()[-500:]) from None
                time.sleep(0.1)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _get(self, url: str) -> bytes:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return resp.read()

    def root_pem(self) -> Path:
        path = self.root / "issuer-root.pem"
        path.write_bytes(self._get(f"https://127.0.0.1:{self.mgmt}/roots/0"))
        return path

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
