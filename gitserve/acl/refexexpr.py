"""Gitolite's refex expressions (`- master and VREF/NAME/Makefile = u3`), on when a site
enabled them (Gitolite: ENABLE 'refex-expr'; gitserve: `[server] refex_expr = true`).

Two parts, as in Gitolite (src/syntactic-sugar/refex-expr, Triggers/RefexExpr.pm):
- the sugar: a rule whose refexes contain an operator word becomes
  `option refex-expr.sugarN = EXPR` plus `PERM VREF/refex-expr/sugarN = USERS`;
- the counting: during one ref's update check, every access that a rule allowed counts
  its refex; after each, every `refex-expr.NAME` option of the repo is evaluated on those
  counts into GL_REFEX_EXPR_NAME, which the refex-expr VREF program reads. Gitolite lets
  Perl evaluate the expression; `evaluate` below follows Perl's precedence and values for
  the only tokens that can reach it (integers and the operator words).
"""

from __future__ import annotations

import re
from typing import Callable

from .errors import AccessError

Line = tuple[str, int, str]

_PERM = r"(?:-|R|RW\+?C?D?M?)"
_QUICK_RE = re.compile(rf"^{_PERM} ")
_LINE_RE = re.compile(rf"^({_PERM}) (\S.*) = (\S.*)$")
_OPERATOR_RE = re.compile(r" (and|not|or|xor|\+|-|==|-lt|-gt|-eq|-le|-ge|-ne) ")

_CONSTANT = {w: w for w in ("1", "not", "and", "or", "xor", "+", "-", "==")}
_CONSTANT.update({"-lt": "<", "-gt": ">", "-eq": "==", "-le": "<=", "-ge": ">=", "-ne": "!="})
_INT_RE = re.compile(r"^-?\d+$")

OPTION_PREFIX = "refex-expr."
# bounds on what the conf's writer may make the evaluator chew on every allowed access of
# every pushed ref (Gitolite's own are a handful of words; Perl turns longer numbers into
# floats, which no count or refex needs)
MAX_WORDS = 256
MAX_DIGITS = 18


def sugar(lines: list[Line]) -> tuple[list[Line], list[str]]:
    """Gitolite's refex-expr sugar script: (rewritten lines, what it prints on stderr)."""
    out: list[Line] = []
    printed: list[str] = []
    seq = 1
    for f, n, line in lines:
        if not _QUICK_RE.match(line):
            out.append((f, n, line))
            continue
        m = _LINE_RE.match(line)
        if not m or not _OPERATOR_RE.search(m.group(2)):
            out.append((f, n, line))
            continue
        perm, refexes, users = m.groups()
        printed.append(f">>>> {line}")
        out.append((f, n, f"option {OPTION_PREFIX}sugar{seq} = {refexes}"))
        out.append((f, n, f"{perm} VREF/refex-expr/sugar{seq} = {users}"))
        seq += 1
    return out, printed


def convert(expr: str, passed: dict[str, int]) -> str:
    """Gitolite's convert(): each word of EXPR as Perl will see it (counts for refexes)."""
    words = []
    for word in expr.split():
        if _INT_RE.match(word):
            words.append(word)
            continue
        value = _CONSTANT.get(word) or passed.get(word) or passed.get("refs/heads/" + word) or 0
        words.append(str(value))
    return " ".join(words)


def environment(rules: dict[str, str], passed: dict[str, int]) -> dict[str, str]:
    """GL_REFEX_EXPR_NAME for every rule: "'EXPR' -> 'CONVERTED'" when true, else "" (Perl's
    undef in %ENV). Raises AccessError with Gitolite's text when Perl could not evaluate."""
    env: dict[str, str] = {}
    for name in sorted(rules):
        words = rules[name].split()
        if len(words) > MAX_WORDS:
            raise AccessError(f"eval refex-expr.{name} -> 'more than {MAX_WORDS} words'")
        if any(_INT_RE.match(w) and len(w.lstrip("-")) > MAX_DIGITS for w in words):
            raise AccessError(f"eval refex-expr.{name} -> 'a number of more than {MAX_DIGITS} digits'")
        e = convert(rules[name], passed)
        try:
            value = evaluate(e)
        except _PerlSyntax as exc:
            raise AccessError(f"eval '{e}' -> '{exc}'") from None
        env["GL_REFEX_EXPR_" + name] = f"'{rules[name]}' -> '{e}'" if _truth(value) else ""
    return env


