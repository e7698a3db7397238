"""`gitserve admin access` and `gitserve admin check`: try and validate access rules.

`access` answers exactly as `gitolite access` would for the same conf, so scripts written
for Gitolite keep working; `--conf FILE` tries a conf before it is pushed, with no server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Optional, Sequence

import typer

from gitserve import acl
from gitserve.acl import access_cmd, wild

from .common import HomeOption, fail, load_settings, plural


@dataclass
class CheckReport:
    """What `admin check` found: fatal errors stop it, warnings are listed."""

    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


@dataclass
class CheckTarget:
    conf: Optional[Path]  # --conf FILE, or None for the server's current admin repo
    home: Optional[Path]
    rules: Optional[acl.Rules] = None


# `admin check` runs the validators it is given (cli/admin.py lists them, in order); each adds
# warnings/summary lines or raises CheckFailed with a one-line "file:line: message".
Validator = Callable[[CheckTarget, CheckReport], None]


class CheckFailed(Exception):
    pass


def _current_admin_state(home: Optional[Path]):  # -> gitserve.adminrepo.AdminState
    settings = load_settings(home)
    try:
        from gitserve import adminrepo  # provided by the admin part
    except ImportError:
        fail("no server conf support in this build; use --conf FILE")
    try:
        return settings, adminrepo.current(settings)
    except Exception as exc:  # AdminError and friends: one line, as everywhere
        fail(str(exc))


def conf_refex_expr(home: Optional[Path]) -> bool:
    """A --conf FILE compiles as HOME's server would compile it: with refex expressions when
    its `[server] refex_expr` is on (no readable home: Gitolite's default, off)."""
    from gitserve import settings as settings_mod

    try:
        return settings_mod.load(home).server.refex_expr
    except (settings_mod.SettingsError, OSError):
        return False


def validate_conf(target: CheckTarget, report: CheckReport) -> None:
    if target.conf is not None:
        try:
            rules = acl.load(target.conf, conf_refex_expr(target.home))
        except acl.ConfError as exc:
            raise CheckFailed(str(exc)) from None
        except OSError as exc:
            raise CheckFailed(f"{target.conf}: {exc.strerror or exc}") from None
        vref_home = None
    else:
        from gitserve import adminrepo

        settings = load_settings(target.home)
        try:
            state = adminrepo.current(settings)
        except Exception as exc:  # AdminError and friends: one line, as everywhere
            raise CheckFailed(str(exc)) from None
        rules = state.rules
        vref_home = settings.home
        report.warnings.extend(getattr(state, "warnings", ()))
    target.rules = rules
    report.warnings.extend(rules.warnings)
    report.warnings.extend(lint_vrefs(rules, vref_home))
    report.summary.append(
        f"{plural(len(rules.repo_names()), 'repo')}, "
        f"{plural(len(rules.patterns()), 'repo pattern')}, "
        f"{plural(len(rules.compiled.groups), 'group')}, "
        f"{len(rules.compiled.origin)} rules and options"
    )


def validate_options(target: CheckTarget, report: CheckReport) -> None:
    """Unknown or bad gitserve options (build.*, deploy.*, notify.*, hook.*) fail the check;
    hook names must exist under HOME/hooks unless only --conf FILE is given."""
    from gitserve import options
    from gitserve import settings as settings_mod

    if target.rules is None:
        return
    hooks_dir = None
    if target.conf is None or target.home is not None:
        try:
            hooks_dir = settings_mod.load(target.home).hooks_dir
        except (settings_mod.SettingsError, OSError):  # no usable home: names' form only
            hooks_dir = None
    found = options.problems(target.rules, options.Env(hooks_dir))
    if found:
        raise CheckFailed(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def lint_vrefs(rules: acl.Rules, home: Optional[Path] = None) -> list[str]:
    """VREFs gitserve has no helper for (built in, or a program in HOME/vrefs/) would reject
    every push that reaches them."""
    from gitserve.acl.update import SUPPORTED_VREFS
    from gitserve.git import vrefprog, vrefs

    out = []
    seen = set()
    for per_user in rules.compiled.repos.values():
        for entries in per_user.values():
            for seq, _perm, refex in entries:
                if refex.startswith("VREF/") and refex not in seen:
                    seen.add(refex)
                    name = refex.split("/")[1] if refex.count("/") else ""
                    if name not in SUPPORTED_VREFS and not vrefs.shipped(name) and not (
                            home is not None and vrefprog.find(home, name)):
                        f, n = rules.compiled.origin.get(seq, ("?", 0))
                        out.append(f"{f}:{n}: VREF '{name}' is not built in nor in HOME/vrefs/; "
                                   f"pushes that reach '{refex}' are rejected")
    return out


def run_checks(target: CheckTarget, validators: Sequence[Validator]) -> CheckReport:
    """Every validator in order; raises CheckFailed with the first problem."""
    report = CheckReport()
    for validator in validators:
        validator(target, report)
    return report


def add_commands(app: typer.Typer, validators: Sequence[Validator]) -> None:
    """`access` and `check`; `check` runs VALIDATORS in order."""
    @app.command(
        "access",
        context_settings={"ignore_unknown_options": False},
        help="Same output and exit status as `gitolite access` (batch mode: % for REPO "
             "and/or USER reads \"repo user\" lines from stdin).",
    )
    def access(
        repo: Annotated[str, typer.Argument(help="repo name, or % to read from stdin")],
        user: Annotated[str, typer.Argument(help="user name, or % to read from stdin")],
        perm: Annotated[Optional[str], typer.Argument(help="R W + C D M ^C (default +)")] = None,
        ref: Annotated[Optional[str], typer.Argument(help="ref (default any)")] = None,
        quiet: Annotated[bool, typer.Option("-q", help="exit status only")] = False,
        show: Annotated[bool, typer.Option(
            "-s", help="show the rules considered (file:line) and how each fared")] = False,
        conf: Annotated[Optional[Path], typer.Option(
            "--conf", help="use this conf (with its includes) instead of the server's")] = None,
        home: HomeOption = None,
    ) -> None:
        import os

        if conf is not None:
            try:
                rules = acl.load(conf, conf_refex_expr(home))
            except acl.ConfError as exc:
                fail(str(exc))
            state = access_cmd.conf_only_state(rules)
        else:
            settings, admin_state = _current_admin_state(home)
            rules = admin_state.rules
            state = _home_state(settings, rules)
        code = access_cmd.run_access(
            rules, state, repo, user, perm, ref, quiet,
            sys.stdin, sys.stdout, sys.stderr, gl_user=os.environ.get("GL_USER", ""), show=show,
        )
        sys.stdout.flush()
        raise typer.Exit(code)

    @app.command("check", help="Validate the conf (and keydir); exit 1 with file:line.")
    def check(
        conf: Annotated[Optional[Path], typer.Option(
            "--conf", help="check this conf file (includes beside it) instead of the server's")
        ] = None,
        strict: Annotated[bool, typer.Option(
            "--strict", help="treat warnings (e.g. ignored syntax errors) as errors")] = False,
        home: HomeOption = None,
    ) -> None:
        try:
            report = run_checks(CheckTarget(conf=conf, home=home), validators)
        except CheckFailed as exc:
            fail(str(exc))
        for w in report.warnings:
            print(f"WARNING: {w}", file=sys.stderr)
        if strict and report.warnings:
            fail(f"{len(report.warnings)} warning(s) and --strict")
        print("ok: " + "; ".join(report.summary))


def _home_state(settings, rules: acl.Rules) -> access_cmd.RepoState:
    """Repos exist as they do under HOME/repositories, wild ones with their gl-* files."""
    plain = set(rules.repo_names())

    def state(repo: str) -> tuple[bool, acl.WildInfo | None]:
        if repo in plain:
            return True, None
        if not acl.patterns.is_reponame(repo) or ".." in repo or repo.startswith("@"):
            return False, None
        path = settings.repo_path(repo)
        if not path.is_dir():
            return False, None
        return True, wild.read_wild(path)

    return state
