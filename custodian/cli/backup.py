"""``custodian backup``: encrypt into a new container, list the catalog, import."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from custodian.cli.common import (
    Subparsers,
    TermProgress,
    add_acting,
    human,
    open_service,
    say,
    unlock_actor,
)

if TYPE_CHECKING:
    from custodian.catalog import Backup


def cmd_backup_encrypt(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        prog = TermProgress("encrypting")
        src: Path | BinaryIO = sys.stdin.buffer if args.src == "-" else Path(args.src)
        b = svc.backups.encrypt(
            src,
            Path(args.dst),
            by=by,
            kek=args.kek,
            label=args.label,
            force=args.force,
            progress=prog,
        )
        prog.done()
        if args.json:
            print(json.dumps(_backup_json(b)))
        else:
            say(
                f"{b.id} {b.label} {human(b.size)} -> {b.location} "
                f"(KEK {b.kek} v{b.kek_version}, digest {b.container_sha256[:19]}…)"
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


# --sort takes the Backups screen's names (its 'sorted by created, newest first'); the
# catalog's column names of 0.1.0 stay accepted
SORT_KEYS = {
    "created": "created_at",
    "label": "label",
    "size": "size",
    "version": "kek_version",
    "id": "id",
    "created_at": "created_at",
    "kek_version": "kek_version",
}


def _sort_key(text: str) -> str:
    if text not in SORT_KEYS:
        raise argparse.ArgumentTypeError(
            f"cannot sort by {text!r}; use created, label, size, version or id"
        )
    return SORT_KEYS[text]


def cmd_backup_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        rows = svc.backups.list(
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
        say(f"{'ID':<36}  {'CREATED':<19}  {'SIZE':>10}  {'KEK':<16}  LABEL")
        for b in rows:
            say(
                f"{b.id:<36}  {b.created_at[:19]:<19}  {human(b.size):>10}  "
                f"{b.kek + ' v' + str(b.kek_version):<16}  {b.label}"
            )
        say(f"{len(rows):,} of {svc.backups.total():,} backups")
    return 0


def cmd_backup_import(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        for f in args.files:
            b = svc.backups.import_file(Path(f), by=by, label=args.label)
            say(f"imported {b.id} {b.label} (KEK {b.kek} v{b.kek_version})")
    return 0


def add_parsers(sub: Subparsers) -> None:
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
    add_acting(s)
    s.set_defaults(func=cmd_backup_encrypt)
    s = bk.add_parser("list", help="backups in the catalog")
    s.add_argument("--filter", metavar="TEXT", help="only labels or ids containing TEXT")
    s.add_argument("--kek", help="only backups under this KEK")
    s.add_argument("--version", type=int, help="only backups under this KEK version")
    s.add_argument(
        "--sort",
        default="created",
        type=_sort_key,
        metavar="{created,label,size,version,id}",
        help="the column to sort on, named as the Backups screen names it (default: created)",
    )
    s.add_argument(
        "--ascending", action="store_true", help="oldest, smallest or A first (default: reversed)"
    )
    s.add_argument("--limit", type=int, help="at most this many rows")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_backup_list)
    s = bk.add_parser("import", help="register containers made elsewhere")
    s.add_argument("files", metavar="FILE", nargs="+")
    s.add_argument("--label", help="label in the catalog (default: the file name)")
    add_acting(s)
    s.set_defaults(func=cmd_backup_import)
