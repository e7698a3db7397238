"""Mirroring's pure parts: options -> RepoMirror, Gitolite's pre_git decisions and their
exact messages, peers, the promote rewrite of the conf, the seq and status files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitserve import acl
from gitserve.mirror import gate, state
from gitserve.mirror.config import (COPY, ELSEWHERE, LOCAL, MASTER, MirrorError,
                                    parse_peers, repo_mirror, server_name)
from gitserve.mirror.promotion import rewrite_conf

CONF = """\
repo r1
    RW+ = u1
    option mirror.master = sam
    option mirror.copies-1 = frodo
repo r2
    RW+ = u2
    option mirror.master = sam
    option mirror.slaves = frodo gollum
    option mirror.redirectOK = all
    option mirror.sync = 1
repo r3
    option mirror.master = frodo
    option mirror.slaves = sam gollum
    option mirror.slaves.nosync = merry
    option mirror.redirectOK = gollum pippin
repo lfrodo
    RW = u1
"""


@pytest.fixture(scope="module")
def rules() -> acl.Rules:
    return acl.load_files({"gitolite.conf": CONF})


def test_options_make_a_repo_mirror(rules: acl.Rules) -> None:
    r1 = repo_mirror(rules.options("r1"))
    assert (r1.master, r1.slaves, r1.redirect_ok, r1.sync) == ("sam", ("frodo",), (), 0)
    r2 = repo_mirror(rules.options("r2"))
    assert r2.slaves == ("frodo", "gollum") and r2.redirect_ok == ("frodo", "gollum")
    assert r2.sync == 1
    r3 = repo_mirror(rules.options("r3"))
    # nosync slaves are copies but never pushed automatically; redirectOK keeps copies only
    assert r3.slaves == ("sam", "gollum") and r3.manual == ("merry",)
    assert r3.copies == ("sam", "gollum", "merry") and r3.redirect_ok == ("gollum",)
    assert repo_mirror({"mirror.slaves": "a", "mirror.sync": "5"}).sync == 1  # capped
    assert repo_mirror({"mirror.slaves": "a", "mirror.sync": "x"}).sync == 0


def test_modes(rules: acl.Rules) -> None:
    r1 = repo_mirror(rules.options("r1"))
    assert r1.mode("sam") == MASTER and r1.mode("frodo") == COPY
    assert r1.mode("gollum") == ELSEWHERE and r1.mode("") == LOCAL
    assert repo_mirror(rules.options("lfrodo")).mode("frodo") == LOCAL


def test_gitolite_messages(rules: acl.Rules) -> None:
    """The texts of Gitolite's t/mirror-test, word for word."""
    r1, r2 = repo_mirror(rules.options("r1")), repo_mirror(rules.options("r2"))
    local = repo_mirror(rules.options("lfrodo"))

    def refused(fn, *args) -> str:  # noqa: ANN001, ANN002
        with pytest.raises(gate.Refused) as err:
            fn(*args)
        return str(err.value)

    assert refused(gate.check_user, "gollum", "r1", r1, "R") == "gollum: 'r1' is mirrored but not here"
    assert refused(gate.check_user, "frodo", "r1", r1, "W") == \
        "frodo: pushing 'r1' to copy 'frodo' not allowed"
    assert gate.check_user("frodo", "r2", r2, "W").redirect_to == "sam"
    assert gate.check_user("frodo", "r1", r1, "R").redirect_to is None
    assert gate.check_user("sam", "r1", r1, "W").redirect_to is None
    assert refused(gate.check_master_push, "frodo", "lfrodo", local, "sam") == "frodo: 'lfrodo' is local"
    assert refused(gate.check_master_push, "sam", "r1", r1, "frodo") == "sam: 'r1' is native"
    assert refused(gate.check_master_push, "frodo", "r1", r1, "merry") == \
        "frodo: 'merry' is not the master for 'r1'"
    gate.check_master_push("frodo", "r1", r1, "sam")
    assert refused(gate.check_redirected, "frodo", "r1", r1, "sam") == "frodo: 'r1' is not native"
    assert refused(gate.check_redirected, "gollum", "r1", r1, "sam") == \
        "gollum: 'r1' is mirrored but not here"
    assert refused(gate.check_redirected, "sam", "r2", r1, "gollum") == \
        "sam: 'gollum' is not a valid copy for 'r2'"
    assert refused(gate.check_redirected, "sam", "r1", r1, "frodo") == \
        "sam: redirection not allowed from 'frodo'"
    gate.check_redirected("sam", "r2", r2, "frodo")
    assert gate.not_a_server("alice") == "'alice' is not a valid server name"
    assert gate.REDIRECT_RE.match("USER=u1 SOC=git-receive-pack 'r2'")


