"""The ssh session catches GitserveError once: any domain error a command or a git request
raises is one `FATAL: MESSAGE` line and exit status 1 (never "internal server error", never a
traceback); a bug is not swallowed there (the server's catch-all logs it)."""

from __future__ import annotations

import pytest

from gitserve import repos
from gitserve.acl.errors import AccessError
from gitserve.errors import GitserveError
from gitserve.mirror.gate import Refused
from gitserve.ssh import session
from gitserve.ssh.cmd.base import FATAL_STATUS, Command, table
from tests.hardening import fuzzkit


class SecretTrouble(GitserveError):
    """Stands for any subsystem's error (secrets, builds, deploy, mirroring...)."""


def raising(exc: Exception) -> Command:
    def fn(ctx, args):  # type: ignore[no-untyped-def]
        raise exc
    return Command("boom", fn, "raises")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return fuzzkit.make_home(tmp_path_factory.mktemp("session-errors"))


@pytest.mark.parametrize("exc", [SecretTrouble("vault sealed"), AccessError("invalid ref name"),
                                 Refused("sam: 'x' is mirrored but not here"),
                                 repos.RepoError("repository 'x' resolves outside")])
def test_a_domain_error_is_one_fatal_line(home, exc):
    chan = fuzzkit.FakeChannel()
    status = session.run(home, chan, "boom", "alice", "127.0.0.1", table=table([raising(exc)]))
    assert status == FATAL_STATUS  # Gitolite's FATAL exit (its Perl die)
    assert chan.err.decode() == f"FATAL: {exc}\n" and chan.out == b""


def test_a_bug_is_left_to_the_servers_catch_all(home):
    chan = fuzzkit.FakeChannel()
    with pytest.raises(ZeroDivisionError):
        session.run(home, chan, "boom", "alice", "127.0.0.1",
                    table=table([raising(ZeroDivisionError("bug"))]))


def test_git_request_refusals_are_gitolite_lines(home):
    chan = fuzzkit.FakeChannel()
    assert session.run(home, chan, "git-upload-pack 'nosuch'", "alice", "127.0.0.1") == FATAL_STATUS
    assert chan.err.decode() == ("FATAL: R any nosuch alice DENIED by fallthru\n"
                                 "(or you mis-spelled the reponame)\n")