# -- a Perl expression over integers and these operators ---------------------------------
# Perl's values here are ints or its two booleans (1 and ""); "" counts as 0 in arithmetic.
Value = int | str


class _PerlSyntax(Exception):
    """What Perl's eval would have refused (the text stands for its $@)."""


def _num(v: Value) -> int:
    return v if isinstance(v, int) else 0


def _truth(v: Value) -> bool:
    return v not in (0, "", "0")


def _bool(b: bool) -> Value:
    return 1 if b else ""


_RELATIONAL = {"<": lambda a, b: a < b, ">": lambda a, b: a > b,
               "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_EQUALITY = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class _Parser:
    """Perl's precedence, low to high: or xor; and; not; == != (chained); < > <= >=
    (chained); + - (binary, left); unary - +."""

    def __init__(self, text: str) -> None:
        # Perl reads "2 -1" as 2 - 1: a number's sign is the minus operator
        self.toks = [t for w in text.split()
                     for t in (("-", w[1:]) if len(w) > 1 and w[0] == "-" and w[1:].isdigit()
                               else (w,))]
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise _PerlSyntax("syntax error at EOF")
        self.i += 1
        return tok

    def parse(self) -> Value:
        if not self.toks:
            return ""  # eval '' is undef: false
        v = self.low_or()
        if self.peek() is not None:
            raise _PerlSyntax(f"syntax error near \"{self.peek()}\"")
        return v

    def low_or(self) -> Value:
        v = self.low_and()
        while self.peek() in ("or", "xor"):
            op = self.take()
            w = self.low_and()
            if op == "or":
                v = v if _truth(v) else w
            else:
                v = _bool(_truth(v) != _truth(w))
        return v

    def low_and(self) -> Value:
        v = self.low_not()
        while self.peek() == "and":
            self.take()
            w = self.low_not()
            v = w if _truth(v) else v
        return v

    def low_not(self) -> Value:
        if self.peek() == "not":
            self.take()
            return self.not_rest()
        return self.chain(_EQUALITY, self.relational)

    def not_rest(self) -> Value:
        """`not` takes everything up to the next and/or/xor, also inside a sum
        (`1 + not 0` is 1 + (not 0), as for Perl's other rightward list operators)."""
        if self.peek() in (None, "and", "or", "xor"):
            raise _PerlSyntax(f"syntax error near \"not {self.peek() or ''}\"")
        return _bool(not _truth(self.low_not()))

    def relational(self) -> Value:
        return self.chain(_RELATIONAL, self.additive)

    def chain(self, ops: dict[str, Callable[[int, int], bool]],
              operand: Callable[[], Value]) -> Value:
        left = operand()
        if self.peek() not in ops:
            return left
        result = True
        while self.peek() in ops:
            op = self.take()
            right = operand()
            result = result and ops[op](_num(left), _num(right))
            left = right
        return _bool(result)

    def additive(self) -> Value:
        v = self.unary()
        while self.peek() in ("+", "-"):
            op = self.take()
            w = self.unary()
            v = _num(v) + _num(w) if op == "+" else _num(v) - _num(w)
        return v

    def unary(self) -> Value:
        tok = self.take()
        if tok == "not":
            return self.not_rest()
        if tok == "-":
            return -_num(self.unary())
        if tok == "+":
            return self.unary()
        if _INT_RE.match(tok):
            if len(tok.lstrip("-")) > MAX_DIGITS:
                raise _PerlSyntax(f"number of more than {MAX_DIGITS} digits")
            return int(tok)
        raise _PerlSyntax(f"syntax error near \"{tok}\"")


def evaluate(text: str) -> Value:
    """What Perl's `eval TEXT` gives for a converted refex expression (_PerlSyntax for one
    nested past Python's stack, as for any other that cannot be evaluated)."""
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise _PerlSyntax("expression nested too deep") from None
