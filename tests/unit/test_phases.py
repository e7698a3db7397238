"""tests/support/phases.py names files by path: a renamed or moved file would drop out of the
serial phase silently and run beside another file, measuring its neighbour."""

from __future__ import annotations

from pathlib import Path

from tests.support.phases import FIRST, SERIAL

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_the_phases_name_exists() -> None:
    missing = [path for path in (*SERIAL, *FIRST) if not (ROOT / path).is_file()]
    assert missing == [], missing


def test_no_file_is_both_serial_and_first_of_the_parallel_phase() -> None:
    assert not set(SERIAL) & set(FIRST)
