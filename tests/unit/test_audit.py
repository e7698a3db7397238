"""audit.py: one JSON object per line, never interleaved between processes."""

from __future__ import annotations

import json
import multiprocessing
import os

from gitserve import audit
from gitserve.settings import Settings


def _writer(home: str, n: int, tag: int) -> None:
    s = Settings(home=__import__("pathlib").Path(home))
    for i in range(n):
        audit.record(s, user=f"u{tag}", ip="127.0.0.1", repo="r", op="W", ref="refs/heads/main",
                     old="0" * 40, new="1" * 40, result="updated", reason="x" * (i % 500))


def test_fields_and_format(tmp_path):
    s = Settings(home=tmp_path)
    audit.record(s, user="alice", ip="10.0.0.1", repo="foo", op="R", result="denied",
                 reason="R any foo alice DENIED by fallthru")
    line = (tmp_path / "logs" / "audit.log").read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert list(entry) == list(audit.FIELDS)
    assert entry["user"] == "alice" and entry["result"] == "denied" and entry["ref"] is None
    assert entry["ts"].endswith("Z")
    assert list(audit.read(s)) == [entry]


def test_concurrent_processes_never_interleave(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 300, t)) for t in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / "logs" / "audit.log").read_text().splitlines()
    assert len(lines) == 1200
    users = [json.loads(ln)["user"] for ln in lines]
    assert sorted(set(users)) == ["u0", "u1", "u2", "u3"]


def test_unwritable_log_does_not_raise(tmp_path, caplog):
    s = Settings(home=tmp_path)
    os.makedirs(tmp_path / "logs" / "audit.log")  # a directory where the file should be
    audit.record(s, user="a", op="R", result="allowed")
    assert "audit log" in caplog.text