def test_server_names_and_peers() -> None:
    assert server_name("server-frodo") == "frodo"
    assert server_name("frodo") is None and server_name("server-") is None
    peers = parse_peers("frodo=127.0.0.1:2222 sam=gitolite@sam.example\ngollum=[::1]:22")
    assert peers.get("frodo").url("r/x") == "ssh://git@127.0.0.1:2222/r/x"
    assert peers.get("sam").url("a") == "ssh://gitolite@sam.example:22/a"
    assert peers.get("gollum").url("a") == "ssh://git@[::1]:22/a"
    for bad in ("frodo", "=x", "a=b:99999", "a=u;rm@h"):
        with pytest.raises(MirrorError):
            parse_peers(bad)
    with pytest.raises(MirrorError, match="no address for server 'merry'"):
        peers.get("merry")


def test_promote_rewrites_only_the_blocks_this_host_is_a_slave_of() -> None:
    text, old = rewrite_conf(CONF, "frodo")
    assert sorted(old) == ["sam", "sam"]
    rules = acl.load_files({"gitolite.conf": text})
    r1, r2, r3 = (repo_mirror(rules.options(r)) for r in ("r1", "r2", "r3"))
    assert (r1.master, r1.copies) == ("frodo", ("sam",))  # the old master becomes a slave
    assert (r2.master, r2.slaves) == ("frodo", ("sam", "gollum"))
    assert r3.master == "frodo"  # already
    assert rewrite_conf(text, "frodo")[1] == []  # nothing left to do
    text, old = rewrite_conf(CONF, "gollum")
    assert old == ["sam", "frodo"]


def test_seq_and_status_files(tmp_path: Path) -> None:
    repo = tmp_path / "r.git"
    repo.mkdir()
    assert state.seq_of(repo) == 0
    assert state.next_seq(repo, "a") == 1 and state.next_seq(repo, "a") == 1
    assert state.next_seq(repo, "b") == 2
    slave = tmp_path / "s.git"
    slave.mkdir()
    state.record_received(slave, 5, "frodo")
    state.record_received(slave, 3, "frodo")  # an older push never moves it back
    assert state.seq_of(slave) == 5
    state.record_failure(repo, "sam", "42-1", "ssh: connect refused\nfatal: Could not read")
    text = state.status_text("r", repo, "sam")
    assert text.startswith("----------\nWARNING: previous mirror push of repo 'r' to host "
                           "'sam' failed, status is:\n")
    assert "\t42-1\tfatal: Could not read\n" in text and text.endswith("----------\n")
    assert state.failed_slaves(repo) == ["sam"]
    state.record_synced(repo, "sam", "a", "m", 2)
    assert state.failed_slaves(repo) == [] and state.read_synced(repo, "sam")["seq"] == 2


def test_which_commands_change_a_repo(rules: acl.Rules) -> None:
    changed = gate.changed_repo
    assert changed("perms", ["r1", "+", "READERS", "u"]) == "r1"
    assert changed("perms", ["-c", "r1"]) == "r1" and changed("perms", ["r1", "-l"]) is None
    assert changed("perms", ["-l", "r1"]) is None
    assert changed("desc", ["r1"]) is None and changed("desc", ["r1", "x", "y"]) == "r1"
    assert changed("symbolic-ref", ["r1", "HEAD"]) is None
    assert changed("symbolic-ref", ["r1", "HEAD", "refs/heads/x"]) == "r1"
    assert changed("D", ["rm", "r1"]) == "r1" and changed("fork", ["a", "b"]) == "b"
    assert changed("writable", ["r1", "status"]) is None
    assert changed("writable", ["r1", "off"]) == "r1" and changed("info", ["r1"]) is None
    r1 = repo_mirror(rules.options("r1"))
    with pytest.raises(gate.Refused, match="frodo: 'r1' is a copy; change it on its master 'sam'"):
        gate.check_local_change("frodo", "r1", r1)
    gate.check_local_change("sam", "r1", r1)
    gate.check_local_change("frodo", "lfrodo", repo_mirror(rules.options("lfrodo")))

