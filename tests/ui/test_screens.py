"""Pilot tests of every screen: the happy path and the cancel or error path.

Each test drives the real app on a real home (tests/ui/conftest.py) with
keys and clicks, then checks both what the screen shows and what the core
recorded (catalog, audit log), so a screen that only looks right fails.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import DataTable, Input, OptionList, ProgressBar, Static

from custodian import people as P
from custodian.catalog import Backup
from custodian.service import Service
from screens.app import CustodianApp
from screens.audit import AuditScreen
from screens.backup_table import BackupTable
from screens.chrome import SessionBar
from screens.people import ConfirmTotpReplace, EnrolForm, PeopleScreen, TotpStep
from screens.signin import SignInScreen
from tests.conftest import Cast, unlock
from tests.ui.conftest import fixed_clock, sign_in_directly

SIZE = (130, 42)


def text_of(widget: Static) -> str:
    return str(widget.render())


def plain(widget: Static) -> str:
    """What a Static holding a rich renderable (a table) shows, as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def pair(widget: Static, name: str) -> str:
    """The value next to ``name`` in a name/value table."""
    for line in plain(widget).splitlines():
        if line.startswith(name + " "):
            return line[len(name) :].strip()
    raise AssertionError(f"no {name!r} in {plain(widget)!r}")


def app_for(svc: Service, **kw: Any) -> CustodianApp:
    return CustodianApp(svc, clock=fixed_clock, **kw)


