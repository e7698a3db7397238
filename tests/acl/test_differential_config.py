"""`option` and `config` lines: what applies to a repo, last one wins, as gitolite's
`git-config -ev -r` reports it (groups, patterns, @all, %GL_REPO / %GL_CREATOR)."""

from __future__ import annotations

from gitserve import acl

from .cases import ADMIN

CONF = ADMIN + """
@web = site1 site2
repo @all
    option build.mode = async
    config gitweb.owner = nobody
repo @web
    option deploy.site = %GL_REPO
    option build.mode = gate
    desc = "web sites"
repo site1
    option build.mode = sync
    config hooks.mailinglist = "list@example.com"
    option deny-rules = 0
    category = "webs"
repo site2
    owner = Some Body
    config hooks.empty = ""
repo u/..*
    C = @all
    RW+ = CREATOR
    option notify.webhook = http://hooks.example/%GL_CREATOR
    option build.timeout = 60
repo site1 other
    RWC = u1
    option build.mode = async
"""


def test_configs_and_options_match_gitolite(gitolite):
    assert gitolite.load({"gitolite.conf": CONF}).returncode == 0
    gitolite.create_wild("u/alice/x", "alice")
    rules = acl.load_files({"gitolite.conf": CONF})
    names = ["site1", "site2", "other", "testing", "u/alice/x"]
    r = gitolite.run(["gitolite", "git-config", "-ev", "-r", "%", "."],
                     stdin="".join(n + "\n" for n in names))
    assert r.returncode == 0, r.stderr
    ours = []
    for name in names:
        w = acl.WildInfo("alice") if name.startswith("u/") else None
        merged = {**rules.configs(name, wild=w),
                  **{"gitolite-options." + k: v for k, v in rules.options(name, wild=w).items()}}
        ours += [f"{name}\t{k}\t{merged[k]}" for k in sorted(merged)]
    assert r.stdout.splitlines() == ours
    assert rules.options("site1")["build.mode"] == "async"
    assert rules.options("site2")["deploy.site"] == "site2"
