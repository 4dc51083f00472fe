"""How a restore request reads on screen: states, times left, the whole request.

Pure functions over :mod:`custodian.approvals` dataclasses, shared by the
Restores screen, its panes and its dialogs, so that the inbox, the decision
dialog and the session pane describe a request the same way (and agree on who
is signed in: :func:`signed_in`, :func:`acting`). Reasons, labels, names and
paths are untrusted: every one goes into a ``Text`` after :func:`safe`, never
through markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from custodian.approvals import Request, RestoreResult
from custodian.catalog import Backup
from custodian.people import Actor
from screens.format import human_size, parse_stamp, safe, short_id, when

FINAL_NOTE = "final"
DECIDED = {"approve": "approved", "deny": "denied"}


def signed_in(app: Any) -> Actor | None:
    """Who is signed in to ``app`` (the Restores screens act as them), if anyone."""
    actor = getattr(app, "actor", None)
    return actor if isinstance(actor, Actor) else None


def acting(app: Any, role: str | None, doing: str) -> Actor | None:
    """The signed-in actor if they hold ``role``; otherwise the app says why not."""
    check = getattr(app, "acting", None)
    return check(role, doing) if check else None


def sentence(message: str) -> str:
    """A core message ('the target … is not …') as a sentence on screen."""
    return message[:1].upper() + message[1:]


def time_left(stamp: str, now: float) -> str:
    """'58 min left', '2 h 05 min left', 'expired' for a catalog time stamp."""
    at = parse_stamp(stamp)
    if at is None:
        return "unknown"
    seconds = int(at.timestamp() - now)
    if seconds <= 0:
        return "expired"
    minutes = seconds // 60
    if minutes < 1:
        return "less than a minute left"
    if minutes < 60:
        return f"{minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min left"


def what(r: Request) -> str:
    """What a request asks for, in a few words (the inbox lists every kind)."""
    if r.kind == "restore":
        n = len(r.backups)
        return f"restore {n} backup{'s' if n != 1 else ''}"
    if r.kind == "kek.destroy":
        return f"destroy {safe(str(r.payload.get('kek', '?')))} v{r.payload.get('version', '?')}"
    if r.kind == "person.change":
        from custodian.service.changes import describe

        return safe(describe(r.payload))
    return safe(r.kind)


def session_open(r: Request) -> bool:
    return r.session is not None and r.session.state == "open"


def runnable_by(r: Request, name: str | None) -> bool:
    """True when ``name`` may run this request's session now."""
    return name is not None and r.requester == name and r.state == "approved" and session_open(r)


def latest_results(r: Request) -> dict[str, RestoreResult]:
    """The last recorded result of each backup (a stopped run may be resumed)."""
    out: dict[str, RestoreResult] = {}
    for res in r.results:
        out[res.backup] = res
    return out


def results_note(r: Request) -> str:
    res = latest_results(r).values()
    if not res:
        return "-"
    ok = sum(1 for x in res if x.outcome == "ok")
    failed = sum(1 for x in res if x.outcome == "failed")
    return f"{ok:,} ok, {failed:,} failed" if failed else f"{ok:,} ok"


def state_line(r: Request, now: float) -> str:
    """One line that says where a request stands and what happens next."""
    n = len(r.approvals)
    if r.state == "open":
        return (
            f"open: {n} of {r.quorum} approvals; the request expires "
            f"{when(r.expires_at)} UTC ({time_left(r.expires_at, now)})"
        )
    if r.state == "approved" and r.session is not None and session_open(r):
        return (
            f"approved: session open until {when(r.session.expires_at)} UTC "
            f"({time_left(r.session.expires_at, now)}); {r.requester} may run it"
        )
    if r.state == "denied":  # the reason is for the requester: said where they look
        denials = [d for d in r.decisions if d.decision == "deny"]
        who = ", ".join(
            f'{d.custodian}: "{d.reason}"' if d.reason else d.custodian for d in denials
        )
        return f"denied by {who} ({FINAL_NOTE})"
    if r.state == "done" and r.kind != "restore":
        return (
            f"done: carried out at quorum{' ' + when(r.closed_at) + ' UTC' if r.closed_at else ''}"
        )
    if r.state == "done":
        closed = r.session.closed_at if r.session and r.session.closed_at else r.closed_at
        return f"done: the session ran and closed{' ' + when(closed) + ' UTC' if closed else ''}"
    if r.state == "expired":
        what = "its session" if r.session is not None else "the request"
        return f"expired: {what} ran out of time ({FINAL_NOTE})"
    if r.state == "cancelled":
        return f"cancelled ({FINAL_NOTE})"
    return r.state


