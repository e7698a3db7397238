"""Server side of a push: which ref updates build, and queueing their jobs.

Runs in the SSH server (or the CLI for `builds retry`), which has the repository on disk:
it checks that the pushed commit contains the build script, pins the commit under the
hidden ref refs/gitserve/builds/ID (so a worker can fetch it even before the branch
moves, as gate builds need), and puts a self-contained JSON payload on the RQ queue.
"""

from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from dulwich.objects import Blob, Commit, Tag
from dulwich.repo import Repo
from rq.callbacks import Callback

from gitserve import repos
from gitserve.options import RepoOptions, enabled
from gitserve.sandbox import Policy, SandboxError
from gitserve.secrets import store as secretstore
from gitserve.secrets.crypt import MAC_FIELD, SecretError, check_job, sign_job
from gitserve.settings import Settings

from . import ending, keys, logs, records, rqconn
from .payload import BuildPayload, DeployOrder

HIDDEN_PREFIX = "refs/gitserve/builds/"


def hidden_ref(build_id: str) -> str:
    return HIDDEN_PREFIX + build_id


def ref_matches(ref: str, refexes: Iterable[str]) -> bool:
    """Gitolite refex semantics: prefix-anchored regexes, refs/heads/ implied."""
    for refex in refexes:
        if not refex.startswith("refs/"):
            refex = "refs/heads/" + refex
        try:
            if re.match(refex, ref):
                return True
        except re.error:
            if ref.startswith(refex):
                return True
    return False


def peel(repo_path: Path, sha: str) -> str | None:
    """The commit SHA names (through annotated tags), or None if it is no commit."""
    repo = Repo(str(repo_path))
    try:
        obj = repo[sha.encode()]
        for _ in range(20):
            if not isinstance(obj, Tag):
                break
            obj = repo[obj.object[1]]
        return obj.id.decode() if isinstance(obj, Commit) else None
    except (KeyError, ValueError):
        return None
    finally:
        repo.close()


def commit_has_file(repo_path: Path, sha: str, path: str) -> bool:
    """Does the commit SHA names (a commit or an annotated tag) hold a file at PATH?"""
    if not path or ".." in path.split("/"):
        return False
    commit_sha = peel(repo_path, sha)
    if commit_sha is None:
        return False
    repo = Repo(str(repo_path))
    try:
        commit = repo[commit_sha.encode()]
        tree = repo[commit.tree]
        _mode, obj_id = tree.lookup_path(repo.object_store.__getitem__, path.encode())
        return isinstance(repo[obj_id], Blob)
    except (KeyError, NotADirectoryError):
        return False
    finally:
        repo.close()


def commit_exists(repo_path: Path, sha: str) -> bool:
    repo = Repo(str(repo_path))
    try:
        return isinstance(repo.object_store[sha.encode()], Commit)
    except (KeyError, ValueError):
        return False
    finally:
        repo.close()


def ssh_host_port(settings: Settings) -> tuple[str, int]:
    host, port = settings.listen_host_port()
    if settings.server.public_port:  # e.g. 22 when users come in through the system sshd
        port = settings.server.public_port
    if settings.server.public_host:
        host = settings.server.public_host
    elif host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return host, port


def clone_url(settings: Settings, repo: str) -> str:
    host, port = ssh_host_port(settings)
    if ":" in host:
        host = f"[{host}]"
    return f"ssh://{settings.server.ssh_user}@{host}:{port}/{repo}.git"


def follow_command(settings: Settings, build_id: str) -> str:
    """The real ssh command line that tails a build on this server."""
    host, port = ssh_host_port(settings)
    argv = ["ssh"] + (["-p", str(port)] if port != 22 else [])
    argv += [f"{settings.server.ssh_user}@{host}", "builds", "log", build_id, "--follow"]
    return shlex.join(argv)


def queued_line(settings: Settings, build_id: str) -> str:
    return f"build {build_id} queued: {follow_command(settings, build_id)}"


def deploy_order(options: RepoOptions, ref: str, default_ref: str | None) -> DeployOrder | None:
    """What a build of REF deploys, or None when it must not go live: the repo has no
    site, or REF is not its deploy.ref (default: DEFAULT_REF, the branch pinned when the
    site was configured, never HEAD), so a feature branch that builds never replaces the
    live site, whoever moved HEAD; with deploy.previews it goes live as a preview."""
    if not options.site_name:
        return None
    lines = options.deploy_lines()
    if ref != options.deploy_ref(default_ref):
        # another branch goes live only as a preview at BRANCH.SERVER_NAME (SPEC §7.1)
        if not previews_enabled(options.raw) or not ref.startswith("refs/heads/"):
            return None
        lines["deploy.preview"] = ref[len("refs/heads/"):]
    return DeployOrder.from_lines(lines)


