"""Failover: `gitserve mirror promote` makes this slave the master of every repo it
mirrors, and the other slaves accept the admin repo that says so.

promote, on the slave that takes over (its server may be running):
1. ask every other peer its seq per repo (`mirror state`); the master may be dead;
2. for each repo, if a survivor has a higher seq than this host, fetch its refs exactly
   (`git fetch --prune`): with `mirror.sync = N` an acknowledged push is on at least one
   survivor, and the highest seq is the newest state the old master sent anyone;
   gitolite-admin first, so the rules used below are the newest too;
3. rewrite the admin conf: in every `repo` block whose slaves list this host,
   `option mirror.master = OLD` becomes this host, and this host's place in the slaves
   list goes to OLD (it is a slave when it comes back); one commit on the admin branch;
4. push gitolite-admin to the other slaves now; they take it from this host, although
   their rules still name OLD, because the pushed tree itself names this host the master
   and them its slaves (`check_admin_push`); everything else follows by the catch-up loop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from dulwich.objects import Commit
from dulwich.repo import Repo

from gitserve import adminrepo as admin, repos
from gitserve.adminrepo.writer import commit_change
from gitserve.settings import Settings

from . import state
from .config import COPY, MirrorError, RepoMirror, repo_mirror
from .syncer import mirror_of, push_one
from .transport import Transport

_BLOCK_RE = re.compile(r"^\s*repo\s")
_MASTER_RE = re.compile(r"^(?P<pre>\s*option\s+mirror\.master\s*=\s*)(?P<val>\S+)(?P<post>\s*)$")
_SLAVES_RE = re.compile(r"^(?P<pre>\s*option\s+mirror\.(?:slaves|copies)\S*\s*=\s*)(?P<val>.*?)"
                        r"(?P<post>\s*)$")


def may_announce(hostname: str, repo: str, mirror: RepoMirror, sender: str) -> bool:
    """A slave of the admin repo may push it here when the tree makes it the master."""
    return repo == repos.ADMIN_REPO and mirror.mode(hostname) == COPY and sender in mirror.copies


def check_admin_push(repo: Repo, sha: str, hostname: str, sender: str,
                     current: RepoMirror,
                     master_answers: Callable[[str], bool] | None = None) -> str | None:
    """None when SENDER may set the admin branch to SHA here: it is the master now, or SHA
    is exactly the commit `promote` on SENDER makes: one commit on top of this host's admin
    tip, the same tree but for conf/ files rewritten by `rewrite_conf(text, SENDER)`, naming
    SENDER the master of gitolite-admin and this host one of its slaves. Anything more (a key,
    a rule, an older tip) would let one slave's key rule every other slave, which Gitolite
    never lets a slave do; a slave that missed the master's last admin change takes the new
    master's admin with `gitserve mirror rejoin NEW-MASTER` instead.

    And only while the current master does not answer (MASTER_ANSWERS asks it): taking the
    promotion makes SENDER this host's master, whose next admin push may carry anything, so a
    slave's key alone (stolen, or the slave compromised) must not be able to take the other
    slaves from a master that is alive. A promotion while it runs is an admin's decision
    here: `gitserve mirror rejoin SENDER`."""
    if current.master == sender:
        return None
    refused = f"{hostname}: '{sender}' is not the master for '{repos.ADMIN_REPO}'"
    try:
        obj = repo[sha.encode()]
        if not isinstance(obj, Commit):
            return refused
        rules, _entries, _warnings = admin.build(admin.tree_files(repo, obj.tree), hostname)
        proposed = repo_mirror(rules.options(repos.ADMIN_REPO))
        if proposed.master != sender or hostname not in proposed.copies:
            return refused
        tip = repo.refs[admin.ADMIN_BRANCH.encode()]
        if obj.parents != [tip]:
            return (f"{refused} (a promotion is one commit on this host's admin tip; "
                    f"run `gitserve mirror rejoin {sender}` here to take its admin)")
        if not _only_promotion(repo, repo[tip].tree, obj.tree, sender):
            return f"{refused} (a promotion changes only mirror.master and mirror.slaves)"
        if current.master and master_answers is not None and master_answers(current.master):
            return (f"{refused} ('{current.master}' still answers; a promotion is taken only "
                    f"while the master is down, or by `gitserve mirror rejoin {sender}` here)")
    except (KeyError, admin.AdminError):
        return refused
    return None


def _only_promotion(repo: Repo, old_tree: bytes, new_tree: bytes, sender: str) -> bool:
    """NEW_TREE is OLD_TREE with conf/ as `rewrite_conf(..., SENDER)` makes it, nothing else."""
    old, new = repo[old_tree], repo[new_tree]
    names = {e.path for e in old.iteritems()} | {e.path for e in new.iteritems()}
    for name in names - {admin.CONF_DIR.encode()}:
        try:
            if old[name] != new[name]:
                return False
        except KeyError:
            return False
    before = {p: d for p, d in admin.tree_files(repo, old_tree).items()
              if p.startswith(admin.CONF_DIR + "/")}
    after = {p: d for p, d in admin.tree_files(repo, new_tree).items()
             if p.startswith(admin.CONF_DIR + "/")}
    if before.keys() != after.keys():
        return False
    for path, data in before.items():
        text, _old = rewrite_conf(data.decode("utf-8", "surrogateescape"), sender)
        if after[path] != text.encode("utf-8", "surrogateescape"):
            return False
    return True


def rewrite_conf(text: str, hostname: str) -> tuple[str, list[str]]:
    """TEXT with this host the master in every repo block whose slaves name it; returns the
    new text and the old masters replaced."""
    lines = text.splitlines(keepends=True)
    blocks: list[list[int]] = [[]]
    for i, line in enumerate(lines):
        if _BLOCK_RE.match(line):
            blocks.append([])
        blocks[-1].append(i)
    replaced: list[str] = []
    for block in blocks:
        masters = [(i, m) for i in block if (m := _MASTER_RE.match(lines[i].rstrip("\n")))]
        slaves = [(i, m) for i in block if (m := _SLAVES_RE.match(lines[i].rstrip("\n")))]
        if not masters or not any(hostname in m.group("val").split() for _i, m in slaves):
            continue
        old = masters[-1][1].group("val")
        if old == hostname:
            continue
        for i, m in masters:
            lines[i] = f"{m.group('pre')}{hostname}{m.group('post')}\n"
        for i, m in slaves:
            names = m.group("val").split()
            if hostname in names:
                names = [old if n == hostname else n for n in names]
                names = list(dict.fromkeys(names))
                lines[i] = f"{m.group('pre')}{' '.join(names)}{m.group('post')}\n"
        replaced.append(old)
    return "".join(lines), replaced


@dataclass
class Report:
    fetched: dict[str, str] = field(default_factory=dict)  # repo -> peer it came from
    unreachable: dict[str, str] = field(default_factory=dict)  # peer -> why
    old_masters: list[str] = field(default_factory=list)
    commit: str | None = None
    announced: dict[str, str] = field(default_factory=dict)  # slave -> "ok" or the error

    def lines(self, hostname: str) -> list[str]:
        out = [f"peer {p} not reachable: {why}" for p, why in sorted(self.unreachable.items())]
        out += [f"{repo}: took the newer state of {peer}" for repo, peer in sorted(self.fetched.items())]
        if self.commit:
            out.append(f"gitolite-admin: {hostname} is now the master (was: "
                       f"{' '.join(sorted(set(self.old_masters)))}); commit {self.commit[:12]}")
        else:
            out.append(f"{hostname} is already the master of every repo it mirrors")
        out += [f"told {slave}: {what}" for slave, what in sorted(self.announced.items())]
        return out


def _copies_here(settings: Settings) -> dict[str, RepoMirror]:
    hostname = settings.server.hostname
    found: dict[str, RepoMirror] = {}
    for name in repos.list_names(settings):
        mirror = mirror_of(settings, name)
        if mirror.mode(hostname) == COPY:
            found[name] = mirror
    return found


def _catch_up_from_survivors(settings: Settings, transport: Transport, report: Report,
                             only: set[str] | None = None) -> None:
    hostname = settings.server.hostname
    wanted = _copies_here(settings)
    if only is not None:
        wanted = {k: v for k, v in wanted.items() if k in only}
    peers = sorted({p for m in wanted.values() for p in (m.master, *m.copies)} - {hostname, ""})
    seqs: dict[str, dict[str, int]] = {}
    for name in peers:
        if name in report.unreachable:
            continue
        try:
            peer = transport.peer(name)
        except MirrorError as exc:
            report.unreachable[name] = str(exc)
            continue
        rc, answer, err = transport.ssh(peer, "mirror state", timeout=30)
        if rc != 0:
            report.unreachable[name] = " ".join(err.decode("utf-8", "replace").split())[:200] \
                or f"ssh exit {rc}"
            continue
        try:
            data = json.loads(answer.decode("utf-8"))
        except ValueError:
            report.unreachable[name] = "unreadable answer to `mirror state`"
            continue
        seqs[name] = {r: int(v.get("seq", 0)) for r, v in data.items() if isinstance(v, dict)}
    for repo in sorted(wanted):
        repo_dir = repos.path(settings, repo)
        mine = state.seq_of(repo_dir)
        best_peer, best = None, mine
        for name, by_repo in seqs.items():
            if by_repo.get(repo, -1) > best:
                best_peer, best = name, by_repo[repo]
        if best_peer is None:
            continue
        ok, out = transport.fetch(transport.peer(best_peer), repo_dir, repo,
                                  settings.mirror.push_timeout)
        if not ok:
            raise MirrorError(f"{repo}: cannot fetch the newer state of {best_peer}: "
                              f"{' '.join(out.split())[:300]}")
        state.set_seq(repo_dir, best)
        report.fetched[repo] = best_peer


def _missing_slaves(settings: Settings, report: Report) -> dict[str, list[str]]:
    """The other slaves of repos mirrored here that could not be asked: {slave: repos}."""
    hostname = settings.server.hostname
    found: dict[str, list[str]] = {}
    for name, mirror in sorted(_copies_here(settings).items()):
        for slave in mirror.copies:
            if slave != hostname and slave in report.unreachable:
                found.setdefault(slave, []).append(name)
    return found


def promote(settings: Settings, author: str, force: bool = False) -> Report:
    """Make this host the master of every repo it is a slave of (see the module doc).

    Refused (unless FORCE) while another slave cannot be asked: it may hold the newest state
    of a repo (with mirror.sync the only copy of an acknowledged push), and this host, once
    master, would overwrite it with an older one when it comes back (`--force --prune`)."""
    hostname = settings.server.hostname
    if not hostname:
        raise MirrorError("[server] hostname is not set: this server does not mirror")
    report = Report()
    transport = Transport(settings)
    try:
        _catch_up_from_survivors(settings, transport, report, only={repos.ADMIN_REPO})
        admin.compile(settings)  # the newest rules before deciding anything else
        _catch_up_from_survivors(settings, transport, report)
        missing = _missing_slaves(settings, report)
        if missing and not force:
            names = ", ".join(f"{slave} ({len(r)} repo{'s' if len(r) > 1 else ''}: "
                              f"{' '.join(r[:3])}{' ...' if len(r) > 3 else ''})"
                              for slave, r in sorted(missing.items()))
            raise MirrorError(f"not promoted: cannot ask {names} how far it got; it may hold "
                              "acknowledged pushes this host lacks, which it would lose to "
                              f"{hostname}'s older state once back. Bring it up and promote "
                              "again, or promote --force to give them up")

        def change(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            updates: dict[str, bytes | None] = {}
            for path, data in sorted(files.items()):
                if not path.startswith(admin.CONF_DIR + "/"):
                    continue
                text, old = rewrite_conf(data.decode("utf-8", "surrogateescape"), hostname)
                if old:
                    updates[path] = text.encode("utf-8", "surrogateescape")
                    report.old_masters.extend(old)
            if not updates:
                raise _NothingToDo()
            return updates, (f"mirror promote: {hostname} is the master now\n\n"
                             f"Was: {' '.join(sorted(set(report.old_masters)))}. "
                             "Made by `gitserve mirror promote`.")

        try:
            report.commit = commit_change(settings, change, author)
        except _NothingToDo:
            report.commit = None
        admin.compile(settings)
        mirror = mirror_of(settings, repos.ADMIN_REPO)
        for slave in mirror.slaves:
            if slave in report.unreachable:
                report.announced[slave] = "not reachable; it gets the change when it is back"
                continue
            ok, out = push_one(settings, transport, repos.ADMIN_REPO, slave, timeout=60)
            report.announced[slave] = "ok" if ok else " ".join(out.split())[:200]
    finally:
        transport.close()
    return report


class _NothingToDo(Exception):
    pass


REJOIN_REF = b"refs/mirror-rejoin/master"


def master_answers(settings: Settings, name: str, timeout: float = 10) -> bool:
    """Whether peer NAME's server answers `mirror state` now (any answer but ssh's own
    failure: a refusal is an answer too; a timeout is none)."""
    transport = Transport(settings)
    try:
        rc, _out, _err = transport.ssh(transport.peer(name), "mirror state", timeout=timeout)
    except MirrorError:
        return False
    finally:
        transport.close()
    return rc != 255


def rejoin(settings: Settings, master: str) -> list[str]:
    """Make this host (an old master, its server stopped) a slave of MASTER again: take
    MASTER's gitolite-admin - only if it names MASTER the master of gitolite-admin and this
    host one of its slaves - and forget this host's own mirror sequence numbers (states it
    took alone are not newer than the survivors'). MASTER's catch-up then pushes every repo
    here (`--force --prune`: pushes only this host took are overwritten; they are listed)."""
    hostname = settings.server.hostname
    if not hostname:
        raise MirrorError("[server] hostname is not set: this server does not mirror")
    transport = Transport(settings)
    admin_dir = settings.admin_repo
    try:
        peer = transport.peer(master)
        ok, out = transport.fetch_ref(peer, admin_dir, repos.ADMIN_REPO,
                                      f"+refs/heads/master:{REJOIN_REF.decode()}",
                                      settings.mirror.push_timeout)
        if not ok:
            raise MirrorError(f"cannot fetch gitolite-admin from {master}: "
                              f"{' '.join(out.split())[:300]}")
    finally:
        transport.close()
    repo = Repo(str(admin_dir))
    try:
        new = repo.refs[REJOIN_REF]
        current = repo.refs[admin.ADMIN_BRANCH.encode()]
        refused = check_admin_push(repo, new.decode(), hostname, master, RepoMirror())
        if refused:
            raise MirrorError(f"{master}'s gitolite-admin does not make {hostname} its slave: "
                              f"{refused}")
        if not repo.refs.set_if_equals(admin.ADMIN_BRANCH.encode(), current, new):
            raise MirrorError("the admin repo changed meanwhile; try again")
        repo.refs.remove_if_equals(REJOIN_REF, new)
    finally:
        repo.close()
    admin.compile(settings)
    lines = [f"gitolite-admin: now {master}'s ({new.decode()[:12]}); {hostname} is its slave"]
    for name in repos.list_names(settings):
        repo_dir = repos.path(settings, name)
        for stale in [repo_dir / state.SEQ_FILE, *repo_dir.glob("gitserve-mirror-*.json"),
                      *repo_dir.glob("gl-copy-*.status")]:
            stale.unlink(missing_ok=True)
        mirror = mirror_of(settings, name)
        if mirror.mode(hostname) == COPY and name != repos.ADMIN_REPO:
            lines.append(f"{name}: will take {mirror.master}'s state "
                         f"(refs here now: {len(state.visible_refs(repo_dir))})")
    return lines

