"""Refex expressions (Gitolite's refex-expr, `[server] refex_expr = true`) that the conf's
writer made pathological (redteam2).

Evaluation is data (a small Perl-precedence parser over integers and operator words, never
eval), but it was not bounded: `- - - ... 1` or `not not ... 1` a few thousand deep raised
RecursionError, a 5,000-digit number ValueError, out of every push's check #2 to the repo
(neither is the AccessError the update check turns into a refusal), and a 100,000-word
expression cost half a second per allowed access of every pushed ref. Now an expression of
more than 256 words or a number of more than 18 digits is refused in one line, like one
Perl cannot evaluate, and nothing else can escape the evaluator.
"""

from __future__ import annotations

import time

import pytest

from gitserve.acl.errors import AccessError
from gitserve.acl.refexexpr import environment

PASSED = {"refs/heads/master": 1, "VREF/NAME/Makefile": 1}


@pytest.mark.parametrize("expr", ["- " * 5000 + "1", "not " * 5000 + "1", "+ " * 5000 + "1",
                                  "9" * 5000, "1 + " + "9" * 40,
                                  " + ".join(["master"] * 100000)])
def test_a_pathological_expression_is_one_refusal_quickly(expr):
    t0 = time.monotonic()
    with pytest.raises(AccessError) as info:
        environment({"e": expr}, PASSED)
    assert time.monotonic() - t0 < 0.2
    assert len(str(info.value)) < 6000 and "\n" not in str(info.value)


def test_ordinary_expressions_still_evaluate():
    env = environment({"a": "master and VREF/NAME/Makefile", "b": "master and not VREF/NAME/Makefile",
                       "c": "- - 1 -lt 2", "d": "not not 1"}, PASSED)
    assert env["GL_REFEX_EXPR_a"] and not env["GL_REFEX_EXPR_b"]
    assert env["GL_REFEX_EXPR_c"] and env["GL_REFEX_EXPR_d"]
