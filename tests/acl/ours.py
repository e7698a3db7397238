"""Our side of a differential run: the same questions, asked of gitserve.acl."""

from __future__ import annotations

import re

from gitserve import acl


def state_for(rules: acl.Rules, existing: set[str],
              wild: dict[str, acl.WildInfo] | None = None):
    wild = wild or {}

    def state(repo: str) -> tuple[bool, acl.WildInfo | None]:
        return (repo in existing or repo in rules.repo_names(), wild.get(repo))

    return state


def ask(rules: acl.Rules, state, queries: list[tuple[str, str, str, str]],
        gl_user: str = "") -> list[str]:
    """Answers in the oracle driver's format (FATAL lines as Perl's die leaves them)."""
    out = []
    for repo, user, aa, ref in queries:
        if ref != "any" and not re.match(r"^(refs|VREF)/", ref):
            ref = "refs/heads/" + ref
        try:
            exists, w = state(repo) if acl.patterns.is_repopatt(repo) else (False, None)
            ctx = rules._ctx(repo, w, exists, gl_user)
            aa2 = rules.adjust_aa(repo, aa, ctx)
            ret = rules.access(repo, user, aa2, ref, ctx)
            if ref.startswith("VREF/"):
                ret = ret.replace("DENIED by fallthru", "allowed by fallthru", 1)
        except acl.AccessError as exc:
            ret = f"FATAL: {exc}"
        out.append(ret)
    return out


def normalize_fatal(line: str) -> str:
    while line.startswith("FATAL: FATAL: "):
        line = line[len("FATAL: "):]
    return line
