"""What git clients ask for, each against gitserve (both pack routes) and against git's own
upload-pack/receive-pack behind a private OpenSSH sshd with the settings a careful admin
turns on (AcceptEnv GIT_PROTOCOL, uploadpack.allowFilter, allowReachableSHA1InWant,
transfer.hideRefs = refs/gitserve/, receive.advertisePushOptions).

Every test runs once per side: `gitserve-git`, `gitserve-dulwich` and `native`; a feature
gitserve lacks or gets wrong shows up as a failing test next to a passing `native` one.
Protocol-dependent tests also run with `protocol.version` 0 and 2. Clients: the git CLI,
libgit2 (pygit2) and dulwich's own client.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import shlex
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.bench.servers import NativeSshd, make_client_key
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(900)

SIDES = ("gitserve-git", "gitserve-dulwich", "native")
HIDDEN_REF = "refs/gitserve/builds/secret"
HOOK = """#!/bin/sh
# post-receive of the matrix: show what git gives hooks for push options
echo "GIT_PUSH_OPTION_COUNT=${GIT_PUSH_OPTION_COUNT:-unset}"
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
    eval "echo GIT_PUSH_OPTION_$i=\\$GIT_PUSH_OPTION_$i"
    i=$((i + 1))
done
"""
DENY_HOOK = """#!/bin/sh
# update hook of the native side: the same denied ref as gitserve's conf
case "$1" in refs/heads/denied*) echo "denied by rule" >&2; exit 1 ;; esac
exit 0
"""
CONF = """
repo proj
    RW+ = alice
repo scratch/..*
    C = alice
    - refs/heads/denied = @all
    RW+ = CREATOR
    option build.enable = 1
    option hook.post-receive = showopts