def previews_enabled(options: Mapping[str, str]) -> bool:
    return enabled(options.get("deploy.previews"))



def _options_doc(build: records.Build) -> dict[str, Any]:
    return {"build_id": build.id, "repo": build.repo, "ref": build.ref, "old": build.old,
            "new": build.new, "options": dict(build.options)}


def options_mac(key_file: Path, build: records.Build) -> str:
    """The server's signature over BUILD's id, repo, ref, commits and options, kept in its
    record: the notify targets of its build and deploy events, and what `builds retry`
    rebuilds, are taken from there (Redis), so they must be what the server wrote."""
    return str(sign_job(_options_doc(build), key_file)[MAC_FIELD])


def options_signed(key_file: Path | None, build: records.Build) -> bool:
    try:
        check_job({**_options_doc(build), MAC_FIELD: build.options_mac}, key_file)
    except SecretError:
        return False
    return True

def enqueue(
    settings: Settings,
    r: redis.Redis,
    repo_name: str,
    repo_path: Path,
    ref: str,
    old: str,
    new: str,
    pusher: str,
    options: RepoOptions,
    mode: str,
    retry_of: str = "",
) -> records.Build:
    """Create the build record, pin the commit, queue the job; raises RedisUnavailable."""
    opts = options.build
    build_id = ""
    try:
        build_id = records.new_id(r)
        build = records.Build(id=build_id, repo=repo_name, ref=ref, old=old, new=new,
                              pusher=pusher, mode=mode, queue=opts.queue, retry_of=retry_of,
                              options=dict(options.raw))
        build.options_mac = options_mac(settings.secrets_key_file, build)
        repo = Repo(str(repo_path))
        try:
            repo.refs[hidden_ref(build_id).encode()] = new.encode()
        finally:
            repo.close()
        build.job_id = keys.build_job(build_id)
        dropped = records.create(r, build, settings.builds.history)
        try:
            tokens = secretstore.build_tokens(settings, repo_name, ref)
        except SecretError as exc:  # Vault down: the build fails at once, with one clear line
            drop_hidden_refs(repo_path, [build_id, *dropped])
            reason = f"secrets: {exc}"
            ending.finish(r, build_id, "failed", reason, log_ttl=settings.builds.log_ttl,
                          last_line=f"gitserve: {reason}")
            return records.get(r, build_id)
        try:
            policy, policy_warnings = Policy.for_repo(settings.builds, dict(options.raw))
        except SandboxError as exc:  # a bad [builds] limit: the build fails with its line
            drop_hidden_refs(repo_path, [build_id, *dropped])
            ending.finish(r, build_id, "failed", str(exc), log_ttl=settings.builds.log_ttl,
                          last_line=f"gitserve: {exc}")
            return records.get(r, build_id)
        for warning in policy_warnings:
            logs.append(r, build_id, warning)
        payload = BuildPayload(
            build_id=build_id, repo=repo_name, ref=ref, old=old, new=new,
            commit=peel(repo_path, new) or new, pusher=pusher, mode=mode, build=opts,
            fetch_ref=hidden_ref(build_id), local_path=str(repo_path),
            clone_url=clone_url(settings, repo_name), secrets=tokens,
            log_ttl=settings.builds.log_ttl,
            deploy=deploy_order(options, ref, repos.deploy_default(settings, repo_path)),
            sandbox=policy.to_payload(), per_repo=settings.builds.per_repo,
        )
        # signed: a worker runs only jobs this server's secrets.key vouches for
        job = sign_job(payload.to_json(), settings.secrets_key_file)
        rqconn.queue(r, opts.queue).enqueue(
            "buildqueue.jobs.run_build", job, job_id=build.job_id, job_timeout=-1,
            on_stopped=Callback("buildqueue.jobs.stopped"),
            result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
            description=f"build {build_id} {repo_name} {ref}",
        )
    except (redis.RedisError, OSError) as exc:
        if build_id:  # half-queued: never leave a pinned commit or a build nobody will run
            drop_hidden_refs(repo_path, [build_id])
            try:
                ending.finish(r, build_id, "failed", "could not be queued")
            except (redis.RedisError, OSError):
                pass
        raise rqconn.RedisUnavailable(f"Redis unreachable: {rqconn.one_line(exc)}") from exc
    drop_hidden_refs(repo_path, dropped)
    return build


def drop_hidden_refs(repo_path: Path, build_ids: list[str]) -> None:
    if not build_ids:
        return
    repo = Repo(str(repo_path))
    try:
        for build_id in build_ids:
            try:
                del repo.refs[hidden_ref(build_id).encode()]
            except KeyError:
                pass
    finally:
        repo.close()
