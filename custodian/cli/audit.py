"""``custodian audit``: show and verify the signed audit log, export checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from custodian.cli.common import (
    Subparsers,
    TermProgress,
    add_acting,
    open_service,
    say,
    unlock_actor,
    usage_error,
)
from custodian.errors import CustodianError


def cmd_audit_show(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        rows = svc.audit.entries(
            actor=args.actor,
            action=args.action,
            outcome=args.outcome,
            text=args.text or "",
            last=args.last,
        )
        if args.json:
            for e in rows:
                print(json.dumps(e, sort_keys=True))
            return 0
        for e in rows:
            say(
                f"{e['seq']:>7} {e['time'][:19]} {e['actor']:<12} {e['outcome']:<8} "
                f"{e['action']:<22} {e['subject']}"
            )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        cp = None
        if args.checkpoint:
            try:
                text = Path(args.checkpoint).read_text(encoding="utf-8")
            except OSError as e:  # a file that cannot be read: status 1, as the README says
                raise CustodianError(
                    f"cannot read checkpoint {args.checkpoint}: {e.strerror or e}; nothing "
                    "was verified."
                ) from None
            except ValueError as e:
                raise usage_error(f"checkpoint {args.checkpoint} is not text: {e}") from None
            try:
                cp = json.loads(text)
            except ValueError as e:
                raise usage_error(f"checkpoint {args.checkpoint} is not JSON: {e}") from None
        prog = TermProgress("verifying")
        res = svc.audit.verify(checkpoint=cp, progress=prog)
        prog.done()
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": res.ok,
                        "entries": res.entries,
                        "head": res.head,
                        "first_bad": res.first_bad,
                        "reason": res.reason,
                        "checkpoint": res.checkpoint,
                        "keys": res.keys,
                    }
                )
            )
        else:
            say(res.summary())
        return 0 if res.ok else 8


def cmd_audit_reconcile(args: argparse.Namespace) -> int:
    """Every difference between the catalog (and custodian.toml) and the signed log."""
    with open_service(args) as svc:
        res, diffs = svc.audit.reconcile()
        if args.json:
            print(
                json.dumps(
                    {
                        "verified": res.ok,
                        "verify": res.summary(),
                        "differences": [
                            {
                                "subject": d.subject,
                                "what": d.what,
                                "catalog": d.catalog,
                                "log": d.log,
                            }
                            for d in diffs
                        ],
                    },
                    indent=2,
                )
            )
        elif not res.ok:
            print(f"{res.summary()}; the catalog cannot be reconciled with a log that fails")
        else:
            for d in diffs:
                print(d)
            if diffs:
                print(
                    f"{len(diffs)} difference(s) between the catalog and the signed log: the "
                    "catalog (or custodian.toml) was changed outside custodian. Restore it "
                    "from a copy; decisions that read these values are refused until then."
                )
            else:
                print(
                    "the catalog and custodian.toml agree with the signed log "
                    f"({res.entries} entries)"
                )
        return 0 if res.ok and not diffs else 8


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise usage_error(f"{out} exists; nothing was written. Use --force to replace it.")
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        cp = svc.audit.checkpoint(by=by)
        out.write_text(json.dumps(cp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        say(
            f"checkpoint at entry {cp['seq']} (head {cp['head'][:16]}…) signed by "
            f"{cp['actor']} written to {out}; keep it outside this home"
        )
    return 0


def add_parsers(sub: Subparsers) -> None:
    au = sub.add_parser("audit", help="the signed audit log").add_subparsers(
        dest="audit_command", metavar="COMMAND", required=True
    )
    s = au.add_parser("show", help="entries, newest last")
    s.add_argument("--actor")
    s.add_argument("--action", help="action or its prefix, e.g. person. or backup.encrypt")
    s.add_argument("--outcome", choices=["ok", "refused"])
    s.add_argument("--text", help="subject or details containing TEXT")
    s.add_argument("--last", type=int, metavar="N", help="only the newest N")
    s.add_argument("--json", action="store_true", help="the entries as stored (JSON Lines)")
    s.set_defaults(func=cmd_audit_show)
    s = au.add_parser("verify", help="check chain, signatures, gaps and a checkpoint (offline)")
    s.add_argument("--checkpoint", metavar="FILE", help="a checkpoint exported earlier")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_verify)
    s = au.add_parser(
        "reconcile", help="list every difference between the catalog and the signed log"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_reconcile)
    s = au.add_parser("checkpoint", help="export a signed checkpoint of the log's head")
    s.add_argument("-o", "--output", required=True, metavar="FILE")
    s.add_argument("--force", action="store_true")
    add_acting(s)
    s.set_defaults(func=cmd_audit_checkpoint)
