"""OpenSSH public keys and Gitolite's keydir naming.

The keydir is what decides who a connection is, so a key is accepted only when its
blob decodes to a real public key of a type the SSH server can verify; anything else
is refused with a one-line reason instead of silently never matching.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from gitserve.errors import GitserveError
from gitserve.names import USERNAME_PATT


# keydir file paths must match Gitolite's repo-name pattern (`keydir/sub/alice@laptop.pub`).
KEYFILE_PATT = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z._@/+]*$")

# key type -> label ssh-keygen prints in parentheses
VERIFIABLE_TYPES = {
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "ssh-rsa": "RSA",
}
# FIDO keys: valid, but paramiko cannot verify their signatures, so they never log in.
SK_TYPES = {
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}
MIN_RSA_BITS = 1024  # OpenSSH's RequiredRSASize default


class InvalidKey(GitserveError, ValueError):
    """A public key line or keydir file name that cannot be used (message is one line)."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str  # e.g. "ssh-ed25519"
    blob: bytes  # the decoded key blob, what an SSH client offers
    comment: str
    bits: int

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` exactly as `ssh-keygen -lf` prints it."""
        return fingerprint(self.blob)

    @property
    def label(self) -> str:
        """Type label as ssh-keygen prints it: ED25519, ECDSA, RSA, ED25519-SK, ..."""
        return VERIFIABLE_TYPES.get(self.key_type) or SK_TYPES.get(self.key_type, self.key_type)

    @property
    def verifiable(self) -> bool:
        """False for key types whose signatures the server cannot check (sk-*)."""
        return self.key_type in VERIFIABLE_TYPES

    def openssh(self) -> str:
        """The canonical one-line form, as written to keydir."""
        line = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{line} {self.comment}" if self.comment else line


def fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _ssh_strings(blob: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise InvalidKey("malformed key data (truncated)")
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        pos += 4
        if pos + n > len(blob):
            raise InvalidKey("malformed key data (truncated)")
        out.append(blob[pos : pos + n])
        pos += n
    return out


_CURVES = {"nistp256": "SECP256R1", "nistp384": "SECP384R1", "nistp521": "SECP521R1"}


def _mpint(data: bytes) -> int:
    if not data or (data[0] & 0x80) or (len(data) > 1 and data[0] == 0 and not data[1] & 0x80):
        raise InvalidKey("malformed ssh-rsa key (bad integer encoding)")
    return int.from_bytes(data, "big")


def _check_key(key_type: str, blob: bytes) -> int:
    """Decode the blob with `cryptography` (strictly: exact fields, valid point, sane RSA
    numbers) and return its size in bits. paramiko would pad short data with zeros."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        parts = _ssh_strings(blob)
    except InvalidKey:
        raise InvalidKey(f"malformed {key_type} key (truncated)") from None
    try:
        if key_type == "ssh-ed25519":
            if len(parts) != 2 or len(parts[1]) != 32:
                raise ValueError
            ed25519.Ed25519PublicKey.from_public_bytes(parts[1])
            return 256
        if key_type.startswith("ecdsa-sha2-"):
            curve_name = key_type[len("ecdsa-sha2-"):]
            if len(parts) != 3 or parts[1] != curve_name.encode():
                raise ValueError
            curve = getattr(ec, _CURVES[curve_name])()
            ec.EllipticCurvePublicKey.from_encoded_point(curve, parts[2])
            return curve.key_size
        if len(parts) != 3:
            raise ValueError
        e, n = _mpint(parts[1]), _mpint(parts[2])
        rsa.RSAPublicNumbers(e, n).public_key()
        return n.bit_length()
    except InvalidKey:
        raise
    except Exception as exc:  # cryptography raises ValueError and friends for bad data
        raise InvalidKey(f"malformed {key_type} key") from exc


def _check_sk(key_type: str, blob: bytes) -> int:
    parts = _ssh_strings(blob)
    if key_type == "sk-ssh-ed25519@openssh.com":
        if len(parts) != 3 or len(parts[1]) != 32:
            raise InvalidKey(f"malformed {key_type} key")
        return 256
    if len(parts) != 4 or parts[1] != b"nistp256" or not parts[2].startswith(b"\x04"):
        raise InvalidKey(f"malformed {key_type} key")
    return 256


def parse(line: str) -> PublicKey:
    """Parse one OpenSSH public key line (`TYPE BASE64 [COMMENT]`); raise InvalidKey."""
    if "\x00" in line:
        raise InvalidKey("key contains a NUL byte")
    text = line.strip()
    if not text:
        raise InvalidKey("empty key")
    fields = text.split(None, 2)
    key_type = fields[0]
    if key_type not in VERIFIABLE_TYPES and key_type not in SK_TYPES:
        if key_type == "ssh-dss":
            raise InvalidKey("DSA keys are not supported (OpenSSH disabled them); use ed25519")
        if key_type.endswith("-cert-v01@openssh.com"):
            raise InvalidKey("certificates are not supported; give the plain public key")
        if "=" in key_type or "," in key_type or '"' in key_type:
            raise InvalidKey("key options (authorized_keys prefixes) are not allowed in keydir")
        raise InvalidKey(f"unknown key type {key_type[:40]!r}")
    if len(fields) < 2:
        raise InvalidKey(f"{key_type} key has no key data")
    try:
        blob = base64.b64decode(fields[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidKey("key data is not valid base64") from None
    comment = fields[2].strip() if len(fields) > 2 else ""
    if any(ord(c) < 32 for c in comment):
        raise InvalidKey("key comment contains control characters")
    try:
        (n,) = struct.unpack(">I", blob[:4])
        if n > len(blob) - 4:
            raise ValueError
        embedded = blob[4 : 4 + n].decode("ascii")
    except (struct.error, ValueError):
        raise InvalidKey("malformed key data") from None
    if embedded != key_type:
        raise InvalidKey(f"key data is a {embedded[:40]!r} key, not {key_type}")
    if key_type in SK_TYPES:
        bits = _check_sk(key_type, blob)
    else:
        bits = _check_key(key_type, blob)
        if key_type == "ssh-rsa" and bits < MIN_RSA_BITS:
            raise InvalidKey(f"RSA key of {bits} bits is too short (minimum {MIN_RSA_BITS})")
    return PublicKey(key_type=key_type, blob=blob, comment=comment, bits=bits)


def parse_file_text(text: str) -> PublicKey:
    """A keydir file: exactly one key line (blank lines and `#` comments are ignored)."""
    if "PRIVATE KEY-----" in text:
        # say so without ever echoing any of it
        raise InvalidKey("this is a PRIVATE key; give the public key (the .pub file)")
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise InvalidKey("RFC 4716 (PuTTY/SSH2) format; convert it with `ssh-keygen -i -f FILE`")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InvalidKey("no key in file")
    if len(lines) > 1:
        raise InvalidKey(f"{len(lines)} keys in one file; keydir holds one key per file")
    return parse(lines[0])


