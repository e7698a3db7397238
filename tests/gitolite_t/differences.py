"""Gitolite t/ tests that gitserve fails on purpose (or until another issue lands), by file
and test number (the `ok (N)` number Gitolite's Tsh prints), with the reason.

Every other test of the over-the-wire files must pass against gitserve; the suite fails if
a test listed here starts passing, so this list stays true.
"""

_BAD_CONF = ("gitserve refuses an admin push whose conf is broken (SPEC §2: nobody locks "
             "themselves out); Gitolite accepts the push and keeps its old rules")

DELIBERATE: dict[str, dict[int, str]] = {
    "0-me-first": {
        34: "the push log is HOME/logs/audit.log, one JSON object per line (SPEC §2), not "
            "Gitolite's tab-separated .gitolite/logs file; the same facts are there "
            "(#36/#37 find the old and new shas in it)",
        35: "same: no tab-separated `aa\\tu1\\t+\\trefs/heads/master` line in a JSON log",
    },
    "basic": {
        5: "CHECK_SETUP looks for the sha of `gitolite setup`'s first admin commit; gitserve's "
           "first admin commit is `gitserve init`'s",
    },
    "include-subconf": {
        36: _BAD_CONF + " (here: `subconf` run from inside a subconf)",
        40: "the refusal says `FATAL: conf/g2.conf:2: subconf 'g2' attempting to run "
            "'subconf'` (file:line first, as every gitserve conf error); the test wants "
            "Gitolite's `FATAL: subconf 'g2' ...` with nothing in between",
    },
    "merge-check": {
        28: "`git merge` of Debian 12's git says \"Merge made by the 'ort' strategy\", the "
            "test wants 'recursive': a local git message, fails against Gitolite too",
    },
}

# tests that real Gitolite (Debian's gitolite3 with today's git) fails too
GITOLITE_KNOWN: dict[str, dict[int, str]] = {
    "info-json": {
        14: "Debian's gitolite3 reports its version as `3.6.12-1 (Debian)`, the test wants "
            "`v3.[5-9]...`",
    },
    "merge-check": {28: DELIBERATE["merge-check"][28]},
}
