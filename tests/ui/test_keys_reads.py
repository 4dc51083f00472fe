"""Keys (F7) as issue 13 asks it to read: the version stays selected across reloads,
"current" is said in words and the cursor row has a glyph, an unfinished rewrap job
says whether it is paused, interrupted or not started, a small rotation shows progress
and can be cancelled, and what a destruction would refuse is said before anything is
typed (a demo home's waiting period on screen)."""

from __future__ import annotations

import time
from typing import Any

from textual.widgets import DataTable

from custodian import rotation as R
from custodian.service import Service
from screens.chrome import CURSOR_GLYPH
from screens.dashboard import DashboardScreen
from screens.key_dialogs import DestroyRequestDialog, retire_body
from tests.conftest import Cast, Clock, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_keys import (
    SIZE,
    KeysApp,
    add_deks,
    noted,
    notes,
    open_keys,
    select_version,
    shown,
    wait_for,
)


def row_text(table: DataTable[Any], row: int) -> str:
    return " ".join(str(c) for c in table.get_row_at(row))


async def test_the_version_stays_selected_when_a_reload_adds_a_row_above(
    ui_svc: Service, ui_cast: Cast
) -> None:
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 1)  # the second row: v2 current is above it
        table = screen.query_one("#versions-table", DataTable)
        assert table.cursor_row == 1
        ui_svc.keys.add_version("backups", by=unlock(ui_svc, ui_cast.alice))
        await pilot.press("f5")
        await noted(pilot, "Keys reloaded")
        assert screen.selected_version is not None and screen.selected_version.version == 1
        assert table.cursor_row == 2  # the row moved down with its version
        # "current" in words, no mark of its own beside the cursor's glyph
        assert row_text(table, 0).startswith("v3 current")
        assert "▸" not in row_text(table, 0)
        assert table._get_row_renderables(2).label.plain == CURSOR_GLYPH
        assert table._get_row_renderables(0).label.plain == " "


async def test_an_unfinished_job_says_paused_interrupted_or_not_started(
    ui_svc: Service, ui_cast: Cast
) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    j = ui_svc.keys.rotate("backups", next_code(ui_svc, ui_cast.alice), by=alice)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, alice)
        screen = await open_keys(pilot)
        assert "not started" in shown(app, "#history")
        assert "has not run yet: press w to start it" in shown(app, "#rewrap-title")
        R.mark_stopped(ui_svc.catalog.db, j.id, paused_at="2026-11-01T09:00:00.000000Z")
        ui_svc.catalog.db.execute("UPDATE rotation_jobs SET runs=1 WHERE id=?", (j.id,))
        ui_svc.catalog.db.commit()
        await screen.refreshed()
        assert "paused" in shown(app, "#history") and "running" not in shown(app, "#history")
        assert "Paused rewrap job" in shown(app, "#rewrap-title")
        R.mark_stopped(ui_svc.catalog.db, j.id)
        ui_svc.catalog.db.commit()
        await screen.refreshed()
        assert "interrupted" in shown(app, "#history")
        assert "Interrupted rewrap job" in shown(app, "#rewrap-title")
        assert screen.check_action("resume", ()) is True


async def test_a_1000_dek_rotation_moves_its_progress_and_can_be_cancelled(
    ui_svc: Service, ui_cast: Cast, monkeypatch: Any
) -> None:
    add_deks(ui_svc, 976)  # 1,000 with the fixture's 24
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    ui_svc.keys.rotate("backups", next_code(ui_svc, ui_cast.alice), by=alice)
    backend = ui_svc.keys.backend("local")
    real = backend.rewrap
    sizes: list[int] = []

    def slow(refs: Any, to: int) -> Any:  # a slower machine: each batch takes a moment
        sizes.append(len(refs))
        time.sleep(0.05)
        return real(refs, to)

    monkeypatch.setattr(backend, "rewrap", slow)
    app = KeysApp(ui_svc, batch_size=None)  # the core's choice: batches of 50
    seen: list[int] = []
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, alice)
        screen = await open_keys(pilot)
        await pilot.press("w")
        for _ in range(200):
            last = screen.rewrap.last
            if last is not None and (not seen or seen[-1] != last.done):
                seen.append(last.done)
            if len(seen) >= 3:
                break
            await pilot.pause(0.01)
        await pilot.press("c")
        await noted(pilot, "Rewrap cancelled")
    assert len(seen) >= 3 and set(sizes) == {50}  # the bar moved batch by batch
    (job,) = ui_svc.keys.jobs("backups")
    assert 0 < job.rewrapped < 1000 and ui_svc.keys.job_states([job])[job.id] == "paused"


async def test_destruction_is_refused_before_a_reason_is_typed(
    ui_svc: Service, ui_cast: Cast
) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    ui_svc.keys.rewrap("backups", by=alice, workers=1)
    ui_svc.keys.retire("backups", 1, next_code(ui_svc, ui_cast.alice), by=alice)
    ui_svc.clock.advance(8 * 86400)  # the wait is over; only bob could approve
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, alice)
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 1)
        await pilot.press("x")
        await wait_for(pilot, lambda: any("custodians other than alice" in n for n in notes(app)))
        assert not isinstance(app.screen, DestroyRequestDialog)
    assert ui_svc.approvals.requests() == []


def test_the_waiting_period_is_said_in_words() -> None:
    from rich.console import Console

    from custodian.catalog import Kek, KekVersion

    v = KekVersion("backups", 1, "active", "2026-01-01T00:00:00.000000Z", "ab cd", None)
    k = Kek("backups", "local", "x25519", "", "2026-01-01T00:00:00.000000Z", 2, (v,))
    c = Console(width=100, record=True)
    c.print(retire_body(k, v, 0, 2))
    seen = c.export_text()
    assert "no waiting period" in seen
    assert "unwraps nothing any more. From then on its key material may be destroyed" in seen


async def test_a_demo_home_states_its_destruction_wait(tmp_path: Any) -> None:
    from custodian.demo import build_demo
    from screens.app import CustodianApp

    svc = build_demo(tmp_path / "demo", backups=20)
    try:
        app = CustodianApp(svc)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            await wait_for(pilot, lambda: bool(app.screen.query("#dash-demo")))
            said = " ".join(shown(app, "#dash-demo").split())
            assert "may be destroyed at once (no waiting period" in said
            assert "passphrases use cheap KDF parameters (Argon2id 8 MiB, 1 pass" in said
    finally:
        svc.close()
