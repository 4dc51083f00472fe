"""Keys (F7) for a quorum KEK (issue 11): the rotate ceremony with every holder present,
one after another at the workstation, the refresh pane with each holder's progress, and
a holder applying their part later from the TUI; cancel paths change nothing."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from custodian.service import Service
from screens.key_dialogs import CodeConfirm
from screens.refresh_pane import HolderUnlock, QuorumRotateDialog
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_keys import SIZE, KeysApp, answered, noted, open_keys, shown, type_code, wait_for


def _vault(svc: Service, cast: Cast) -> Enrolled:
    import io

    svc.clock = Clock()
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol)]
    svc.keys.create_quorum("vault", hs, 2, by=hs[1], code=next_code(svc, cast.bob))
    bot = unlock(svc, cast.bot)
    for i in range(4):
        svc.backups.encrypt(io.BytesIO(b"q" * 100), svc.home.path / f"q{i}.cbk", by=bot,
                            kek="vault", label=f"q{i}")  # fmt: skip
    return carol


def census(svc: Service) -> dict[int, int]:
    return {v.version: v.dek_count for v in svc.keys.get("vault").versions}


async def _select_vault(pilot: Any, screen: Any) -> None:
    names = [k.name for k in screen.keks]
    await pilot.press(*(["down"] * names.index("vault")))
    await wait_for(pilot, lambda: screen.selected_name == "vault")


async def _holder(pilot: Any, name: str, passphrase: str) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HolderUnlock))
    dialog = pilot.app.screen
    assert name in dialog.heading()
    field = dialog.query_one("#holder-passphrase", Input)
    field.value = passphrase
    await pilot.press("enter")
    await answered(pilot, dialog)
    assert field.value == ""  # read once and cleared


async def test_quorum_rotation_ceremony_refreshes_with_the_holders_present(
    ui_svc: Service, ui_cast: Cast
) -> None:
    carol = _vault(ui_svc, ui_cast)
    app = KeysApp(ui_svc, batch_size=2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await _select_vault(pilot, screen)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, QuorumRotateDialog))
        assert "alice, bob, carol" in shown(app, "#qrotate-pairs")
        await pilot.press("enter")
        await _holder(pilot, "bob", ui_cast.bob.passphrase)
        # a wrong passphrase is refused in the dialog, which stays for another try
        await wait_for(pilot, lambda: isinstance(app.screen, HolderUnlock))
        dialog = app.screen
        dialog.query_one("#holder-passphrase", Input).value = "not carol's passphrase at all"
        await pilot.press("enter")
        await answered(pilot, dialog)
        assert app.screen is dialog and "again" in str(dialog.query_one(".error").content)
        await _holder(pilot, "carol", carol.passphrase)
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await noted(pilot, "KEK rotated")
        await wait_for(pilot, lambda: census(ui_svc) == {1: 0, 2: 4}, 30)
        await wait_for(pilot, lambda: screen.refresh_pane.running is None)
        await wait_for(pilot, lambda: "done" in shown(app, "#refresh-title"))
        steps = shown(app, "#refresh-steps")
        for line in ("dealer dealt 4 of 4", "alice sealed 4 of 4", "carol sealed 4 of 4"):
            assert line in steps, steps
        await noted(pilot, "Refresh finished")
    assert ui_svc.audit.verify().ok


async def test_a_holder_applies_their_part_from_the_tui_and_cancel_changes_nothing(
    ui_svc: Service, ui_cast: Cast
) -> None:
    carol = _vault(ui_svc, ui_cast)
    hs = [unlock(ui_svc, ui_cast.alice), unlock(ui_svc, ui_cast.bob), unlock(ui_svc, carol)]
    ui_svc.keys.rotate("vault", next_code(ui_svc, ui_cast.alice), by=hs[0], holders=hs)
    ui_svc.keys.refresh("vault", by=hs[0])
    ui_svc.keys.refresh("vault", by=hs[1])
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, carol))
        screen = await open_keys(pilot)
        await _select_vault(pilot, screen)
        await wait_for(pilot, lambda: "carol sealed 0 of 4" in shown(app, "#refresh-steps"))
        assert "(you)" in shown(app, "#refresh-steps")
        # the rotation of a quorum KEK cancelled at its first step changes nothing
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, QuorumRotateDialog))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert ui_svc.keys.get("vault").current_version == 2
        await pilot.press("a")
        await wait_for(pilot, lambda: census(ui_svc) == {1: 0, 2: 4}, 30)
        await wait_for(pilot, lambda: "done" in shown(app, "#refresh-title"))
        await noted(pilot, "Refresh finished")