def keydir_user(path: str) -> str:
    """User of keydir file PATH (relative to keydir/ or with the `keydir/` prefix).

    Gitolite's rule: drop directories, then a trailing `@label` without a dot, then `.pub`,
    so `alice@laptop.pub` is alice and `carol@example.com.pub` is carol@example.com.
    """
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(".pub"):
        raise InvalidKey(f"{path}: key files must end in .pub")
    user = re.sub(r"(@[^.]+)?\.pub$", "", name)
    if not USERNAME_PATT.match(user) or user.endswith("@"):
        raise InvalidKey(f"{path}: {user!r} is not a valid user name")
    return user


def check_keyfile_path(path: str) -> str:
    """Validate keydir-relative PATH (`sub/alice.pub`) and return its user."""
    full = f"keydir/{path}"
    if not KEYFILE_PATT.match(full) or ".." in path or "//" in path:
        raise InvalidKey(f"{full}: not a valid key file name")
    return keydir_user(path)


def keyfile_stem_for(name: str) -> str:
    """Validate NAME as given to `admin add-key` (`alice`, `alice@laptop`,
    `carol@example.com`) and return it as a keydir file stem."""
    if not name or "/" in name or not USERNAME_PATT.match(name) or name.endswith("@"):
        raise InvalidKey(f"{name!r} is not a valid user name")
    return name


def write_keypair(private_path, kind: str = "ed25519", comment: str = "") -> PublicKey:
    """Generate a key pair in OpenSSH format: PRIVATE_PATH (mode 0600) and PRIVATE_PATH.pub.

    Used for host keys and the worker key. paramiko cannot generate ed25519 keys, so this
    uses `cryptography` (paramiko's own backend); paramiko and OpenSSH both read the result.
    """
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    priv: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if kind == "ed25519":
        priv = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        priv = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"cannot generate {kind} keys")
    pem = priv.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    pub = priv.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    if comment:
        pub = f"{pub} {comment}"
    private_path = os.fspath(private_path)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(private_path + ".pub", "w") as f:
        f.write(pub + "\n")
    return parse(pub)
