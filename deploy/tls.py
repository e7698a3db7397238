"""TLS for sites (SPEC §7.1): `option deploy.tls = acme` or `deploy.tls = CERT.pem KEY.pem`.

acme: a certificate for the site's server names (`deploy.server-name`) from the ACME
directory `[deploy] acme_directory` (default Let's Encrypt), account key and certificate
under HOME/tls/acme/ and HOME/tls/SITE/, through certbot's `acme` library (the protocol,
JWS and nonces are theirs, not ours; josepy underneath). The HTTP-01 challenge is answered
by the site's own nginx: every site config serves /.well-known/acme-challenge/ from
HOME/sites/SITE/acme/ on the live port, where the token file is written before the
challenge is answered. A certificate is (re)ordered when missing, for other names, or within
RENEW_BEFORE (30 days) of expiry: by the deploy, and daily by `gitserve sites`
(RenewKeeper). `[deploy] acme_email` is the account contact, `acme_ca_file` the CA bundle to
trust for the directory (pebble's test CA in the tests).

CERT KEY: files made elsewhere, paths under HOME/tls (nothing outside HOME/tls is read).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

from .errors import DeployError

log = logging.getLogger(__name__)

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
RENEW_BEFORE = datetime.timedelta(days=30)
ORDER_TIMEOUT = 90.0
CHALLENGE_DIR = ".well-known/acme-challenge"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def tls_dir(settings: Settings) -> Path:
    return settings.home / "tls"


def challenge_root(settings: Settings, site: str) -> Path:
    """What nginx serves as /.well-known/acme-challenge/ of SITE (its `root`)."""
    return settings.sites_dir / site / "acme"


def parse_option(value: str) -> str | tuple[str, str] | None:
    """None (off), "acme", or (cert, key) relative to HOME/tls."""
    words = value.split()
    if not words:
        return None
    if words == ["acme"]:
        return "acme"
    if len(words) == 2 and all(not w.startswith("/") and ".." not in w.split("/") for w in words):
        return (words[0], words[1])
    raise DeployError("options", "option deploy.tls: need `acme` or `CERT.pem KEY.pem` (paths under HOME/tls)")


def given_files(settings: Settings, cert: str, key: str) -> TlsFiles:
    root = tls_dir(settings).resolve()
    files = TlsFiles((root / cert).resolve(), (root / key).resolve())
    for path in (files.cert, files.key):
        if root not in path.parents or not path.is_file():
            raise DeployError("tls", f"{path} is not a file under {root}")
    return files


def site_files(settings: Settings, site: str) -> TlsFiles:
    d = tls_dir(settings) / site
    return TlsFiles(d / "cert.pem", d / "key.pem")


def _not_after(cert_pem: bytes) -> datetime.datetime:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.not_valid_after_utc


def _names(cert_pem: bytes) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value.get_values_for_type(x509.DNSName))


def needs_order(settings: Settings, site: str, names: list[str], now: datetime.datetime | None = None) -> bool:
    files = site_files(settings, site)
    try:
        pem = files.cert.read_bytes()
    except OSError:
        return True
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return _names(pem) != set(names) or _not_after(pem) - now < RENEW_BEFORE


def _account_key(settings: Settings) -> Any:
    import josepy as jose
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = tls_dir(settings) / "acme" / "account.key"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    return jose.JWKRSA(key=key)


def _client(settings: Settings) -> Any:
    from acme import client, messages

    directory = settings.deploy.acme_directory or LETS_ENCRYPT
    # verify_ssl: True (the system's CAs) or a CA bundle path, as requests' `verify`
    verify: Any = settings.deploy.acme_ca_file or True  # typed bool, passed on as requests' verify
    net = client.ClientNetwork(_account_key(settings), user_agent="gitserve", verify_ssl=verify)
    try:
        directory_obj = messages.Directory.from_json(net.get(directory).json())
    except Exception as exc:  # noqa: BLE001 - requests/acme errors: one line
        raise DeployError("tls", f"ACME directory {directory}: {exc}") from None
    acme = client.ClientV2(directory_obj, net=net)
    reg_file = tls_dir(settings) / "acme" / "account.json"
    email = settings.deploy.acme_email
    try:
        if reg_file.exists():
            regr = messages.RegistrationResource.json_loads(reg_file.read_text())
            net.account = regr
        else:
            new = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
            regr = acme.new_account(new)
            atomic_write(reg_file, regr.json_dumps(), mode=0o600)
    except Exception as exc:  # noqa: BLE001
        raise DeployError("tls", f"ACME account: {exc}") from None
    return acme


def order(settings: Settings, site: str, names: list[str], say: Callable[[str], None]) -> TlsFiles:
    """Order a certificate for NAMES, answering HTTP-01 through the site's nginx (its config
    must already serve challenge_root). Writes HOME/tls/SITE/{cert,key}.pem."""
    from acme import challenges, crypto_util
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not names:
        raise DeployError("tls", "deploy.tls = acme needs deploy.server-name (the names to certify)")
    acme = _client(settings)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    csr = crypto_util.make_csr(key_pem, names)
    webroot = challenge_root(settings, site) / CHALLENGE_DIR
    webroot.mkdir(parents=True, exist_ok=True)
    os.chmod(challenge_root(settings, site), 0o755)
    os.chmod(webroot.parent, 0o755)
    os.chmod(webroot, 0o755)
    written: list[Path] = []
    try:
        ordr = acme.new_order(csr)
        for authz in ordr.authorizations:
            chall = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if chall is None:
                name = authz.body.identifier.value
                raise DeployError("tls", f"the ACME server offers no http-01 challenge for {name}")
            response, validation = chall.response_and_validation(acme.net.key)
            path = webroot / chall.chall.encode("token")
            path.write_text(validation)
            os.chmod(path, 0o644)
            written.append(path)
            acme.answer_challenge(chall, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT)
        done = acme.poll_and_finalize(ordr, deadline=deadline)
    except DeployError:
        raise
    except Exception as exc:  # noqa: BLE001 - acme's errors (messages.Error, timeouts): one line
        raise DeployError("tls", f"ACME order for {', '.join(names)}: {exc}") from None
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    files = site_files(settings, site)
    files.cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(files.key, key_pem, mode=0o600)
    atomic_write(files.cert, done.fullchain_pem, mode=0o644)
    (files.cert.parent / "meta.json").write_text(json.dumps({"names": names, "at": time.time()}))
    say(f"tls: certificate for {', '.join(names)} until {_not_after(done.fullchain_pem.encode()):%Y-%m-%d}")
    return files
