"""Access cases from Gitolite's own test suite (t/*.t) and documentation, as tables.

Each case is a conf, the wild repos to create (creator, roles), and questions. The answers
are not written here: the test asks gitolite3 and gitserve the same questions and compares
the output byte for byte, so a table row cannot encode a wrong expectation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ADMIN = "repo gitolite-admin\n    RW+ = admin\nrepo testing\n    RW+ = @all\n"


@dataclass
class Case:
    name: str
    files: dict[str, str]
    repos: list[str]
    users: list[str]
    perms: list[str] = field(default_factory=lambda: ["R", "W", "+"])
    refs: list[str] = field(default_factory=lambda: ["any"])
    # wild repos: name -> (creator, {role: members})
    wild: dict[str, tuple[str, dict[str, list[str]]]] = field(default_factory=dict)
    info_users: list[str] = field(default_factory=list)
    gl_user: str = ""


def conf(text: str, **extra: str) -> dict[str, str]:
    return {"gitolite.conf": ADMIN + text, **extra}


CASES = [
    # t/access.t, set 1: a repo reached through a group, R/RW/RW+ levels
    Case("access-set1", conf("""
@g1 = t1
repo @g1
    R       =   u2
    RW      =   u3
    RW+     =   u4
"""), ["t1", "@g1"], ["u1", "u2", "u3", "u4"]),
    # t/access.t, set 2: branch refexes, deny, users as groups in queries
    Case("access-set2", conf("""
@g1 = u1
@g2 = u2
@g3 = u3
@gaa = aa
repo @gaa
    RW+                 =   @g1
    RW                  =   @g2
    RW+     master      =   @g3
    RW      master      =   u4
    -       master      =   u5
    RW+     dev         =   u5
    RW                  =   u5
"""), ["aa", "@gaa"], ["@g1", "@g2", "@g3", "u1", "u2", "u3", "u4", "u5"],
         ["R", "W", "+"], ["any", "refs/heads/master", "refs/heads/next", "refs/heads/dev"]),
    # t/access.t, set 3: regex refexes and deny order
    Case("access-set3", conf("""
@gr1 = r1
repo @gr1
    RW  refs/heads/v[0-9]   = u1
    RW  refs/heads          = tester
@gr2 = r2
repo @gr2
    RW  refs/heads/v[0-9]   = u1
    -   refs/heads/v[0-9]   = tester
    RW  refs/heads          = tester
"""), ["r1", "r2", "@gr1", "@gr2"], ["u1", "tester"], ["R", "W", "+"],
         ["any", "refs/heads/v1", "refs/heads/va", "refs/heads/master"]),
    # t/personal-branches.t: USER in refexes
    Case("personal-branches", conf("""
@g1 = t1
repo @g1
    R               =   u2
    RW              =   u3
    RW+             =   u4
    RW  a/USER/     =   @all
    RW+ p/USER/     =   u1 u6
"""), ["t1", "@g1"], ["u1", "u2", "u5", "u6"], ["R", "W", "+"],
         ["any", "refs/heads/a/user1/foo", "refs/heads/a/u1/foo", "refs/heads/p/u1/foo",
          "refs/heads/p/u2/foo", "refs/heads/p/u6/x"]),
    # t/deny-rules.t: option deny-rules makes "-" count at check #1
    Case("deny-rules", conf("""
repo gitolite-admin
    -   =   gitweb daemon
option deny-rules = 1
@ga = a
@gb = b
@gc = c
repo @ga
    RW  =   u1
    -   =   @all
option deny-rules = 1
repo @gb
    RW  =   u2
    -   =   daemon
option deny-rules = 1
repo @gc
    RW  =   u3
repo @all
    R   =   @all
"""), ["a", "b", "c", "gitolite-admin", "testing"], ["u1", "u2", "u3", "daemon", "gitweb"],
         ["R", "W"], ["any", "master"]),
    # docs (rules.html): first match wins, deny for branches and tags
    Case("docs-rules", conf("""
repo foo
    RW+                     =   alice
    -   master              =   bob
    -   refs/tags/v[0-9]    =   bob
    RW                      =   bob
    RW  refs/tags/v[0-9]    =   carol
    R                       =   dave
"""), ["foo"], ["alice", "bob", "carol", "dave", "eve"], ["R", "W", "+", "C", "D"],
         ["any", "master", "dev", "refs/tags/v1", "refs/tags/x1"]),
    # t/C-vs-C.t and branch perms: RW+CD on wild repos, C/D perms only when enabled
    Case("c-vs-c", conf("""
repo foo/..*
    C       =   @all
    RW+CD   =   CREATOR
    RW      =   u2
repo bar
    RW+C  = u1
    RW    = u2
    RW+D  dev = u3
    RWM   = u4
