"""Every screen reads the same at 80 columns as at 120 (issue 13): the footer keeps
F2-F9, the command palette offers the screen's own ceremonies, a cut cell ends in
'…', the audit outcome is whole and has a glyph, the cursor row and the checkboxes
show their state with a glyph, and 'newest first' is said once."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from rich.console import Console
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from custodian.errors import CustodianError
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.app import CustodianApp
from screens.audit import AuditScreen
from screens.chrome import CURSOR_GLYPH
from screens.dialogs import Tick
from screens.keys import KeysScreen
from screens.people import EnrolForm, PeopleScreen
from screens.restores import RestoresScreen
from tests.conftest import Cast, unlock
from tests.ui.conftest import fixed_clock, sign_in_directly


async def wait_for(pilot: Any, condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition()


def screen_text(app: CustodianApp) -> str:
    w, h = app.size
    c = Console(width=w, height=h, file=io.StringIO(), record=True, legacy_windows=False)
    c.print(app.screen._compositor.render_update(full=True))
    return c.export_text()


async def test_the_footer_keeps_the_f_keys_at_80_columns(ui_svc: Service, ui_cast: Cast) -> None:
    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        for key in ("f2", "f3", "f4", "f6", "f7", "f8"):
            await pilot.press(key)
            await pilot.pause(0.3)
            shown = {
                k.key
                for k in app.screen.query(FooterKey)
                if k.region.width > 0 and k.region.right <= 80
            }
            assert {"f2", "f3", "f4", "f6", "f7", "f8", "f9"} <= shown, (key, shown)
            assert "f9 Sign in/out" in screen_text(app).splitlines()[-1]


async def test_the_palette_offers_the_screens_ceremonies(ui_svc: Service, ui_cast: Cast) -> None:
    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        for key, kind, wanted in (
            ("f7", KeysScreen, {"Rotate the highlighted KEK", "Generate a new KEK"}),
            ("f4", PeopleScreen, {"Replace the highlighted person's TOTP", "Enrol a person"}),
            ("f6", RestoresScreen, {"Approve the highlighted request"}),
        ):
            await pilot.press(key)
            await wait_for(pilot, lambda kind=kind: isinstance(app.screen, kind))
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert wanted <= set(titles), titles
            assert titles.index(sorted(wanted)[0]) < titles.index("Go to Dashboard")
            assert "Screenshot" not in titles


async def test_the_audit_outcome_is_whole_with_a_glyph_and_cut_cells_say_so(
    ui_svc: Service,
) -> None:
    with contextlib.suppress(CustodianError):  # one refused entry in the log
        ui_svc.auth.unlock("alice", SecretBytes(b"a wrong passphrase, once"))
    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen) and app.screen.rows)
        await pilot.pause(0.3)
        seen = screen_text(app)
        assert "⊘ refused" in seen and "✓ ok" in seen
        assert "backup:" in seen and "…" in seen  # a cut subject ends in an ellipsis
        counts = str(app.screen.query_one("#audit-counts", Static).render())
        assert counts.count("newest first") == 1


async def test_the_cursor_and_the_checkboxes_have_glyphs(ui_svc: Service, ui_cast: Cast) -> None:
    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=(120, 36)) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, PeopleScreen))
        table = app.screen.query_one("#people-table", DataTable)
        await pilot.press("down")
        await pilot.pause()
        assert table._get_row_renderables(1).label.plain == CURSOR_GLYPH
        assert table._get_row_renderables(0).label.plain == " "
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, EnrolForm))
        box = app.screen.query_one("#role-auditor", Tick)
        assert box.BUTTON_INNER == " "
        box.value = True
        await pilot.pause()
        assert box.BUTTON_INNER == "✓"


async def test_sign_in_marks_the_person_and_says_what_to_type_again(
    ui_svc: Service, ui_cast: Cast
) -> None:
    from textual.widgets import Input, OptionList

    from screens.signin import SignInScreen

    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, SignInScreen))
        dialog = app.screen
        people = dialog.query_one("#signin-person", OptionList)
        await pilot.press("down")
        await pilot.pause()
        prompts = [str(people.get_option_at_index(i).prompt) for i in range(people.option_count)]
        assert prompts[1].startswith("▶ ") and all(p.startswith("  ") for p in prompts[:1])
        await pilot.press("up", "enter")
        dialog.query_one("#signin-passphrase", Input).value = ui_cast.alice.passphrase
        dialog.query_one("#signin-code", Input).value = "000000"  # one wrong code
        await pilot.click("#signin-ok")
        await wait_for(pilot, lambda: "again" in str(dialog.query_one(".error", Static).render()))
        said = str(dialog.query_one(".error", Static).render())
        assert "Type your passphrase again (it was cleared), then the code." in said
        assert dialog.query_one("#signin-passphrase", Input).value == ""
