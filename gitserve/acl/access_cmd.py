"""`gitolite access` reproduced: same output lines, same exit status, same batch mode.

Kept out of the CLI module so tests (and the SSH server, if it ever offers `access`) can
run it on any streams; the CLI only picks the rules and the repo-state lookup.
"""

from __future__ import annotations

import re
import sys
from typing import Callable, TextIO

from . import patterns as P
from .engine import ACCESS_PERMS, Rules, WildInfo
from .types import RepoContext
from .errors import AccessError

# Perl's `die` exits with errno; in `gitolite access` that is ENOTTY (25) left over from
# the isatty() probe on a non-terminal stdout. Scripts see 25, so we return 25 too.
FATAL_EXIT = 25

# repo name -> (exists, wild info): what gitolite would find under ~/repositories
RepoState = Callable[[str], tuple[bool, WildInfo | None]]


def conf_only_state(rules: Rules) -> RepoState:
    """Repos exist iff the conf names them (what `gitolite compile` would have created)."""
    plain = set(rules.repo_names())
    return lambda repo: (repo in plain, None)


def _ctx(rules: Rules, state: RepoState, repo: str, gl_user: str) -> RepoContext:
    exists, wild = state(repo)
    return rules._ctx(repo, wild, exists, gl_user)


LEGEND = """legend:
    d => skipped deny rule due to ref unknown or 'any',
    r => skipped due to refex not matching,
    p => skipped due to perm (W, +, etc) not matching,
    D => explicitly denied,
    A => explicitly allowed,
    F => fallthru; access denied for normal refs, allowed for VREFs

"""


def show_trace(rules: Rules, ret: str, trace: list[tuple[int, str]], stdout: TextIO,
               stderr: TextIO) -> None:
    """`gitolite access -s`: which rules were considered (file, line, text) and how they fared."""
    if "DENIED by existence" in ret:
        raise AccessError("repo already exists; ^C won't work\n")
    stderr.write(LEGEND)
    c = rules.compiled
    for seq, how in trace:
        if how == "F":
            stdout.write(f"  F {'(fallthru)':>20}\n")
            continue
        label, line = c.origin.get(seq, ("?", 0))
        fn = label[len(c.label_prefix):] if label.startswith(c.label_prefix) else label
        texts = c.texts.get(label, [])
        text = texts[line - 1] if 0 < line <= len(texts) else ""
        stdout.write(f"  {how} {fn:>20}:{str(line):<6} {text}\n")
    stdout.write("\n")


def run_access(rules: Rules, state: RepoState, repo: str, user: str, perm: str | None,
               ref: str | None, quiet: bool, stdin: TextIO, stdout: TextIO, stderr: TextIO,
               gl_user: str = "", show: bool = False) -> int:
    """Run `gitolite access [-q] [-s] REPO USER PERM REF`; returns the exit status."""
    aa = perm or "+"
    ref = ref or "any"
    if ref != "any" and not re.match(r"^(refs|VREF)/", ref):
        ref = "refs/heads/" + ref
    try:
        if aa not in ACCESS_PERMS:
            raise AccessError("invalid perm")
        if not P.is_ref_or_filename(ref):
            raise AccessError("invalid ref name")
        if repo != "%" and user != "%":
            ctx = _ctx(rules, state, repo, gl_user)
            trace: list[tuple[int, str]] | None = [] if show else None
            ret = rules.access(repo, user, rules.adjust_aa(repo, aa, ctx), ref, ctx, trace)
            if show and trace is not None:
                show_trace(rules, ret, trace, stdout, stderr)
            if ref.startswith("VREF/"):
                ret = ret.replace("DENIED by fallthru", "allowed by fallthru", 1)
            if not quiet:
                stdout.write(ret + "\n")
            return 1 if "DENIED" in ret else 0
        if quiet or show:
            raise AccessError("'-q' and '-s' meaningless in pipe mode")
        fixed_repo = "" if repo == "%" else repo
        fixed_user = "" if user == "%" else user
        for line in stdin:
            words = line.split()
            r = fixed_repo or (words.pop(0) if words else "")
            u = fixed_user or (words.pop(0) if words else "")
            ctx = _ctx(rules, state, r, gl_user) if _plausible(r) else RepoContext(False, gl_user)
            ret = rules.access(r, u, rules.adjust_aa(r, aa, ctx), ref, ctx)
            stdout.write(f"{r}\t{u}\t{ret}\n")
        return 0
    except AccessError as exc:
        stdout.flush()
        stderr.write(f"FATAL: {exc}\n")
        return FATAL_EXIT


def _plausible(repo: str) -> bool:
    return bool(repo) and P.is_repopatt(repo)


def main_streams() -> tuple[TextIO, TextIO, TextIO]:
    return sys.stdin, sys.stdout, sys.stderr
