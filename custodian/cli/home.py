"""The home itself: ``init``, ``demo`` (build, or show the demo people's codes), ``tui``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custodian.cli.common import PROG, Subparsers, TermProgress, TuiRunner, open_service, say


def cmd_init(args: argparse.Namespace) -> int:
    from custodian.service import Service

    with Service.init(
        args.home,
        kek=args.kek,
        suite=args.suite,
        keyring_backend=args.keyring,
        custody=args.custody,
    ) as svc:
        h = svc.home.path
        say(f"created home {h}")
        say(f"root key stored in keyring: {svc.keyring.description}")
        if args.custody == "single":
            k = svc.keys.get(args.kek)
            say(
                f"KEK {k.name} v1 ({k.suite}, single custody: its private key is sealed by "
                f"the root key) fingerprint {k.versions[0].fingerprint}"
            )
            say(
                f"next: enrol the first custodian with '{PROG} --home {h} people "
                "enrol NAME --role custodian'"
            )
            return 0
        say(
            f"no KEK yet: KEK {args.kek} will be a quorum KEK (the default custody), made "
            "with its holders present, and this home has no custodians yet"
        )
        say(
            f"next: enrol at least three custodians ('{PROG} --home {h} people enrol NAME "
            "--role custodian'; the first needs no --as, the next are enrolled --as the "
            "first), then, with the holders present, "
            f"'{PROG} --home {h} kek create {args.kek} --custody quorum --holders "
            "NAME,NAME,NAME --quorum 2 --as NAME' (or the set-up ceremony in the TUI)"
        )
    return 0


def cmd_demo_codes(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        for name, code, left in svc.people.demo_codes():
            say(f"{name:<12} {code}   ({left:2d} s left)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.action == "codes":
        return cmd_demo_codes(args)
    from custodian.demo import build_demo

    if not args.home:
        print(
            f"{PROG}: error: demo needs a directory of its own, named before the command: "
            f"{PROG} --home DIR demo (it never touches your real home)",
            file=sys.stderr,
        )
        return 2
    prog = TermProgress("building demo", unit="backups")
    svc = build_demo(Path(args.home), backups=args.backups, progress=prog)
    prog.done()
    with svc:
        st = svc.status()
        say(
            f"demo home ready at {st.home}: {st.backup_count:,} backups, "
            f"{sum(len(k.versions) for k in st.keks):,} KEK versions; a retired KEK version "
            f"may be destroyed after {st.policy.retirement_wait_days} day(s) here "
            "(policy retirement_wait_days, 7 on a new home)"
        )
        from custodian import demo as D

        say(
            f"KEK {D.QUORUM_KEK}: quorum custody, any {D.QUORUM_M} of "
            f"{', '.join(D.HOLDERS)} (the default); KEK {D.SINGLE_KEK}: single custody, to "
            f"rotate or to migrate ({PROG} kek migrate {D.SINGLE_KEK} --to quorum ...)"
        )
        say(f"demo only: {D.KDF_NOTE}")
        say(f"open it with: {PROG} --home {st.home}")
        say(
            f"sample people: {', '.join(p.name for p in svc.people.list())}; "
            f"their codes: {PROG} --home {st.home} demo codes"
        )
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """Open the TUI with the runner :func:`custodian.cli.main` was given (``args.tui``).

    On a directory that holds no home yet (missing, or empty) the TUI gets the
    :class:`~custodian.home.Home` instead of a service: it opens the first set-up
    ceremony, which makes the home there (docs/custodian-guide.md, "First set-up")."""
    from custodian.home import Home

    tui: TuiRunner | None = getattr(args, "tui", None)
    if tui is None:
        print(
            f"{PROG}: error: the TUI is not part of this entry point; run the "
            f"'{PROG}' command installed with the package.",
            file=sys.stderr,
        )
        return 2
    home = Home.resolve(args.home)
    if not home.config.exists() and (not home.path.exists() or _empty_dir(home.path)):
        tui(home)
        return 0
    svc = open_service(args)
    try:
        tui(svc)
    finally:
        svc.close()
    return 0


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def add_init_parser(sub: Subparsers) -> None:
    s = sub.add_parser(
        "init", help="create a home with its root key (and, --custody single, a first KEK)"
    )
    s.add_argument("--kek", default="backups", help="name of the first KEK (default: backups)")
    s.add_argument(
        "--suite",
        default="mlkem768-x25519",
        choices=["mlkem768-x25519", "x25519", "p256"],
        help="HPKE suite of the KEK",
    )
    s.add_argument(
        "--custody",
        choices=["quorum", "single"],
        default="quorum",
        help="quorum (default): the first KEK is made later, with its holders present, "
        "after the custodians are enrolled; single: a first KEK now, its private key "
        "sealed by the root key (docs/threat-model.md says what each gives)",
    )
    s.add_argument(
        "--keyring",
        default="system",
        choices=["system", "home-file"],
        help="where the root key lives: the OS keyring (default) or, for demos "
        "and tests only, a file inside the home",
    )
    s.set_defaults(func=cmd_init)


def add_demo_and_tui_parsers(sub: Subparsers) -> None:
    """The last two commands (``--help`` lists them after every group)."""
    s = sub.add_parser("demo", help="build a demo home, or show its people's TOTP codes")
    s.add_argument(
        "action",
        nargs="?",
        choices=["build", "codes"],
        default="build",
        help="build (default): a new demo home at --home; codes: current codes",
    )
    s.add_argument("--backups", type=int, default=1000, help="how many sample backups")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("tui", help="open the TUI (the same as no command)")
    s.set_defaults(func=cmd_tui)
