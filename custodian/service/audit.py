"""``svc.audit``: reading, verifying and checkpointing the signed audit log.

The log itself (segments, hash chain, signatures) is :mod:`custodian.audit`;
the facade reaches the raw :class:`~custodian.audit.AuditLog` as ``svc.log``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from custodian.audit import AuditLog, VerifyResult
from custodian.people import Actor
from custodian.service.context import HomeContext, Progress

if TYPE_CHECKING:
    from custodian.service.reconcile import Difference


class Audit:
    """What auditors read and check."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        text: str = "",
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        """Entries matching a filter, oldest first (the ``last`` N if asked)."""
        out = []
        for e in self._ctx.log.entries():
            if "_malformed" in e:
                continue
            if actor and e.get("actor") != actor:
                continue
            if action and not str(e.get("action", "")).startswith(action):
                continue
            if outcome and e.get("outcome") != outcome:
                continue
            if (
                text
                and text.lower()
                not in (str(e.get("subject", "")) + " " + str(e.get("details", ""))).lower()
            ):
                continue
            out.append(e)
        return out[-last:] if last else out

    def verify(
        self,
        *,
        checkpoint: dict[str, Any] | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> VerifyResult:
        from custodian.audit import verify

        return verify(self._ctx.log, checkpoint=checkpoint, progress=progress, cancelled=cancelled)

    def reconcile(self) -> tuple[VerifyResult, list[Difference]]:
        """Every difference between the catalog (and the configuration) and the signed log,
        after verifying the log (differences are listed only when it verifies)."""
        from custodian.audit import verify
        from custodian.service.reconcile import reconcile

        ctx = self._ctx
        res = verify(ctx.log)
        if not res.ok:
            return res, []
        st = ctx.ledger.verified()
        return res, list(reconcile(ctx.catalog, ctx.config, st, _backup_entries(ctx.log)))

    def checkpoint(self, *, by: Actor) -> dict[str, Any]:
        """A signed statement of the log's head, to keep outside the home."""
        from custodian.audit import checkpoint_body, sign_checkpoint

        ctx = self._ctx
        ctx.require(by, None, "audit.checkpoint", "audit")
        seq, head = ctx.log.head()
        cp = sign_checkpoint(
            checkpoint_body(ctx.config.home_id, seq, head, by.name, by.key_id), by.sign
        )
        ctx.record(by, "audit.checkpoint", "audit", details={"seq": seq, "head": head})
        return cp


def _backup_entries(log: AuditLog) -> list[dict[str, Any]]:
    """The log's backup.encrypt and backup.import entries that took effect (outcome ok, not
    cancelled by a later compensating entry)."""
    out: dict[int, dict[str, Any]] = {}
    for e in log.entries():
        if e.get("action") not in ("backup.encrypt", "backup.import"):
            continue
        d = e.get("details")
        if e.get("outcome") == "ok":
            out[int(e["seq"])] = e
        elif e.get("outcome") == "failed" and isinstance(d, dict) and "aborts" in d:
            out.pop(d["aborts"], None)
    return list(out.values())
