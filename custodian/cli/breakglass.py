"""``custodian breakglass``: the home's SLIP-39 break-glass set (docs/custody.md section 10).

A share is revealed only to a file descriptor the caller names for its holder
(``--share-fd NAME=FD``, each holder's own pipe or file), or on a terminal with
``--reveal``, one holder at a time, the screen cleared before the next. Shares
for ``drill``, ``recover``, ``reshare`` and ``rekey`` (the current set's) come one
per line from ``--shares-fd N``, or are typed at a terminal. ``recover --reenrol
NAME,NAME`` gives each named person a new key under a new passphrase
(``--new-passphrase-fd NAME=FD`` or typed twice) and their holder keys back.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from custodian.cli.common import (
    Subparsers,
    add_acting,
    add_totp_fd,
    clear_terminal,
    code_input,
    open_service,
    say,
    unlock_actor,
    usage_error,
)

if TYPE_CHECKING:
    from custodian.custody.breakglass import ShareMnemonic


def _fds(items: list[str] | None, flag: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        name, _, fd = item.partition("=")
        if not fd.isdigit():
            raise usage_error(f"{flag} takes NAME=FD, not {item!r}.")
        out[name] = int(fd)
    return out


def _hand_out(share: ShareMnemonic, holder: str, fd: int | None, fingerprint: str) -> None:
    """One share to its holder: to their descriptor, or on the terminal in groups of four
    words, cleared before the next holder."""
    if fd is not None:
        with os.fdopen(os.dup(fd), "w") as f:
            f.write(share.reveal() + "\n")
        return
    input(f"Only {holder} looks at the screen now. Press Enter to show {holder}'s share.")
    words = share.words()
    say(f"share {share.number} for {holder} (recovery key {fingerprint}):")
    for i in range(0, len(words), 4):
        say(f"  {i + 1:>2}. " + "  ".join(words[i : i + 4]))
    input(f"{holder}: write it down, then press Enter to clear the screen.")
    clear_terminal()


def cmd_breakglass_split(args: argparse.Namespace) -> int:
    from custodian.cli.kek import _holders

    command = args.breakglass_command
    shares_to = _fds(args.share_fd, "--share-fd")
    names = [n.strip() for n in args.holders.split(",") if n.strip()]
    missing = [n for n in names if n not in shares_to]
    if missing and not (args.reveal and sys.stdin.isatty()):
        raise usage_error(
            f"no way to hand {', '.join(missing)} their share: give --share-fd NAME=FD for "
            "each holder, or --reveal on a terminal. Nothing was made."
        )
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        old = _shares(args) if command != "split" else []
        holders = _holders(svc, args, by)
        code = code_input(args.totp_fd, by.name)
        if command == "split":
            made = svc.custody.split(holders, by=by, code=code, threshold=args.threshold)
        else:
            make = svc.custody.reshare if command == "reshare" else svc.custody.rekey
            made = make(old, holders, by=by, code=code, threshold=args.threshold)
        with made as ss:
            for h, share in zip(names, ss.shares, strict=True):
                _hand_out(share, h, shares_to.get(h), ss.fingerprint)
            say(
                f"break-glass set {ss.set_id}: {ss.threshold} of {ss.count} "
                f"({', '.join(names)}); recovery key {ss.fingerprint}"
            )
            say("print the recovery key's fingerprint on each share's cover sheet.")
            cur = svc.custody.current()
            revoked = cur.revoked if cur is not None else ()
            if revoked:
                say(f"set {revoked[-1]} is revoked: its papers open nothing now; destroy them.")
    return 0


def _shares(args: argparse.Namespace) -> list[str]:
    if args.shares_fd is not None:
        with os.fdopen(os.dup(args.shares_fd), "r") as f:
            return [line.strip() for line in f if line.strip()]
    if not sys.stdin.isatty():
        raise usage_error("shares needed and no terminal to ask on: pass them with --shares-fd N.")
    out: list[str] = []
    while True:
        text = input(f"share {len(out) + 1} (empty line when done): ").strip()
        clear_terminal()
        if not text:
            return out
        out.append(text)


def cmd_breakglass_drill(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        rec = svc.custody.drill(_shares(args), by=by)
        if not rec.ok:
            say(f"drill of set {rec.set_id} FAILED after {rec.shares_checked} share(s):")
            say(f"  {rec.problem}")
            return 6
        say(f"drill of set {rec.set_id} passed ({rec.shares_checked} shares); nothing changed")
    return 0


def cmd_breakglass_recover(args: argparse.Namespace) -> int:
    from custodian.cli.common import secret_input

    fds = _fds(args.new_passphrase_fd, "--new-passphrase-fd")
    names = [n.strip() for n in (args.reenrol or "").split(",") if n.strip()]
    with open_service(args) as svc, svc.custody.recover(_shares(args)) as rec:
        say(rec.note)
        if rec.skipped:
            say(f"not installed (the log does not vouch for them): {', '.join(rec.skipped)}")
        for name in names:
            if svc.people.get(name).kind == "service":
                rec.reenrol(name, None)
            else:
                with secret_input(
                    f"new passphrase for {name}: ", fds.get(name), "passphrase", confirm=True
                ) as pw:
                    rec.reenrol(name, pw)
            say(f"{name} re-enrolled with a new key" + (
                f" and their holder keys ({name} holds shares)" if name in rec.holders else ""
            ))  # fmt: skip
    return 0


def cmd_breakglass_status(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        s = svc.custody.current()
        if s is None:
            say("no break-glass set yet: 'custodian breakglass split --holders A,B,C --as NAME'")
            return 0
        say(
            f"set {s.set_id}: {s.threshold} of {s.count} ({', '.join(s.holders)}), made "
            f"{s.split_at[:19]}Z, recovery key {s.fingerprint}; last good drill "
            f"{(s.last_drill or 'never')[:19]}"
        )
        st = svc.custody.status()
        if st.problem:
            say(st.problem)
            return 8
        if s.revoked:
            say(f"revoked sets: {', '.join(str(x) for x in s.revoked)}")
        if st.uncovered:
            say(f"holder keys not sealed to the recovery key ({len(st.uncovered)}): "
                + ", ".join(st.uncovered[:8]) + " (their holders are present at the next split "
                "or rekey)")  # fmt: skip
    return 0


def add_parsers(sub: Subparsers) -> None:
    bg = sub.add_parser("breakglass", help="the SLIP-39 break-glass set").add_subparsers(
        dest="breakglass_command", metavar="COMMAND", required=True
    )
    for name, what in (
        ("split", "make a new set (a new secret), one share per holder (custodians, present)"),
        ("reshare", "new shares of the same secret for the holders named; the old set revoked"),
        ("rekey", "a new secret; everything sealed to the old recovery key sealed again"),
    ):
        s = bg.add_parser(name, help=what)
        s.add_argument("--holders", required=True, help="NAME,NAME,NAME: one share each")
        s.add_argument("--threshold", type=int, default=2, metavar="T", help="T of N (2)")
        s.add_argument("--share-fd", action="append", metavar="NAME=FD",
                       help="write NAME's share to file descriptor FD")  # fmt: skip
        s.add_argument("--reveal", action="store_true", help="show each share on this terminal")
        s.add_argument("--holder-passphrase-fd", action="append", metavar="NAME=FD")
        if name != "split":
            s.add_argument("--shares-fd", type=int, metavar="N",
                           help="the current set's shares, one per line from fd N")  # fmt: skip
        add_totp_fd(s)
        add_acting(s)
        s.set_defaults(func=cmd_breakglass_split)
    for name, fn, what in (
        ("drill", cmd_breakglass_drill, "check that shares reconstruct the set; change nothing"),
        ("recover", cmd_breakglass_recover, "install the root key again from shares"),
    ):
        s = bg.add_parser(name, help=what)
        s.add_argument("--shares-fd", type=int, metavar="N", help="one share per line from fd N")
        if name == "drill":
            add_acting(s)
        else:
            s.add_argument("--reenrol", metavar="NAME,NAME",
                           help="new keys and passphrases for them (theirs were lost)")  # fmt: skip
            s.add_argument("--new-passphrase-fd", action="append", metavar="NAME=FD")
        s.set_defaults(func=fn)
    s = bg.add_parser("status", help="the current set and its last good drill")
    s.set_defaults(func=cmd_breakglass_status)
