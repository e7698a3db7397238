"""Gitolite t/ tests that gitserve fails on purpose, by file and test number, with the reason."""

DELIBERATE: dict[str, dict[int, str]] = {}
