"""``python -m custodian.cli``: every command but the TUI (``python -m custodian`` has it)."""

import sys

from custodian.cli import main

if __name__ == "__main__":
    sys.exit(main())
