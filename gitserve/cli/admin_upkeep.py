"""`gitserve admin fsck [REPO]` and `gitserve admin gc [REPO]` (gitserve.upkeep, dulwich).

Both work on a running server's home: gc keeps young unreachable objects (a push in
flight) and takes the repository's upkeep lock, so it never races the server's own gc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gitserve.settings import Settings

from .common import HomeOption, fail, load_settings


def _targets(home: Optional[Path], repo: Optional[str]) -> tuple[Settings, list[tuple[str, Path]]]:
    """The settings and the (name, path) of REPO, or of every repository; one line if unknown."""
    from gitserve import upkeep

    settings = load_settings(home)
    try:
        return settings, upkeep.select_repos(settings, repo)
    except upkeep.UpkeepError as exc:
        fail(str(exc))


def add_commands(app: typer.Typer) -> None:
    @app.command("fsck")
    def fsck(
        repo: Annotated[Optional[str], typer.Argument(help="Repository (default: all).")] = None,
        home: HomeOption = None,
    ) -> None:
        """Check every object and that the refs reach only objects that exist; exit 1 on damage."""
        from gitserve import upkeep

        settings, targets = _targets(home, repo)
        damaged = 0
        for name, path in targets:
            report = upkeep.fsck_repo(path, name)
            if report.ok:
                print(f"{name}: ok ({report.objects} objects, {report.packs} packs)")
            else:
                damaged += 1
                print(f"{name}: {len(report.problems)} problem(s)")
                for line in report.problems:
                    print(f"  error: {line}")
            for line in report.notes:
                print(f"  note: {line}")
        if damaged:
            fail(f"{damaged} of {len(targets)} repositories damaged")

    @app.command("gc")
    def gc(
        repo: Annotated[Optional[str], typer.Argument(help="Repository (default: all).")] = None,
        prune_grace: Annotated[Optional[float], typer.Option(
            "--prune-grace", min=0,
            help="Keep unreachable objects younger than this many seconds "
                 "(default: [upkeep] prune_grace, two weeks).")] = None,
        home: HomeOption = None,
    ) -> None:
        """Repack into one pack, prune old unreachable objects, remove leftovers of dead pushes."""
        from gitserve import upkeep

        settings, targets = _targets(home, repo)
        grace = settings.upkeep.prune_grace if prune_grace is None else prune_grace
        failed = 0
        for name, path in targets:
            try:
                print(upkeep.gc_repo(path, name, grace_period=grace).summary())
            except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                failed += 1
                print(f"{name}: gc failed: {' '.join(str(exc).split())}")
        if failed:
            fail(f"gc failed for {failed} of {len(targets)} repositories")
