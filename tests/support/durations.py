"""`--file-durations=N`: at the end of the run, the N slowest test files (setup, call and
teardown of every test in the file summed, so module-scoped servers count where they start)
and the total. scripts/test turns it on; the suite's time budget is watched file by file."""

from __future__ import annotations

from collections import defaultdict

import pytest

_KEY = pytest.StashKey[dict[str, float]]()
_COUNT = pytest.StashKey[dict[str, int]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--file-durations", type=int, default=0, metavar="N",
                     help="print the N slowest test files (seconds summed per file) at the end")


_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    config.stash[_KEY] = defaultdict(float)
    config.stash[_COUNT] = defaultdict(int)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _config
    if config is None:
        return
    path = report.nodeid.split("::", 1)[0]
    config.stash[_KEY][path] += report.duration
    if report.when == "call":
        config.stash[_COUNT][path] += 1


def summarize(per_file: dict[str, float], counts: dict[str, int], n: int) -> list[str]:
    """The lines printed: the N slowest files, then how many files and their total."""
    ranked = sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(per_file.values())
    lines = [f"{secs:8.1f}s  {100 * secs / total if total else 0:5.1f}%  {counts.get(path, 0):4d} tests  {path}"
             for path, secs in ranked[:n]]
    lines.append(f"{total:8.1f}s  total in {len(per_file)} files "
                 f"({sum(counts.values())} tests; slowest {min(n, len(ranked))} above)")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    n = config.getoption("--file-durations")
    if not n:
        return
    terminalreporter.write_sep("=", "slowest test files (setup + call + teardown)")
    for line in summarize(config.stash[_KEY], config.stash[_COUNT], n):
        terminalreporter.write_line(line)
