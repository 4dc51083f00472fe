"""Keys (F7), m: migrate a KEK to quorum custody from the TUI (issue 11). The form with
the census per backend and version, each holder's passphrase in turn, the custodian's
code; then the job in the rewrap pane while the versions table follows the census. The
tests check what the core recorded, not only what the screen shows."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable, Input

from custodian.service import Service
from screens.key_dialogs import CodeConfirm
from screens.migrate_dialogs import HolderPassphrase, MigrateForm
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_keys import SIZE, KeysApp, answered, noted, notes, open_keys, shown, wait_for


async def _holder(pilot: Any, name: str, passphrase: str) -> HolderPassphrase:
    await wait_for(
        pilot,
        lambda: isinstance(pilot.app.screen, HolderPassphrase) and pilot.app.screen.holder == name,
    )
    dialog = pilot.app.screen
    assert isinstance(dialog, HolderPassphrase)
    dialog.query_one("#holder-pw", Input).value = passphrase
    await pilot.press("enter")
    await answered(pilot, dialog)
    return dialog


async def test_migrate_to_quorum_from_the_keys_screen(ui_svc: Service, ui_cast: Cast) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    carol = enrol(ui_svc, "carol", ("custodian",), alice)
    app = KeysApp(ui_svc, batch_size=5)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, alice)
        screen = await open_keys(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MigrateForm))
        form = app.screen
        said = shown(app, "#migrate-census")
        assert "local" in said and "14" in said and "10" in said  # census per version
        form.query_one("#migrate-m", Input).value = "2"
        await pilot.click("#migrate-next")
        # bob first, with a wrong passphrase: refused in the dialog, the field cleared
        await wait_for(pilot, lambda: isinstance(app.screen, HolderPassphrase))
        dialog = app.screen
        assert isinstance(dialog, HolderPassphrase) and dialog.holder == "bob"
        dialog.query_one("#holder-pw", Input).value = "not bob's passphrase at all, no"
        await pilot.press("enter")
        await answered(pilot, dialog)
        assert dialog.is_attached and dialog.query_one("#holder-pw", Input).value == ""
        await _holder(pilot, "bob", ui_cast.bob.passphrase)
        await _holder(pilot, "carol", carol.passphrase)
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        confirm = app.screen
        assert "any 2 of 3" in shown(app, "#code-body")
        confirm.query_one("#code", Input).value = next_code(ui_svc, ui_cast.alice)
        await pilot.press("enter")
        await answered(pilot, confirm)
        await noted(pilot, "KEK migrating")
        await wait_for(pilot, lambda: screen.rewrapping is None, seconds=30)
        assert "Rewrap of KEK backups to v3 finished" in shown(app, "#rewrap-title")
        rows = {(r.backend, r.version): r.deks for r in ui_svc.migrations.census("backups")}
        assert rows == {("local", 1): 0, ("local", 2): 0, ("quorum", 3): 24}
        await screen.refreshed()
        # the versions table (the census) says which backend the older versions are on
        table = screen.query_one("#versions-table", DataTable)
        labels = [str(table.get_row(str(v))[0]) for v in (3, 2, 1)]
        assert labels == ["v3 current", "v2 (local)", "v1 (local)"]
        counts = [str(table.get_row(str(v))[4]) for v in (3, 2, 1)]
        assert counts == ["24", "0", "0"]
    man = ui_svc.keys.manifest("backups", 3)
    assert [h.name for h in man.holders] == ["alice", "bob", "carol"] and man.m == 2
    assert ui_svc.audit.verify().ok


async def test_a_cancelled_migration_changes_nothing(ui_svc: Service, ui_cast: Cast) -> None:
    alice = unlock(ui_svc, ui_cast.alice)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, alice)
        await open_keys(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MigrateForm))
        # two custodians only: the form says why it cannot go on
        await pilot.click("#migrate-next")
        await pilot.pause(0.2)
        assert isinstance(app.screen, MigrateForm)
        assert "at least three holders" in str(app.screen.query_one(".error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, MigrateForm)
    k = ui_svc.keys.get("backups")
    assert (k.backend, k.current_version) == ("local", 2) and ui_svc.keys.jobs() == []


async def test_a_quorum_kek_is_refused_before_the_form(ui_svc: Service, ui_cast: Cast) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    carol = enrol(ui_svc, "carol", ("custodian",), alice)
    holders = [alice, unlock(ui_svc, ui_cast.bob), unlock(ui_svc, carol)]
    ui_svc.migrations.to_quorum(
        "backups", holders, 2, by=alice, code=next_code(ui_svc, ui_cast.alice)
    )
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, alice)
        await open_keys(pilot)
        await pilot.press("m")
        await noted(pilot, "Migration refused")
        assert any("a restore session" in n for n in notes(app))
        assert not isinstance(app.screen, MigrateForm)
