"""The types the access engine's modules share: a decision, one repo's context, and the
two interfaces check #2 works through (the rules it asks, the inspector of pushed objects).

They live here so engine (check #1, the rules) and update (check #2, VREFs) each import
this module and neither imports the other at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # exactly what `gitolite access` prints: the matching refex, or "... DENIED by ..."
    message: str
    # lines Gitolite's update hook prints before it decides (WARNINGs, VREF program output)
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def fatal(self) -> str:
        """The denial as gitolite-shell reports it on stderr for check #1."""
        return f"FATAL: {self.message}\n(or you mis-spelled the reponame)"


# Runs an admin-installed VREF program (HOME/vrefs/NAME) with ARGV as Gitolite's update hook
# runs its VREF helpers, the mapping added to its environment (GL_REFEX_EXPR_*): returns
# (wait status as Perl's $? has it, stdout, stderr), or None when there is no such
# executable program (gitserve.git.vrefprog makes one per push).
VrefProgram = Callable[[str, list[str], Mapping[str, str]], "tuple[int, str, str] | None"]


@dataclass(frozen=True)
class RepoContext:
    """What Gitolite reads from the repositories directory for one repo: does it exist,
    who created it (a wild repo), who holds which role (gl-perms)."""

    exists: bool
    creator: str
    roles: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Inspector(Protocol):
    """Questions check #2 asks about the pushed objects (acl.inspect_dulwich answers them)."""

    def is_ancestor(self, old: str, new: str) -> bool:
        """Is OLD reachable from NEW (a fast-forward)?"""

    def has_merge(self, old: str, new: str) -> bool:
        """Is there a merge commit in OLD..NEW (`git rev-list -n1 --merges old..new`)?"""

    def changed_paths(self, old: str, new: str) -> list[str]:
        """`git diff --name-only OLDTREE NEWTREE`; a zero sha stands for the empty tree."""

    def pushed_paths(self, new: str, added_only: bool) -> set[str]:
        """Paths touched (added, if ADDED_ONLY) by commits reachable from NEW but from no
        existing ref (`git log --name-only NEW --not --all`)."""

    def new_binary_files(self, old: str, new: str) -> list[tuple[str, int]]:
        """(path, size) of binary files that were absent or empty in OLD and are in NEW."""

    def top_commit(self, new: str) -> tuple[str, str]:
        """(raw text of commit NEW, its author e-mail)."""


class RuleBook(Protocol):
    """What check #2 asks of the compiled rules (engine.Rules is one)."""

    def access(self, repo: str, user: str, aa: str, ref: str, ctx: RepoContext,
               trace: list[tuple[int, str]] | None = None) -> str:
        """The refex that allows, or the "... DENIED by ..." text."""

    def repo_option(self, repo: str, name: str, ctx: RepoContext) -> str:
        """The value of `option NAME` for REPO if it is true in Perl's sense, else ""."""

    def vrefs(self, repo: str, user: str, ctx: RepoContext) -> list[str]:
        """The VREF rules that apply to USER on REPO, in order."""

    def refex_exprs(self, repo: str, ctx: RepoContext) -> dict[str, str] | None:
        """{NAME: EXPR} of REPO's `option refex-expr.NAME`; None when refex-expr is off."""