async def wait_for(pilot: Any, condition: Any, seconds: float = 5.0) -> None:
    """Pause until ``condition()`` holds (screens change on later ticks)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition()


def last_entry(svc: Service) -> dict[str, Any]:
    return svc.audit.entries()[-1]


# ------------------------------------------------------------------ dashboard


async def test_dashboard_shows_keks_versions_census_and_refreshes(ui_svc: Service) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert pair(screen.query_one("#dash-home-pairs", Static), "Backups") == "24"
        rows = plain(screen.query_one(".versions", Static)).splitlines()
        census = [
            line.split()[-1] for line in rows if line.split() and line.split()[0][1:].isdigit()
        ]
        assert census == ["10", "14"]  # v2 (current, listed first), then v1
        assert "await rewrap to v2" in text_of(screen.query_one(".rewrap", Static))
        # A backup made elsewhere shows after F5.
        bot = ui_svc.auth.unlock("bot", None)
        import io

        ui_svc.backups.encrypt(io.BytesIO(b"x"), app.service.home.path / "late.cbk", by=bot)
        await pilot.press("f5")
        await pilot.pause()
        assert pair(app.screen.query_one("#dash-home-pairs", Static), "Backups") == "25"


async def test_dashboard_shows_an_unreadable_home_without_crashing(ui_svc: Service) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        ui_svc.catalog.db.execute("DROP TABLE backups")  # the catalog breaks under us
        await pilot.press("f5")
        await pilot.pause()
        # The last good state stays on screen; an error notification says why.
        assert pair(app.screen.query_one("#dash-home-pairs", Static), "Backups") == "24"
        assert any("Refresh failed" in (n.title or "") for n in app._notifications)


# ------------------------------------------------------------------ backups


def _synthetic(svc: Service, n: int) -> None:
    b0 = svc.backups.list(limit=1)[0]
    with svc.catalog.transaction():
        svc.catalog.add_backups(
            replace(
                b0,
                id=f"{i:08x}-0000-4000-8000-{i:012x}",
                label=f"synthetic-{i:06d}.tar",
                created_at=f"2025-{1 + i % 12:02d}-01T00:00:00.000000Z",
                size=i,
                location=f"/nowhere/{i}.cbk",
            )
            for i in range(n)
        )


async def test_backups_table_holds_100k_rows_filters_and_sorts(ui_svc: Service) -> None:
    _synthetic(ui_svc, 100_000)
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        table = app.screen.query_one(BackupTable)
        assert table.total == 100_024
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor == 100_023
        last = table.selected
        assert last is not None
        # filter narrows in SQL
        await pilot.press("ctrl+f")
        await pilot.press(*"synthetic-09999")
        await pilot.pause(0.5)
        assert table.total == 10  # 099990 .. 099999
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert table.total == 100_024


async def test_backups_detail_opens_and_closes(ui_svc: Service) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        table = app.screen.query_one(BackupTable)
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "BackupDetail"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "BackupsScreen"


# ------------------------------------------------------------------ sign-in


async def _sign_in(pilot: Any, app: CustodianApp, who: str, passphrase: str, code: str) -> None:
    await pilot.press("f9")
    await pilot.pause()
    assert isinstance(app.screen, SignInScreen)
    options = app.screen.query_one(OptionList)
    names = [p.name for p in app.screen.people]
    options.highlighted = names.index(who)
    app.screen.query_one("#signin-passphrase", Input).value = passphrase
    app.screen.query_one("#signin-code", Input).value = code
    await pilot.click("#signin-ok")
    for _ in range(50):
        await pilot.pause(0.05)
        if not app.screen.query("#signin-ok") or not app.screen.query_one("#signin-ok").disabled:
            break
    await pilot.pause(0.1)


async def test_sign_in_and_out_shows_who_and_drops_the_key(ui_svc: Service, ui_cast: Cast) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        bar = app.screen.query_one(SessionBar)
        assert "Not signed in" in text_of(bar)
        await _sign_in(pilot, app, "alice", ui_cast.alice.passphrase, ui_cast.alice.code(1))
        assert app.actor is not None and app.actor.name == "alice"
        assert "Signed in: alice (custodian)" in text_of(app.screen.query_one(SessionBar))
        assert last_entry(ui_svc)["action"] == "person.sign_in"
        # every screen shows it
        for key in ("f3", "f4", "f8"):
            await pilot.press(key)
            await pilot.pause()
            assert "alice" in text_of(app.screen.query_one(SessionBar))
        actor = app.actor
        await pilot.press("f9")
        await pilot.pause()
        assert app.actor is None and app.who == ""
        assert actor._key is None  # the unlocked signing key is gone
        assert last_entry(ui_svc)["action"] == "person.sign_out"
        assert "Not signed in" in text_of(app.screen.query_one(SessionBar))


async def test_wrong_passphrase_and_replayed_code_are_refused_and_recorded(
    ui_svc: Service, ui_cast: Cast
) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        await _sign_in(pilot, app, "bob", "not-bobs-passphrase", ui_cast.bob.code())
        assert app.actor is None
        error = text_of(app.screen.query_one("#signin-error", Static))
        assert "passphrase" in error
        assert app.screen.query_one("#signin-passphrase", Input).value == ""  # cleared
        assert last_entry(ui_svc)["outcome"] == "refused"
        await pilot.press("escape")
        # a code already used by bob is refused
        code = ui_cast.bob.code(1)  # the current step was used when bob enrolled
        await _sign_in(pilot, app, "bob", ui_cast.bob.passphrase, code)
        assert app.actor is not None
        await pilot.press("f9")  # sign out
        await pilot.pause()
        await _sign_in(pilot, app, "bob", ui_cast.bob.passphrase, code)
        assert app.actor is None
        assert "already used" in text_of(app.screen.query_one("#signin-error", Static))
        assert last_entry(ui_svc)["details"]["reason"] == "TOTP code replayed"
    assert ui_svc.audit.verify().ok


async def test_sign_in_refused_while_textual_may_record(
    ui_svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEXTUAL_LOG", "textual.log")  # never written: the ceremony refuses
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f9")
        await pilot.pause()
        assert not isinstance(app.screen, SignInScreen)
        assert any("TEXTUAL_LOG" in n.message for n in app._notifications)


async def test_idle_session_signs_out(ui_svc: Service, ui_cast: Cast) -> None:
    app = app_for(ui_svc, idle_sign_out=0.3)
    async with app.run_test(size=SIZE) as pilot:
        actor = unlock(ui_svc, ui_cast.alice)
        sign_in_directly(app, actor)
        await pilot.pause(1.0)
        assert app.actor is None and actor._key is None


# ------------------------------------------------------------------ people


async def _enrol_through_dialogs(
    pilot: Any, app: CustodianApp, name: str, roles: tuple[str, ...], *, code_offset: int = 0
) -> Any:
    await pilot.press("f4")
    await pilot.pause()
    await pilot.press("n")
    await pilot.pause()
    form = app.screen
    assert isinstance(form, EnrolForm)
    form.query_one("#enrol-name", Input).value = name
    for role in ("custodian", "operator", "auditor"):
        form.query_one(f"#role-{role}").value = role in roles
    form.query_one("#pw1", Input).value = f"{name} long passphrase for tests"
    form.query_one("#pw2", Input).value = f"{name} long passphrase for tests"
    await pilot.click("#enrol-next")
    for _ in range(100):
        await pilot.pause(0.05)
        if isinstance(app.screen, TotpStep):
            break
    step = app.screen
    assert isinstance(step, TotpStep)
    qr = text_of(step.query_one("#totp-qr", Static))
    assert "█" in qr and len(qr.splitlines()) > 10
    assert step.pending.totp is not None
    secret = step.pending.totp
    return step, secret


async def test_enrol_a_person_with_qr_and_first_code(ui_svc: Service, ui_cast: Cast) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        step, secret = await _enrol_through_dialogs(pilot, app, "carol", ("custodian", "auditor"))
        # a wrong code first: refused, the dialog stays
        step.query_one("#totp-code", Input).value = (
            "000000" if P.hotp(secret, P.current_step()) != "000000" else "111111"
        )
        await pilot.click("#totp-ok")
        await pilot.pause()
        assert app.screen is step
        assert "does not match" in text_of(step.query_one(".error", Static))
        field = step.query_one("#totp-code", Input)
        field.value = P.hotp(secret, P.current_step())
        field.focus()
        await pilot.press("enter")  # the button ignores a second click within its 0.2 s flash
        await wait_for(pilot, lambda: isinstance(app.screen, PeopleScreen))
        carol = ui_svc.people.get("carol")
        assert set(carol.roles) == {"custodian", "auditor"} and carol.totp_generation == 1
        with pytest.raises(ValueError, match="wiped"):
            secret.reveal()  # the TOTP secret left memory with the dialog
        table = app.screen.query_one(DataTable)
        assert "carol" in [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert last_entry(ui_svc)["action"] == "person.enrol"
    # the new person can sign in with what they chose
    assert (
        ui_svc.auth.unlock("carol", P.SecretBytes(b"carol long passphrase for tests")).name
        == "carol"
    )


async def test_cancelled_enrolment_stores_nothing_and_wipes_the_secret(
    ui_svc: Service, ui_cast: Cast
) -> None:
    before = len(ui_svc.audit.entries())
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        step, secret = await _enrol_through_dialogs(pilot, app, "dave", ("operator",))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PeopleScreen)
    assert "dave" not in [p.name for p in ui_svc.people.list()]
    assert len(ui_svc.audit.entries()) == before
    assert step.pending.key is None
    with pytest.raises(ValueError, match="wiped"):
        secret.reveal()


async def test_people_actions_need_the_right_person(ui_svc: Service, ui_cast: Cast) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f4")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, PeopleScreen)  # not signed in: no dialog
        assert any("Sign in" in n.message for n in app._notifications)
        sign_in_directly(app, unlock(ui_svc, ui_cast.oscar))
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, PeopleScreen)
        assert any("Only a custodian" in n.message for n in app._notifications)


async def test_disable_replace_key_and_replace_totp(ui_svc: Service, ui_cast: Cast) -> None:
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        names = [p.name for p in app.screen.people]

        # disable oscar, with a reason
        table.move_cursor(row=names.index("oscar"))
        await pilot.press("d")
        await pilot.pause()
        app.screen.query_one("#disable-reason", Input).value = "left the team [/b]"
        await pilot.click("#disable-ok")
        await pilot.pause()
        assert not ui_svc.people.get("oscar").active
        assert last_entry(ui_svc)["details"]["reason"] == "left the team [/b]"

        # a new signing key for bob; the old one stays known
        table.move_cursor(row=names.index("bob"))
        old = ui_svc.people.get("bob").key
        await pilot.press("k")
        await pilot.pause()
        app.screen.query_one("#pw1", Input).value = "bob brand new phrase for tests"
        app.screen.query_one("#pw2", Input).value = "bob brand new phrase for tests"
        await pilot.click("#key-ok")
        for _ in range(60):
            await pilot.pause(0.05)
            if ui_svc.people.get("bob").key != old:
                break
        bob = ui_svc.people.get("bob")
        assert bob.key != old and len(bob.keys) == 2

        # a new TOTP secret for bob: the new code works, the old secret does not
        table.move_cursor(row=names.index("bob"))
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmTotpReplace)  # no secret made or shown yet
        assert ui_svc.people.get("bob").totp_generation == 1
        await pilot.click("#totp-confirm-ok")
        await wait_for(pilot, lambda: isinstance(app.screen, TotpStep))
        step = app.screen
        assert isinstance(step, TotpStep)
        assert step.pending.totp is not None
        step.query_one("#totp-code", Input).value = P.hotp(step.pending.totp, P.current_step())
        await pilot.click("#totp-ok")
        await wait_for(pilot, lambda: ui_svc.people.get("bob").totp_generation == 2)
    assert ui_svc.audit.verify().ok


async def test_bootstrap_enrols_the_first_custodian_without_sign_in(tmp_path: Any) -> None:
    svc = Service.init(tmp_path / "fresh", keyring_backend="home-file", suite="x25519")
    try:
        app = app_for(svc)
        async with app.run_test(size=SIZE) as pilot:
            step, secret = await _enrol_through_dialogs(pilot, app, "first", ("custodian",))
            step.query_one("#totp-code", Input).value = P.hotp(secret, P.current_step())
            await pilot.click("#totp-ok")
            await wait_for(pilot, lambda: not isinstance(app.screen, TotpStep))
        assert svc.people.get("first").has("custodian")
        assert svc.audit.entries()[-1]["actor"] == "home"
    finally:
        svc.close()


# ------------------------------------------------------------------ audit


async def test_audit_screen_lists_filters_and_verifies(ui_svc: Service) -> None:
    total = len(ui_svc.audit.entries())
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == total
        assert str(table.get_row_at(0)[1]) == str(total)  # newest first
        detail = text_of(screen.query_one("#audit-detail", Static))
        assert f"seq      {total}" in detail
        screen.query_one("#audit-actor").value = "bot"
        await pilot.pause(0.3)
        assert table.row_count == 24
        await pilot.press("ctrl+t")
        for _ in range(100):
            await pilot.pause(0.05)
            if "verified" in text_of(screen.query_one("#audit-result", Static)):
                break
        assert "✓ audit log verified" in text_of(screen.query_one("#audit-result", Static))
        bar = screen.query_one(ProgressBar)
        assert bar.percentage == 1.0


async def test_audit_verify_marks_the_first_bad_entry(ui_svc: Service) -> None:
    seg = sorted((ui_svc.home.path / "audit").glob("segment-*.jsonl"))[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[9] = lines[9].replace(b'"outcome":"ok"', b'"outcome":"OK"')
    seg.write_bytes(b"".join(lines))
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("f8")
        await pilot.pause(0.3)
        await pilot.press("ctrl+t")
        screen = app.screen
        for _ in range(100):
            await pilot.pause(0.05)
            if screen.bad_seq is not None:
                break
        await pilot.pause(0.3)
        assert screen.bad_seq == 10
        result = text_of(screen.query_one("#audit-result", Static))
        assert "does NOT verify: entry 10" in result and "edited" in result
        table = screen.query_one(DataTable)
        row = table.get_row_at(table.cursor_row)
        assert str(row[0]) == "✗" and str(row[1]) == "10"
        assert any("first bad entry" in n.message for n in app._notifications)


async def test_untrusted_text_with_markup_does_not_break_screens(ui_svc: Service) -> None:
    bot = ui_svc.auth.unlock("bot", None)
    import io

    b = ui_svc.backups.encrypt(io.BytesIO(b"x"), ui_svc.home.path / "m.cbk", by=bot, label="x")
    # new labels are one printable line (custodian.text.check_label); an older or edited
    # catalog can still hold markup and escapes
    with ui_svc.catalog.transaction() as db:
        db.execute("UPDATE backups SET label=? WHERE id=?", ("[/b]evil[red]\x1b[2J", b.id))
    app = app_for(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        for key in ("f3", "f8", "f2"):
            await pilot.press(key)
            await pilot.pause(0.3)
        assert isinstance(ui_svc.backups.list(limit=1)[0], Backup)


async def test_a_crash_report_shows_no_local_variables(ui_svc: Service) -> None:
    """Textual's crash report prints every frame's locals; a ceremony frame holds a code
    or a passphrase. custodian's shows the traceback only."""
    app = CustodianApp(ui_svc)
    async with app.run_test():
        code_typed = "".join(reversed("372819"))  # not in the source the report quotes
        try:
            raise RuntimeError(f"boom {len(code_typed)}")
        except RuntimeError:
            app._fatal_error()
        console = Console(file=io.StringIO(), width=120)
        for r in app._exit_renderables:
            console.print(r)
        text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "RuntimeError" in text and "boom 6" in text
    assert "918273" not in text
