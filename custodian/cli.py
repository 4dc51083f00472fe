"""The ``custodian`` command.

With no subcommand it opens the TUI. Every subcommand runs without a terminal
when its values come as options (scripts, cron), and fails with one line on
standard error and a non-zero exit status. Imports are lazy so that
``custodian --help`` and ``custodian kek list`` start quickly and never import
textual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from custodian.catalog import Backup
    from custodian.service import Service

PROG = "custodian"


def _service(args: argparse.Namespace) -> Service:
    from custodian.service import Service

    return Service.open(args.home)


def _human(n: int) -> str:
    if n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


class _TermProgress:
    """A progress line on standard error when it is a terminal; silent otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        pct = int(100 * done / total) if total else 100
        if pct != self.last:
            self.last = pct
            sys.stderr.write(f"\r{self.what}: {pct:3d}% ({_human(done)} of {_human(total)})")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.last >= 0:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from custodian.service import Service

    with Service.init(
        args.home, kek=args.kek, suite=args.suite, keyring_backend=args.keyring
    ) as svc:
        k = svc.kek(args.kek)
        print(f"created home {svc.home.path}")
        print(f"root key stored in keyring: {svc.keyring.description}")
        print(f"KEK {k.name} v1 ({k.suite}) fingerprint {k.versions[0].fingerprint}")
    return 0


def cmd_kek_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        keks = svc.keks()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "name": k.name,
                            "backend": k.backend,
                            "suite": k.suite,
                            "purpose": k.purpose,
                            "current_version": k.current_version,
                            "created_at": k.created_at,
                            "versions": [
                                {
                                    "version": v.version,
                                    "state": v.state,
                                    "created_at": v.created_at,
                                    "fingerprint": v.fingerprint,
                                    "deks": v.dek_count,
                                }
                                for v in k.versions
                            ],
                        }
                        for k in keks
                    ],
                    indent=2,
                )
            )
            return 0
        print(f"{'KEK':<20} {'VER':>4} {'STATE':<10} {'DEKS':>8}  {'CREATED':<20} FINGERPRINT")
        for k in keks:
            for v in reversed(k.versions):
                cur = "*" if v.version == k.current_version else " "
                print(
                    f"{k.name:<20} {cur}{v.version:>3} {v.state:<10} {v.dek_count:>8}  "
                    f"{v.created_at[:19]:<20} {v.fingerprint}"
                )
            print(f"{'':<20} backend {k.backend}, suite {k.suite}, {k.dek_count} DEKs")
    return 0


