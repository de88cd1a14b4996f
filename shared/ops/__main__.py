"""`python -m shared.ops <command>`: the operator command (`shared.ops.cli`)."""

import sys

from shared.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
