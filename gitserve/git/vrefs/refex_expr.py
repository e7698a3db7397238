"""VREF/refex-expr/NAME: Gitolite's refex expressions. Gitolite's access code counts, during
a push, how often each refex allowed the push and evaluates `option refex-expr.NAME = EXPR`
into GL_REFEX_EXPR_NAME; this program only reads that variable (Gitolite's program, same
output). gitserve does not compute those variables yet, so this refuses with Gitolite's
message for a site that did not enable the feature."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 8:
        sys.stderr.write("not meant to be run manually\n")
        return 255
    rule = argv[7]
    name = "GL_REFEX_EXPR_" + rule
    if name not in os.environ:
        sys.stderr.write("\n\nFATAL: GL_REFEX_EXPR_ doesn't exist\n(your admin probably forgot "
                         "the rc file change needed for this to work)\n\n")
        return 255
    res = os.environ[name] or "0"
    if res and res != "0":
        print(f"{argv[6]} ({res})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