def cmd_backup_encrypt(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        prog = _TermProgress("encrypting")
        if args.src == "-":
            b = svc.encrypt_backup(
                sys.stdin.buffer,
                Path(args.dst),
                kek=args.kek,
                label=args.label,
                force=args.force,
                progress=prog,
            )
        else:
            b = svc.encrypt_backup(
                Path(args.src),
                Path(args.dst),
                kek=args.kek,
                label=args.label,
                force=args.force,
                progress=prog,
            )
        prog.done()
        if args.json:
            print(json.dumps(_backup_json(b)))
        else:
            print(
                f"{b.id} {b.label} {_human(b.size)} -> {b.location} "
                f"(KEK {b.kek} v{b.kek_version}, sha256 {b.container_sha256[:16]}…)"
            )
    return 0


def _backup_json(b: Backup) -> dict[str, Any]:
    return {
        "id": b.id,
        "label": b.label,
        "created_at": b.created_at,
        "size": b.size,
        "container_size": b.container_size,
        "container_sha256": b.container_sha256,
        "location": b.location,
        "kek": b.kek,
        "kek_version": b.kek_version,
    }


def cmd_backup_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        rows = svc.backups(
            text=args.filter or "",
            kek=args.kek,
            version=args.version,
            order=args.sort,
            descending=not args.ascending,
            limit=args.limit,
        )
        if args.json:
            print(json.dumps([_backup_json(b) for b in rows], indent=2))
            return 0
        print(f"{'ID':<36}  {'CREATED':<19}  {'SIZE':>10}  {'KEK':<16}  LABEL")
        for b in rows:
            print(
                f"{b.id:<36}  {b.created_at[:19]:<19}  {_human(b.size):>10}  "
                f"{b.kek + ' v' + str(b.kek_version):<16}  {b.label}"
            )
        print(f"{len(rows)} of {svc.backup_count()} backups")
    return 0


def cmd_backup_import(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        for f in args.files:
            b = svc.import_backup(Path(f), label=args.label)
            print(f"imported {b.id} {b.label} (KEK {b.kek} v{b.kek_version})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from custodian.demo import build_demo

    if not args.home:
        print(
            f"{PROG}: error: demo needs --home DIR (it never touches your real home)",
            file=sys.stderr,
        )
        return 2
    prog = _TermProgress("building demo")
    svc = build_demo(Path(args.home), backups=args.backups, progress=prog)
    prog.done()
    with svc:
        st = svc.status()
        print(
            f"demo home ready at {st.home}: {st.backup_count} backups, "
            f"{sum(len(k.versions) for k in st.keks)} KEK versions"
        )
        print(f"open it with: {PROG} --home {st.home}")
    return 0


TuiRunner = Callable[["Service"], None]
_tui: TuiRunner | None = None


def cmd_tui(args: argparse.Namespace) -> int:
    if _tui is None:
        print(
            f"{PROG}: error: the TUI is not part of this entry point; run the "
            f"'{PROG}' command installed with the package.",
            file=sys.stderr,
        )
        return 2
    svc = _service(args)
    try:
        _tui(svc)
    finally:
        svc.close()
    return 0


# ---------------------------------------------------------------- parser


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

    s = sub.add_parser("init", help="create a home with its root key and a first KEK")
    s.add_argument("--kek", default="backups", help="name of the first KEK (default: backups)")
    s.add_argument(
        "--suite",
        default="mlkem768-x25519",
        choices=["mlkem768-x25519", "x25519", "p256"],
        help="HPKE suite of the KEK",
    )
    s.add_argument(
        "--keyring",
        default="system",
        choices=["system", "home-file"],
        help="where the root key lives: the OS keyring (default) or, for demos "
        "and tests only, a file inside the home",
    )
    s.set_defaults(func=cmd_init)

    kek = sub.add_parser("kek", help="key-encryption keys").add_subparsers(
        dest="kek_command", metavar="COMMAND", required=True
    )
    s = kek.add_parser("list", help="KEKs, versions, states and DEK census")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_kek_list)

    bk = sub.add_parser("backup", help="encrypted backups").add_subparsers(
        dest="backup_command", metavar="COMMAND", required=True
    )
    s = bk.add_parser("encrypt", help="encrypt SRC (or - for stdin) into a new container DST")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--kek", help="KEK to wrap the DEK under (default: the home's default)")
    s.add_argument("--label", help="label in the catalog (default: the source's file name)")
    s.add_argument("--force", action="store_true", help="replace DST if it exists")
    s.add_argument("--json", action="store_true", help="print the catalog record as JSON")
    s.set_defaults(func=cmd_backup_encrypt)
    s = bk.add_parser("list", help="backups in the catalog")
    s.add_argument("--filter", metavar="TEXT", help="only labels or ids containing TEXT")
    s.add_argument("--kek", help="only backups under this KEK")
    s.add_argument("--version", type=int, help="only backups under this KEK version")
    s.add_argument(
        "--sort", default="created_at", choices=["created_at", "label", "size", "kek_version", "id"]
    )
    s.add_argument("--ascending", action="store_true", help="oldest or smallest first")
    s.add_argument("--limit", type=int, help="at most this many rows")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_backup_list)
    s = bk.add_parser("import", help="register containers made elsewhere")
    s.add_argument("files", metavar="FILE", nargs="+")
    s.add_argument("--label", help="label in the catalog (default: the file name)")
    s.set_defaults(func=cmd_backup_import)

    s = sub.add_parser("demo", help="build a demo home (local backend, sample backups)")
    s.add_argument("--backups", type=int, default=1000, help="how many sample backups")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("tui", help="open the TUI (the same as no command)")
    s.set_defaults(func=cmd_tui)
    return p


def main(argv: Sequence[str] | None = None, *, tui: TuiRunner | None = None) -> int:
    """Run the command line. ``tui`` opens the TUI; the core cannot import it, so the
    ``custodian`` console script (:mod:`screens.entry`) passes it in."""
    global _tui
    _tui = tui
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = getattr(args, "func", cmd_tui)
    from custodian.errors import CustodianError

    try:
        return func(args)
    except CustodianError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing half-done was recorded.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        print(
            f"{PROG}: error: {e.strerror or e} ({e.filename or 'no file'}); nothing was recorded.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # python -m custodian.cli: every command but the TUI
    sys.exit(main())
