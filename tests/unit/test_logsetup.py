"""The server's log file takes any line: what a client sends (an ssh command's bytes that are
not UTF-8, decoded with surrogateescape) may be part of one. Strict UTF-8 lost the line and
printed logging's own traceback ("--- Logging error ---") on the admin's console."""

from __future__ import annotations

import json
import logging

import pytest

from gitserve import logsetup


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_line_with_undecodable_bytes_is_logged_escaped_and_nothing_else(tmp_path, capsys, fmt) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        path = logsetup.configure(tmp_path, "server.log", fmt=fmt, console=True)
        odd = b"info \xff\xfe".decode("utf-8", "surrogateescape")
        logging.getLogger("gitserve.ssh").warning("refused alice: unknown command %s", odd)
        for handler in root.handlers:
            handler.flush()
        line = path.read_text()
        if fmt == "json":
            line = json.loads(line)["message"].encode("utf-8", "surrogateescape").decode("latin-1")
            assert line == "refused alice: unknown command info \xff\xfe"  # the bytes, back
        else:
            assert "refused alice: unknown command info \\udcff\\udcfe" in line
        err = capsys.readouterr().err
        assert "Logging error" not in err and "Traceback" not in err, err
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
