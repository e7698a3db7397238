"""Check #2: one ref update, judged as Gitolite's update hook and its VREF helpers judge it.

The engine hands over its rules (a `RuleBook`) and the git layer an `Inspector` (questions
about the pushed objects, both in acl/types.py); it is only
asked what a rule needs: ancestry always for updates, merges only under MERGE_CHECK, paths
and sizes only when a VREF asks. The pushed objects are in the repository but the refs have
not moved yet, exactly the state Gitolite's update hook sees.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..names import ZERO_SHA
from . import refexexpr
from .errors import AccessError
from .types import Decision, Inspector, RepoContext, RuleBook, VrefProgram

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # what Gitolite passes for a zero sha



def operation(rules: RuleBook, repo: str, ctx: RepoContext, ref: str, old: str, new: str,
              inspector: Inspector) -> tuple[str, list[str]]:
    """The access letter(s) Gitolite's update hook computes, plus its warnings."""
    warnings: list[str] = []
    aa = "W"
    if "refs/tags/" in ref and old != ZERO_SHA:
        aa = "+"
    if old != ZERO_SHA and (new == ZERO_SHA or not inspector.is_ancestor(old, new)):
        aa = "+"
    if rules.repo_option(repo, "DELETE_IS_D", ctx) and new == ZERO_SHA:
        aa = "D"
    if rules.repo_option(repo, "CREATE_IS_C", ctx) and old == ZERO_SHA:
        aa = "C"
    if rules.repo_option(repo, "MERGE_CHECK", ctx):
        if old == ZERO_SHA or new == ZERO_SHA:
            warnings.append("ref create/delete ignored for purposes of merge-check")
        elif inspector.has_merge(old, new):
            aa += "M"
    return aa, warnings


def check_update(rules: RuleBook, repo: str, user: str, ref: str, old: str, new: str,
                 inspector: Inspector, ctx: RepoContext,
                 program: VrefProgram | None = None) -> Decision:
    """Gitolite's update hook for one ref. The Decision's `notes` are the lines the hook would
    have printed on its way (WARNINGs, a VREF program's non-VREF output), in order."""
    aa, warnings = operation(rules, repo, ctx, ref, old, new, inspector)
    notes = [f"WARNING: {w}" for w in warnings]

    def done(decision: Decision) -> Decision:
        return replace(decision, notes=tuple(notes)) if notes else decision

    # Gitolite's refex-expr (its ACCESS_2 trigger): each allowed access counts its refex,
    # then every expression of the repo is evaluated into GL_REFEX_EXPR_* for the programs
    exprs = rules.refex_exprs(repo, ctx)
    passed: dict[str, int] = {}
    env: dict[str, str] = {}

    def access_2(result: str) -> Decision | None:
        if not exprs or "DENIED" in result:
            return None
        passed[result] = passed.get(result, 0) + 1
        try:
            env.update(refexexpr.environment(exprs, passed))
        except AccessError as exc:
            return Decision(False, str(exc))
        return None

    ret = rules.access(repo, user, aa, ref, ctx)
    failed = access_2(ret)
    if "DENIED" in ret:
        return done(Decision(False, ret))
    if failed is not None:
        return done(failed)

    def check_vref(vref_ref: str, deny_message: str = "") -> Decision | None:
        r = rules.access(repo, user, aa, vref_ref, ctx)
        if "by fallthru" in r:
            return None
        failed = access_2(r)
        if "DENIED" in r:
            return Decision(False, r + ("\n" + deny_message if deny_message else ""))
        return failed

    name_seen = False
    for vref in rules.vrefs(repo, user, ctx):
        if vref.startswith("VREF/NAME/"):
            if name_seen:
                continue
            name_seen = True
            for path in inspector.changed_paths(old, new):
                d = check_vref("VREF/NAME/" + path)
                if d is not None:
                    return done(d)
            continue
        parts = vref.split("/")
        while parts and parts[-1] == "":
            parts.pop()
        pgm, args = (parts[1] if len(parts) > 1 else ""), parts[2:]
        helper = _HELPERS.get(pgm)
        result: list[str] | int
        if helper is not None:
            result = helper(inspector, ref, old, new, vref, args)
        else:
            ran = None
            if program is not None and pgm:
                argv = [ref, old, new, EMPTY_TREE if old == ZERO_SHA else old,
                        EMPTY_TREE if new == ZERO_SHA else new, aa, vref, *args]
                ran = program(pgm, argv, env)
            if ran is None:
                return done(Decision(False, f"'{vref}': helper program missing or unexecutable"))
            status, out, err = ran
            notes.extend(err.splitlines())  # the hook's stderr reaches the pusher too
            # lines keep their newline: Gitolite's deny message is the rest of the line, newline
            # and all, so a message that ends one is followed by a blank `remote:` line
            result = out.splitlines(keepends=True)
            if status:  # Gitolite reads every line first, then dies on the exit status
                for line in result:
                    if not line.startswith("VREF/"):
                        notes.append(line.rstrip("\n"))
                        continue
                    first, _, rest = line.partition(" ")
                    d = check_vref(first, rest)
                    if d is not None:
                        return done(d)
                return done(Decision(False, f"{vref}: helper program exit status {status}"))
        if isinstance(result, int):
            return done(Decision(False, f"{vref}: helper program exit status {result}"))
        for line in result:
            first, _, rest = line.partition(" ")
            first = first.rstrip("\n")
            if not first.startswith("VREF/"):
                if helper is None:
                    notes.append(line.rstrip("\n"))
                continue
            d = check_vref(first, rest)
            if d is not None:
                return done(d)
    return done(Decision(True, ret))


