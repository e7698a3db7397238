"""Bounded fuzzing of what a hostile client or a careless admin controls: the conf parser,
the SSH exec-command line and the receive-pack byte stream (pkt-lines + pack).

Each test runs a few hundred hypothesis examples in seconds; scripts/stress/fuzz.py runs
the same targets (tests/hardening/fuzzkit.py) for as many inputs as you like.
"""

from __future__ import annotations

import collections
import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.hardening import fuzzkit

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
SEEN: collections.Counter = collections.Counter()


@FUZZ
@given(fuzzkit.conf_text, fuzzkit.conf_text)
def test_conf_parser_never_crashes(main, extra):
    SEEN["conf:" + fuzzkit.check_conf(main, extra)] += 1


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return fuzzkit.make_home(tmp_path_factory.mktemp("fuzz-home"))


@FUZZ
@given(command=fuzzkit.command_line, user=st.sampled_from(["alice", "bob", "carol"]))
def test_exec_command_parser_refuses_clearly(home, command, user):
    SEEN["command:" + fuzzkit.check_command(home, command, user)] += 1


@pytest.mark.parametrize("command, needle", [
    ("git-upload-pack '../../etc/passwd'", "contains '..'"),
    ("git-receive-pack '/foo.git' extra", "invalid repo name"),
    ("git-upload-pack 'fo\x01o'", "control characters"),
    ("git-upload-pack 'u/alice/x.git/y'", "invalid repo name"),
    ("git-upload-pack 'nosuch'", "DENIED by fallthru"),
    ("rm -rf /", "unknown git/gitolite command"),
    ("perms foo;id", "suspicious characters"),
    ("desc ../foo", "no relative paths"),
])
def test_known_hostile_commands_get_one_clear_error(home, command, needle):
    chan = fuzzkit.FakeChannel()
    from gitserve.ssh import session
    from gitserve.ssh.cmd.base import FATAL_STATUS

    # Gitolite's FATAL exit status (its Perl die), as gitolite-shell gives it
    assert session.run(home, chan, command, "alice", fuzzkit.FakeIface.peer) == FATAL_STATUS
    err = chan.err.decode()
    assert err.startswith("FATAL: ") and needle in err, err


@pytest.fixture(scope="module")
def push_fx(tmp_path_factory):
    return fuzzkit.make_push_fixture(tmp_path_factory.mktemp("push-fx"))


_work = itertools.count()


def test_receive_pack_input_never_corrupts(push_fx, tmp_path):
    @FUZZ
    @given(fuzzkit.push_input(push_fx))
    def run(data):
        SEEN["push:" + fuzzkit.check_push(push_fx, tmp_path / f"w{next(_work) % 4}", data)] += 1

    run()
    # the generator reaches every interesting outcome, so the invariants were really exercised
    assert SEEN["push:updated"] and SEEN["push:rejected"] and SEEN["push:protocol-error"]


def test_report_inputs(record_property):
    """Not a check: leaves the count of fuzzed inputs in the junit report and -s output."""
    record_property("fuzzed_inputs", dict(SEEN))
    print(f"\nfuzzed inputs: {sum(SEEN.values())} {dict(SEEN)}")
