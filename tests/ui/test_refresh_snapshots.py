"""The quorum rotation's dialogs at 80x24 (CONVENTIONS.md, point 17): what the ceremony
does and who takes part, and one holder's passphrase with a refusal on its error line;
the error line and the buttons stay in view. Fixed data (tests/ui/conftest.Frozen, a
manifest made here), so the pictures are the same on every run."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from custodian.service import Service
from screens.app import CustodianApp
from screens.refresh_pane import HolderUnlock, QuorumRotateDialog
from tests.conftest import Cast, unlock
from tests.ui.conftest import Frozen, fixed_clock, sign_in_directly
from tests.ui.test_dialog_snapshots import SIZE, visible
from tests.ui.test_snapshots import settle, until

Compare = Callable[..., bool]


def _dialogs(svc: Frozen) -> dict[str, tuple[Callable[[], Screen[Any]], str]]:
    k = svc.keys.list()[0]
    man = SimpleNamespace(
        m=2, n=3, holders=[SimpleNamespace(name=n) for n in ("alice", "bob", "carol")]
    )
    return {
        "quorum_rotate": (lambda: QuorumRotateDialog(k, man), ""),
        "holder_unlock": (
            lambda: HolderUnlock(svc._svc, "carol", "make your new holder key of vault"),
            "That passphrase does not open carol's personal key; 4 more tries before a 30 s "
            "wait. Type the passphrase again (it was cleared).",
        ),
    }


@pytest.mark.parametrize("name", ["quorum_rotate", "holder_unlock"])
def test_quorum_rotation_dialog_at_80x24(
    snap_compare: Compare, ui_svc: Service, ui_cast: Cast, name: str
) -> None:
    frozen = Frozen(ui_svc)
    make, refusal = _dialogs(frozen)[name]
    alice = unlock(ui_svc, ui_cast.alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        sign_in_directly(app, alice)
        dialog = make()
        app.push_screen(dialog)
        await until(pilot, lambda: app.screen is dialog and bool(dialog.query(".dialog-buttons")))
        if refusal:
            dialog.error(refusal)  # type: ignore[attr-defined]
        await pilot.pause(0.2)
        visible(app)  # type: ignore[arg-type]
        await settle(pilot)

    app = CustodianApp(frozen, clock=fixed_clock)  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
