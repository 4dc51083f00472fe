"""``python -m custodian``: the same as the ``custodian`` console script.

The core may not import the UI (``screens``, textual), so the TUI is found
through the package's entry point (group ``custodian.ui``, name ``tui``; see
pyproject.toml), and only when it is really opened: ``python -m custodian kek
list`` imports no textual.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from custodian.cli import PROG, TuiRunner
from custodian.cli import main as cli_main
from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.home import Home
    from custodian.service import Service

UI_GROUP = "custodian.ui"


def load_tui() -> TuiRunner:
    """The installed TUI, or an error (exit status 3) when no entry point provides one."""
    from importlib.metadata import entry_points

    found = entry_points(group=UI_GROUP, name="tui")
    if not found:
        e = CustodianError(
            f"no TUI is installed (no '{UI_GROUP}' entry point named 'tui'); reinstall the "
            f"package, or use a subcommand (see '{PROG} --help')."
        )
        e.exit_code = 3
        raise e
    runner: TuiRunner = next(iter(found)).load()
    return runner


def open_tui(target: Service | Home) -> None:
    load_tui()(target)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, tui=open_tui)


if __name__ == "__main__":
    sys.exit(main())
