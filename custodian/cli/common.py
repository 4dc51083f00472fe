"""What every command group shares: the home, who is acting, secrets, output.

Secrets (passphrases, TOTP codes) come from a terminal or from an inherited
file descriptor (``--passphrase-fd``, ``--totp-fd``), never from an argument.
At import time this pulls in the standard library and :mod:`custodian.errors`
only; the service and its crypto are imported when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, NoReturn, TypeAlias

from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.home import Home
    from custodian.people import Actor
    from custodian.secret import SecretBytes
    from custodian.service import Service

PROG = "custodian"

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Subparsers = argparse._SubParsersAction
"""What ``add_subparsers()`` returns: each command group adds its parsers to it."""

TuiRunner = Callable[["Service | Home"], None]
"""Opens the TUI on a service, or on a :class:`~custodian.home.Home` not made yet (the
first set-up ceremony makes it); the core cannot import it, so entry points pass one in."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (with where to look), as every
    other error of the command line is; subcommands' parsers are made of this class."""

    argv: ClassVar[list[str]] = []  # what main() parses (for the hint below)

    def error(self, message: str) -> NoReturn:
        from custodian.text import printable

        hint = ""
        late = [a for a in self.argv[1:] if a == "--home" or a.startswith("--home=")]
        if late:  # 'custodian demo --home DIR': the option belongs to custodian itself
            hint = f"; --home goes before the command: {PROG} --home DIR COMMAND ..."
        self.exit(2, f"{self.prog}: error: {printable(message)}{hint} (see {self.prog} --help)\n")


def open_service(args: argparse.Namespace) -> Service:
    from custodian.service import Service

    return Service.open(args.home)


def say(text: object = "", *, flush: bool = False) -> None:
    """Print one line for a person: untrusted text in it (labels, reasons, names from the
    catalog or the log, paths) is escaped so that it cannot drive the terminal or forge a
    line (:func:`custodian.text.printable`). JSON output is printed as it is: ``json.dumps``
    escapes every control character itself."""
    from custodian.text import printable

    print(printable(text), flush=flush)


def human(n: int) -> str:
    if n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n:,} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


class TermProgress:
    """A progress line on standard error when it is a terminal; silent otherwise.

    ``unit`` names what is counted ("backups"); without one the counts are bytes."""

    def __init__(self, what: str, unit: str = "") -> None:
        self.what = what
        self.unit = unit
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        pct = int(100 * done / total) if total else 100
        if pct != self.last:
            self.last = pct
            counts = (
                f"{done:,} of {total:,} {self.unit}"
                if self.unit
                else f"{human(done)} of {human(total)}"
            )
            sys.stderr.write(f"\r{self.what}: {pct:3d}% ({counts})")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.last >= 0:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- who is acting and their secrets


def usage_error(msg: str) -> Exception:
    e = CustodianError(msg)
    e.exit_code = 2
    return e


def read_fd(fd: int) -> bytes:
    """One line from an inherited file descriptor (automation: never an argument)."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.readline().rstrip(b"\r\n")
    except OSError as e:
        raise usage_error(f"cannot read file descriptor {fd}: {e.strerror}") from None


def secret_input(prompt: str, fd: int | None, what: str, *, confirm: bool = False) -> SecretBytes:
    from custodian.secret import SecretBytes

    if fd is not None:
        raw = read_fd(fd)
        if not raw:
            raise usage_error(
                f"the {what} read from file descriptor {fd} is empty; nothing was done. "
                f"Write the {what} and a newline to it."
            )
        return SecretBytes(raw, what)
    if not sys.stdin.isatty():
        raise usage_error(
            f"{what} needed and no terminal to ask on: pass it on a file descriptor "
            f"(see --help), never as an argument."
        )
    import getpass

    first = getpass.getpass(prompt)
    if not first:
        raise usage_error(f"no {what} was typed; nothing was done.")
    if confirm and getpass.getpass("again: ") != first:
        raise usage_error(f"the two {what}s differ; nothing was done.")
    return SecretBytes(first.encode(), what)


def code_input(fd: int | None, who: str) -> str:
    """A TOTP code from ``fd`` or the terminal. On a terminal it is not echoed, as a
    passphrase is not: a code typed at the prompt stays out of the scrollback."""
    if fd is not None:
        return read_fd(fd).decode(errors="replace")
    if not sys.stdin.isatty():
        raise usage_error("a TOTP code is needed and there is no terminal: use --totp-fd N.")
    import getpass

    return getpass.getpass(f"current TOTP code of {who} (not shown as you type): ").strip()


def unlock_actor(svc: Service, args: argparse.Namespace) -> Actor:
    name = getattr(args, "as_", None)
    if not name:
        raise usage_error("this command acts, so it needs to know who you are: --as NAME.")
    from custodian.errors import NotFoundError

    try:
        p = svc.people.get(name)
    except NotFoundError:
        return svc.auth.unlock(name, None)  # records the refusal (name HMAC'd) and raises
    if p.kind == "service" and p.key is not None and p.key.protection == "none":
        return svc.auth.unlock(name, None)
    with secret_input(f"passphrase of {name}: ", args.passphrase_fd, "passphrase") as pw:
        return svc.auth.unlock(name, pw)


def clear_terminal() -> None:
    """After a ceremony step that showed a secret: clear the screen and scrollback."""
    if sys.stdout.isatty():
        sys.stdout.write("\033[H\033[2J\033[3J")
        sys.stdout.flush()


# ---------------------------------------------------------------- options several groups share


def add_acting(s: argparse.ArgumentParser, required: bool = True) -> None:
    """``--as NAME`` and ``--passphrase-fd N``: what :func:`unlock_actor` reads."""
    s.add_argument(
        "--as",
        dest="as_",
        metavar="NAME",
        required=required,
        help="who is acting (their signing key signs the audit entry)",
    )
    s.add_argument(
        "--passphrase-fd",
        type=int,
        metavar="N",
        help="read the acting person's passphrase from file descriptor N",
    )


def add_totp_fd(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--totp-fd", type=int, metavar="N", help="read the TOTP code from file descriptor N"
    )
