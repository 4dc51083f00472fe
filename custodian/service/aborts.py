"""Compensating audit entries: the log says so when an action it recorded did not happen.

An audited action writes (and fsyncs) its signed entry inside the catalog
transaction, before the commit (fail-closed: nothing happens unlogged). If the
commit then fails (a full disk), or the process is killed between the two, the
log holds an ``ok`` entry for an action the catalog does not have. The log is
append-only, so it is corrected forward: a compensating entry with the same
action and subject, ``outcome: "failed"`` and ``details.aborts`` naming the
sequence number (and ``aborts_hash`` the hash) of the entry it cancels.
``audit verify`` and every reader then treat the cancelled entry as not in
effect (docs/audit-format.md, "Compensating entries").

Two writers: :func:`commit_failed`, in the process whose commit failed (signed
by the same actor as the entry it cancels), and :func:`abort_unrecorded`, which
the next ``backup encrypt`` in a directory calls when it sweeps the container
of a run killed before its commit (signed by whoever runs it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from custodian.audit import AuditError
from custodian.errors import CatalogError

if TYPE_CHECKING:
    from custodian.people import Actor
    from custodian.service.context import HomeContext


class CommitFailed(CatalogError):
    """The catalog commit failed after the action's audit entry was written."""

    def __init__(self, ctx: HomeContext, actor: Actor, entry: dict[str, Any], why: str) -> None:
        self.ctx, self.actor, self.entry, self.why = ctx, actor, entry, why
        self.marked = False
        super().__init__("")
        self.mark()

    def mark(self) -> bool:
        """Write the compensating entry (again, if it could not be written before)."""
        if not self.marked:
            try:
                write_abort(self.ctx, self.actor, self.entry, f"catalog commit failed: {self.why}")
                self.marked = True
            except AuditError:
                pass
        e, catalog = self.entry, self.ctx.catalog.path
        head = f"the catalog {catalog} could not record {e['action']} ({self.why})"
        if self.marked:
            self.message = (
                f"{head}, so it did not happen; the audit log says so after its entry "
                f"{e['seq']}. Nothing else changed: free space on that disk and try again."
            )
        else:
            self.message = (
                f"{head}, so it did not happen, and the audit log could not be told: its entry "
                f"{e['seq']} says it did. Free space on the disk of the home, then run "
                "'custodian audit verify' and keep this message for the auditor."
            )
        return self.marked

    def __str__(self) -> str:
        return self.message


def commit_failed(
    ctx: HomeContext, actor: Actor, entry: dict[str, Any], error: BaseException
) -> CommitFailed:
    """Roll back what is left of the transaction and cancel its entry in the log."""
    db = ctx.catalog.db
    if db.in_transaction:
        db.execute("ROLLBACK")  # a failed COMMIT can leave the transaction open
    return CommitFailed(ctx, actor, entry, str(error) or type(error).__name__)


def write_abort(ctx: HomeContext, actor: Actor, entry: dict[str, Any], reason: str) -> None:
    ctx.record(
        actor,
        entry["action"],
        entry["subject"],
        "failed",
        {"aborts": entry["seq"], "aborts_hash": entry["hash"], "reason": reason},
    )


def abort_unrecorded(
    ctx: HomeContext, by: Actor, action: str, subject: str, reason: str, since: float
) -> int | None:
    """Cancel the newest ``ok`` entry for ``action`` on ``subject`` written after ``since``.

    Called when a sweep finds that the action never reached the catalog. Reads
    the log from its newest entry back to ``since`` (seconds since the epoch,
    less a minute of slack): a killed run wrote its entry after that. Returns
    the cancelled entry's sequence number, None when there was none.
    """
    stop = datetime.fromtimestamp(since - 60, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    aborted: set[int] = set()
    for e in _newest_first(ctx, stop):
        d = e.get("details")
        if e.get("outcome") == "failed" and isinstance(d, dict) and "aborts" in d:
            aborted.add(d["aborts"])
        elif e.get("action") == action and e.get("subject") == subject and e.get("outcome") == "ok":
            if e.get("seq") in aborted:
                return None
            write_abort(ctx, by, e, reason)
            return int(e["seq"])
    return None


def _newest_first(ctx: HomeContext, stop: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for seg in reversed(ctx.log.segments()):
        rows = []
        with open(seg, "rb") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict):
                    rows.append(e)
        for e in reversed(rows):
            if str(e.get("time", "")) < stop:
                return out
            out.append(e)
    return out
