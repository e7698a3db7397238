"""Whatever text a conf holds, loading it ends in rules or one ConfError line, and asking
the rules anything ends in a Decision or an AccessError: never another exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitserve import acl

TOKENS = ["repo", "@g", "@all", "=", "RW+", "RW", "R", "-", "C", "RWCDM", "master", "USER/",
          "refs/tags/", "u1", "u2", "CREATOR", "READERS", "include", '"x.conf"', "option",
          "deny-rules", "1", "config", "a.b", "foo/..*", "(", "[", "*", "#", "\t", "\"", "'",
          "NAME/", "VREF/COUNT/2", "subconf", "desc", "= begin testconf", "= end", "é", "\\"]

lines = st.lists(st.sampled_from(TOKENS), min_size=0, max_size=7).map(" ".join)
confs = st.lists(lines, max_size=25).map("\n".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(confs, st.sampled_from(["foo/x", "u1", "@g", "x", "foo/..*"]),
       st.sampled_from(["u1", "u2", "@g", "bad user"]),
       st.sampled_from(["R", "W", "+", "C", "D", "M", "^C", "X"]),
       st.sampled_from(["any", "master", "refs/tags/v1", "VREF/NAME/a", "bad ref!"]))
def test_any_text_loads_or_fails_cleanly(text, repo, user, perm, ref):
    try:
        rules = acl.load_files({"gitolite.conf": text, "x.conf": "repo x\n  RW = u2\n"})
    except acl.ConfError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("conf/")
        return
    for w in rules.warnings:
        assert "\n" not in w
    try:
        d = rules.check(repo, user, perm, ref)
        assert isinstance(d.allowed, bool) and d.message
    except acl.AccessError as exc:
        assert str(exc)
    rules.info("u1", {"u1": None})
    rules.options(repo if acl.patterns.is_reponame(repo) else "x")
