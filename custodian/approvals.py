"""Dual control: requests, approvals, restore sessions and their results.

Plain dataclasses for the screens and the CLI, and the SQL over the catalog
tables of migration 4. The rules (who may do what, TOTP, quorum, expiry, the
audit entries) live in :mod:`custodian.service`; this module only stores.

Times are the catalog's ISO 8601 UTC stamps, made from the service's clock,
so that they compare as strings.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from custodian.errors import NotFoundError

KINDS = ("restore", "kek.destroy", "person.unlock", "policy.change")
REQUEST_STATES = ("open", "approved", "denied", "expired", "cancelled", "done")
FINAL_STATES = ("denied", "expired", "cancelled", "done")


def stamp(t: float) -> str:
    """A catalog time stamp (same format as :func:`custodian.catalog.utcnow`)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Decision:
    """One custodian's approve or deny of a request."""

    custodian: str
    decision: str  # approve | deny
    at: str
    totp_step: int
    reason: str = ""


@dataclass(frozen=True)
class Session:
    """A restore session: opened at quorum, the only thing that unwraps DEKs."""

    id: str
    request: str
    opened_at: str
    expires_at: str
    state: str  # open | closed | expired
    closed_at: str | None


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of restoring one backup in a session: the restore test record."""

    session: str
    backup: str
    outcome: str  # ok | failed
    reason: str
    plaintext_size: int | None
    path: str | None
    at: str


@dataclass(frozen=True)
class Request:
    """A request for an action that needs dual control, with everything decided on it."""

    id: str
    kind: str
    requester: str
    created_at: str
    expires_at: str
    state: str
    payload: dict[str, Any]
    closed_at: str | None = None
    decisions: tuple[Decision, ...] = ()
    session: Session | None = None
    results: tuple[RestoreResult, ...] = ()
    quorum: int = 2

    @property
    def backups(self) -> tuple[str, ...]:
        return tuple(self.payload.get("backups", ()))

    @property
    def reason(self) -> str:
        return str(self.payload.get("reason", ""))

    @property
    def target(self) -> str:
        return str(self.payload.get("target", ""))

    @property
    def approvals(self) -> tuple[str, ...]:
        return tuple(d.custodian for d in self.decisions if d.decision == "approve")

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class RestoreReport:
    """What :meth:`svc.restores.run` did: one result per backup it tried."""

    request: str
    session: str
    target: str
    results: list[RestoreResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already restored in this session
    cancelled: bool = False
    session_state: str = "open"
    # why the session stays open after every backup was tried: a failure the requester
    # can fix at the target (a file in the way, no room, no permission), then run again
    kept_open: str = ""

    @property
    def ok(self) -> list[RestoreResult]:
        return [r for r in self.results if r.outcome == "ok"]

    @property
    def failed(self) -> list[RestoreResult]:
        return [r for r in self.results if r.outcome == "failed"]

    def summary(self) -> str:
        s = (
            f"restore {self.request[:8]}: {len(self.ok):,} restored, {len(self.failed):,} failed"
            f" into {self.target}"
        )
        if self.skipped:
            s += f", {len(self.skipped):,} already restored earlier"
        if self.cancelled:
            s += "; cancelled, the session stays open for the rest"
        elif self.kept_open:
            s += f"; the session stays open: {self.kept_open}"
        else:
            s += f"; session {self.session_state}"
        return s


# ---------------------------------------------------------------- storage


def new_id() -> str:
    return str(uuid.uuid4())


def add_request(
    db: sqlite3.Connection,
    rid: str,
    kind: str,
    requester: str,
    created_at: str,
    expires_at: str,
    payload: dict[str, Any],
) -> None:
    db.execute(
        "INSERT INTO requests(id, kind, requester, created_at, expires_at, state, payload) "
        "VALUES(?, ?, ?, ?, ?, 'open', ?)",
        (rid, kind, requester, created_at, expires_at, json.dumps(payload, sort_keys=True)),
    )


def set_request_state(db: sqlite3.Connection, rid: str, state: str, at: str) -> None:
    closed = at if state in FINAL_STATES else None
    db.execute("UPDATE requests SET state=?, closed_at=? WHERE id=?", (state, closed, rid))


def add_decision(db: sqlite3.Connection, rid: str, d: Decision) -> None:
    db.execute(
        "INSERT INTO approvals(request, custodian, decision, at, totp_step, reason) "
        "VALUES(?, ?, ?, ?, ?, ?)",
        (rid, d.custodian, d.decision, d.at, d.totp_step, d.reason),
    )


def add_session(db: sqlite3.Connection, s: Session) -> None:
    db.execute(
        "INSERT INTO sessions(id, request, opened_at, expires_at, state) VALUES(?, ?, ?, ?, ?)",
        (s.id, s.request, s.opened_at, s.expires_at, s.state),
    )


def set_session_state(db: sqlite3.Connection, sid: str, state: str, at: str) -> None:
    db.execute("UPDATE sessions SET state=?, closed_at=? WHERE id=?", (state, at, sid))


def add_result(db: sqlite3.Connection, r: RestoreResult) -> None:
    db.execute(
        "INSERT INTO restore_results(session, backup, outcome, reason, plaintext_size, path, at) "
        "VALUES(?, ?, ?, ?, ?, ?, ?)",
        (r.session, r.backup, r.outcome, r.reason, r.plaintext_size, r.path, r.at),
    )


_REQ = "id, kind, requester, created_at, expires_at, state, payload, closed_at"
_SES = "id, request, opened_at, expires_at, state, closed_at"


def _load(db: sqlite3.Connection, row: tuple[Any, ...], quorum: int) -> Request:
    rid = row[0]
    decisions = tuple(
        Decision(*r)
        for r in db.execute(
            "SELECT custodian, decision, at, totp_step, reason FROM approvals "
            "WHERE request=? ORDER BY at, custodian",
            (rid,),
        )
    )
    srow = db.execute(f"SELECT {_SES} FROM sessions WHERE request=?", (rid,)).fetchone()
    session = Session(*srow) if srow else None
    results: tuple[RestoreResult, ...] = ()
    if session is not None:
        results = tuple(
            RestoreResult(*r)
            for r in db.execute(
                "SELECT session, backup, outcome, reason, plaintext_size, path, at "
                "FROM restore_results WHERE session=? ORDER BY rowid",
                (session.id,),
            )
        )
    return Request(
        id=rid,
        kind=row[1],
        requester=row[2],
        created_at=row[3],
        expires_at=row[4],
        state=row[5],
        payload=json.loads(row[6]),
        closed_at=row[7],
        decisions=decisions,
        session=session,
        results=results,
        quorum=quorum,
    )


def requests(db: sqlite3.Connection, quorum: int, state: str | None = None) -> list[Request]:
    sql = f"SELECT {_REQ} FROM requests"
    args: tuple[Any, ...] = ()
    if state is not None:
        sql += " WHERE state=?"
        args = (state,)
    rows = db.execute(sql + " ORDER BY created_at, id", args).fetchall()
    return [_load(db, r, quorum) for r in rows]


def find_request(db: sqlite3.Connection, quorum: int, id_or_prefix: str) -> Request:
    """A request by its id, an unambiguous prefix of it, or the id of its session."""
    key = id_or_prefix.strip().lower()
    if not key:
        raise NotFoundError("no request id given; 'custodian restore list' shows them.")
    rows = db.execute(
        f"SELECT {_REQ} FROM requests WHERE id LIKE ? || '%' LIMIT 2", (key,)
    ).fetchall()
    if not rows:
        rows = db.execute(
            f"SELECT {', '.join('r.' + c.strip() for c in _REQ.split(','))} FROM requests r "
            "JOIN sessions s ON s.request = r.id WHERE s.id LIKE ? || '%' LIMIT 2",
            (key,),
        ).fetchall()
    if len(rows) > 1:
        raise NotFoundError(f"{id_or_prefix!r} matches more than one request; give more of the id.")
    if not rows:
        raise NotFoundError(
            f"no request or session {id_or_prefix!r} in this home; "
            "'custodian restore list' shows them."
        )
    return _load(db, rows[0], quorum)


def session(db: sqlite3.Connection, sid: str) -> Session | None:
    row = db.execute(f"SELECT {_SES} FROM sessions WHERE id=?", (sid,)).fetchone()
    return Session(*row) if row else None


def due(db: sqlite3.Connection, now: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Open requests past their expiry, and open sessions past theirs (session, request)."""
    reqs = [
        r[0]
        for r in db.execute(
            "SELECT id FROM requests WHERE state='open' AND expires_at <= ? ORDER BY id", (now,)
        )
    ]
    sess = [
        (r[0], r[1])
        for r in db.execute(
            "SELECT id, request FROM sessions WHERE state='open' AND expires_at <= ? ORDER BY id",
            (now,),
        )
    ]
    return reqs, sess
