"""Gitolite conf language -> compiled tables, following Gitolite 3.6 step by step.

The stages mirror Gitolite's own (Conf/Explode.pm, Conf/Sugar.pm, Conf.pm, Conf/Store.pm)
so that every quirk -- when a group is expanded, which sequence number a rule gets, which
line is a syntax error -- comes out the same. The result is a plain `Compiled` value: a
conf that fails anywhere raises `ConfError` and nothing of it is kept.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import patterns as P
from . import refexexpr
from .errors import ConfError
from .source import ConfSource, DirSource, perl_glob

Line = tuple[str, int, str]  # (file name relative to conf/, line number, cleaned text)

RULE_RE = re.compile(r"^(-|C|R|RW\+?(?:C?D?|D?C?)M?) (.* )?= (.+)", re.ASCII)
_GROUP_RE = re.compile(r"^(@\S+) = (.*)", re.ASCII)
_CONFIG_RE = re.compile(r"^config (.+) = ?(.*)", re.ASCII)
_QUOTED_RE = re.compile(r"""^['"](.*)["']$""")
_SUBCONF_RE = re.compile(r"^subconf (\S+)$", re.ASCII)
_OPTION_RE = re.compile(r"^option (\S+) = (\S.*)", re.ASCII)
_GITWEB_RE = re.compile(r"^(desc|owner|category) = (\S.*)", re.ASCII)
_GITWEB_KEYS = {"desc": "description", "owner": "owner", "category": "category"}
_NAME_VREF_RE = re.compile(r"^(-|R\S+) \S.* = \S.*", re.ASCII)
_RWC_RE = re.compile(r"RW.*C")
_BEGIN_RE = re.compile(r"^= *begin (testconf|template-data)$")
_END_RE = re.compile(r"^= *end$")
_WS_RE = re.compile(r"\s+", re.ASCII)
_REFS_PREFIX_RE = re.compile(r"^(refs|VREF)/")
# conf lines repeat a lot ("R = @all" in every repo block): match each distinct line once
_rule_match = functools.lru_cache(maxsize=1 << 16)(RULE_RE.match)
_SPECIAL_GROUPS = frozenset({"@all", "@CREATOR", *("@" + r for r in P.ROLES)})
_INCLUDE_RE = re.compile(r"^(include|subconf) (?:(\S+) )?(\S.+)$")
_COMMENT_RE = re.compile(r'^((".*?"|[^#"])*)#.*')


@dataclass
class Compiled:
    """Everything `gitolite compile` would store, in Gitolite's own shapes."""

    # group name -> {member: subconf that first added it}, insertion-ordered
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    # repo key (name, pattern or @group) -> user key -> [(seq, perm, refex)]
    repos: dict[str, dict[str, list[tuple[int, str, str]]]] = field(default_factory=dict)
    # repo key -> [(seq, key, value)]
    configs: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    # seq -> (file label, line number): where each rule/config came from
    origin: dict[int, tuple[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # the same warnings worded as Gitolite's compile prints them (no file:line)
    messages: list[str] = field(default_factory=list)
    # file label -> its raw lines, for `access -s` style traces
    texts: dict[str, list[str]] = field(default_factory=dict)
    # what labels start with ("conf/"); Gitolite names files relative to conf/
    label_prefix: str = ""
    # compiled with Gitolite's refex-expr feature (ENABLE 'refex-expr'): its sugar ran, and
    # check #2 counts refexes into GL_REFEX_EXPR_* (acl/refexexpr.py)
    refex_expr: bool = False
    # lines a sugar script printed while compiling (refex-expr's `>>>> LINE`), shown as is
    notices: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1 << 16)
def cleanup_conf_line(line: str) -> str:
    """Gitolite's cleanup_conf_line: drop comments (not inside simple quotes), space out
    the first '=', squeeze whitespace."""
    if "#" in line:
        line = _COMMENT_RE.sub(r"\1", line, count=1)
    line = line.replace("=", " = ", 1)
    if line.isascii():
        return " ".join(line.split())
    return _WS_RE.sub(" ", line).strip(" ")


class _Parser:
    def __init__(self, source: ConfSource, label_prefix: str) -> None:
        self.source = source
        self.prefix = label_prefix
        self.out = Compiled()
        self.included: set[str] = set()
        self.prefixed: dict[str, dict[str, str]] = {}
        # store state
        self.repolist: list[str] = []
        self.subconf = "master"
        self.nextseq = 0
        self.ignored: dict[str, set[str]] = {}
        self.ignored_at: dict[str, tuple[str, int]] = {}
        self.file = ""
        self.lnum = 0
        self.ok_refs: set[str] = set()
        self._where: tuple[str, int, str] = ("", -1, "")
        self.ok_users: set[str] = set()

    # -- messages ---------------------------------------------------------
    def label(self, name: str) -> str:
        return self.prefix + name

    def die(self, msg: str, file: str | None = None, lnum: int | None = None) -> ConfError:
        return ConfError(msg, self.label(file if file is not None else self.file),
                         lnum if lnum is not None else self.lnum)

    def warn(self, msg: str, file: str | None = None, lnum: int | None = None) -> None:
        f = self.label(file if file is not None else self.file)
        n = lnum if lnum is not None else self.lnum
        self.out.warnings.append(f"{f}:{n}: {msg}" if n else f"{f}: {msg}")
        self.out.messages.append(msg)

    # -- explode: includes, comments, subconf prefixes ----------------------
    def explode(self, name: str, subconf: str, lines: list[Line]) -> None:
        if not self.included:
            self.included.add(self.source.identity(name))
        try:
            text = self.source.read(name)
        except OSError as exc:
            raise self.die(f"cannot read: {exc.strerror or exc}", name, 0) from None
        raw = text.split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        self.out.texts[self.label(name)] = raw
        for lnum, rawline in enumerate(raw, start=1):
            line = cleanup_conf_line(rawline)
            if not line:
                continue
            if subconf != "master":
                line = self.prefix_groupnames(line, subconf)
            m = _INCLUDE_RE.match(line)
            if m:
                self.incsub(m.group(1) == "subconf", m.group(2), m.group(3), subconf, lines,
                            name, lnum)
            else:
                lines.append((name, lnum, line))

    def incsub(self, is_subconf: bool, new_subconf: str | None, include_glob: str,
               current: str, lines: list[Line], file: str, lnum: int) -> None:
        if is_subconf and current != "master":
            raise self.die(f"subconf '{current}' attempting to run 'subconf'", file, lnum)
        m = re.match(r'^"(.+)"$', include_glob) or re.match(r"^'(.+)'$", include_glob)
        if not m:
            raise self.die(f"invalid include/subconf file/glob '{include_glob}'", file, lnum)
        for name in perl_glob(self.source, m.group(1)):
            if not self.source.allows(name):
                # Gitolite would read any file on the server; a pushed conf must not
                raise self.die(f"include outside the conf directory refused: '{name}'", file,
                               lnum)
            if not self.source.is_file(name):
                self.warn(f"included file not found: '{name}'", file, lnum)
                continue
            bm = re.search(r"([^/]+).conf$", name)
            if not bm:
                raise self.die(f"invalid include/subconf filename '{name}'", file, lnum)
            ident = self.source.identity(name)
            if ident in self.included:
                self.warn(f"{name} already included", file, lnum)
                continue
            self.included.add(ident)
            if is_subconf:
                sub = new_subconf or bm.group(1)
                lines.append((file, lnum, "subconf " + sub))
                self.explode(name, sub, lines)
                lines.append((file, lnum, "subconf " + current))
            else:
                self.explode(name, current, lines)

    def prefix_groupnames(self, line: str, subconf: str) -> str:
        table = self.prefixed.setdefault(subconf, {})
        m = re.match(r"^@(\S+) = ", line)
        lhs = m.group(1) if m else ""
        line = re.sub(r"(^| )(@\S+)(?= |$)", lambda mm: mm.group(1) + table.get(mm.group(2),
                                                                             mm.group(2)), line)
        if lhs:
            line = re.sub(r"^@\S+ = ", lambda _m: f"@{subconf}.{lhs} = ", line, count=1)
            table["@" + lhs] = f"@{subconf}.{lhs}"
        return line

    # -- sugar ---------------------------------------------------------------
    @staticmethod
    def sugar(lines: list[Line]) -> list[Line]:
        """Gitolite's sugar passes (rw_cdm, option, owner_desc, name_vref, role_names,
        skip_block) fused into one streaming pass: each is a per-line rewrite applied in
        Gitolite's order, and rw_cdm's inserted lines go through the later ones."""
        out: list[Line] = []
        seen: set[str] = set()
        skipping = False

        def emit(f: str, n: int, line: str) -> None:
            nonlocal skipping
            if line.startswith("option "):
                if "option mirror.slaves" in line:
                    line = line.replace("option mirror.slaves", "option mirror.copies", 1)
                m = _OPTION_RE.match(line)
                if m:
                    line = f"config gitolite-options.{m.group(1)} = {m.group(2)}"
            elif line.startswith(("desc = ", "owner = ", "category = ")):
                m = _GITWEB_RE.match(line)
                if m:
                    line = f"config gitweb.{_GITWEB_KEYS[m.group(1)]} = {m.group(2)}"
            if " NAME/" in line and _NAME_VREF_RE.match(line):
                line = line.replace(" NAME/", " VREF/NAME/")
            line = _role_names(line)
            if line.startswith("="):
                if not skipping and _BEGIN_RE.match(line):
                    skipping = True
                if skipping:
                    if _END_RE.match(line):
                        skipping = False
                    return
            elif skipping:
                return
            out.append((f, n, line))

        for f, n, line in lines:
            emit(f, n, line)
            if line.startswith("repo "):
                seen = set()
                continue
            m = _rule_match(line)
            if m:
                perms = m.group(1)
                if "D" in perms and "D" not in seen:
                    seen.add("D")
                    emit(f, n, "option DELETE_IS_D = 1")
                if _RWC_RE.search(perms) and "C" not in seen:
                    seen.add("C")
                    emit(f, n, "option CREATE_IS_C = 1")
                if "M" in perms and "M" not in seen:
                    seen.add("M")
                    emit(f, n, "option MERGE_CHECK = 1")
        return out

    # -- parse + store ---------------------------------------------------------
    def parse(self, lines: list[Line]) -> None:
        repos, groups, origin = self.out.repos, self.out.groups, self.out.origin
        ok_refs, where = self.ok_refs, self.where
        for f, n, line in lines:
            self.file, self.lnum = f, n
            first = line[0]
            if first == "@":
                m = _GROUP_RE.match(line)
                if m:
                    self.add_to_group(m.group(1), m.group(2).split(" ") if m.group(2) else [])
                    continue
            if first == "r" and line.startswith("repo "):
                self.set_repolist(line[5:].split(" ") if line[5:] else [])
                continue
            m = _rule_match(line)
            if m:
                perm, reftext, usertext = m.groups()
                refs = self.parse_refs(reftext or "")
                users = self.parse_users(usertext)
                if perm == "R" or not self.repolist or len(self.repolist) > 1:
                    for ref in refs:
                        for user in users:
                            self.add_rule(perm, ref, user)
                    continue
                # the common case, inlined: one repo, refs and users already validated
                per_repo = repos.get(self.repolist[0])
                if per_repo is None:
                    per_repo = repos[self.repolist[0]] = {}
                for ref in refs:
                    if ref not in ok_refs:
                        self.add_rule(perm, ref, users[0])
                        rest = users[1:]
                    else:
                        rest = users
                    for user in rest:
                        if user[0] == "@" and user not in groups and user not in _SPECIAL_GROUPS:
                            self.add_rule(perm, ref, user)
                            continue
                        self.nextseq += 1
                        origin[self.nextseq] = where()
                        lst = per_repo.get(user)
                        if lst is None:
                            per_repo[user] = [(self.nextseq, perm, ref)]
                        else:
                            lst.append((self.nextseq, perm, ref))
                continue
            m = _CONFIG_RE.match(line) if first == "c" else None
            if m:
                key, value = m.group(1), m.group(2)
                qm = _QUOTED_RE.match(value)
                if qm:
                    value = qm.group(1)
                if P.UNSAFE.search(value):
                    raise self.die(f"bad config value '{value}'")
                self.add_config(key, value)
                continue
            m = _SUBCONF_RE.match(line) if first == "s" else None
            if m:
                self.subconf = m.group(1)
                if not re.match(r"^[-\w.]+$", self.subconf, re.ASCII):
                    raise self.die(f"bad subconf '{self.subconf}'")
                continue
            self.warn(f"syntax error, ignoring: '{line}'")
        for sub in sorted(self.ignored):
            f, n = self.ignored_at[sub]
            self.warn(f"subconf '{sub}' attempting to set access for "
                      + ", ".join(sorted(self.ignored[sub])), f, n)

    def expand_list(self, items: list[str]) -> list[str]:
        out: list[str] = []
        for item in items:
            if item.startswith("@") and item != "@all":
                if item not in self.out.groups:
                    raise self.die(f"undefined group '{item}'")
                out.extend(sorted(self.out.groups[item]))
            else:
                out.append(item)
        return out

    def add_to_group(self, lhs: str, rhs: list[str]) -> None:
        if not P.is_reponame(lhs):
            raise self.die(f"bad group '{lhs}'")
        for item in rhs:
            if not P.is_repopatt(item):
                raise self.die(f"bad expansion '{item}'")
        members = self.expand_list(rhs)
        group = self.out.groups.setdefault(lhs, {})
        for member in members:
            group.setdefault(member, self.subconf)

    def subconf_disallowed(self, repo: str) -> bool:
        sub = self.subconf
        if sub == "master" or sub == repo or "@" + sub == repo:
            return False
        grp = self.out.groups.get("@" + sub, {})
        for member in sorted(grp):
            if grp[member] == "master" and _perl_full_match(member, repo):
                return False
        return True

    def set_repolist(self, names: list[str]) -> None:
        self.repolist = []
        pending = list(names)
        while pending:
            name = pending.pop(0)
            if self.subconf_disallowed(name):
                if name in self.out.groups:
                    g = re.sub(rf"^@{re.escape(self.subconf)}\.", "@", name)
                    self.warn(f"expanding '{g}'; this *may* slow down compilation")
                    pending[:0] = list(self.out.groups[name])
                    continue
                self.ignored.setdefault(self.subconf, set()).add(name)
                self.ignored_at.setdefault(self.subconf, (self.file, self.lnum))
                continue
            if name.endswith(".git"):
                self.warn(f"explicit '.git' extension ignored for {name}")
                name = name[:-4]
            if not P.is_repopatt(name):
                raise self.die(f"bad reponame '{name}'")
            if not P.is_reponame(name):
                _check_regex(self, name, "bad repo pattern")
            self.repolist.append(name)

    def parse_refs(self, text: str) -> list[str]:
        if "@" not in text:
            return _plain_refs(text)
        refs = self.expand_list(text.split()) if text else []
        if not refs:
            refs = ["refs/.*"]
        return [r if _REFS_PREFIX_RE.match(r) else "refs/heads/" + r for r in refs]

    def parse_users(self, text: str) -> list[str]:
        users = text.split(" ")
        for u in users:
            if u not in self.ok_users:
                if not P.is_username(u):
                    raise self.die(f"bad username '{u}'")
                self.ok_users.add(u)
        return users

    def add_rule(self, perm: str, ref: str, user: str) -> None:
        if perm == "R" and ref != "refs/.*":
            self.warn(f"doesn't make sense to supply a ref ('{ref}') for 'R' rule")
        if user[0] == "@" and user not in self.out.groups and user not in _SPECIAL_GROUPS:
            self.warn(f"possible undeclared group '{user}'")
        if ref not in self.ok_refs:
            if not P.is_repopatt(ref):
                raise self.die(f"bad ref '{ref}'")
            _check_regex(self, ref.replace("/USER/", "/x/", 1), "bad refex")
            self.ok_refs.add(ref)
        self.nextseq += 1
        self.out.origin[self.nextseq] = self.where()
        rule = (self.nextseq, perm, ref)
        repos = self.out.repos
        for repo in self.repolist:
            per_user = repos.get(repo)
            if per_user is None:
                per_user = repos[repo] = {}
            lst = per_user.get(user)
            if lst is None:
                per_user[user] = [rule]
            else:
                lst.append(rule)

    def where(self) -> tuple[str, int]:
        w = self._where
        if w[1] != self.lnum or w[2] != self.file:
            w = self._where = (self.label(self.file), self.lnum, self.file)
        return w[0], w[1]

    def add_config(self, key: str, value: str) -> None:
        self.nextseq += 1
        self.out.origin[self.nextseq] = self.where()
        for repo in self.repolist:
            self.out.configs.setdefault(repo, []).append((self.nextseq, key, value))


@functools.lru_cache(maxsize=1 << 12)
def _plain_refs(text: str) -> list[str]:
    refs = text.split() or ["refs/.*"]
    return [r if _REFS_PREFIX_RE.match(r) else "refs/heads/" + r for r in refs]


@functools.lru_cache(maxsize=1 << 16)
def _role_names(line: str) -> str:
    """role_names sugar: CREATOR and role words in a rule's user list become groups."""
    m = _rule_match(line)
    if not m:
        return line
    words = m.group(3).split(" ")
    if not any(w == "CREATOR" or w in P.ROLES for w in words):
        return line
    u = "".join(" @" + w if (w == "CREATOR" or w in P.ROLES) else " " + w for w in words)
    return cleanup_conf_line(f"{m.group(1)} {m.group(2) or ''} = {u}")


def _perl_full_match(pattern: str, text: str) -> bool:
    """Perl's `$text =~ /^$pattern$/` (no grouping: `a|b` means `^a` or `b$`)."""
    try:
        return re.search("^" + pattern + "$", text) is not None
    except re.error:
        return False


def _check_regex(parser: _Parser, pattern: str, what: str) -> None:
    # Gitolite would die later, at access time, with a Perl regex error; we refuse the conf.
    try:
        re.compile("^" + pattern)
    except re.error as exc:
        raise parser.die(f"{what} '{pattern}': {exc}") from None


def label_prefix(conf_dir: Path) -> str:
    """How file names appear in messages: `conf/x.conf`, as in the admin repo."""
    if conf_dir.name == "conf":
        return "conf/"
    text = str(conf_dir)
    return "" if text in ("", ".") else text.rstrip("/") + "/"


def compile_source(source: ConfSource, main: str = "gitolite.conf",
                   prefix: str = "conf/", refex_expr: bool = False) -> Compiled:
    """REFEX_EXPR: the site enabled Gitolite's refex expressions (site sugar runs first, as
    Gitolite runs the rc's SYNTACTIC_SUGAR before its own)."""
    parser = _Parser(source, prefix)
    parser.out.label_prefix = prefix
    lines: list[Line] = []
    parser.explode(main, "master", lines)
    if refex_expr:
        parser.out.refex_expr = True
        lines, parser.out.notices = refexexpr.sugar(lines)
    parser.parse(parser.sugar(lines))
    return parser.out


def compile_file(path: Path, refex_expr: bool = False) -> Compiled:
    path = Path(path)
    source = DirSource(path.parent)
    if not path.is_file():
        raise ConfError(f"cannot read: {'no such file' if not path.exists() else 'not a file'}",
                        label_prefix(path.parent) + path.name, 0)
    return compile_source(source, path.name, label_prefix(path.parent), refex_expr)
