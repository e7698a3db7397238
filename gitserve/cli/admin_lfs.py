"""`gitserve admin lfs-gc [REPO] [--grace SECONDS] [--dry-run]` (gitserve/lfs/gc.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import HomeOption, fail, load_settings


def add_commands(app: typer.Typer) -> None:
    @app.command("lfs-gc")
    def lfs_gc(
        repo: Annotated[Optional[str], typer.Argument(help="Repository (default: all).")] = None,
        grace: Annotated[float, typer.Option(
            "--grace", min=0, help="Keep unreferenced objects younger than this many seconds "
                                   "(an upload whose push has not arrived yet).")] = 86400.0,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list them.")] = False,
        home: HomeOption = None,
    ) -> None:
        """Remove the LFS objects no ref of their repository reaches."""
        from gitserve import upkeep
        from gitserve.lfs import gc
        from gitserve.lfs.repo import store_for

        settings = load_settings(home)
        try:
            targets = upkeep.select_repos(settings, repo)
        except upkeep.UpkeepError as exc:
            fail(str(exc))
        for name, path in targets:
            store = store_for(settings, name)
            if not store.root.is_dir():
                continue
            result = gc.collect(Path(path), store, grace, dry_run)
            verb = "would remove" if dry_run else "removed"
            print(f"{name}: {verb} {len(result.removed)} object(s), {result.freed} bytes; "
                  f"kept {result.kept}")
