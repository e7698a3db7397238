"""What a build job carries: `BuildPayload`, plain JSON on the rq queue (SPEC §6).

The server makes it (enqueue.py) and a worker on any host reads it: everything the job
needs is in here, so it never reads the server's home. rq stores job arguments with its
JSON serializer, so the payload goes in as `to_json()` and comes out through `from_json()`.
The JSON keys are the ones earlier versions wrote and read (a job queued before an upgrade
still runs after it, and a build host one version behind still reads a new job); the
build options travel as their option lines besides, so an option added to
`gitserve.options.BuildOptions` reaches the job without touching this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitserve.options import BuildOptions


@dataclass(frozen=True)
class DeployOrder:
    """A build of the ref that goes live: the site, where its output is, and the repo's
    deploy.* lines as written. The deploy judges the lines strictly where it runs (the
    server host, against its [deploy] settings), so a bad one fails the deploy step with
    its own line, not the push."""

    site: str
    dir: str  # the build output to publish, relative to the checkout
    lines: Mapping[str, str]  # `deploy.NAME` -> value

    @classmethod
    def from_lines(cls, lines: Mapping[str, str]) -> DeployOrder:
        """From the repo's conf lines (at enqueue)."""
        site = (lines.get("deploy.site") or "").strip()
        given = (lines.get("deploy.dir") or "").strip().strip("/")
        out = given or "public"
        order = {**lines, "deploy.dir": out}
        if given:  # else an empty public/ means: the commit is the release (SPEC §7.1)
            order["deploy.dir_given"] = "1"
        return cls(site, out, order)

    @property
    def dir_given(self) -> bool:
        return self.lines.get("deploy.dir_given") == "1"

    def to_json(self) -> dict[str, str]:
        return {k[len("deploy."):]: str(v) for k, v in self.lines.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DeployOrder | None:
        if not data or not data.get("site"):
            return None
        lines = {f"deploy.{k}": str(v) for k, v in data.items()}
        out = (lines.get("deploy.dir") or "public").strip().strip("/") or "public"
        return cls(str(data["site"]).strip(), out, lines)


@dataclass(frozen=True)
class BuildPayload:
    build_id: str
    repo: str
    ref: str
    old: str
    new: str
    commit: str  # NEW peeled to a commit (a tag push builds the commit it names)
    pusher: str
    mode: str
    build: BuildOptions
    fetch_ref: str  # the hidden ref pinning the commit while the build needs it
    local_path: str  # the repository on the server host ("" when unknown)
    clone_url: str  # where a build host fetches it over ssh
    secrets: dict[str, str] = field(default_factory=dict)  # Fernet tokens, never values
    log_ttl: int = 0
    deploy: DeployOrder | None = None
    sandbox: dict[str, Any] | None = None  # gitserve.sandbox.Policy.to_payload()
    per_repo: int = 0  # [builds] per_repo: builds of one repo running at once (0: the default)
    pushed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id, "repo": self.repo, "ref": self.ref, "old": self.old,
            "new": self.new, "commit": self.commit, "pusher": self.pusher, "mode": self.mode,
            "script": self.build.script, "timeout": self.build.timeout,
            "build": self.build.lines(),
            "fetch_ref": self.fetch_ref, "local_path": self.local_path,
            "clone_url": self.clone_url, "secrets": dict(self.secrets), "log_ttl": self.log_ttl,
            "deploy": self.deploy.to_json() if self.deploy else None, "sandbox": self.sandbox,
            "per_repo": self.per_repo, "pushed_at": self.pushed_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildPayload:
        lines = data.get("build")
        if not isinstance(lines, dict):  # queued by a version without "build": its two keys
            lines = {"build.script": str(data.get("script") or ""),
                     "build.timeout": str(data.get("timeout") or "")}
        build, _problems = BuildOptions.read({str(k): str(v) for k, v in lines.items()})
        return cls(
            build_id=str(data["build_id"]), repo=str(data["repo"]), ref=str(data["ref"]),
            old=str(data["old"]), new=str(data["new"]),
            commit=str(data.get("commit") or data["new"]), pusher=str(data["pusher"]),
            mode=str(data.get("mode") or "sync"), build=build,
            fetch_ref=str(data["fetch_ref"]), local_path=str(data.get("local_path") or ""),
            clone_url=str(data.get("clone_url") or ""),
            secrets={str(k): str(v) for k, v in (data.get("secrets") or {}).items()},
            log_ttl=int(data.get("log_ttl") or 0), deploy=DeployOrder.from_json(data.get("deploy")),
            sandbox=data.get("sandbox"), per_repo=int(data.get("per_repo") or 0),
            pushed_at=data.get("pushed_at"),
        )