def _count(inspector: Inspector, ref: str, old: str, new: str, vref: str,
           args: list[str]) -> list[str] | int:
    """VREF/COUNT/N[/NEWFILES|NO_SIGNOFF]: too many changed (or new) files."""
    if not args or args[0] == "":
        return 256
    if not re.fullmatch(r"-?\d+", args[0]):
        return []  # the shell test fails and the helper prints nothing
    maximum = int(args[0])
    mode = args[1] if len(args) > 1 else ""
    added_only = mode in ("NEWFILES", "NO_SIGNOFF")
    if new == ZERO_SHA:
        return []
    count = len(inspector.pushed_paths(new, added_only))
    if count <= maximum:
        return []
    if mode == "NO_SIGNOFF":
        raw, email = inspector.top_commit(new)
        want = re.compile(rf"^ *{count} +new +files +signed-off by: *{re.escape(email)} *$",
                          re.IGNORECASE | re.MULTILINE)
        if want.search(raw):
            return []
        return [f"{vref} top commit message should include the text "
                f"'{count} new files signed-off by: {email}'\n"]
    kind = "new" if added_only else "changed"
    return [f"{vref} (too many {kind} files in this push)\n"]


def _max_newbin_size(inspector: Inspector, ref: str, old: str, new: str, vref: str,
                     args: list[str]) -> list[str] | int:
    """VREF/MAX_NEWBIN_SIZE/N: new binary files larger than N bytes, unless signed off."""
    if not args or args[0] in ("", "0"):
        return 65280
    if new == ZERO_SHA:
        return []
    try:
        maximum = int(args[0])
    except ValueError:
        maximum = 0
    raw, email = inspector.top_commit(new)
    msg = raw.replace("\t", " ")
    out = ""
    for path, size in inspector.new_binary_files(old, new):
        if size <= maximum:
            continue
        try:
            signed = re.search(rf"^ *{path} +signed-off by: *{email} *$", msg,
                               re.IGNORECASE | re.MULTILINE)
        except re.error:
            signed = None
        if signed:
            continue
        # the helper prints without a newline, so several offenders share one line
        out += f"{vref} {path} is larger than {args[0]}"
    return [out] if out else []


def _merge_check(inspector: Inspector, ref: str, old: str, new: str, vref: str,
                 args: list[str]) -> list[str] | int:
    """VREF/MERGE-CHECK[/BRANCH]: no merge commits (on BRANCH)."""
    branch = args[0] if args else ""
    if branch:
        if not branch.startswith("refs/"):
            branch = "refs/heads/" + branch
    else:
        branch = "refs/.*"
    try:
        if not re.search("^" + branch, ref):
            return []
    except re.error:
        return 65280
    if old == ZERO_SHA or new == ZERO_SHA:
        return []
    if inspector.has_merge(old, new):
        return [f"{vref} FATAL: merge commits not allowed\n"]
    return []


_HELPERS = {
    "COUNT": _count,
    "MAX_NEWBIN_SIZE": _max_newbin_size,
    "MERGE-CHECK": _merge_check,
}
SUPPORTED_VREFS = ("NAME", *_HELPERS)