def session_note(r: Request, now: float) -> str:
    """The Session column of the history table."""
    s = r.session
    if s is None:
        return "-"
    if s.state == "open":
        return f"open, {time_left(s.expires_at, now)}"
    if s.state == "closed":
        return f"closed {when(s.closed_at)}" if s.closed_at else "closed"
    return s.state


def _pairs() -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", width=11, no_wrap=True)
    t.add_column(overflow="fold")
    return t


def describe_request(
    r: Request, backups: Mapping[str, Backup | None], now: float
) -> RenderableType:
    """The whole request, as a custodian needs it to decide: every field and every backup."""
    pairs = _pairs()
    pairs.add_row("request", Text(f"{r.id}  ({r.kind})"))
    pairs.add_row("state", Text(safe(state_line(r, now))))
    pairs.add_row("asked by", Text(f"{safe(r.requester)}, {when(r.created_at)} UTC"))
    pairs.add_row("reason", Text(safe(r.reason)))
    if r.kind == "kek.destroy":
        p = r.payload
        pairs.add_row(
            "destroys",
            Text(
                f"KEK {safe(str(p.get('kek', '?')))} v{p.get('version', '?')}: its key material "
                "is erased at quorum; this cannot be undone",
                style="bold",
            ),
        )
        pairs.add_row("fingerprint", Text(safe(str(p.get("fingerprint", "")))))
    elif r.kind == "restore":
        pairs.add_row("target", Text(safe(r.target)))
    elif r.kind == "person.change":
        p = r.payload
        pairs.add_row("changes", Text(what(r), style="bold"))
        if p.get("key_id"):
            pairs.add_row("new key", Text(f"{safe(str(p['key_id']))} (check it with "
                                          f"{safe(str(p.get('person')))})"))  # fmt: skip
        pairs.add_row("scope", Text(safe(str(p.get("scope", "")))[:32]))
        pairs.add_row("never", Text(f"{safe(str(p.get('person')))}, whom it is about"))
    if r.kind == "person.change":
        subject = safe(str(r.payload.get("person", "?")))
        counts = r.requester != r.payload.get("person")  # a custodian asking for another
        many = "custodian" if r.quorum == 1 else "custodians"
        line = (
            f"{r.quorum} more {many} besides {safe(r.requester)}, who asked and counts as one "
            f"of {r.quorum + 1}; never {subject}"
            if counts
            else f"{r.quorum} {many} other than {subject}, who asked"
        )
        pairs.add_row("quorum", Text(line + "; each with a fresh TOTP code"))
    else:
        pairs.add_row(
            "quorum",
            Text(
                f"{r.quorum} custodians, each with a fresh TOTP code; never "
                f"{safe(r.requester)}, who asked"
            ),
        )
    if r.decisions:
        for i, d in enumerate(r.decisions):
            word = DECIDED.get(d.decision, d.decision)
            line = Text.assemble(
                (f"{safe(d.custodian)} {word}", "green" if d.decision == "approve" else "red"),
                f", {when(d.at)} UTC",
            )
            if d.reason:
                line.append(f": {safe(d.reason)}")
            pairs.add_row("decisions" if i == 0 else "", line)
    else:
        pairs.add_row("decisions", Text("none yet", style="dim"))
    if r.session is not None:
        s = r.session
        pairs.add_row(
            "session",
            Text(
                f"{short_id(s.id)}  {s.state}; opened {when(s.opened_at)} UTC, "
                f"expires {when(s.expires_at)} UTC"
                + (f" ({time_left(s.expires_at, now)})" if s.state == "open" else "")
            ),
        )
    if r.kind != "restore":
        return pairs
    files = r.payload.get("files", {})
    total = sum(b.size for b in backups.values() if b is not None and b.size >= 0)
    n = len(r.backups)
    head = Text(f"\n{n} backup{'s' if n != 1 else ''}, {human_size(total)} in all", style="bold")
    table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False, expand=False)
    for title, justify in (
        ("ID", "left"),
        ("Label", "left"),
        ("Size", "right"),
        ("KEK", "left"),
        ("Restores to", "left"),
    ):
        table.add_column(Text(title, style="dim"), justify=justify, overflow="ellipsis")  # type: ignore[arg-type]
    for bid in r.backups:
        b = backups.get(bid)
        file = Text(safe(str(files.get(bid, bid))))
        if b is None:
            table.add_row(
                Text(short_id(bid)),
                Text("not in the catalog any more", style="red"),
                Text(""),
                Text(""),
                file,
            )
            continue
        table.add_row(
            Text(short_id(b.id)),
            Text(safe(b.label)),
            Text(human_size(b.size)),
            Text(f"{safe(b.kek)} v{b.kek_version}"),
            file,
        )
    return Group(pairs, head, table)
