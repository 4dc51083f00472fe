"""``custodian policy``: the policy the signed audit log records, and changing it.

``show`` lists every setting with its bounds and the entry that set it. ``set``
tightens a setting at once (a custodian, with a fresh TOTP code), or, when the
new value loosens it, opens a ``policy.change`` request that other custodians
approve with ``custodian approve ID``. ``custodian.toml`` follows the log; an
edit to it by hand is refused when the home opens.
"""

from __future__ import annotations

import argparse
import json

from custodian.cli.common import (
    PROG,
    Subparsers,
    add_acting,
    add_totp_fd,
    code_input,
    open_service,
    say,
    unlock_actor,
)


def cmd_policy_show(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        rows = svc.policy.show()
        if args.json:
            print(
                json.dumps(
                    {
                        r.name: {
                            "value": r.value,
                            "unit": r.unit,
                            "min": r.low,
                            "max": r.high,
                            "stricter": r.stricter,
                            "set_at_entry": r.set_at,
                        }
                        for r in rows
                    },
                    indent=2,
                )
            )
            return 0
        say(f"{'SETTING':<22} {'VALUE':>7}  {'UNIT':<16} {'BOUNDS':<13} {'STRICTER':<9} SET AT")
        for r in rows:
            where = "default" if r.set_at is None else f"entry {r.set_at}"
            say(
                f"{r.name:<22} {r.value:>7}  {r.unit:<16} {f'{r.low}..{r.high}':<13} "
                f"{r.stricter:<9} {where}"
            )
        say(
            f"tighten with '{PROG} policy set SETTING VALUE --as NAME'; a looser value is a "
            "request that custodians approve"
        )
    return 0


def cmd_policy_set(args: argparse.Namespace) -> int:
    from custodian.approvals import Request

    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        code = None
        if not svc.policy.loosens(args.setting, args.value):
            code = code_input(args.totp_fd, by.name)
        out = svc.policy.set(args.setting, args.value, by=by, code=code, reason=args.reason or "")
        if isinstance(out, Request):
            say(
                f"request {out.id} opened: policy.{args.setting} {out.payload['from']} -> "
                f"{out.payload['to']} loosens the policy; it takes effect once "
                f"{out.quorum} custodians other than {by.name} approve with: "
                f"{PROG} approve {out.id[:8]} --as NAME"
            )
        else:
            say(f"policy.{args.setting} is now {getattr(out, args.setting)} (recorded in the log)")
    return 0


def add_parsers(sub: Subparsers) -> None:
    po = sub.add_parser("policy", help="the policy the signed log records").add_subparsers(
        dest="policy_command", metavar="COMMAND", required=True
    )
    s = po.add_parser("show", help="every setting, its bounds and the entry that set it")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_policy_show)
    s = po.add_parser(
        "set", help="tighten a setting (TOTP), or ask custodians to approve a looser one"
    )
    s.add_argument("setting", metavar="SETTING", help="e.g. session_minutes")
    s.add_argument("value", metavar="VALUE", help="a whole number within the setting's bounds")
    s.add_argument("--reason", help="why (required when the value loosens the policy)")
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_policy_set)
