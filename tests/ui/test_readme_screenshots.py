"""The README's pictures of the TUI (issue 13): the dashboard of a demo home and a
custodian's approvals inbox, at 120x36.

They are snapshot tests like the others, so the README shows the TUI as it is; the
README links the SVG files under ``__snapshots__/test_readme_screenshots/``. After a
deliberate change to these screens, look at the new pictures and update them with
``pytest tests/ui/test_readme_screenshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from custodian.demo import build_demo
from custodian.service import Service
from screens.app import CustodianApp
from screens.restores import RestoresScreen
from tests.conftest import Cast, next_code, unlock
from tests.ui.conftest import Frozen, fixed_clock, sign_in_directly
from tests.ui.test_restore_snapshots import (  # noqa: F401  (fixtures)
    counted_ids,
    frozen,
    frozen_app,
    settle,
    three_backups,
    until,
)

SIZE = (120, 36)
Compare = Callable[..., bool]


def test_readme_dashboard(snap_compare: Compare, tmp_path: Path) -> None:
    svc = build_demo(tmp_path / "demo-home", backups=1000)
    try:

        async def run_before(pilot: Pilot[Any]) -> None:
            await until(pilot, lambda: bool(pilot.app.screen.query("#dash-demo")))
            await settle(pilot)

        app = CustodianApp(Frozen(svc), clock=fixed_clock)  # type: ignore[arg-type]
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        svc.close()


def test_readme_approval(
    snap_compare: Compare,
    frozen: Service,  # noqa: F811
    ui_cast: Cast,
    tmp_path: Path,
) -> None:
    target = tmp_path / "restore" / "INC-2041"
    target.mkdir(parents=True)
    r = frozen.restores.request(
        three_backups(frozen),
        "INC-2041: the orders table was dropped by a migration; restore last night's dumps",
        target,
        by=unlock(frozen, ui_cast.oscar),
    )
    frozen.approvals.approve(
        r.id, next_code(frozen, ui_cast.alice), by=unlock(frozen, ui_cast.alice)
    )
    bob = unlock(frozen, ui_cast.bob)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, bob)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(pilot.app.screen, RestoresScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RestoresScreen)
        await until(pilot, lambda: screen.waiting == {r.id})
        await settle(pilot)

    assert snap_compare(frozen_app(frozen, tmp_path), terminal_size=SIZE, run_before=run_before)
