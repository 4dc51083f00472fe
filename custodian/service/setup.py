"""``svc.setup``: where the first set-up of a home stands (docs/custodian-guide.md).

The first set-up is four steps, each a ceremony of its own module: create the home
(:meth:`custodian.service.Service.init` with ``custody="quorum"``), enrol the first
custodians in person (``svc.people``), create the first quorum KEK with them as
holders (``svc.keys.create_quorum``), split the break-glass set (``svc.custody.split``).
Nothing here is stored: the home's own state says which step is next, so a set-up
cut short (a closed terminal, a power cut) carries on where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from custodian.service.context import HomeContext

Step = Literal["custodians", "kek", "breakglass", "done"]
MIN_CUSTODIANS = 3  # a quorum KEK needs 2 <= M <= N-1, so N >= 3


@dataclass(frozen=True)
class SetupProgress:
    """What the home holds of the first set-up, and the step that comes next."""

    custodians: tuple[str, ...]  # active custodians, in enrolment order
    quorum_keks: tuple[str, ...]
    other_keks: tuple[str, ...]  # single-custody (or server) KEKs
    breakglass: bool
    step: Step

    @property
    def may_create_kek(self) -> bool:
        return len(self.custodians) >= MIN_CUSTODIANS


class Setup:
    """Which step of the first set-up comes next (reads only)."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def progress(self) -> SetupProgress:
        ctx = self._ctx
        custodians = tuple(
            p.name
            for p in ctx.catalog.people()
            if p.kind == "person" and p.active and p.has("custodian")
        )
        keks = ctx.catalog.keks()
        quorum = tuple(k.name for k in keks if k.backend == "quorum")
        other = tuple(k.name for k in keks if k.backend != "quorum")
        breakglass = bool(ctx.catalog.get_meta("breakglass"))
        step: Step
        if not custodians:
            step = "custodians"  # a new home, or one made by 'init' that nobody joined yet
        elif not quorum:
            # a home that had its first KEK at 'init' (single custody, the old way) and
            # custodians is set up; one made for the ceremony (no KEK) waits for its KEK
            step = "done" if other else ("kek" if len(custodians) >= MIN_CUSTODIANS else
                                         "custodians")  # fmt: skip
        elif not breakglass and not other and not ctx.config.demo:
            step = "breakglass"  # quorum custody only, and no paper set to recover it with
        else:
            step = "done"
        return SetupProgress(custodians, quorum, other, breakglass, step)
