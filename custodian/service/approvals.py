"""``svc.approvals``: the one approval mechanism for every dual-controlled action.

A request (a restore, a KEK destruction, ...) is opened by the capability it
belongs to (:meth:`Approvals.open_request`); custodians approve or deny it
with a fresh TOTP code; at quorum the capability's ``at_quorum`` hook runs
inside the approving transaction (a restore opens its session, a destruction
marks the version destroyed) and its ``after_commit`` hook after it. Denial,
expiry and cancellation are final. The records themselves live in
:mod:`custodian.approvals`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from custodian import approvals as A
from custodian.errors import ConflictError, CustodianError, NotFoundError
from custodian.people import Actor, AuthError
from custodian.service.context import HomeContext

AtQuorum = Callable[[A.Request, Actor, dict[str, Any]], None]
AfterCommit = Callable[[A.Request], None]


Excluded = Callable[[A.Request], "set[str]"]
# (request, approver, entry details, whether this approval completes the quorum)
OnApprove = Callable[[A.Request, Actor, dict[str, Any], bool], None]
# (request id, expires at, quorum) -> more payload, computed once the id is drawn
Prepare = Callable[[str, str, int], dict[str, Any]]
# (request) -> the approvals that complete it, when not the policy's quorum
Needed = Callable[[A.Request], int]


@dataclass(frozen=True)
class _Kind:
    at_quorum: AtQuorum | None
    after_commit: AfterCommit | None
    excluded: Excluded | None = None
    on_approve: OnApprove | None = None
    needed: Needed | None = None


class Approvals:
    """Requests, decisions and expiry, shared by every kind of request."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx
        self._kinds: dict[str, _Kind] = {}
        self._housekeeping: list[Callable[[], None]] = []

    def register(
        self,
        kind: str,
        *,
        at_quorum: AtQuorum | None = None,
        after_commit: AfterCommit | None = None,
        excluded: Excluded | None = None,
        on_approve: OnApprove | None = None,
        needed: Needed | None = None,
    ) -> None:
        """Say what happens when a request of ``kind`` reaches its quorum, who besides
        its requester may not decide it (``excluded``: the subject of a change about a
        person), and what each approval does inside its transaction before it is
        recorded (``on_approve``: a custody restore seals or locks the approver's
        shares there). ``needed`` says how many approvals complete a request of the kind
        when that is not the policy's quorum (a change about a person: the requester
        counts as one of the M when they are a custodian and not its subject)."""
        self._kinds[kind] = _Kind(at_quorum, after_commit, excluded, on_approve, needed)

    def _shaped(self, r: A.Request) -> A.Request:
        """``r`` with the quorum its kind needs (what the screens and the CLI show)."""
        kind = self._kinds.get(r.kind)
        if kind is None or kind.needed is None:
            return r
        return replace(r, quorum=kind.needed(r))

    def on_housekeeping(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (best effort) before every read of the requests."""
        self._housekeeping.append(fn)

    # ------------------------------------------------------------ reading

    def requests(self, state: str | None = None) -> list[A.Request]:
        """Every request (oldest first), or those in ``state``, with decisions, session, results."""
        if state is not None and state not in A.REQUEST_STATES:
            raise CustodianError(
                f"{state!r} is not a request state; use one of {', '.join(A.REQUEST_STATES)}."
            )
        self._housekeep()
        q = self._ctx.policy.approval_quorum
        return [self._shaped(r) for r in A.requests(self._ctx.catalog.db, q, state)]

    def get(self, id_or_prefix: str) -> A.Request:
        """One request by id, unambiguous id prefix, or the id of its session."""
        self._housekeep()
        q = self._ctx.policy.approval_quorum
        return self._shaped(A.find_request(self._ctx.catalog.db, q, id_or_prefix))

    def inbox(self, name: str) -> list[A.Request]:
        """Open requests that ``name`` (a custodian) may still decide: not theirs, not decided."""
        return [
            r
            for r in self.requests("open")
            if r.requester != name
            and all(d.custodian != name for d in r.decisions)
            and name not in self._excluded(r)
        ]

    def _excluded(self, r: A.Request) -> set[str]:
        kind = self._kinds.get(r.kind)
        return kind.excluded(r) if kind is not None and kind.excluded is not None else set()

    def find(self, id_or_prefix: str, by: Actor | None, action: str) -> A.Request:
        """A request for an acting call: a miss is logged as a refusal under ``action``."""
        try:
            return self._shaped(
                A.find_request(self._ctx.catalog.db, self._ctx.policy.approval_quorum, id_or_prefix)
            )
        except NotFoundError as e:
            self._ctx.record_refusal(by, action, f"request:{id_or_prefix[:64]}", "no such request")
            raise e from None

    def _housekeep(self) -> None:
        """Expire what is due before a read; a read still works if that cannot be logged."""
        with contextlib.suppress(CustodianError):
            self.expire_due()
        for fn in self._housekeeping:
            with contextlib.suppress(CustodianError, OSError):
                fn()

    # ------------------------------------------------------------ acting

    def open_request(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        by: Actor,
        action: str,
        prepare: Prepare | None = None,
    ) -> A.Request:
        """Record a new request of ``kind`` (checked by its capability), open until expiry.
        ``prepare`` adds to the payload what depends on the request's id and expiry."""
        ctx = self._ctx
        now = ctx.clock()
        expires = A.stamp(now + 3600 * ctx.policy.request_hours)
        rid = A.new_id()
        if prepare is not None:
            payload = {**payload, **prepare(rid, expires, ctx.policy.approval_quorum)}
        with ctx.audited(
            by,
            action,
            f"request:{rid}",
            {"kind": kind, **payload, "expires_at": expires, "quorum": ctx.policy.approval_quorum},
        ):
            A.add_request(ctx.catalog.db, rid, kind, by.name, A.stamp(now), expires, payload)
        return self.get(rid)

    def approve(self, request_id: str, code: str, *, by: Actor) -> A.Request:
        """A custodian approves, confirmed by a fresh TOTP code. At quorum the request is
        approved and its kind's ``at_quorum`` runs (a restore opens its session)."""
        return self._decide(request_id, code, "approve", "", by)

    def deny(self, request_id: str, code: str, reason: str, *, by: Actor) -> A.Request:
        """A custodian denies, with a reason and a fresh TOTP code. Denial is final."""
        reason = " ".join(reason.split())
        if not reason:
            raise self._ctx.refused(
                by,
                "request.deny",
                f"request:{request_id[:64]}",
                "no reason given",
                "a denial needs a reason (--reason TEXT); nothing was done.",
            )
        return self._decide(request_id, code, "deny", reason, by)

    def _decide(
        self, request_id: str, code: str, decision: str, reason: str, by: Actor
    ) -> A.Request:
        ctx = self._ctx
        action = f"request.{decision}"
        ctx.require(by, "custodian", action, f"request:{request_id[:64]}")
        self.expire_due()
        rid = self.find(request_id, by, action).id
        subject = f"request:{rid}"
        q = ctx.policy.approval_quorum
        db = ctx.catalog.db
        with ctx.catalog.transaction():
            r = self._shaped(A.find_request(db, q, rid))  # again, under the write lock
            ctx.check_request(r, by, action)  # no decision counts that the log lacks
            if r.state != "open":
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    f"request is {r.state}",
                    f"request {rid[:8]} is {r.state}{final_note(r)}; nothing was done.",
                    ConflictError,
                )
            if r.requester == by.name:
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    "the requester cannot decide their own request",
                    f"{by.name} asked for request {rid[:8]} and so cannot {decision} it; "
                    "two other custodians must. Nothing was done.",
                    AuthError,
                )
            kind = self._kinds.get(r.kind)
            if kind is not None and kind.excluded is not None and by.name in kind.excluded(r):
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    f"{by.name} is the subject of the request",
                    f"request {rid[:8]} is about {by.name}, who therefore cannot {decision} "
                    "it; other custodians must. Nothing was done.",
                    AuthError,
                )
            earlier = [d for d in r.decisions if d.custodian == by.name]
            if earlier:
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    f"{by.name} already decided this request",
                    f"{by.name} already {earlier[0].decision}d request {rid[:8]}; a quorum "
                    "needs distinct custodians. Nothing was done.",
                    ConflictError,
                )
            step = ctx.check_totp(by, code, action, subject)
            now = ctx.now()
            A.add_decision(db, rid, A.Decision(by.name, decision, now, step, reason))
            details: dict[str, Any] = {"kind": r.kind, "step": step}
            if decision == "deny":
                A.set_request_state(db, rid, "denied", now)
                details.update(reason=reason, state="denied")
            else:
                n = len(r.approvals) + 1
                q = r.quorum  # the policy's, or what the kind needs
                details.update(approvals=n, quorum=q, state="open")
                if kind is not None and kind.on_approve is not None:
                    kind.on_approve(r, by, details, n >= q)
                if n >= q:
                    A.set_request_state(db, rid, "approved", now)
                    details["state"] = "approved"
                    if kind is not None and kind.at_quorum is not None:
                        kind.at_quorum(r, by, details)
            ctx.record(by, action, subject, "ok", details)
        done = self._shaped(A.find_request(db, ctx.policy.approval_quorum, rid))
        kind = self._kinds.get(done.kind)
        if kind is not None and kind.after_commit is not None and done.state != "open":
            kind.after_commit(done)
        return done

    def cancel(self, request_id: str, *, by: Actor, reason: str = "") -> A.Request:
        """The requester or a custodian cancels a request (an open session closes). Final."""
        ctx = self._ctx
        action = "request.cancel"
        ctx.require(by, None, action, f"request:{request_id[:64]}")
        self.expire_due()
        rid = self.find(request_id, by, action).id
        subject = f"request:{rid}"
        db = ctx.catalog.db
        with ctx.catalog.transaction():
            r = A.find_request(db, ctx.policy.approval_quorum, rid)
            if r.final:
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    f"request is {r.state}",
                    f"request {rid[:8]} is already {r.state}{final_note(r)}; nothing was done.",
                    ConflictError,
                )
            if by.name != r.requester and not ctx.log_state().is_custodian(by.name):
                raise ctx.refused(
                    by,
                    action,
                    subject,
                    f"{by.name} is neither the requester nor a custodian",
                    f"only {r.requester}, who asked, or a custodian may cancel request "
                    f"{rid[:8]}; nothing was done.",
                    AuthError,
                )
            now = ctx.now()
            details: dict[str, Any] = {
                "kind": r.kind,
                "reason": " ".join(reason.split()),
                "state_before": r.state,
            }
            A.set_request_state(db, rid, "cancelled", now)
            if r.session is not None and r.session.state == "open":
                A.set_session_state(db, r.session.id, "closed", now)
                details["session"] = r.session.id
            ctx.record(by, action, subject, "ok", details)
        return self._shaped(A.find_request(db, ctx.policy.approval_quorum, rid))

    def expire_due(self) -> list[str]:
        """Mark open requests and open sessions past their expiry as expired (logged by the
        home identity). Returns the ids of the requests that expired. Called at the start
        of every dual-control call; safe to call any time."""
        ctx = self._ctx
        now = ctx.now()
        reqs, sessions = A.due(ctx.catalog.db, now)
        if not reqs and not sessions:
            return []
        home = ctx.home_actor()
        db = ctx.catalog.db
        out: list[str] = []
        for rid in reqs:
            with ctx.catalog.transaction():
                row = db.execute(
                    "SELECT state, expires_at, kind FROM requests WHERE id=?", (rid,)
                ).fetchone()
                if row is None or row[0] != "open" or row[1] > now:
                    continue  # another process got there first
                A.set_request_state(db, rid, "expired", now)
                ctx.record(
                    home,
                    "request.expire",
                    f"request:{rid}",
                    details={"kind": row[2], "expires_at": row[1]},
                )
            out.append(rid)
        for sid, rid in sessions:
            with ctx.catalog.transaction():
                s = A.session(db, sid)
                if s is None or s.state != "open" or s.expires_at > now:
                    continue
                A.set_session_state(db, sid, "expired", now)
                A.set_request_state(db, rid, "expired", now)
                ctx.record(
                    home,
                    "restore.session.expire",
                    f"session:{sid}",
                    details={"request": rid, "expires_at": s.expires_at},
                )
            out.append(rid)
        return out


def final_note(r: A.Request) -> str:
    return " (denial, expiry and cancellation are final)" if r.final and r.state != "done" else ""
