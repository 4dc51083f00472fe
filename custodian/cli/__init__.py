"""The ``custodian`` command.

With no subcommand it opens the TUI. Every subcommand runs without a terminal
when its values come as options (scripts, cron), and fails with one line on
standard error and a non-zero exit status. Imports are lazy so that
``custodian --help`` and ``custodian kek list`` start quickly and never import
textual.

This module builds the parser from the command groups (one module each, each
adding its own subparsers) and maps errors to exit statuses; what the groups
share (the home, ``--as``, secrets from a terminal or a file descriptor,
progress lines) is in :mod:`custodian.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from custodian.cli import audit, backup, home, kek, people, policy, restore
from custodian.cli.common import PROG, TuiRunner
from custodian.errors import CatalogError, CustodianError

__all__ = ["PROG", "TuiRunner", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from custodian import __version__

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Key custody for encrypted backups. With no command, opens the TUI.",
    )
    p.add_argument(
        "--home",
        metavar="DIR",
        default=os.environ.get("CUSTODIAN_HOME"),
        help="the custodian home (default: $CUSTODIAN_HOME, else the platform data dir)",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # The order here is the order --help lists the commands in.
    home.add_init_parser(sub)
    kek.add_parsers(sub)
    people.add_parsers(sub)
    audit.add_parsers(sub)
    policy.add_parsers(sub)
    backup.add_parsers(sub)
    restore.add_parsers(sub)  # restore ..., then approve and deny
    home.add_demo_and_tui_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None, *, tui: TuiRunner | None = None) -> int:
    """Run the command line. ``tui`` opens the TUI; the core cannot import it, so the
    ``custodian`` console script (:mod:`screens.entry`) passes it in."""
    from custodian.hardening import no_core_dumps

    no_core_dumps()  # before any secret is read: no core of this process holds one
    parser = build_parser()
    args = parser.parse_args(argv)
    args.tui = tui
    func: Callable[[argparse.Namespace], int] = getattr(args, "func", home.cmd_tui)
    try:
        return func(args)
    except CustodianError as e:
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _error("interrupted; nothing half-done was recorded.", prefix=f"{PROG}: ")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        _error(f"{e.strerror or e} ({e.filename or 'no file'}); nothing was recorded.")
        return 1
    except Exception as e:
        import sqlite3

        if not isinstance(e, sqlite3.DatabaseError):
            raise
        # a damaged page read in the middle of a command (the catalog opened fine)
        _error(
            f"the catalog of this home could not be read ({e}); nothing was changed. It is "
            "damaged: restore catalog.db from its last copy (it holds no secret), or "
            "rebuild it with 'custodian backup import' of the containers."
        )
        return CatalogError.exit_code


def _error(message: str, *, prefix: str = f"{PROG}: error: ") -> None:
    """One line on standard error; the message can quote untrusted text, so it is escaped."""
    from custodian.text import printable

    print(prefix + printable(message), file=sys.stderr)
