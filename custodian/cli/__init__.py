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
from typing import Any

from custodian.cli import (
    audit,
    backend,
    backup,
    breakglass,
    home,
    kek,
    people,
    policy,
    restore,
)
from custodian.cli.common import PROG, Parser, TuiRunner
from custodian.errors import CatalogError, CustodianError

__all__ = ["PROG", "TuiRunner", "build_parser", "main"]


# Which module adds which top-level command (a module may add several).
_OWNERS = {
    "init": "home",
    "kek": "kek",
    "backend": "backend",
    "people": "people",
    "audit": "audit",
    "policy": "policy",
    "backup": "backup",
    "restore": "restore",
    "breakglass": "breakglass",
    "approve": "restore",
    "deny": "restore",
    "demo": "home",
    "tui": "home",
}


def _command(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (skipping ``--home DIR``), or None."""
    it = iter(argv)
    for a in it:
        if a == "--home":
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given ``argv`` that names a known command, only that command's
    group is built (every group's parsers cost start-up time: ``kek list`` should not
    pay for ``people enrol``'s). Help and errors of that command are the same."""
    from custodian import __version__

    cmd = _command(argv) if argv is not None else None
    only = _OWNERS.get(cmd) if cmd is not None else None

    p = Parser(
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
    groups: list[tuple[str, Callable[[Any], None]]] = [
        ("home", home.add_init_parser),
        ("kek", kek.add_parsers),
        ("backend", backend.add_parsers),
        ("people", people.add_parsers),
        ("audit", audit.add_parsers),
        ("policy", policy.add_parsers),
        ("backup", backup.add_parsers),
        ("restore", restore.add_parsers),  # restore ..., then approve and deny
        ("breakglass", breakglass.add_parsers),
        ("home", home.add_demo_and_tui_parsers),
    ]
    for name, add in groups:
        if only is None or name == only:
            add(sub)
    return p


def main(argv: Sequence[str] | None = None, *, tui: TuiRunner | None = None) -> int:
    """Run the command line. ``tui`` opens the TUI; the core cannot import it, so the
    ``custodian`` console script (:mod:`screens.entry`) passes it in."""
    from custodian.hardening import no_core_dumps

    no_core_dumps()  # before any secret is read: no core of this process holds one
    arguments = list(sys.argv[1:] if argv is None else argv)
    Parser.argv = arguments  # for the hint of a usage error ('--home goes before')
    parser = build_parser(arguments)
    args = parser.parse_args(arguments)
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
