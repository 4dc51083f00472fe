"""``custodian kek migrate NAME --to BACKEND``: move a KEK to another backend.

To quorum custody the holders are present, as for ``kek create --custody quorum``:
each types their passphrase (or gives it on --holder-passphrase-fd NAME=FD). The
migration's rewrap job then runs here (``--no-rewrap`` leaves it waiting); a
stopped or killed job resumes with ``custodian kek rewrap NAME``.
"""

from __future__ import annotations

import argparse
from typing import Any

from custodian.cli.common import PROG, add_acting, add_totp_fd, open_service, say, unlock_actor


def cmd_kek_migrate(args: argparse.Namespace) -> int:
    from custodian.cli.common import usage_error
    from custodian.cli.kek import _code, _holders, _run_rewrap

    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        pv = svc.migrations.preview(args.name, args.to)
        say(
            f"migrate KEK {pv.kek} from {pv.from_backend} to {pv.to}: v{pv.new_version} on "
            f"{pv.to}, then every older DEK rewrapped to it"
        )
        _say_census(pv.census)
        why = svc.migrations.refusal(args.name, args.to, by=by)
        if why:  # said before any passphrase or code is typed
            raise _refused(why)
        if args.to == "quorum":
            if not args.holders:
                raise usage_error(
                    "a migration to quorum custody needs its holders: --holders NAME,NAME,NAME "
                    "(and --quorum M)."
                )
            holders = _holders(svc, args, by)
            code = _code(args, by)
            j = svc.migrations.to_quorum(args.name, holders, args.quorum, by=by, code=code)
            m = svc.keys.manifest(args.name, j.target_version)
            say(
                f"KEK {args.name} v{j.target_version} is a quorum version ({m.m} of {m.n}: "
                f"{', '.join(h.name for h in m.holders)}), manifest fingerprint "
                f"{svc.keys.get(args.name).versions[-1].fingerprint}; every new DEK is "
                "wrapped to its holders from now on"
            )
        else:
            if args.holders:
                raise usage_error("--holders is for a migration to quorum custody.")
            code = _code(args, by)
            j = svc.migrations.to_backend(args.name, args.to, by=by, code=code)
            say(
                f"KEK {args.name} v{j.target_version} lives on {args.to}, fingerprint "
                f"{svc.keys.get(args.name).versions[-1].fingerprint}; every new DEK is wrapped "
                "there from now on"
            )
        if args.no_rewrap:
            say(f"rewrap job {j.id} waits; run it with: {PROG} kek rewrap {args.name} --as NAME")
            return 0
        rc = _run_rewrap(svc, args, by)
        _say_census(svc.migrations.census(args.name))
        if rc == 0:
            old = [
                r.version
                for r in svc.migrations.census(args.name)
                if r.backend != args.to and r.state == "active"
            ]
            if old:
                say(
                    "the old versions' key material still opens the DEKs wrapped in the "
                    f"containers' headers: retire them ({PROG} kek retire {args.name} VERSION) "
                    f"and destroy them ({PROG} kek destroy {args.name} VERSION --reason TEXT; "
                    "waiting period, then two other custodians approve)"
                )
        return rc


def _say_census(rows: Any) -> None:
    for r in rows:
        say(f"  {r.backend:<10} v{r.version:<3} {r.state:<10} {r.deks:>10,} DEK(s)")


def _refused(why: str) -> Exception:
    from custodian.errors import ConflictError

    return ConflictError(why)


def add_parser(kek: Any) -> None:
    from custodian.cli.kek import _add_rewrap_options

    s = kek.add_parser(
        "migrate",
        help="move a KEK to another backend (quorum: holders present), then rewrap every DEK "
        "(custodians; TOTP)",
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument(
        "--to", required=True, metavar="BACKEND", help="quorum, local, or a configured backend"
    )
    s.add_argument("--holders", default="", help="quorum: the holders, NAME,NAME,NAME (x = 1..N)")
    s.add_argument("--quorum", type=int, default=2, metavar="M", help="quorum: M of N (2)")
    s.add_argument(
        "--holder-passphrase-fd",
        action="append",
        metavar="NAME=FD",
        help="quorum: read a holder's passphrase from file descriptor FD (else a terminal)",
    )
    s.add_argument("--no-rewrap", action="store_true", help="create the version and job only")
    _add_rewrap_options(s)
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_kek_migrate)
