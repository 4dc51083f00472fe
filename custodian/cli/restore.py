"""``custodian restore`` and the decisions on requests: ``approve`` and ``deny``.

A restore is asked for (request), decided by custodians with a fresh TOTP code
each (approve, deny), then run by the requester in the session the approvals
opened (run). ``approve`` and ``deny`` also decide KEK destruction requests.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from custodian.cli.backend import add_session_custody
from custodian.cli.common import (
    PROG,
    Subparsers,
    TermProgress,
    add_acting,
    add_totp_fd,
    code_input,
    human,
    open_service,
    say,
    unlock_actor,
)
from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.approvals import Request, RestoreResult
    from custodian.service import Service

RESTORE_FAILED = 9  # the session ran and at least one backup failed


DECIDED = {"approve": "approved", "deny": "denied"}  # never "denyd"


def _request_json(r: Request) -> dict[str, Any]:
    s = r.session
    return {
        "id": r.id,
        "kind": r.kind,
        "state": r.state,
        "requester": r.requester,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "closed_at": r.closed_at,
        "quorum": r.quorum,
        "reason": r.reason,
        "target": r.target,
        "backups": [{"id": b, "file": r.payload.get("files", {}).get(b)} for b in r.backups],
        "decisions": [
            {
                "custodian": d.custodian,
                "decision": d.decision,
                "at": d.at,
                "step": d.totp_step,
                "reason": d.reason,
            }
            for d in r.decisions
        ],
        "session": None
        if s is None
        else {
            "id": s.id,
            "state": s.state,
            "opened_at": s.opened_at,
            "expires_at": s.expires_at,
            "closed_at": s.closed_at,
        },
        "results": [
            {
                "backup": x.backup,
                "outcome": x.outcome,
                "reason": x.reason,
                "plaintext_size": x.plaintext_size,
                "path": x.path,
                "at": x.at,
            }
            for x in r.results
        ],
    }


def _print_request(svc: Service, r: Request) -> None:
    """The whole request, as a custodian sees it before deciding (untrusted text as is)."""
    say(f"request   {r.id}  ({r.kind}, {r.state})")
    say(f"asked by  {r.requester} at {r.created_at[:19]}Z; expires {r.expires_at[:19]}Z")
    say(f"reason    {r.reason!r}")
    if r.kind == "restore":
        say(f"target    {r.target}")
        say(f"backups   {len(r.backups):,}:")
        for bid in r.backups:
            file = r.payload.get("files", {}).get(bid, bid)
            try:
                b = svc.backups.get(bid)
                what = f"{b.label!r}, {human(b.size)}, created {b.created_at[:19]}"
            except CustodianError:
                what = "no longer in the catalog"
            say(f"  {bid}  {what}  -> {file}")
    if r.kind == "kek.destroy":
        say(
            f"destroys  KEK {r.payload.get('kek')} v{r.payload.get('version')} (retired), "
            f"fingerprint {r.payload.get('fingerprint')}"
        )
    if r.kind == "person.unlock":
        say(
            f"lifts     the lockout of {r.payload.get('person')} ({r.payload.get('failures')} "
            f"failed attempts in a row, locked until {str(r.payload.get('until'))[:19]}Z)"
        )
    if r.kind == "policy.change":
        say(
            f"loosens   policy.{r.payload.get('setting')} from {r.payload.get('from')} to "
            f"{r.payload.get('to')}"
        )
    if r.kind == "person.change":
        from custodian.service.changes import describe

        say(f"changes   {describe(r.payload)}; scope {str(r.payload.get('scope'))[:16]}")
        if r.payload.get("key_id"):
            say(f"new key   {r.payload.get('key_id')} (check it with {r.payload.get('person')})")
        say(f"decided by custodians other than {r.payload.get('person')}")
    say(f"approvals {len(r.approvals)} of {r.quorum}")
    for d in r.decisions:
        extra = f": {d.reason!r}" if d.reason else ""
        say(f"  {DECIDED.get(d.decision, d.decision)} by {d.custodian} at {d.at[:19]}Z{extra}")
    if r.session is not None:
        s = r.session
        say(
            f"session   {s.id}  {s.state}, opened {s.opened_at[:19]}Z, expires {s.expires_at[:19]}Z"
        )
    for x in r.results:
        tail = f"{human(x.plaintext_size or 0)} -> {x.path}" if x.outcome == "ok" else x.reason
        say(f"  {x.outcome:<6} {x.backup}  {tail}")


def cmd_restore_request(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        r = svc.restores.request(args.backups, args.reason, args.target, by=by)
        if args.json:
            print(json.dumps(_request_json(r), indent=2))
            return 0
        say(
            f"request {r.id} opened: {len(r.backups):,} backup(s) into {r.target}; "
            f"needs {r.quorum} custodians' approval before {r.expires_at[:19]}Z"
        )
        say(f"custodians approve with: {PROG} approve {r.id[:8]} --as NAME")
    return 0


def cmd_restore_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        rows = svc.approvals.requests(args.state)
        if args.json:
            print(json.dumps([_request_json(r) for r in rows], indent=2))
            return 0
        say(f"{'ID':<36}  {'KIND':<11} {'STATE':<9} {'BY':<12} {'OK':>5}  {'EXPIRES':<19}  REASON")
        for r in rows:
            say(
                f"{r.id:<36}  {r.kind:<11} {r.state:<9} {r.requester:<12} "
                f"{len(r.approvals)}/{r.quorum:<3}  {r.expires_at[:19]:<19}  {r.reason[:40]!r}"
            )
        if not rows:
            say("no requests" + (f" in state {args.state}" if args.state else ""))
    return 0


def cmd_restore_show(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        r = svc.approvals.get(args.id)
        if args.json:
            print(json.dumps(_request_json(r), indent=2))
        else:
            _print_request(svc, r)
    return 0


def cmd_restore_cancel(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        r = svc.approvals.cancel(args.id, by=by, reason=args.reason or "")
        say(f"request {r.id} cancelled" + (f"; session {r.session.id} closed" if r.session else ""))
    return 0


def _decide(args: argparse.Namespace, decision: str) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        r = svc.approvals.get(args.id)
        if sys.stdout.isatty() and args.totp_fd is None:
            _print_request(svc, r)
            say()
        code = code_input(args.totp_fd, by.name)
        if decision == "approve":
            from custodian.cli.backend import session_custody

            with session_custody(svc, args):  # a destruction on a server backend trims
                r = svc.approvals.approve(r.id, code, by=by)
        else:
            r = svc.approvals.deny(r.id, code, args.reason, by=by)
        code = ""
        if r.state == "approved" and r.session is not None:
            say(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); session "
                f"{r.session.id} open until {r.session.expires_at[:19]}Z. "
                f"{r.requester} runs it with: {PROG} restore run {r.id[:8]} --as {r.requester}"
            )
        elif r.state == "done" and r.kind == "kek.destroy":
            say(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); the key material "
                f"of KEK {r.payload.get('kek')} v{r.payload.get('version')} is destroyed"
            )
        elif r.state == "done" and r.kind == "person.unlock":
            say(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); "
                f"{r.payload.get('person')} may try again now (the count starts again)"
            )
        elif r.state == "done" and r.kind == "policy.change":
            say(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); "
                f"policy.{r.payload.get('setting')} is now {r.payload.get('to')}"
            )
        elif r.state == "done" and r.kind == "person.change":
            from custodian.service.changes import describe

            say(f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); done: "
                f"{describe(r.payload)}")  # fmt: skip
            if r.payload.get("change") in ("disable", "roles"):
                # a holder who left: their share still opens DEKs with M-1 others until a
                # redistribution leaves them out (DESIGN.md); say which, and how
                for need in svc.keys.holder_disabled(str(r.payload.get("person"))):
                    say(f"next: {need.summary()}")
        elif r.state == "approved" and r.kind == "person.change":
            say(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); "
                f"{r.payload.get('person')} completes it in person: {PROG} people complete "
                f"{r.id[:8]}"
            )
        elif r.state == "approved":
            say(f"request {r.id} approved ({len(r.approvals)} of {r.quorum})")
        elif r.state == "denied":
            say(f"request {r.id} denied; this is final")
        else:
            say(
                f"request {r.id}: {DECIDED.get(decision, decision)}, {len(r.approvals)} of "
                f"{r.quorum} approvals"
            )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_deny(args: argparse.Namespace) -> int:
    return _decide(args, "deny")


def cmd_restore_run(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        prog = TermProgress("restoring")

        def line(x: RestoreResult) -> None:
            if prog.tty:
                prog.done()
                prog.last = -1
            if x.outcome == "ok":
                say(f"ok      {x.backup}  {human(x.plaintext_size or 0)} -> {x.path}", flush=True)
            else:
                say(f"FAILED  {x.backup}  {x.reason}", flush=True)

        from custodian.cli.backend import session_custody
        from custodian.cli.kek import kms_session

        # a vault KEK's DEKs: its custody credential; an aws-kms KEK's: the decrypt role's
        with session_custody(svc, args), kms_session(svc, args, {"aws-kms"}):
            report = svc.restores.run(args.id, by=by, progress=prog, on_result=line)
        prog.done()
        say(report.summary())
        return RESTORE_FAILED if report.failed else 0


def add_parsers(sub: Subparsers) -> None:
    """``restore`` and its subcommands, then the top-level ``approve`` and ``deny``."""
    rs = sub.add_parser("restore", help="restore requests and sessions").add_subparsers(
        dest="restore_command", metavar="COMMAND", required=True
    )
    s = rs.add_parser("request", help="ask for a restore (custodians then approve)")
    s.add_argument("backups", metavar="BACKUP", nargs="+", help="backup ids or unique prefixes")
    s.add_argument("--reason", required=True, help="why: custodians decide on it")
    s.add_argument(
        "--target", required=True, metavar="DIR", help="existing directory to restore into"
    )
    s.add_argument("--json", action="store_true", help="print the request as JSON")
    add_acting(s)
    s.set_defaults(func=cmd_restore_request)
    s = rs.add_parser("list", help="requests, oldest first")
    s.add_argument(
        "--state", choices=["open", "approved", "denied", "expired", "cancelled", "done"]
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_restore_list)
    s = rs.add_parser("show", help="one request: backups, decisions, session, results")
    s.add_argument("id", metavar="ID", help="request id, a unique prefix, or its session's id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_restore_show)
    s = rs.add_parser("cancel", help="cancel a request (the requester or a custodian); final")
    s.add_argument("id", metavar="ID")
    s.add_argument("--reason")
    add_acting(s)
    s.set_defaults(func=cmd_restore_cancel)
    s = rs.add_parser("run", help="run an approved restore session (the requester)")
    s.add_argument("id", metavar="ID", help="request id, a unique prefix, or the session's id")
    add_session_custody(s)
    from custodian.cli.kek import add_kms_credentials_fd

    add_kms_credentials_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_restore_run)
    for verb, helptext in (
        ("approve", "approve a request with a fresh TOTP code (custodians)"),
        ("deny", "deny a request with a reason and a fresh TOTP code (custodians); final"),
    ):
        s = sub.add_parser(verb, help=helptext)
        s.add_argument("id", metavar="ID", help="request id or a unique prefix")
        if verb == "deny":
            s.add_argument("--reason", required=True)
        else:
            add_session_custody(s)
        add_totp_fd(s)
        add_acting(s)
        s.set_defaults(func=cmd_approve if verb == "approve" else cmd_deny)