"""
NATIVE_CONFIG = {
    "uploadpack.allowFilter": "true",
    "uploadpack.allowReachableSHA1InWant": "true",
    "transfer.hideRefs": "refs/gitserve/",
    "receive.advertisePushOptions": "true",
}


def run(args: list[str], cwd: Path | str | None = None, env: dict | None = None,
        check: bool = True, input: bytes | str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=timeout,
                            input=input, text=not isinstance(input, bytes), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stderr}")
    return result


@dataclass
class Seed:
    """The history every side serves as `proj` (same shas everywhere)."""

    work: Path
    commits: list[str] = field(default_factory=list)  # main, oldest first
    dates: list[int] = field(default_factory=list)
    feature: str = ""
    hidden: str = ""  # a commit only refs/gitserve/builds/secret reaches
    hidden_blob: str = ""

    def git(self, *args: str) -> str:
        return run(["git", *args], cwd=self.work, env=_seed_env()).stdout.strip()


def _seed_env(date: int | None = None) -> dict[str, str]:
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="seed",
               GIT_AUTHOR_EMAIL="seed@example.com", GIT_COMMITTER_NAME="seed",
               GIT_COMMITTER_EMAIL="seed@example.com")
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{date} +0000"
    return env


def make_seed(base: Path) -> Seed:
    work = base / "seed"
    run(["git", "init", "-q", "-b", "main", str(work)])
    seed = Seed(work)
    rnd = random.Random(13)
    t0 = 1_600_000_000
    for i in range(8):
        date = t0 + i * 86400
        (work / "sub" / "deep").mkdir(parents=True, exist_ok=True)
        (work / "README").write_text(f"readme v{i}\n")
        (work / "sub" / f"a{i % 3}.txt").write_text(f"a {i}\n" * (i + 1))
        (work / "sub" / "deep" / "b.txt").write_text(f"b {i}\n")
        if i in (0, 5):
            (work / "big.bin").write_bytes(rnd.randbytes(8192))
        run(["git", "add", "-A"], cwd=work)
        run(["git", "commit", "-q", "-m", f"commit {i}"], cwd=work, env=_seed_env(date))
        seed.commits.append(seed.git("rev-parse", "HEAD"))
        seed.dates.append(date)
        if i == 3:
            run(["git", "tag", "-a", "-m", "version one", "v1"], cwd=work, env=_seed_env(date))
            run(["git", "tag", "light"], cwd=work)
    run(["git", "checkout", "-q", "-b", "feature", seed.commits[4]], cwd=work)
    (work / "feature.txt").write_text("feature\n")
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "-m", "feature"], cwd=work, env=_seed_env(t0 + 10 * 86400))
    seed.feature = seed.git("rev-parse", "HEAD")
    run(["git", "checkout", "-q", "-b", "hidden", "main"], cwd=work)
    (work / "secret.txt").write_text("only a hidden ref reaches this\n")
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "-m", "hidden"], cwd=work, env=_seed_env(t0 + 11 * 86400))
    seed.hidden = seed.git("rev-parse", "HEAD")
    seed.hidden_blob = seed.git("rev-parse", "HEAD:secret.txt")
    run(["git", "checkout", "-q", "main"], cwd=work)
    return seed


@dataclass
class Side:
    """One server as a client sees it: URLs, the client environment, fresh writable repos."""

    name: str
    base: Path
    url_of: Any
    ssh_command: str
    new_repo_fn: Any
    server: Any = None
    counter: itertools.count = field(default_factory=itertools.count)

    def env(self, **extra: str) -> dict[str, str]:
        home = self.base / "client-home"
        home.mkdir(exist_ok=True)
        env = _seed_env()
        env.update({"HOME": str(home), "GIT_TERMINAL_PROMPT": "0",
                    "GIT_SSH_COMMAND": self.ssh_command})
        env.pop("SSH_AUTH_SOCK", None)
        env.pop("GIT_PROTOCOL", None)
        env.update(extra)
        return env

    def url(self, repo: str = "proj") -> str:
        return self.url_of(repo)

    def git(self, *args: str, cwd: Path | str | None = None, check: bool = True,
            protocol: str | None = None, env: dict | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        pre = ["-c", f"protocol.version={protocol}"] if protocol else []
        return run(["git", *pre, *args], cwd=cwd, env={**self.env(), **(env or {})},
                   check=check, input=input)

    def tmp(self, what: str) -> Path:
        (self.base / "work").mkdir(exist_ok=True)
        return self.base / "work" / f"{what}-{next(self.counter)}"

    def new_repo(self) -> str:
        """A fresh empty writable repo (with the push-options hook); returns its name."""
        return self.new_repo_fn(f"scratch/r{next(self.counter)}")

    @property
    def native(self) -> bool:
        return self.name == "native"


def _native_side(base: Path, seed: Seed) -> Side:
    require_tool("sshd")
    repos = base / "native-repos"
    (repos / "scratch").mkdir(parents=True)
    key = make_client_key(base)
    server = NativeSshd(base, repos, key)
    server.start()

    def init(name: str) -> str:
        path = repos / f"{name}.git"
        run(["git", "init", "-q", "--bare", "-b", "main", str(path)])
        for k, v in NATIVE_CONFIG.items():
            run(["git", "--git-dir", str(path), "config", k, v])
        for hook, text in (("post-receive", HOOK), ("update", DENY_HOOK)):
            (path / "hooks" / hook).write_text(text)
            (path / "hooks" / hook).chmod(0o755)
        return name

    init("proj")
    proj = str(repos / "proj.git")
    run(["git", "push", "-q", proj, "main", "feature", "--tags", "hidden:hidden"],
        cwd=seed.work, env=_seed_env())
    run(["git", "--git-dir", proj, "update-ref", HIDDEN_REF, seed.hidden])
    run(["git", "--git-dir", proj, "update-ref", "-d", "refs/heads/hidden"])
    return Side("native", base, server.url, _ssh(key, server.port), init, server)


def _ssh(key: Path, port: int) -> str:
    return " ".join(["ssh", "-F", "/dev/null", "-p", str(port), "-i", shlex.quote(str(key)),
                     "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])


def _gitserve_side(factory: Any, base: Path, seed: Seed, backend: str) -> Side:
    srv = factory(settings={"server": {"pack_backend": backend}}, users=("alice",))
    hooks = srv.settings.hooks_dir
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "showopts").write_text(HOOK)
    (hooks / "showopts").chmod(0o755)
    srv.set_conf(CONF)  # a conf naming a hook is refused until the hook exists
    side = Side(f"gitserve-{backend}", base, srv.url, _ssh(srv.key_for("alice"), srv.port),
                lambda name: name, srv)
    run(["git", "push", "-q", srv.url("proj"), "main", "feature", "--tags", "hidden:hidden"],
        cwd=seed.work, env=side.env())
    bare = srv.repo_path("proj")
    run(["git", "--git-dir", str(bare), "update-ref", HIDDEN_REF, seed.hidden])
    run(["git", "--git-dir", str(bare), "update-ref", "-d", "refs/heads/hidden"])
    return side


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    require_tool("git")
    return make_seed(tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def sides(seed: Seed, gitserve_module_factory: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Any:
    made: dict[str, Side] = {}

    def get(name: str) -> Side:
        if name not in made:
            base = tmp_path_factory.mktemp(name)
            if name == "native":
                made[name] = _native_side(base, seed)
            else:
                made[name] = _gitserve_side(gitserve_module_factory, base, seed,
                                            name.split("-", 1)[1])
        return made[name]

    yield get
    for side in made.values():
        if side.native:
            side.server.stop()


@pytest.fixture(params=SIDES)
def side(request: pytest.FixtureRequest, sides: Any) -> Side:
    return sides(request.param)


def count(side: Side, repo: Path, rev: str = "HEAD") -> int:
    return int(side.git("rev-list", "--count", rev, cwd=repo).stdout)


def missing_objects(side: Side, repo: Path, *revs: str) -> set[str]:
    return objects(side, repo, *revs)[1]


def objects(side: Side, repo: Path, *revs: str) -> tuple[set[str], set[str]]:
    """(present, missing) objects reachable from REVS (--all), as the clone sees them."""
    out = side.git("rev-list", "--objects", "--missing=print", *(revs or ("--all",)),
                   cwd=repo).stdout
    present, missing = set(), set()
    for line in out.splitlines():
        if line.startswith("?"):
            missing.add(line[1:].split()[0])
        elif line:
            present.add(line.split()[0])
    return present, missing


def _trace(side: Side, tmp: Path, *args: str, protocol: str | None = None,
           cwd: Path | None = None, check: bool = True) -> tuple[subprocess.CompletedProcess, str]:
    trace = tmp.with_suffix(".trace")
    result = side.git(*args, protocol=protocol, cwd=cwd, check=check,
                      env={"GIT_TRACE_PACKET": str(trace)})
    return result, trace.read_text() if trace.exists() else ""


# --- protocol versions ----------------------------------------------------------------

def test_v2_is_what_git_negotiates_by_default(side: Side) -> None:
    result, trace = _trace(side, side.tmp("v2"), "ls-remote", side.url())
    assert "< version 2" in trace
    assert "command=ls-refs" in trace
    assert "refs/heads/main" in result.stdout


@pytest.mark.parametrize("version", ["0", "1"])
def test_v0_and_v1_still_served(side: Side, seed: Seed, version: str) -> None:
    dest = side.tmp("v0")
    _, trace = _trace(side, dest, "clone", "-q", side.url(), str(dest), protocol=version)
    assert "< version 2" not in trace
    assert ("< version 1" in trace) == (version == "1")
    assert side.git("rev-parse", "HEAD", cwd=dest).stdout.strip() == seed.commits[-1]


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_ls_remote_symref_and_peeled_tags(side: Side, seed: Seed, protocol: str) -> None:
    out = side.git("ls-remote", "--symref", side.url(), protocol=protocol).stdout
    assert "ref: refs/heads/main\tHEAD" in out
    lines = dict(reversed(line.split("\t")) for line in out.splitlines()
                 if not line.startswith("ref:"))
    assert lines["refs/tags/v1^{}"] == seed.commits[3]
    assert lines["refs/heads/feature"] == seed.feature


def test_ls_refs_ref_prefix_filters_on_the_server(side: Side) -> None:
    result, trace = _trace(side, side.tmp("prefix"), "ls-remote", "--tags", side.url())
    assert "ref-prefix refs/tags/" in trace
    assert "refs/heads/main" not in trace  # the server never sent it
    assert {line.split("\t")[1] for line in result.stdout.splitlines()} == \
        {"refs/tags/light", "refs/tags/v1", "refs/tags/v1^{}"}


def test_unborn_head_of_an_empty_repo(side: Side) -> None:
    repo = side.new_repo()
    dest = side.tmp("empty")
    result = side.git("clone", side.url(repo), str(dest))
    assert "empty repository" in result.stderr
    assert side.git("symbolic-ref", "HEAD", cwd=dest).stdout.strip() == "refs/heads/main"


# --- hidden refs and wants by id --------------------------------------------------------

@pytest.mark.parametrize("protocol", ["0", "2"])
def test_hidden_refs_are_never_advertised(side: Side, protocol: str) -> None:
    out = side.git("ls-remote", side.url(), protocol=protocol).stdout
    assert "refs/gitserve" not in out
    assert "refs/heads/main" in out


@pytest.mark.parametrize("protocol", ["0", "2"])
@pytest.mark.parametrize("name", ["gitserve-git", "gitserve-dulwich"])
def test_object_only_reachable_from_a_hidden_ref_cannot_be_fetched_by_id(
        sides: Any, seed: Seed, protocol: str, name: str) -> None:
    """gitserve only: native upload-pack with allowReachableSHA1InWant serves an object
    reachable from a transfer.hideRefs ref (the matrix showed it), gitserve must not."""
    side = sides(name)
    dest = side.tmp("byid")
    side.git("init", "-q", str(dest))
    for sha in (seed.hidden, seed.hidden_blob):
        result = side.git("fetch", side.url(), sha, cwd=dest, protocol=protocol, check=False)
        assert result.returncode != 0, result.stderr
        assert "not our ref" in result.stderr
    assert side.git("cat-file", "-e", seed.hidden, cwd=dest, check=False).returncode != 0


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_fetch_by_id_of_a_reachable_commit(side: Side, seed: Seed, protocol: str) -> None:
    dest = side.tmp("reach")
    side.git("init", "-q", str(dest))
    side.git("fetch", "-q", side.url(), seed.commits[2], cwd=dest, protocol=protocol)
    assert side.git("cat-file", "-t", seed.commits[2], cwd=dest).stdout.strip() == "commit"


# --- partial clone ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["0", "2"])
def test_blobless_clone_then_lazy_checkout(side: Side, seed: Seed, protocol: str) -> None:
    dest = side.tmp("blobless")
    result = side.git("clone", "--filter=blob:none", "--no-checkout", side.url(), str(dest),
                      protocol=protocol)
    assert "filtering not recognized" not in result.stderr
    missing = missing_objects(side, dest)
    assert seed.git("rev-parse", "main:README") in missing
    assert seed.git("rev-parse", "main") not in missing
    assert seed.git("rev-parse", "main^{tree}") not in missing
    side.git("checkout", "-q", "main", cwd=dest, protocol=protocol)  # lazy fetch
    assert (dest / "README").read_text() == "readme v7\n"


def test_lazy_fetch_of_one_missing_blob(side: Side, seed: Seed) -> None:
    dest = side.tmp("lazy")
    side.git("clone", "-q", "--filter=blob:none", "--no-checkout", side.url(), str(dest))
    old = seed.git("rev-parse", f"{seed.commits[1]}:README")
    assert old in missing_objects(side, dest)
    _, trace = _trace(side, dest, "cat-file", "-p", old, cwd=dest)
    assert f"want {old}" in trace
    assert side.git("cat-file", "-p", old, cwd=dest).stdout == "readme v1\n"


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_blob_limit_filter(side: Side, seed: Seed, protocol: str) -> None:
    dest = side.tmp("limit")
    side.git("clone", "-q", "--filter=blob:limit=1k", "--no-checkout", side.url(), str(dest),
             protocol=protocol)
    missing = missing_objects(side, dest)
    assert seed.git("rev-parse", "main:big.bin") in missing  # 8 KiB
    assert seed.git("rev-parse", "main:README") not in missing
    side.git("checkout", "-q", "main", cwd=dest)
    assert (dest / "big.bin").stat().st_size == 8192


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_tree_depth_filter(side: Side, seed: Seed, depth: int) -> None:
    dest = side.tmp("tree")
    side.git("clone", "-q", f"--filter=tree:{depth}", "--no-checkout", side.url(), str(dest))
    present, missing = objects(side, dest, "main")
    # git's depth: the root tree is 0, its entries 1; tree:D omits everything at depth >= D
    # (a missing tree's entries are unknown to the clone: neither present nor missing)
    at_depth = {0: ["main^{tree}"], 1: ["main:sub", "main:README"],
                2: ["main:sub/deep", "main:sub/a0.txt"]}
    for d, names in at_depth.items():
        for name in names:
            sha = seed.git("rev-parse", name)
            if d < depth:
                assert sha in present, (name, depth)
            elif d == depth:
                assert sha in missing, (name, depth)
            else:
                assert sha not in present, (name, depth)
    side.git("checkout", "-q", "main", cwd=dest)
    assert (dest / "sub" / "deep" / "b.txt").read_text() == "b 7\n"


# --- shallow ----------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["0", "2"])
def test_depth_then_deepen(side: Side, protocol: str) -> None:
    dest = side.tmp("deepen")
    side.git("clone", "-q", "--depth", "1", side.url(), str(dest), protocol=protocol)
    assert count(side, dest) == 1
    side.git("fetch", "-q", "--deepen", "2", cwd=dest, protocol=protocol)
    assert count(side, dest) == 3
    side.git("fetch", "-q", "--depth", "5", cwd=dest, protocol=protocol)
    assert count(side, dest) == 5
    side.git("fsck", "--no-progress", cwd=dest)


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_shallow_since(side: Side, seed: Seed, protocol: str) -> None:
    dest = side.tmp("since")
    side.git("clone", "-q", f"--shallow-since={seed.dates[5]}", "--single-branch",
             side.url(), str(dest), protocol=protocol)
    assert count(side, dest) == 3  # commits 5, 6, 7
    side.git("fsck", "--no-progress", cwd=dest)


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_shallow_exclude(side: Side, protocol: str) -> None:
    dest = side.tmp("exclude")
    side.git("clone", "-q", "--shallow-exclude=v1", "--single-branch", side.url(), str(dest),
             protocol=protocol)
    assert count(side, dest) == 4  # commits 4..7: v1 is commit 3
    side.git("fsck", "--no-progress", cwd=dest)


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_unshallow(side: Side, seed: Seed, protocol: str) -> None:
    dest = side.tmp("unshallow")
    side.git("clone", "-q", "--depth", "2", side.url(), str(dest), protocol=protocol)
    side.git("fetch", "-q", "--unshallow", cwd=dest, protocol=protocol)
    assert side.git("rev-parse", "--is-shallow-repository", cwd=dest).stdout.strip() == "false"
    assert count(side, dest) == len(seed.commits)
    side.git("fsck", "--no-progress", cwd=dest)


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_fetch_new_commits_into_a_shallow_clone(side: Side, seed: Seed, protocol: str) -> None:
    repo = side.new_repo()
    side.git("push", "-q", side.url(repo), "main", cwd=seed.work)
    shallow = side.tmp("shallow")
    side.git("clone", "-q", "--depth", "1", side.url(repo), str(shallow), protocol=protocol)
    work = side.tmp("pusher")
    side.git("clone", "-q", side.url(repo), str(work))
    (work / "new.txt").write_text("new\n")
    side.git("add", "new.txt", cwd=work)
    side.git("commit", "-q", "-m", "new", cwd=work)
    side.git("push", "-q", "origin", "main", cwd=work)
    side.git("fetch", "-q", cwd=shallow, protocol=protocol)
    assert count(side, shallow, "origin/main") == 2
    side.git("fsck", "--no-progress", cwd=shallow)


# --- progress ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["0", "2"])
def test_server_progress_unless_quiet(side: Side, protocol: str) -> None:
    for n in range(2):  # the second clone of the same tips may come from a cache
        dest = side.tmp("progress")
        err = side.git("clone", "--progress", side.url(), str(dest), protocol=protocol).stderr
        for phrase in ("remote: Counting objects", "remote: Compressing objects",
                       "remote: Total"):
            assert phrase in err, (n, err)
    quiet = side.git("clone", "-q", side.url(), str(side.tmp("quiet")), protocol=protocol)
    assert "remote:" not in quiet.stderr


# --- push -------------------------------------------------------------------------------

def test_push_options_reach_post_receive(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    result = side.git("push", "-o", "ci.skip", "-o", "note=two words", side.url(repo), "main",
                      cwd=seed.work)
    assert "remote: GIT_PUSH_OPTION_COUNT=2" in result.stderr
    assert "remote: GIT_PUSH_OPTION_0=ci.skip" in result.stderr
    assert "remote: GIT_PUSH_OPTION_1=note=two words" in result.stderr
    plain = side.git("push", side.url(repo), "feature", cwd=seed.work)
    # git's client sends the capability whenever the server advertises it: count 0
    assert "remote: GIT_PUSH_OPTION_COUNT=0" in plain.stderr


@pytest.mark.parametrize("protocol", ["0", "1", "2"])
def test_push_with_each_protocol_version(side: Side, seed: Seed, protocol: str) -> None:
    repo = side.new_repo()
    trace = side.tmp("push-trace")
    side.git("push", "-q", side.url(repo), "main", cwd=seed.work, protocol=protocol,
             env={"GIT_TRACE_PACKET": str(trace)})
    assert ("< version 1" in trace.read_text()) == (protocol == "1")  # push has no v2
    assert side.git("ls-remote", side.url(repo), "main").stdout.split()[0] == seed.commits[-1]


def test_mirror_clone_and_push_mirror(side: Side, seed: Seed) -> None:
    mirror = side.tmp("mirror")
    side.git("clone", "-q", "--mirror", side.url(), str(mirror))
    repo = side.new_repo()
    side.git("push", "-q", "--mirror", side.url(repo), cwd=mirror)
    theirs = side.git("ls-remote", side.url(repo)).stdout
    assert f"{seed.feature}\trefs/heads/feature" in theirs
    assert "refs/tags/v1^{}" in theirs
    assert "refs/gitserve" not in theirs


def test_force_with_lease(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    side.git("push", "-q", side.url(repo), "main", cwd=seed.work)
    work = side.tmp("lease")
    side.git("clone", "-q", side.url(repo), str(work))
    side.git("reset", "-q", "--hard", "HEAD~1", cwd=work)
    stale = side.git("push", f"--force-with-lease=main:{seed.commits[0]}", "origin",
                     "HEAD:main", cwd=work, check=False)
    assert stale.returncode != 0 and "stale info" in stale.stderr
    side.git("push", "-q", "--force-with-lease", "origin", "HEAD:main", cwd=work)
    assert side.git("ls-remote", side.url(repo), "refs/heads/main").stdout.split()[0] == \
        seed.commits[-2]


def test_atomic_push_with_a_denied_ref(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    result = side.git("push", "--atomic", side.url(repo), "main", "main:denied",
                      cwd=seed.work, check=False)
    assert result.returncode != 0
    assert "hook declined" in result.stderr or "atomic" in result.stderr
    assert side.git("ls-remote", side.url(repo)).stdout.strip() == ""


def test_thin_pack_push_and_tag_following(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    side.git("push", "-q", side.url(repo), "main", cwd=seed.work)
    a, b = side.tmp("thin-a"), side.tmp("thin-b")
    side.git("clone", "-q", side.url(repo), str(a))
    side.git("clone", "-q", side.url(repo), str(b))
    (a / "README").write_text("readme v7\nplus a line\n")  # a delta against the old blob
    side.git("commit", "-q", "-am", "thin", cwd=a)
    side.git("tag", "-a", "-m", "two", "v2", cwd=a)
    side.git("push", "--thin", "origin", "main", "v2", cwd=a)
    side.git("fetch", "-q", "origin", cwd=b)  # follows v2: it points into fetched history
    assert side.git("rev-parse", "v2^{commit}", cwd=b).stdout.strip() == \
        side.git("rev-parse", "HEAD", cwd=a).stdout.strip()


def test_branch_at_existing_commit_delete_and_prune(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    side.git("push", "-q", side.url(repo), "main", cwd=seed.work)
    work = side.tmp("branch")
    side.git("clone", "-q", side.url(repo), str(work))
    side.git("push", "-q", "origin", f"{seed.commits[2]}:refs/heads/old", cwd=work)
    side.git("fetch", "-q", cwd=work)
    assert side.git("rev-parse", "origin/old", cwd=work).stdout.strip() == seed.commits[2]
    side.git("push", "-q", side.url(repo), ":old", cwd=seed.work)
    side.git("fetch", "-q", "--prune", cwd=work)
    assert side.git("rev-parse", "-q", "--verify", "origin/old", cwd=work,
                    check=False).returncode != 0


@pytest.fixture(scope="module")
def big_commit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """One commit of a 48 MiB random blob, made once: compressing it is the client's work,
    the same for every side (each side still receives and serves all of it)."""
    work = tmp_path_factory.mktemp("big") / "work"
    run(["git", "init", "-q", "-b", "main", str(work)], env=_seed_env())
    data = random.Random(48).randbytes(48 << 20)
    (work / "big.bin").write_bytes(data)
    run(["git", "add", "big.bin"], cwd=work, env=_seed_env())
    run(["git", "commit", "-q", "-m", "big"], cwd=work, env=_seed_env())
    return work, data


def test_big_random_blob_both_ways(side: Side, big_commit: tuple[Path, bytes]) -> None:
    work, data = big_commit
    repo = side.new_repo()
    side.git("push", "-q", side.url(repo), "main", cwd=work)
    dest = side.tmp("big-clone")
    side.git("clone", "-q", side.url(repo), str(dest))
    assert (dest / "big.bin").read_bytes() == data


def test_three_thousand_tags_in_one_push(side: Side, seed: Seed) -> None:
    repo = side.new_repo()
    work = side.tmp("tags")
    side.git("clone", "-q", str(seed.work), str(work))
    refs = "".join(f"create refs/tags/t{i:04d} {seed.commits[i % 8]}\n" for i in range(3000))
    side.git("update-ref", "--stdin", cwd=work, input=refs)
    side.git("push", "-q", side.url(repo), "main", "--tags", cwd=work)
    tags = side.git("ls-remote", "--tags", side.url(repo)).stdout
    assert sum(1 for line in tags.splitlines() if "refs/tags/t" in line) == 3000


# --- git archive --remote ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "zip"])
def test_archive_with_paths_and_prefix(side: Side, fmt: str) -> None:
    result = subprocess.run(
        ["git", "archive", f"--remote={side.url()}", f"--format={fmt}", "--prefix=p/",
         "main", "sub/deep", "README"],
        capture_output=True, env=side.env(), timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    if fmt == "zip":
        zf = zipfile.ZipFile(io.BytesIO(result.stdout))
        names = {n.rstrip("/") for n in zf.namelist()}
        content = zf.read("p/sub/deep/b.txt")
    else:
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tf:
            names = {n.rstrip("/") for n in tf.getnames()}
            member = tf.extractfile("p/sub/deep/b.txt")
            assert member is not None
            content = member.read()
    files = {n for n in names if "." in n.rsplit("/", 1)[-1] or n.endswith("README")}
    assert files == {"p/README", "p/sub/deep/b.txt"}
    assert content == b"b 7\n"


def test_archive_of_a_missing_path_fails(side: Side) -> None:
    result = subprocess.run(["git", "archive", f"--remote={side.url()}", "main", "nope"],
                            capture_output=True, env=side.env(), timeout=60, check=False)
    assert result.returncode != 0
    assert b"did not match any files" in result.stderr


def _raw_archive(side: Side, args: list[str]) -> bytes:
    """upload-archive spoken by hand: what a hostile client could send git would not."""
    from dulwich.protocol import pkt_line

    data = b"".join(pkt_line(f"argument {a}".encode()) for a in args) + b"0000"
    url = side.url()
    hostport, path = url[len("ssh://"):].split("/", 1)
    userhost, port = hostport.rsplit(":", 1)
    argv = shlex.split(side.ssh_command) + ["-p", port, userhost,
                                            f"git-upload-archive '/{path}'"]
    return subprocess.run(argv, input=data, capture_output=True, timeout=60,
                          env=side.env(), check=False).stdout


@pytest.mark.parametrize("option", ["--output=OUT", "--remote=/etc", "--exec=touch OUT"])
def test_archive_refuses_option_injection(side: Side, option: str) -> None:
    out_file = side.tmp("injected")
    out = _raw_archive(side, ["--format=tar", option.replace("OUT", str(out_file)), "main"])
    # refused up front (NACK) or by the archiver (error band): never an archive
    assert out.startswith(b"0") and (b"NACK" in out or b"\x03" in out), out
    assert b"ustar" not in out
    assert not out_file.exists()


# --- other clients ----------------------------------------------------------------------

def test_libgit2_clone_over_ssh(side: Side, seed: Seed) -> None:
    import pygit2

    key = Path(shlex.split(side.ssh_command)[shlex.split(side.ssh_command).index("-i") + 1])
    user = side.url().split("://", 1)[1].split("@", 1)[0]

    class Callbacks(pygit2.RemoteCallbacks):
        def credentials(self, url, username_from_url, allowed_types):
            return pygit2.Keypair(username_from_url or user, f"{key}.pub", str(key), "")

        def certificate_check(self, certificate, valid, host):
            return True

    dest = side.tmp("libgit2")
    repo = pygit2.clone_repository(side.url(), str(dest), callbacks=Callbacks())
    assert str(repo.head.target) == seed.commits[-1]
    assert (dest / "README").read_text() == "readme v7\n"


def test_dulwich_client_clone_over_ssh(side: Side, seed: Seed) -> None:
    from dulwich import porcelain
    from dulwich.client import SSHGitClient

    words = shlex.split(side.ssh_command)
    url = side.url()
    hostport, path = url[len("ssh://"):].split("/", 1)
    userhost, port = hostport.rsplit(":", 1)
    user, host = userhost.split("@")
    client = SSHGitClient(host, port=int(port), username=user,
                          ssh_command=" ".join(shlex.quote(w) for w in words))
    dest = side.tmp("dulwich")
    old = dict(os.environ)
    try:
        os.environ.update(side.env())
        result = client.fetch(f"/{path}", porcelain.init(str(dest), bare=True))
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert result.refs[b"refs/heads/main"] == seed.commits[-1].encode()
    assert all(not r.startswith(b"refs/gitserve") for r in result.refs)
