"""``svc.policy``: the policy the signed log records, and the audited way to change it.

The policy in force is the one signed entries recorded: ``home.init`` (at
creation), then each ``policy.set`` (a custodian tightening a setting, with a
fresh TOTP code) and each approved ``policy.change`` request (a loosening: a
longer session, a shorter retirement wait, a lower quorum, ... which custodians
other than the requester approve through ``svc.approvals``). The ``[policy]``
section of ``custodian.toml`` mirrors it: a file that differs is refused when
the home opens, naming the setting. Values outside the bounds of
:data:`custodian.config.POLICY_LIMITS` are refused with one line.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, replace
from typing import Any

from custodian import approvals as A
from custodian.config import POLICY_LIMITS, Policy, parse_policy_value
from custodian.errors import ConflictError, CustodianError
from custodian.people import Actor
from custodian.service.approvals import Approvals
from custodian.service.context import HomeContext

ACTION_SET = "policy.set"
ACTION_REQUEST = "policy.change.request"


@dataclass(frozen=True)
class Setting:
    """One policy setting as the log records it."""

    name: str
    value: int
    low: int
    high: int
    unit: str
    stricter: str  # "higher" or "lower"
    set_at: int | None  # the entry that set it (1: home.init); None: the default


class PolicySettings:
    """Reading and changing the policy."""

    def __init__(self, ctx: HomeContext, approvals: Approvals) -> None:
        self._ctx = ctx
        self._approvals = approvals  # Service registers change_at_quorum and write_config

    def show(self) -> builtins.list[Setting]:
        """Every setting with its value and the entry that set it (signatures checked)."""
        st = self._ctx.log_state()
        return [
            Setting(
                name,
                st.policy[name],
                low,
                high,
                unit,
                "higher" if way == "up" else "lower",
                st.policy_at.get(name),
            )
            for name, (low, high, way, unit) in POLICY_LIMITS.items()
        ]

    def loosens(self, name: str, value: str | int) -> bool:
        """Whether setting ``name`` to ``value`` loosens the policy (needs a quorum)."""
        v = parse_policy_value(name, value)
        return not self._ctx.log_state().policy_object().tighter(name, v)

    def set(
        self,
        name: str,
        value: str | int,
        *,
        by: Actor,
        code: str | None = None,
        reason: str = "",
    ) -> Policy | A.Request:
        """Change one setting. Tightening (or keeping) it takes effect at once, confirmed
        by ``by``'s fresh TOTP ``code``; loosening it opens a ``policy.change`` request
        that custodians other than ``by`` approve, and returns the request."""
        ctx = self._ctx
        subject = "policy"
        ctx.require(by, "custodian", ACTION_SET, subject)
        try:
            new = parse_policy_value(name, value)
            current = ctx.log_state().policy_object()
            replace(current, **{name: new}).check()  # type: ignore[arg-type]
        except CustodianError as e:
            raise ctx.refused(by, ACTION_SET, subject, str(e), str(e), type(e)) from None
        old = int(getattr(current, name))
        details: dict[str, Any] = {"setting": name, "from": old, "to": new}
        if new == old:
            raise ctx.refused(
                by,
                ACTION_SET,
                subject,
                "no change",
                f"policy.{name} is already {new}; nothing was done.",
                ConflictError,
            )
        if current.tighter(name, new):
            if name == "approval_quorum":
                n = len(ctx.log_state().active_custodians())
                if new > n:
                    raise ctx.refused(
                        by,
                        ACTION_SET,
                        subject,
                        f"a quorum of {new} with {n} active custodians",
                        f"a quorum of {new} needs {new} active custodians and this home has "
                        f"{n}: nothing could ever be approved. Enrol custodians first; "
                        "nothing was done.",
                        ConflictError,
                    )
            with ctx.audited(by, ACTION_SET, subject, details) as d:
                d["step"] = ctx.confirm(by, code, ACTION_SET, subject)
            self._save(name, new)
            return ctx.policy
        reason = " ".join(reason.split())
        if not reason:
            raise ctx.refused(
                by,
                ACTION_REQUEST,
                "request:new",
                "no reason given",
                f"policy.{name} {old} -> {new} loosens the policy, which custodians approve: "
                "give a reason (--reason TEXT). Nothing was done.",
                details=details,
            )
        q = current.approval_quorum
        others = [n for n in ctx.log_state().active_custodians() if n != by.name]
        if len(others) < q:
            raise ctx.refused(
                by,
                ACTION_REQUEST,
                "request:new",
                f"only {len(others)} other active custodian(s), the quorum is {q}",
                f"loosening the policy needs {q} custodians other than {by.name} to approve, "
                f"and this home has {len(others)}; nothing was done.",
                ConflictError,
                details,
            )
        return self._approvals.open_request(
            "policy.change", {**details, "reason": reason}, by=by, action=ACTION_REQUEST
        )

    def change_at_quorum(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """Inside the approving transaction: the change takes effect with this entry."""
        name, new = str(r.payload["setting"]), int(r.payload["to"])
        A.set_request_state(self._ctx.catalog.db, r.id, "done", self._ctx.now())
        details.update(state="done", policy={name: new})

    def write_config(self, r: A.Request) -> None:
        if r.state == "done":
            self._save(str(r.payload["setting"]), int(r.payload["to"]))

    def _save(self, name: str, value: int) -> None:
        """Make custodian.toml say what the log now records."""
        ctx = self._ctx
        pol = replace(ctx.config.policy, **{name: value})  # type: ignore[arg-type]
        cfg = replace(ctx.config, policy=pol)
        cfg.save(ctx.home.config)
        ctx.config = cfg


__all__ = ["PolicySettings", "Setting"]
