"""Core decisions on a small conf (the differential suite proves them against gitolite)."""

from __future__ import annotations

from gitserve import acl

CONF = {
    "gitolite.conf": """
@devs = alice bob
repo foo
    RW+ master = alice
    -   master = bob
    RW         = @devs
    R          = carol
repo pub/CREATOR/..*
    C  = @all
    RW+ = CREATOR
    R   = READERS
""",
}


def test_first_match_and_deny():
    rules = acl.load_files(CONF)
    assert rules.check("foo", "alice", "W", "master").allowed
    d = rules.check("foo", "bob", "W", "master")
    assert not d.allowed and d.message == "W refs/heads/master foo bob DENIED by refs/heads/master"
    assert rules.check("foo", "bob", "W").allowed  # deny rules skipped for ref any
    assert rules.check("foo", "carol", "R").allowed
    assert not rules.check("foo", "carol", "W").allowed
    assert rules.repo_names() == ["foo"]


def test_wild_repo_creator_and_roles():
    rules = acl.load_files(CONF)
    assert rules.can_create("pub/alice/x", "alice")
    assert not rules.can_create("pub/alice/x", "bob")
    w = acl.WildInfo("alice", {"READERS": ["bob"]})
    assert rules.check("pub/alice/x", "alice", "W", wild=w).allowed
    assert rules.check("pub/alice/x", "bob", "R", wild=w).allowed
    assert not rules.check("pub/alice/x", "bob", "W", wild=w).allowed
    assert not rules.check("pub/alice/x", "carol", "R", wild=w).allowed


def test_conf_repo_counts_as_existing_even_if_caller_says_not():
    rules = acl.load_files(CONF)
    d = rules.check("foo", "carol", "R", exists=False)
    assert d.allowed, d.message
    assert not rules.can_create("foo", "alice")
