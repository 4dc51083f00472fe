"""``custodian people``: enrol people and service identities, replace their
signing keys and TOTP secrets, disable them, list them.

Those direct changes are for bootstrap (until the home's first quorum KEK). After
it, ``people request CHANGE NAME`` asks for a change that custodians other than
its subject approve (``custodian approve ID``), ``people complete ID`` is the
subject completing it in person, and ``people changes`` lists them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING

from custodian.cli.common import (
    PROG,
    Subparsers,
    add_acting,
    clear_terminal,
    code_input,
    open_service,
    say,
    secret_input,
    unlock_actor,
    usage_error,
)

if TYPE_CHECKING:
    from custodian.secret import SecretBytes
    from custodian.service import PendingEnrolment, Service
    from custodian.service.changes import Completion


def cmd_people_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        people = svc.people.list()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "name": p.name,
                            "roles": list(p.roles),
                            "kind": p.kind,
                            "state": p.state,
                            "created_at": p.created_at,
                            "key_id": p.key.key_id if p.key else None,
                            "keys": [
                                {
                                    "key_id": k.key_id,
                                    "created_at": k.created_at,
                                    "replaced_at": k.replaced_at,
                                    "protection": k.protection,
                                }
                                for k in p.keys
                            ],
                            "totp_generation": p.totp_generation,
                        }
                        for p in people
                    ],
                    indent=2,
                )
            )
            return 0
        say(f"{'NAME':<16} {'ROLES':<28} {'KIND':<8} {'STATE':<9} {'KEY':<18} KEYS")
        for p in people:
            kid = p.key.key_id[:16] if p.key else "-"
            say(
                f"{p.name:<16} {','.join(p.roles):<28} {p.kind:<8} {p.state:<9} {kid:<18} "
                f"{len(p.keys)}"
            )
        if not people:
            say(f"nobody enrolled yet: '{PROG} people enrol NAME --role custodian'")
    return 0


def _show_enrolment(
    svc: Service, pending: PendingEnrolment | Completion, name: str | None = None
) -> None:
    label = svc.home.path.name
    who = name or getattr(pending, "name", "")
    say(f"Add this to {who}'s authenticator app (scan, or type the secret):")
    say()
    for line in pending.qr(label):
        say("  " + line)
    say()
    say(f"  {pending.uri(label)}")
    say(f"  secret: {pending.secret_b32()}")
    say()


def _new_passphrase(
    args: argparse.Namespace, name: str | None = None, *, clear: bool = False
) -> SecretBytes:
    """The new passphrase: generated (--generate-passphrase: 8 words, 80 bits, shown once
    to the person it is for), or chosen (5 words or 24 characters, not well known).
    ``clear``: once they say it is written down, the terminal is cleared (a ceremony that
    shows nothing after it; an enrolment clears after the first code instead)."""
    who = name or args.name
    if args.generate_passphrase:
        from custodian.custody.personal import generate_passphrase

        pw = generate_passphrase()
        say(f"passphrase for {who} (write it down now; it is not shown again):")
        say(f"  {bytes(pw.reveal()).decode()}")
        if clear:
            wait_then_clear(f"{who}: press Enter once it is written down (the screen is cleared)")
        return pw
    return secret_input(
        f"new passphrase for {who} (5 words or 24 characters): ",
        args.new_passphrase_fd,
        "passphrase",
        confirm=True,
    )


def wait_then_clear(prompt: str) -> None:
    """On a terminal: wait for Enter, then clear the screen and its scrollback, so that
    what was shown (a passphrase, a TOTP secret) is gone before anyone else looks."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        with contextlib.suppress(EOFError):
            input(prompt + " ")
    clear_terminal()


