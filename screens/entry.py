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
    from custodian.home import Home
    from custodian.service import Service


def open_tui(target: Service | Home) -> None:
    """The TUI on a home; on a home not made yet, or whose first set-up is not finished
    (``svc.setup``), the set-up ceremony (:mod:`screens.setup`) comes first."""
    from custodian.home import Home
    from screens.setup import run_setup

    if isinstance(target, Home) or target.setup.progress().step != "done":
        svc = run_setup(target)
        if svc is None:  # left before the end: the next start carries on
            return
        if isinstance(target, Home):  # the ceremony made (and opened) this service
            try:
                _run(svc)
            finally:
                svc.close()
            return
    else:
        svc = target
    _run(svc)


def _run(service: Service) -> None:
    from screens.app import run

    run(service)


def main() -> int:
    return cli_main(tui=open_tui)


if __name__ == "__main__":
    sys.exit(main())
