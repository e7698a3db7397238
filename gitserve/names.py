"""Names every layer agrees on, defined once: Gitolite's user and repo name patterns and git's
all-zero object id (a created or deleted ref's other side). A leaf module: it imports nothing of
gitserve, so acl/, git/ and the layers above may all use it."""

from __future__ import annotations

import re

ZERO_SHA = "0" * 40

# Gitolite's $USERNAME_PATT / $REPONAME_PATT (without the '@' group prefix the conf allows)
USERNAME_PATT = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z._@+]*$")
REPONAME_PATT = re.compile(r"^[0-9a-zA-Z][-0-9a-zA-Z._@/+]*$")