def cmd_people_enrol(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args) if args.as_ else None
        pw = None
        if not args.service or args.new_passphrase_fd is not None:
            pw = _new_passphrase(args)
        pending = svc.people.begin_enrolment(
            args.name, args.role, passphrase=pw, by=by, service=args.service
        )
        if pw is not None:
            pw.wipe()
        try:
            code = None
            if pending.totp is not None:
                _show_enrolment(svc, pending)
                code = code_input(args.totp_fd, args.name)
                clear_terminal()
            p = svc.people.complete_enrolment(pending, code, by=by)
        finally:
            pending.discard()
        say(
            f"enrolled {p.name} ({', '.join(p.roles)}), signing key {p.key.key_id if p.key else ''}"
        )
    return 0


def cmd_people_replace_key(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        target = svc.people.get(args.name)
        pw = None
        if target.kind == "person" or args.new_passphrase_fd is not None:
            pw = _new_passphrase(args, clear=True)
        p = svc.people.replace_key(args.name, pw, by=by)
        if pw is not None:
            pw.wipe()
        say(
            f"{p.name} has a new signing key {p.key.key_id if p.key else ''}; "
            "the old one still verifies older entries"
        )
    return 0


def cmd_people_replace_totp(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        pending = svc.people.begin_totp_replacement(args.name, by=by)
        try:
            _show_enrolment(svc, pending)
            code = code_input(args.totp_fd, args.name)
            clear_terminal()
            svc.people.complete_totp_replacement(pending, code, by=by)
        finally:
            pending.discard()
        say(f"{args.name} has a new TOTP secret; the old one no longer works")
    return 0


def cmd_people_disable(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        svc.people.disable(args.name, by=by, reason=args.reason or "")
        say(f"{args.name} is disabled; their past entries still verify")
    return 0


def cmd_people_unlock(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        r = svc.people.request_unlock(args.name, args.reason, by=by)
        print(
            f"request {r.id} opened to lift {args.name}'s lockout; it takes effect once "
            f"{r.quorum} custodians other than {by.name} and {args.name} approve with: "
            f"{PROG} approve {r.id[:8]} --as NAME"
        )
    return 0


# ---------------------------------------------------------------- changes under dual control


def cmd_people_request(args: argparse.Namespace) -> int:
    """After bootstrap: ask for a credential change that M custodians other than its
    subject approve ('custodian approve ID'), then its subject completes in person."""
    from custodian.service.changes import describe

    with open_service(args) as svc:
        changes = svc.people.changes
        if args.change == "key" and not args.as_:
            # the subject, who lost their passphrase: the new key is made now, here
            pw = _new_passphrase(args, args.name, clear=True)
            try:
                r = changes.request_own_key(args.name, pw, reason=args.reason or "")
            finally:
                pw.wipe()
        else:
            by = unlock_actor(svc, args)
            r = changes.request(
                args.change,
                args.name,
                by=by,
                reason=args.reason or "",
                roles=args.role,
                kek=args.kek,
                service=args.service,
            )
        others = args.name if r.requester == args.name else f"{args.name} and {r.requester}"
        say(
            f"request {r.id} opened: {describe(r.payload)}. It needs {r.quorum} approval(s) "
            f"by custodians other than {others}: {PROG} approve {r.id[:8]} --as NAME"
        )
        if args.change in ("enrol", "key", "totp", "holder"):
            say(
                f"once approved, {args.name} completes it in person: "
                f"{PROG} people complete {r.id[:8]}"
                + {"enrol": " --witness APPROVER", "key": ""}.get(args.change, f" --as {args.name}")
            )
    return 0


def cmd_people_complete(args: argparse.Namespace) -> int:
    """The subject of an approved change completes it in person: the new secret (TOTP,
    passphrase) is made and shown now, to them, and cleared from the terminal after."""
    with open_service(args) as svc:
        changes = svc.people.changes
        r = svc.approvals.get(args.id)
        change, name = str(r.payload.get("change", "")), str(r.payload.get("person", ""))
        by = unlock_actor(svc, args) if change in ("totp", "holder") else None
        pw = None
        if change == "enrol" and (
            r.payload.get("person_kind") == "person" or args.new_passphrase_fd is not None
        ):
            pw = _new_passphrase(args, name)  # cleared with the TOTP secret, after the code
        elif change == "key" and r.payload.get("key_id"):
            pw = secret_input(
                f"the new passphrase {name} chose when asking: ",
                args.new_passphrase_fd,
                "passphrase",
            )
        subject_code = None
        if change == "key" and not r.payload.get("key_id"):
            # someone else asked: the subject shows it is them with their current code,
            # then chooses (or is shown) the new passphrase
            subject_code = code_input(args.totp_fd, name)
            pw = _new_passphrase(args, name, clear=True)
        try:
            c = changes.begin(r.id, by=by, passphrase=pw, code=subject_code)
        finally:
            if pw is not None:
                pw.wipe()
        try:
            witness = None
            if change == "enrol":
                # one of the custodians who approved watches, and confirms with a fresh code
                if not args.witness:
                    raise usage_error(
                        f"{name}'s enrolment is completed in front of a custodian who approved "
                        "it: --witness NAME (their passphrase and a fresh code are asked)."
                    )
                with secret_input(
                    f"passphrase of {args.witness} (witness): ",
                    args.witness_passphrase_fd,
                    "passphrase",
                ) as wpw:
                    witness = svc.auth.unlock(args.witness, wpw)
            code = None
            if c.totp is not None:
                _show_enrolment(svc, c, name)
                code = code_input(args.totp_fd, name)
                clear_terminal()
            wcode = code_input(args.witness_totp_fd, args.witness) if witness else None
            p = changes.complete(c, code, witness=witness, witness_code=wcode)
        finally:
            c.discard()
        done = {
            "enrol": f"enrolled {p.name} ({', '.join(p.roles)}), signing key "
            f"{p.key.key_id if p.key else ''}",
            "key": f"{p.name} has a new signing key {p.key.key_id if p.key else ''}; the old "
            "one still verifies older entries",
            "totp": f"{p.name} has a new TOTP secret; the old one no longer works",
            "holder": f"{p.name}'s new holder key of {r.payload.get('kek')} "
            f"v{r.payload.get('version')} is announced; it holds no share until a refresh "
            "deals one",
        }
        say(done.get(change, f"request {r.id[:8]} completed"))
    return 0


def cmd_people_pending(args: argparse.Namespace) -> int:
    """Credential changes: open ones (waiting for approvals) and approved ones waiting
    for their subject to complete them."""
    from custodian.service.changes import describe

    with open_service(args) as svc:
        rows = [
            r
            for r in svc.approvals.requests()
            if r.kind == "person.change" and r.state in ("open", "approved")
        ]
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": r.id,
                            "state": r.state,
                            "requester": r.requester,
                            "approvals": list(r.approvals),
                            "quorum": r.quorum,
                            "expires_at": r.expires_at,
                            **{k: v for k, v in r.payload.items() if k != "public_key"},
                        }
                        for r in rows
                    ],
                    indent=2,
                )
            )
            return 0
        if not rows:
            say("no credential change is open or waiting to be completed")
        for r in rows:
            nxt = (
                f"{len(r.approvals)} of {r.quorum} approvals"
                if r.state == "open"
                else f"approved: {r.payload.get('person')} completes it"
            )
            say(f"{r.id[:8]}  {describe(r.payload)}  (asked by {r.requester}; {nxt})")
    return 0


