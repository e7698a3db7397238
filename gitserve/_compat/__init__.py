"""The only place gitserve touches library members that are not public API.

One module per library (dulwich.py, paramiko.py): call sites use the names here, so an
upgrade that renames or drops an internal breaks one file, and tests/unit/test_compat.py
(which checks every member listed in each module's INTERNALS against the installed
library, and exercises the accessors on real objects) says so before a push does.
pyproject.toml pins both libraries to the range those tests ran against.
A leaf: it imports nothing of gitserve's.
"""
