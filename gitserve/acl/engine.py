"""Access decisions over a compiled conf, as Gitolite's Conf/Load.pm `access()` makes them.

Gitolite rescans its tables for every question; here the memberships and rule lists are
indexed once and cached, so a decision costs microseconds while the answer -- including
the exact text `gitolite access` prints -- stays the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from . import patterns as P
from . import refexexpr
from .errors import AccessError
from .parser import Compiled
from .types import Decision, Inspector, RepoContext, VrefProgram
from .update import check_update as _check_update

ACCESS_PERMS = ("R", "W", "+", "C", "D", "M", "^C")
_COMBO = re.compile(r"^(?:R|W|\+|C|D|\^C)?M?$")
_UNSAFE_REF_CHARS = re.compile(r"[^-0-9a-zA-Z._@/+ :,]")


@dataclass
class WildInfo:
    """Who created a wild repo and who holds which role on it (gl-creator, gl-perms)."""

    creator: str
    roles: dict[str, list[str]] = field(default_factory=dict)


def perl_true(value: str | None) -> bool:
    return bool(value) and value != "0"


# the old private name of RepoContext, kept for code written against it
_Ctx = RepoContext


class Rules:
    """A compiled conf: the object every access question is asked of (immutable)."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.warnings = list(compiled.warnings)
        # as Gitolite's compile words them, for the pusher of a conf (`remote: WARNING: ...`)
        self.messages = list(compiled.messages)
        # printed as they are before those (refex-expr's sugar lines)
        self.notices = list(compiled.notices)
        c = compiled
        # inside-out groups: member -> groups it belongs to
        self._member_of: dict[str, set[str]] = {}
        for g, members in c.groups.items():
            for m in members:
                self._member_of.setdefault(m, set()).add(g)
        self._pattern_members = [
            (m, re.compile("^" + m + "$"), frozenset(gs))
            for m, gs in self._member_of.items()
            if not P.is_reponame(m) and _compiles(m)
        ]
        keys = list(dict.fromkeys([*c.repos, *c.configs]))
        self._plain = {k for k in keys if P.is_reponame(k) and not k.startswith("@")}
        self._other = [(k, _compile_or_none("^" + k + "$")) for k in keys if k not in self._plain]
        self._repo_names = self._physical_repos()
        self._regex_cache: dict[str, re.Pattern[str] | None] = {}
        self._repo_memb_cache: dict[tuple[str, str], frozenset[str]] = {}
        self._user_memb_cache: dict[str, frozenset[str]] = {}
        self._config_cache: dict[tuple[str, str], dict[str, str]] = {}
        self._rules_cache: dict[tuple[str, str, RepoContext], list[tuple[int, str, str]]] = {}

    # -- what exists --------------------------------------------------------------
    def _physical_repos(self) -> list[str]:
        c = self.compiled
        names = [k for k in [*sorted(c.repos), *sorted(c.configs)]
                 if P.is_reponame(k) and not k.startswith("@")]
        for k in c.repos:
            if k.startswith("@") and k != "@all":
                names.extend(c.groups.get(k, {}))
        return sorted({n for n in names if P.is_reponame(n) and not n.startswith("@")
                       and "EXTCMD/" not in n})

    def repo_names(self) -> list[str]:
        """Plain repos the conf creates (Gitolite creates them on compile)."""
        return list(self._repo_names)

    def is_wild(self, repo: str) -> bool:
        """REPO is not a plain conf repo: it exists only if someone created it (with C)."""
        return repo not in self._plain_set and P.is_reponame(repo) and not repo.startswith("@")

    @property
    def _plain_set(self) -> set[str]:
        s = getattr(self, "_plain_set_v", None)
        if s is None:
            s = set(self._repo_names)
            self._plain_set_v = s
        return s

    def patterns(self) -> list[str]:
        """Repo patterns with rules (directly or through a group), as `info` lists them."""
        out: set[str] = set()
        for key in self.compiled.repos:
            names = list(self.compiled.groups.get(key, {})) if key.startswith("@") else [key]
            out.update(n for n in names if not P.is_reponame(n))
        return sorted(out)

    def _ctx(self, repo: str, wild: WildInfo | None, exists: bool | None,
             gl_user: str) -> RepoContext:
        # repos named in the conf exist (gitolite creates them on compile), whatever the caller
        # found on disk; others exist if the caller says so or describes them (WILD)
        if repo in self._plain_set:
            exists = True
        elif exists is None:
            exists = wild is not None
        if not exists:
            return RepoContext(False, gl_user)
        if wild is None:
            return RepoContext(True, "")
        roles = tuple((r, tuple(m)) for r, m in wild.roles.items())
        return RepoContext(True, wild.creator, roles)

    # -- memberships ----------------------------------------------------------------
    def _generic_name(self, base: str, creator: str) -> str:
        if not creator:
            return ""
        try:
            base2 = re.sub(r"\b" + creator + r"\b", "CREATOR", base, count=1)
        except re.error:
            return ""
        return "" if base2 == base else base2

    def _repo_memberships(self, base: str, creator: str) -> frozenset[str]:
        base2 = self._generic_name(base, creator)
        key = (base, base2)
        hit = self._repo_memb_cache.get(key)
        if hit is not None:
            return hit
        ret = {base, "@all"}
        for k, rx in self._other:
            if base == k or (rx is not None and rx.search(base)) or (
                    base2 and (base2 == k or (rx is not None and rx.search(base2)))):
                ret.add(k)
        ret.update(self._member_of.get(base, ()))
        if base2:
            ret.update(self._member_of.get(base2, ()))
        for _m, rx, gs in self._pattern_members:
            if rx.search(base) or (base2 and rx.search(base2)):
                ret.update(gs)
        result = frozenset(ret)
        if len(self._repo_memb_cache) > 100_000:
            self._repo_memb_cache.clear()
        self._repo_memb_cache[key] = result
        return result

    def _user_memberships(self, user: str, ctx: RepoContext | None) -> frozenset[str]:
        base = self._user_memb_cache.get(user)
        if base is None:
            base = frozenset({user, "@all", *self._member_of.get(user, ())})
            if len(self._user_memb_cache) > 100_000:
                self._user_memb_cache.clear()
            self._user_memb_cache[user] = base
        if ctx is None or not ctx.exists:
            return base
        roles = _user_roles(user, base, ctx)
        return base | roles if roles else base

    def _rules(self, repo: str, user: str, ctx: RepoContext) -> list[tuple[int, str, str]]:
        key = (repo, user, ctx)
        hit = self._rules_cache.get(key)
        if hit is not None:
            return hit
        repos = self.compiled.repos
        out: list[tuple[int, str, str]] = []
        users = self._user_memberships(user, ctx)
        for r in self._repo_memberships(repo, ctx.creator):
            per_user = repos.get(r)
            if per_user:
                for u in users:
                    rs = per_user.get(u)
                    if rs:
                        out.extend(rs)
        out.sort(key=lambda t: t[0])
        if len(self._rules_cache) > 200_000:
            self._rules_cache.clear()
        self._rules_cache[key] = out
        return out

    def role_rules(self, repo: str, wild: WildInfo | None,
                   roles: Iterable[str]) -> list[tuple[int, str, str, str]]:
        """(seq, perm, refex, role) of every rule that names a role (`RW = WRITERS`) for REPO,
        in conf order: what Gitolite's `perms REPO -lr` lists."""
        creator = wild.creator if wild is not None else ""
        out: list[tuple[int, str, str, str]] = []
        for r in self._repo_memberships(repo, creator):
            per_user = self.compiled.repos.get(r) or {}
            for role in roles:
                out.extend((seq, perm, refex, role) for seq, perm, refex
                           in per_user.get("@" + role, ()))
        return sorted(out)

    # -- config and options -----------------------------------------------------------
    def _git_config(self, repo: str, ctx: RepoContext) -> dict[str, str]:
        key = (repo, ctx.creator)
        hit = self._config_cache.get(key)
        if hit is not None:
            return hit
        entries: list[tuple[int, str, str]] = []
        for r in self._repo_memberships(repo, ctx.creator):
            entries.extend(self.compiled.configs.get(r, ()))
        entries.sort(key=lambda t: t[0])
        out: dict[str, str] = {}
        for _seq, k, v in entries:
            out[k] = v
        for k, v in out.items():
            v = v.replace("%GL_REPO", repo)
            if ctx.creator:
                v = v.replace("%GL_CREATOR", ctx.creator)
            out[k] = v
        self._config_cache[key] = out
        return out

    def repo_option(self, repo: str, name: str, ctx: RepoContext) -> str:
        """`option NAME` for REPO if true in Perl's sense, else "" (check #2 asks this)."""
        value = self._git_config(repo, ctx).get("gitolite-options." + name, "")
        return value if perl_true(value) else ""

    def refex_exprs(self, repo: str, ctx: RepoContext) -> dict[str, str] | None:
        """`option refex-expr.NAME = EXPR` of REPO as {NAME: EXPR}; None when the site did
        not enable refex expressions (then nothing sets GL_REFEX_EXPR_*, as in Gitolite)."""
        if not self.compiled.refex_expr:
            return None
        prefix = "gitolite-options." + refexexpr.OPTION_PREFIX
        return {k[len(prefix):]: v for k, v in self._git_config(repo, ctx).items()
                if k.startswith(prefix)}

    def options(self, repo: str, wild: WildInfo | None = None) -> dict[str, str]:
        """`option` lines that apply to REPO (last one wins), names without the prefix.
        A value of "" or "0" means the option is off, as in Gitolite."""
        ctx = self._ctx(repo, wild, None, wild.creator if wild else "")
        prefix = "gitolite-options."
        return {k[len(prefix):]: v for k, v in self._git_config(repo, ctx).items()
                if k.startswith(prefix)}

    def configs(self, repo: str, wild: WildInfo | None = None) -> dict[str, str]:
        """`config` lines (and desc/owner/category) for REPO, last one wins; an empty value
        means "unset this key", as Gitolite's update-git-configs treats it."""
        ctx = self._ctx(repo, wild, None, wild.creator if wild else "")
        return {k: v for k, v in self._git_config(repo, ctx).items()
                if not k.startswith("gitolite-options.")}

    # -- the decision ----------------------------------------------------------------------
    def _match(self, refex: str, ref: str) -> bool:
        rx = self._regex_cache.get(refex, False)
        if rx is False:
            rx = _compile_or_none("^" + refex)
            if len(self._regex_cache) > 100_000:
                self._regex_cache.clear()
            self._regex_cache[refex] = rx
        if rx is None or rx is True:
            raise AccessError(f"bad refex '{refex}'")
        return rx.search(ref) is not None

    def access(self, repo: str, user: str, aa: str, ref: str, ctx: RepoContext,
               trace: list[tuple[int, str]] | None = None) -> str:
        """Gitolite's access(): the refex that allows, or the "... DENIED by ..." text.

        TRACE, if given, receives (rule seq, how it fared) like Gitolite's RULE_TRACE:
        d skipped deny, r refex mismatch, p perm mismatch, D denied, A allowed; (0, "F")
        for fallthru."""
        if not (user and P.is_username(user)):
            raise AccessError(f"invalid user '{user}'")
        sanity(repo)
        rules = self._rules(repo, user, ctx)
        deny_rules = self.repo_option(repo, "deny-rules", ctx)
        if not (ref.startswith("VREF/NAME/") or P.is_ref_or_filename(ref)):
            raise AccessError(f"invalid characters in ref or filename: '{ref}'")
        safe_ref = _UNSAFE_REF_CHARS.sub(".", ref)
        if aa != "^C" and not repo.startswith("@") and P.is_reponame(repo) and not ctx.exists:
            inner: list[tuple[int, str]] | None = [] if trace is not None else None
            iret = self.access(repo, user, "^C", ref, ctx, inner)
            iret = iret.replace("^C", aa, 1)
            if "DENIED" in iret:
                if trace is not None and inner is not None:
                    trace[:] = inner
                return iret
        if aa == "^C" and ctx.exists:
            return f"{aa} {safe_ref} {repo} {user} DENIED by existence"
        if trace is not None:
            return self._access_traced(repo, user, aa, ref, rules, deny_rules, safe_ref, trace)
        aarx = re.compile(_aa_regex(aa))
        for _seq, perm, refex in rules:
            refex = refex.replace("/USER/", f"/{user}/", 1)
            if perm == "-" and ref == "any" and not deny_rules:
                continue
            if not (ref == "any" or self._match(refex, ref)):
                continue
            if perm == "-":
                return f"{aa} {safe_ref} {repo} {user} DENIED by {refex}"
            if aarx.search(perm):
                return refex
        return f"{aa} {safe_ref} {repo} {user} DENIED by fallthru"

    def _access_traced(self, repo: str, user: str, aa: str, ref: str,
                       rules: list[tuple[int, str, str]], deny_rules: str, safe_ref: str,
                       trace: list[tuple[int, str]]) -> str:
        """access()'s rule loop, recording how each rule fared (for `access -s`)."""
        trace.clear()
        aarx = re.compile(_aa_regex(aa))
        for seq, perm, refex in rules:
            refex = refex.replace("/USER/", f"/{user}/", 1)
            if perm == "-" and ref == "any" and not deny_rules:
                trace.append((seq, "d"))
                continue
            if not (ref == "any" or self._match(refex, ref)):
                trace.append((seq, "r"))
                continue
            if perm == "-":
                trace.append((seq, "D"))
                return f"{aa} {safe_ref} {repo} {user} DENIED by {refex}"
            if aarx.search(perm):
                trace.append((seq, "A"))
                return refex
            trace.append((seq, "p"))
        trace.append((0, "F"))
        return f"{aa} {safe_ref} {repo} {user} DENIED by fallthru"

    def adjust_aa(self, repo: str, aa: str, ctx: RepoContext) -> str:
        """`gitolite access` reads C, D, M as W/+ unless the repo enables them."""
        if aa in ("C", "D", "M"):
            sanity(repo)
        if aa == "C" and not self.repo_option(repo, "CREATE_IS_C", ctx):
            return "W"
        if aa == "D" and not self.repo_option(repo, "DELETE_IS_D", ctx):
            return "+"
        if aa == "M" and not self.repo_option(repo, "MERGE_CHECK", ctx):
            return "W"
        return aa

    def check(self, repo: str, user: str, perm: str = "+", ref: str = "any",
              wild: WildInfo | None = None, *, exists: bool | None = None,
              gl_user: str | None = None) -> Decision:
        """`gitolite access REPO USER PERM REF` as a Decision (check #1 with ref "any").

        WILD describes an existing wild repo; a repo that is neither a conf repo nor given
        WILD (or EXISTS) is missing, so "^C" (may USER create it) is checked first, with
        USER as its would-be creator (GL_USER; override with gl_user)."""
        aa = perm or "+"
        ref = ref or "any"
        if ref != "any" and not re.match(r"^(refs|VREF)/", ref):
            ref = "refs/heads/" + ref
        if aa not in ACCESS_PERMS and not (aa and _COMBO.match(aa)):
            raise AccessError("invalid perm")
        if not P.is_ref_or_filename(ref):
            raise AccessError("invalid ref name")
        ctx = self._ctx(repo, wild, exists, user if gl_user is None else gl_user)
        if aa in ACCESS_PERMS:
            aa = self.adjust_aa(repo, aa, ctx)
        ret = self.access(repo, user, aa, ref, ctx)
        if ref.startswith("VREF/"):
            ret = ret.replace("DENIED by fallthru", "allowed by fallthru", 1)
        return Decision("DENIED" not in ret, ret)

    def can_create(self, repo: str, user: str) -> bool:
        """May USER create wild repo REPO (gitolite-shell's auto-create test)?"""
        if repo in self._plain_set:
            return False
        ctx = RepoContext(False, user)
        return "DENIED" not in self.access(repo, user, "^C", "any", ctx)

    # -- check #2 ---------------------------------------------------------------------------
    def check_update(self, repo: str, user: str, ref: str, old: str, new: str,
                     inspector: Inspector, wild: WildInfo | None = None,
                     program: VrefProgram | None = None) -> Decision:
        """The update hook: may USER move REF from OLD to NEW (VREFs included)? PROGRAM runs
        the VREFs that are not built in (admin-installed programs)."""
        ctx = self._ctx(repo, wild, True, user)
        return _check_update(self, repo, user, ref, old, new, inspector, ctx, program)

    def vrefs(self, repo: str, user: str, ctx: RepoContext) -> list[str]:
        seen: dict[str, None] = {}
        for _seq, _perm, refex in self._rules(repo, user, ctx):
            if refex.startswith("VREF/"):
                seen.setdefault(refex, None)
        return list(seen)

    # -- info ---------------------------------------------------------------------------------
    def info(self, user: str, repos: Mapping[str, WildInfo | None]) -> str:
        """Rows of the `info` command: patterns USER may use, then existing repos."""
        return "".join(f"{perm}\t{name}\n" for name, perm, _p in self.info_rows(user, repos))

    def info_rows(self, user: str, repos: Mapping[str, WildInfo | None],
                  match: Callable[[str], bool] | None = None,
                  patterns: bool = True) -> list[tuple[str, str, bool]]:
        """(name, perm column e.g. " R W", is_pattern) for `info`: the patterns USER may use
        (with C), then the existing repos, each kept only if MATCH(name) says so."""
        out: list[tuple[str, str, bool]] = []
        for pat in self.patterns() if patterns else ():
            if match is None or match(pat):
                perm = self._info_perm(pat, user, ("R", "W", "^C"), RepoContext(False, user))
                if perm:
                    out.append((pat, perm, True))
        for name in sorted(repos):
            if match is None or match(name):
                ctx = self._ctx(name, repos[name], True, user)
                perm = self._info_perm(name, user, ("R", "W"), ctx)
                if perm:
                    out.append((name, perm, False))
        return out

    def _info_perm(self, repo: str, user: str, aas: Iterable[str], ctx: RepoContext) -> str:
        perm = ""
        try:
            for aa in aas:
                ret = self.access(repo, user, aa, "any", ctx)
                perm += "  " if "DENIED" in ret else " " + aa
        except AccessError:
            return ""
        perm = perm.replace("^", "", 1)
        return perm if perm.strip() else ""


