"""Seeded generator of random Gitolite confs and of the questions to ask about them.

It mixes what changes decisions: groups (accumulating, nested, @all, used before their
definition in repo lines), repo groups and patterns, deny rules with and without
`option deny-rules`, refexes with USER and regex syntax, C/D/M modifiers, role names.
"""

from __future__ import annotations

import random

USERS = ["u1", "u2", "u3", "alice", "bob.x", "c+d"]
REPOS = ["r1", "r2", "r3", "team/app", "gitolite-admin", "testing"]
PATTERNS = ["wild/..*", "team/[a-z]+", "u1/.*", "CREATOR/..*", "x/(a|b)", "CREATOR/u[0-9]+"]
PERMS = ["R", "RW", "RW+", "-", "C", "RWC", "RW+C", "RWD", "RW+D", "RW+CD", "RWCD", "RWM",
         "RW+M", "RW+CDM", "RWDC", "RW+DCM"]
REFS = ["", "master", "dev", "refs/tags/v", "USER/", "refs/heads/USER/", "v[0-9]",
        "refs/heads/(master|dev)$", "feat/.*", "refs/tags/", "master$", "NAME/docs/",
        "VREF/NAME/src/", "VREF/COUNT/3"]
QUERY_REFS = ["any", "master", "dev", "refs/tags/v1", "u1/x", "refs/heads/alice/t",
              "v1", "feat/y", "masterx", "VREF/NAME/docs/a", "VREF/NAME/src/b", "VREF/COUNT/3"]
QUERY_PERMS = ["R", "W", "+", "C", "D", "M", "^C"]
EXTRA_QUERY_REPOS = ["wild/new", "u1/u1", "team/zz", "u1/repo", "u2/repo", "x/a", "nosuch",
                     "@g1", "@rg"]


def conf(seed: int) -> str:
    rnd = random.Random(seed)
    lines: list[str] = []
    defined: list[str] = []

    def user_item() -> str:
        pool = USERS + ["@all"] + defined + ["CREATOR", "READERS", "WRITERS"]
        return rnd.choice(pool)

    def group_line() -> None:
        name = f"@g{rnd.randint(1, 3)}"
        members = [rnd.choice(USERS + ["@all"] + [d for d in defined if d != name])
                   for _ in range(rnd.randint(1, 3))]
        lines.append(f"{name} = {' '.join(members)}")
        if name not in defined:
            defined.append(name)

    for _ in range(rnd.randint(0, 3)):
        group_line()
    if rnd.random() < 0.7:
        lines.append(f"@rg = {' '.join(rnd.sample(REPOS[:4] + PATTERNS[:2], 2))}")
    lines.append("repo gitolite-admin\n    RW+ = admin")
    lines.append("repo testing\n    RW+ = @all")
    for _ in range(rnd.randint(2, 6)):
        if rnd.random() < 0.2:
            group_line()  # a group defined between repo blocks (accumulating)
        names = rnd.sample(REPOS[:4] + PATTERNS + ["@rg", "@all", "@later"],
                           rnd.randint(1, 2))
        lines.append("repo " + " ".join(names))
        for _ in range(rnd.randint(1, 5)):
            perm = rnd.choice(PERMS)
            if perm == "C" and not any(not n.replace("/", "").isalnum() for n in names):
                perm = "RW"
            refs = " ".join(rnd.sample(REFS, rnd.randint(0, 2))) if perm not in ("R", "C") else ""
            users = " ".join({user_item() for _ in range(rnd.randint(1, 2))})
            lines.append(f"    {perm:6} {refs} = {users}")
        if rnd.random() < 0.5:
            lines.append(f"    option deny-rules = {rnd.choice(['1', '0'])}")
        if rnd.random() < 0.15:
            lines.append(f"    config hooks.x = v{rnd.randint(0, 9)}")
    lines.append(f"@later = {rnd.choice(REPOS[:3])} {rnd.choice(PATTERNS)}")
    if rnd.random() < 0.3:
        lines.append("repo @all\n    R = " + rnd.choice(USERS))
    return "\n".join(lines) + "\n"


def queries(seed: int, limit: int = 0) -> list[tuple[str, str, str, str]]:
    rnd = random.Random(seed * 7 + 1)
    repos = REPOS + EXTRA_QUERY_REPOS
    users = USERS + ["admin", "@g1", "nobody"]
    out = []
    for repo in repos:
        for user in users:
            for perm in QUERY_PERMS:
                for ref in rnd.sample(QUERY_REFS, 4):
                    out.append((repo, user, perm, ref))
    return rnd.sample(out, limit) if limit else out
