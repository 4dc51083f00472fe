"""The ``custodian`` console script.

The core (:mod:`custodian.cli`) may not import the UI, so this tiny module
hands it the function that opens the TUI. Textual is imported only when the
TUI is really opened, so ``custodian --help`` and every subcommand start fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from custodian.cli import main as cli_main

if TYPE_CHECKING:
    from custodian.service import Service


def open_tui(service: Service) -> None:
    from screens.app import run

    run(service)


def main() -> int:
    return cli_main(tui=open_tui)


if __name__ == "__main__":
    sys.exit(main())