def _aa_regex(aa: str) -> str:
    """The regex a rule's perm must match for access AA (Gitolite's $aaq)."""
    aaq = aa.replace("+", "\\+", 1)
    if aaq == "C":
        aaq = "RW.*C"
    return aaq.replace("M", ".*M", 1)


def _compiles(pattern: str) -> bool:
    return _compile_or_none("^" + pattern + "$") is not None


def _compile_or_none(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def sanity(repo: str, patt: re.Pattern[str] = P.REPOPATT) -> None:
    """Gitolite's repo-name sanity checks (raise AccessError with its message)."""
    if not (repo and patt.match(repo) and not repo.endswith("\n")):
        raise AccessError(f"invalid repo '{repo}'")
    if repo.endswith("/"):
        raise AccessError(f"'{repo}' ends with a '/'")
    if P.is_reponame(repo) and ".." in repo:
        raise AccessError(f"'{repo}' contains '..'")
    if P.is_reponame(repo) and ".git/" in repo:
        raise AccessError(f"'{repo}' contains '.git/'")
    if repo.endswith(".git"):
        raise AccessError(f"'{repo}' ends with '.git'")


def _user_roles(user: str, eg: frozenset[str], ctx: RepoContext) -> set[str]:
    out: set[str] = set()
    lines = [(r, m) for r, m in ctx.roles] + [("CREATOR", (ctx.creator,) if ctx.creator else ())]
    for role, members in lines:
        role = role[1:] if role.startswith("@") else role
        if role != "CREATOR" and role not in P.ROLES:
            continue
        for m in members:
            if not P.is_username(m):
                continue
            if m == user or m in eg:
                out.add("@" + role)
    return out

