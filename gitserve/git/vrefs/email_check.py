"""VREF/EMAIL-CHECK[/DOMAIN]: every pushed commit must be authored as GL_USER@DOMAIN
(Gitolite's EMAIL-CHECK, whose DOMAIN is the sample atc.tcs.com that sites edit; here it can
be given as the VREF's argument instead). The refusal is Gitolite's text."""

from __future__ import annotations

import os
import sys

from gitserve.git.vrefs._git import git

SAMPLE_DOMAIN = "atc.tcs.com"


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("not meant to be run manually\n")
        return 1
    user = os.environ.get("GL_USER", "")
    domain = argv[7] if len(argv) > 7 and argv[7] else SAMPLE_DOMAIN
    expected = f"{user}@{domain}"
    for rev in git("log", "--format=%ae\t%h\t%s", argv[2], "--not", "--all").splitlines():
        email, short, subject = (rev.split("\t", 2) + ["", ""])[:3]
        if email != expected:
            sys.stderr.write(f"{user}, you can't push {short} authored by {email}\n"
                             f"\t(subject of commit was {subject})\n")
            return 255  # Perl's die
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
