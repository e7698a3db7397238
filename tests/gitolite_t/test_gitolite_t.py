"""Gitolite's own test suite, over ssh against gitserve and locally against Debian's gitolite3.

Fails when gitserve fails (or never reaches) a t/ test that differences.py does not list as
a deliberate difference, when a listed one starts passing (the list must stay true), or when
real Gitolite fails one that is not in GITOLITE_KNOWN (the suite itself would be broken).
The per-file table is printed (pytest -s shows it; it is also in the failure message).

Gitolite's tree comes from the shared bundle (see suite.bundle_dir); CI clones the project
with shared/ beside it; without it, Debian's gitolite3 source (the same tree) is fetched from
the apt mirror. A missing perl or gitolite3 skips locally and fails in CI.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.gitolite_t import suite
from tests.gitolite_t.differences import DELIBERATE, GITOLITE_KNOWN
from tests.support.tools import require_tool

# ~5 minutes on an idle 2-core machine (both targets, two files at a time)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_gitolite_suite_over_ssh() -> None:
    for tool in ("perl", "git", "ssh", "gitolite"):
        require_tool(tool)
    # without the shared bundle the runner takes Gitolite's tree from Debian's source package
    root = Path(tempfile.mkdtemp(prefix="gitolite-t-"))
    try:
        files = list(suite.WIRE_FILES)
        results = suite.run_suite(files, list(suite.TARGETS), root, jobs=2)
        table = suite.table(results, files, list(suite.TARGETS))
        print("\n" + table)
        problems = suite.unexpected(results, files)
        for f in files:
            r = results[("gitolite", f)]
            known = GITOLITE_KNOWN.get(f, {})
            problems += [f"{f} #{n}: fails against Gitolite itself"
                         for n in sorted(set(r.failed) | set(r.not_run)) if n not in known]
        assert not problems, table + "\n" + "\n".join(problems)
        assert sum(len(r.passed) for r in results.values()) > 2000, table
        assert all(n in range(1, 1000) for d in DELIBERATE.values() for n in d)
    finally:
        shutil.rmtree(root, ignore_errors=True)