def add_parsers(sub: Subparsers) -> None:
    ppl = sub.add_parser("people", help="people, roles, signing keys and TOTP").add_subparsers(
        dest="people_command", metavar="COMMAND", required=True
    )
    s = ppl.add_parser("list", help="who is enrolled")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_people_list)
    s = ppl.add_parser("enrol", help="enrol a person (the first custodian needs no --as)")
    s.add_argument("name")
    s.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["custodian", "operator", "auditor"],
        help="repeat for several",
    )
    s.add_argument(
        "--service",
        action="store_true",
        help="a service identity for cron (operator only, no TOTP, passphrase optional)",
    )
    s.add_argument(
        "--new-passphrase-fd",
        type=int,
        metavar="N",
        help="read the new person's passphrase from file descriptor N",
    )
    s.add_argument(
        "--generate-passphrase",
        action="store_true",
        help="make an 8-word passphrase (80 bits) and show it once, instead of asking",
    )
    s.add_argument("--totp-fd", type=int, metavar="N", help="read the first code from fd N")
    add_acting(s, required=False)
    s.set_defaults(func=cmd_people_enrol)
    s = ppl.add_parser("replace-key", help="give a person a new signing key")
    s.add_argument("name")
    s.add_argument("--new-passphrase-fd", type=int, metavar="N")
    s.add_argument(
        "--generate-passphrase",
        action="store_true",
        help="make an 8-word passphrase (80 bits) and show it once, instead of asking",
    )
    add_acting(s)
    s.set_defaults(func=cmd_people_replace_key)
    s = ppl.add_parser("replace-totp", help="give a person a new TOTP secret")
    s.add_argument("name")
    s.add_argument("--totp-fd", type=int, metavar="N", help="read the first new code from fd N")
    add_acting(s)
    s.set_defaults(func=cmd_people_replace_totp)
    s = ppl.add_parser("unlock", help="ask custodians to lift a person's lockout before it ends")
    s.add_argument("name")
    s.add_argument("--reason", required=True, help="why: custodians decide on it")
    add_acting(s)
    s.set_defaults(func=cmd_people_unlock)
    s = ppl.add_parser("disable", help="disable a person (their old entries still verify)")
    s.add_argument("name")
    s.add_argument("--reason")
    add_acting(s)
    s.set_defaults(func=cmd_people_disable)
    s = ppl.add_parser(
        "request",
        help="after bootstrap: ask for a credential change that custodians approve",
        description="Ask for a change about a person: M custodians other than its subject "
        "approve it (custodian approve ID); enrol, key, totp and holder are then completed "
        "by the subject in person (custodian people complete ID). 'key' without --as is "
        "the subject who lost their passphrase: the new key is made now.",
    )
    s.add_argument(
        "change", choices=["enrol", "key", "totp", "holder", "disable", "enable", "roles"]
    )
    s.add_argument("name", help="the person the change is about")
    s.add_argument("--reason", required=True, help="why: custodians decide on it")
    s.add_argument(
        "--role",
        action="append",
        choices=["custodian", "operator", "auditor"],
        help="enrol, roles: the roles (repeat for several)",
    )
    s.add_argument("--service", action="store_true", help="enrol: a service identity")
    s.add_argument("--kek", metavar="NAME", help="holder: the quorum KEK whose holder key")
    s.add_argument("--new-passphrase-fd", type=int, metavar="N")
    s.add_argument(
        "--generate-passphrase",
        action="store_true",
        help="key without --as: make an 8-word passphrase and show it once",
    )
    add_acting(s, required=False)
    s.set_defaults(func=cmd_people_request)
    s = ppl.add_parser("complete", help="the subject completes an approved change in person")
    s.add_argument("id", help="the request (an id prefix is enough)")
    s.add_argument("--new-passphrase-fd", type=int, metavar="N")
    s.add_argument(
        "--generate-passphrase",
        action="store_true",
        help="make an 8-word passphrase (80 bits) and show it once, instead of asking",
    )
    s.add_argument("--totp-fd", type=int, metavar="N", help="read the first new code from fd N")
    s.add_argument(
        "--witness",
        metavar="NAME",
        help="enrol: the approving custodian who watches the new person complete it",
    )
    s.add_argument("--witness-passphrase-fd", type=int, metavar="N")
    s.add_argument("--witness-totp-fd", type=int, metavar="N")
    add_acting(s, required=False)
    s.set_defaults(func=cmd_people_complete)
    s = ppl.add_parser("changes", help="credential changes open or waiting to be completed")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_people_pending)
