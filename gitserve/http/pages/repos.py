"""The repository pages: the list (`/`) and one repository (`/r/NAME`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gitserve import adminrepo, repos

from gitserve.lfs import pointers
from gitserve.lfs.repo import store_for

from .base import Pages, ssh_host_port, visitor, when

README_NAMES = ("readme", "readme.md", "readme.txt", "readme.rst", "readme.markdown")
README_MAX = 256 * 1024
COMMITS = 20
FILES_MAX = 500  # top-level entries listed on a repository page


class RepoPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.settings = pages.settings

    def base_url(self, request: Request) -> str:
        if self.settings.http.public_url:
            return self.settings.http.public_url.rstrip("/")
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return f"{'https' if visitor(request).client.https else 'http'}://{host}"

    def ssh_url(self, name: str) -> str:
        s = self.settings.server
        host, port = ssh_host_port(self.settings)  # public_port too: what users reach
        if ":" in host:
            host = f"[{host}]"
        if port == 22:
            return f"{s.ssh_user}@{host}:{name}.git"
        return f"ssh://{s.ssh_user}@{host}:{port}/{name}.git"

    def index(self, request: Request) -> Response:
        v = visitor(request)
        state = adminrepo.current(self.settings)
        r = self.pages.redis()
        rows = []
        for name in repos.list_names(self.settings):
            if not self.pages.can(state, name, v.acts_as):
                continue
            rows.append({"name": name, "description": repos.description(self.settings, name),
                         "build": _last_build(r, name)})
        return self.pages.page("index.html", v, repos=rows, redis_ok=r is not None)

    def repo(self, request: Request) -> Response:
        v = visitor(request)
        state = adminrepo.current(self.settings)
        try:
            name = repos.parse_repo_arg(request.path_params["name"])
        except repos.RepoError:
            name = ""
        if not name or not self.pages.can(state, name, v.acts_as):
            return self.pages.message(v, "Not found", "No such repository, or you may not read it.",
                                      404)
        branches, head_branch, commits, readme, files = _read_repo(repos.path(self.settings,
                                                                              name))
        store = store_for(self.settings, name)
        for f in files:
            if f["lfs"]:
                f["stored"] = store.has(f["oid"], f["size"])
        r = self.pages.redis()
        builds = []
        if r is not None:
            from buildqueue import records

            for build_id in records.list_ids(r, name, limit=10):
                try:
                    builds.append(records.get(r, build_id))
                except records.BuildNotFound:
                    continue
        return self.pages.page("repo.html", v, name=name, branches=branches, head=head_branch,
                               commits=commits, readme=readme, builds=builds, files=files,
                               description=repos.description(self.settings, name),
                               ssh_url=self.ssh_url(name),
                               http_url=f"{self.base_url(request)}/{name}.git")


def _last_build(r: Any, repo: str) -> Any:
    if r is None:
        return None
    from buildqueue import records

    try:
        ids = records.list_ids(r, repo, limit=1)
        return records.get(r, ids[0]) if ids else None
    except Exception:  # noqa: BLE001
        return None


def _read_repo(path: Any) -> tuple[list[str], str | None, list[dict[str, str]],
                                   dict[str, str] | None, list[dict[str, Any]]]:
    """(branches, the branch HEAD names, the last COMMITS commits of HEAD, its README, the
    top-level files of HEAD's tree with LFS pointer files marked: real size and oid)."""
    from dulwich.objects import Blob, Commit
    from dulwich.repo import Repo

    repo = Repo(str(path))
    try:
        refs = repo.get_refs()
        branches = sorted(k.decode("utf-8", "replace").removeprefix("refs/heads/")
                          for k in refs if k.startswith(b"refs/heads/"))
        commits = []
        readme = None
        head = None
        files: list[dict[str, Any]] = []
        try:
            head = repo.refs[b"HEAD"]
        except KeyError:
            pass
        if head is not None:
            for entry in repo.get_walker(include=[head], max_entries=COMMITS):
                c: Commit = entry.commit
                commits.append({
                    "sha": c.id.decode(),
                    "subject": c.message.decode("utf-8", "replace").split("\n", 1)[0],
                    "author": c.author.decode("utf-8", "replace").split(" <", 1)[0],
                    "when": when(c.commit_time)})
            tree = repo[repo[head].tree]
            files = _files(path, head)
            for item in tree.items():
                if item.path.decode("utf-8", "replace").lower() in README_NAMES:
                    blob = repo[item.sha]
                    if isinstance(blob, Blob):
                        data = blob.data[:README_MAX]
                        readme = {"name": item.path.decode("utf-8", "replace"),
                                  "text": data.decode("utf-8", "replace")}
                    break
        head_branch = None
        try:
            target = repo.refs.get_symrefs().get(b"HEAD")
            head_branch = target.decode().removeprefix("refs/heads/") if target else None
        except Exception:  # noqa: BLE001
            pass
    finally:
        repo.close()
    return branches, head_branch, commits, readme, files


def _files(path: Any, head: bytes) -> list[dict[str, Any]]:
    """Top-level entries of HEAD's tree; an LFS pointer file is shown with the size and oid
    it stands for (pointers.entries reads only blobs small enough to be one)."""
    import subprocess

    try:
        rows = pointers.entries(path, head.decode(), recursive=False, limit=FILES_MAX)
    except (subprocess.CalledProcessError, OSError):
        return []
    out: list[dict[str, Any]] = []
    for row in rows:
        lfs = row["lfs"]
        entry: dict[str, Any] = {"name": row["path"], "dir": row["kind"] == "tree",
                                 "size": row["size"], "lfs": False}
        if isinstance(lfs, tuple):
            entry.update(lfs=True, oid=lfs[0], size=lfs[1])
        out.append(entry)
    return out