"""), ["foo/aa", "foo/bb", "bar", "foo/..*"], ["u1", "u2", "u3", "u4"],
         ["R", "W", "+", "C", "D", "M", "^C"], ["any", "m1", "dev"],
         wild={"foo/aa": ("u1", {})}, info_users=["u1", "u2", "u3"]),
    # t/rule-seq.t + roles (perm-roles.t): CREATOR/READERS/WRITERS on wild repos
    Case("roles", conf("""
@private-owners = u1 u2
@experienced-private-owners = u3 u4
repo CREATOR/.*
  C   = @private-owners @experienced-private-owners
  RWD = CREATOR
  RW  = WRITERS
  R   = READERS
  -   = @private-owners
  RW+D = CREATOR
"""), ["u1/r1", "u3/r1", "u2/r2", "u5/x", "CREATOR/.*"], ["u1", "u2", "u3", "u4", "u5"],
         ["R", "W", "+", "D", "C", "^C"], ["any", "br1"],
         wild={"u1/r1": ("u1", {"READERS": ["u2"], "WRITERS": ["@experienced-private-owners"]}),
               "u3/r1": ("u3", {"WRITERS": ["u1"], "READERS": ["@all"]})},
         info_users=["u1", "u2", "u3", "u5"]),
    # groups: accumulate, snapshot when used inside another group, used before definition
    Case("groups", conf("""
@a = x1
@b = @a y1
@a = z1
repo @r
    RW = @a
    R  = @b @late
@r = p1
@late = w1
@r = p2
repo @all
    RW+ refs/tags/ = @late
"""), ["p1", "p2", "p3", "@r"], ["x1", "y1", "z1", "w1", "q"], ["R", "W", "+"],
         ["any", "refs/tags/t", "master"]),
    # repo names vs patterns; a name with regex characters outside REPONAME is a pattern
    Case("patterns", conf("""
repo a.b
    RW = u1
repo proj/[0-9]+ other|x.*
    RW+ = u2
    C   = u3
repo team/.*
    R   = @all
repo u[0-9]/CREATOR
    C = @all
    RW = CREATOR
"""), ["a.b", "axb", "proj/12", "proj/x", "other", "xyz", "team/t", "u1/u1", "u2/u1",
          "u3/u1"],
         ["u1", "u2", "u3"], ["R", "W", "+", "^C"], ["any"], gl_user="u1",
         wild={"proj/12": ("u3", {}), "u2/u1": ("u1", {})}, info_users=["u1", "u2", "u3"]),
    # includes: relative to conf/, globs, the same file twice is skipped
    Case("include", {
        "gitolite.conf": ADMIN + 'include "sub/*.conf"\ninclude "sub/a.conf"\n'
                                 'include "b.conf"\n',
        "sub/a.conf": "@devs = d1 d2\nrepo inc1\n    RW = @devs\n",
        "sub/c.conf": "repo inc2\n    R = @devs\n    RW+ dev = d2\n",
        "b.conf": "repo inc1\n    RW+ = d3\n",
    }, ["inc1", "inc2"], ["d1", "d2", "d3"], ["R", "W", "+"], ["any", "dev"]),
    # VREFs: NAME rules at check #1 and as refs (fallthru means allowed)
    Case("vref-name", conf("""
repo v1
    RW+                 = @all
    -   VREF/NAME/secret/ = u1
    RW  NAME/docs/        = u2
    -   NAME/             = u2
    -   VREF/COUNT/3      = u3
"""), ["v1"], ["u1", "u2", "u3"], ["W", "+"],
         ["any", "VREF/NAME/secret/x", "VREF/NAME/docs/a", "VREF/NAME/src/a",
          "VREF/COUNT/3"]),
    # deny rules with C/D/M modifiers (MERGE_CHECK, CREATE_IS_C, DELETE_IS_D)
    Case("cdm", conf("""
repo m1
    RW+CDM  = u1
    RW+M    = u2
    RWM     = u3
    RW      = u4
    -   master = u5
    RW+C    = u5
repo m2
    RW+     = u1
    RWD     = u2
"""), ["m1", "m2"], ["u1", "u2", "u3", "u4", "u5"], ["W", "+", "C", "D", "M"],
         ["any", "master", "dev"]),
    # subconf delegation: a team file may only set access for its own repos
    Case("subconf", {
        "gitolite.conf": ADMIN + "@team1 = t1a t1b team1\n@devs = d0\n"
                                 'subconf "teams/*.conf"\nrepo t1a\n    R = @devs\n',
        "teams/team1.conf": "@devs = d1 d2\nrepo t1a other\n    RW+ = @devs\n"
                            "repo @team1\n    RW = x1\nrepo team1\n    R = x2\n",
        "teams/team2.conf": "repo t1b\n    RW = d3\n",
    }, ["t1a", "t1b", "other", "team1"], ["d0", "d1", "d2", "d3", "x1", "x2"], ["R", "W", "+"]),
]
