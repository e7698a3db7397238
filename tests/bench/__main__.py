"""`python -m tests.bench`: run every benchmark and print the table (see run.py)."""

import sys

from tests.bench.run import main

sys.exit(main())
