"""A release on its way from the server to a deploy agent.

Server: the build output (already extracted and checked by the deploy job) is packed once
into HOME/agents/releases/SITE/RELEASE.tar.gz (deploy.safetree: no link out of the tree
gets in) with its sha256; the HTTP face serves it to the site's agents only, and the file
goes when the deploy ends. Agent: the download is streamed to disk with a size ceiling,
its sha256 and size must be the ones in the signed job, and it is extracted by tarfile's
`data` filter rules (buildqueue/safetar.py, also on Debian's 3.11.2) before the local
publish copies it once more through O_NOFOLLOW descriptors.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from buildqueue import safetar
from gitserve.fsutil import atomic_write
from gitserve.settings import Settings

from .. import safetree
from ..errors import DeployError
from ..options import check_release_id, check_site_name
from .auth import fetch_headers

MAX_BYTES = 256 * 1024 * 1024   # as a build's deploy artifact (buildqueue/deploy_job.py)
FETCH_TIMEOUT = 60.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class Stored:
    path: Path
    sha256: str
    size: int


def url_path(site: str, release: str) -> str:
    return f"/-/agents/releases/{check_site_name(site)}/{check_release_id(release)}.tar.gz"


def store_dir(settings: Settings, site: str) -> Path:
    return settings.home / "agents" / "releases" / check_site_name(site)


def stored_path(settings: Settings, site: str, release: str) -> Path:
    return store_dir(settings, site) / f"{check_release_id(release)}.tar.gz"


def store(settings: Settings, site: str, release: str, output_dir: Path) -> Stored:
    """Pack OUTPUT_DIR as SITE's RELEASE for the agents to fetch."""
    data = safetree.pack(Path(output_dir), ".", "publish")
    if len(data) > MAX_BYTES:
        raise DeployError("publish", f"release is {len(data) >> 20} MiB packed, over the agents' "
                          f"limit of {MAX_BYTES >> 20} MiB")
    path = stored_path(settings, site, release)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data, mode=0o600)
    return Stored(path, hashlib.sha256(data).hexdigest(), len(data))


def discard(settings: Settings, site: str, release: str) -> None:
    stored_path(settings, site, release).unlink(missing_ok=True)


def clean_stale(settings: Settings, site: str) -> None:
    """Files a killed deploy left (the site's lock is held: none is in use)."""
    d = store_dir(settings, site)
    if d.is_dir():
        for p in d.iterdir():
            p.unlink(missing_ok=True)


def fetch(base_url: str, key: bytes, agent: str, site: str, release: str, sha256: str,
          size: int, dest: Path) -> Path:
    """Download SITE's RELEASE from the server into DEST (a new directory) and extract it;
    returns the extracted tree. DeployError('fetch', ...) on any mismatch."""
    path = url_path(site, release)
    if size > MAX_BYTES:
        raise DeployError("fetch", f"release of {size} bytes is over the limit of {MAX_BYTES}")
    dest.mkdir(parents=True, mode=0o700)
    archive = dest / "release.tar.gz"
    req = urllib.request.Request(base_url.rstrip("/") + path, headers=fetch_headers(key, agent, path))
    digest = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT) as resp, open(archive, "wb") as out:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > size:
                    raise DeployError("fetch", f"the server sent more than the {size} bytes signed for")
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DeployError("fetch", f"GET {path} from {base_url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeployError("fetch", f"GET {path} from {base_url}: {reason}") from None
    if got != size or digest.hexdigest() != sha256:
        raise DeployError("fetch", f"release {release} does not match its sha256 "
                          f"(got {got} bytes, sha256 {digest.hexdigest()[:16]}...)")
    tree = dest / "tree"
    tree.mkdir()
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            safetar.extract_all(tar, tree)
    except (safetar.UnsafeMember, tarfile.TarError, OSError) as exc:
        raise DeployError("fetch", f"release {release} refused: {exc}") from None
    finally:
        archive.unlink(missing_ok=True)
    return tree


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
