"""Pilot tests of dual control in the TUI: request, approve or deny, run the session.

Every test drives the real app on the real home of tests/ui/conftest.py and
then checks what the core recorded (requests, decisions, results, audit log),
so a screen that only looks right fails. The service's clock is a
:class:`tests.conftest.Clock`, so that ``next_code`` can hand each custodian a
fresh TOTP code.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from custodian.approvals import Request
from custodian.service import Service
from screens.app import CustodianApp
from screens.backup_table import MarkingBackupTable
from screens.restore_dialogs import CancelDialog, DecisionDialog, RequestDialog, RunConfirm
from screens.restore_request import RequestScreen
from screens.restore_sessions import RunProgress, SessionsPane
from screens.restores import RestoresScreen
from tests.conftest import Cast, Clock, approved_session, enrol, next_code, unlock
from tests.ui.conftest import fixed_clock, sign_in_directly

SIZE = (130, 42)


def app_for(svc: Service) -> CustodianApp:
    return CustodianApp(svc, clock=fixed_clock)


def shown(widget: Static) -> str:
    """What a Static shows (text, tables, groups), as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def cells(table: DataTable[Any], column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def wait_for(pilot: Any, condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition()


def messages(app: CustodianApp) -> list[str]:
    return [n.message for n in app._notifications]


@pytest.fixture
def svc(ui_svc: Service) -> Service:
    ui_svc.clock = Clock()
    return ui_svc


@pytest.fixture
def cast(ui_cast: Cast) -> Cast:
    return ui_cast


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "restore-target"
    t.mkdir(mode=0o700)
    return t


def ask(svc: Service, cast: Cast, target: Path, n: int = 3, reason: str = "INC-7: lost") -> Request:
    """oscar asks for the newest ``n`` backups."""
    ids = [b.id for b in svc.backups.list(limit=n)]
    return svc.restores.request(ids, reason, target, by=unlock(svc, cast.oscar))


async def run_session(pilot: Any, app: Any) -> None:
    """Ctrl+E, then "Write plaintext" in the dialog that says which files go where."""
    await pilot.press("ctrl+e")
    await wait_for(pilot, lambda: isinstance(app.screen, RunConfirm))
    await pilot.click("#run-ok")


async def open_restores(pilot: Any, app: CustodianApp) -> RestoresScreen:
    await pilot.press("f6")
    await wait_for(pilot, lambda: isinstance(app.screen, RestoresScreen))
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, RestoresScreen)
    return screen


async def decide(
    pilot: Any, app: CustodianApp, key: str, code: str, reason: str = ""
) -> DecisionDialog:
    """Open the approve (ctrl+a) or deny (ctrl+d) dialog, type, submit; returns the dialog."""
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
    dialog = app.screen
    assert isinstance(dialog, DecisionDialog)
    if reason:
        dialog.query_one("#deny-reason", Input).value = reason
    field = dialog.query_one("#decide-code", Input)
    field.value = code
    field.focus()
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: app.screen is not dialog or not dialog.query_one("#decide-ok", Button).disabled,
    )
    await pilot.pause()
    assert field.value == ""  # the code left the widget when it was read, accepted or not
    return dialog


def error_of(dialog: Any) -> str:
    return str(dialog.query_one(".error", Static).render())


# ------------------------------------------------------------------ request


async def test_request_made_from_the_table(svc: Service, cast: Cast, target: Path) -> None:
    newest = svc.backups.list(limit=3)
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        assert screen.pane == "sessions"  # an operator lands on their sessions
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestScreen))
        req_screen = app.screen
        table = req_screen.query_one(MarkingBackupTable)
        assert table.has_focus and table.total == 24
        await pilot.press("space", "down", "down", "enter")  # mark rows 0 and 2
        await pilot.pause()
        assert list(table.marked) == [newest[0].id, newest[2].id]
        assert "2 marked" in str(req_screen.query_one("#request-counts", Static).render())
        marked = shown(req_screen.query_one("#request-marked", Static))
        assert newest[0].label in marked and newest[2].label in marked
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestDialog))
        dialog = app.screen
        dialog.query_one("#request-reason", Input).value = "INC-2041: orders table lost"
        missing = target.parent / "no-such-dir"
        dialog.query_one("#request-target", Input).value = str(missing)
        dialog.query_one("#request-target", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "not an existing directory" in error_of(dialog))
        # the refusal is in the dialog; nothing typed is lost, nothing was requested
        assert dialog.query_one("#request-reason", Input).value == "INC-2041: orders table lost"
        assert dialog.query_one("#request-target", Input).value == str(missing)
        assert svc.approvals.requests() == []
        dialog.query_one("#request-target", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RestoresScreen))
        await pilot.pause()
        [r] = svc.approvals.requests()
        assert r.requester == "oscar" and r.state == "open"
        assert list(r.backups) == [newest[0].id, newest[2].id]
        assert r.reason == "INC-2041: orders table lost" and r.target == str(target.resolve())
        assert screen.pane == "sessions" and screen.shown == r.id
        assert cells(screen.query_one("#sessions-table", DataTable), 1) == [r.id[:8]]
        assert screen.marks == {}  # submitted: the marks are spent
    assert svc.audit.entries(action="restore.request")[-1]["outcome"] == "ok"


async def test_cancelled_request_keeps_marks_and_draft(
    svc: Service, cast: Cast, target: Path
) -> None:
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        await open_restores(pilot, app)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestScreen))
        await pilot.press("ctrl+r")  # nothing marked yet
        await pilot.pause()
        assert isinstance(app.screen, RequestScreen)
        assert any("Mark at least one backup" in m for m in messages(app))
        await pilot.press("down", "space")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestDialog))
        await pilot.press(*"half typed")
        await pilot.press("escape")  # the dialog closes
        await wait_for(pilot, lambda: isinstance(app.screen, RequestScreen))
        await pilot.press("escape")  # and the request screen
        await wait_for(pilot, lambda: isinstance(app.screen, RestoresScreen))
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestScreen))
        assert len(app.screen.query_one(MarkingBackupTable).marked) == 1
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, RequestDialog))
        assert app.screen.query_one("#request-reason", Input).value == "half typed"
    assert svc.approvals.requests() == []


async def test_an_auditor_may_not_request(svc: Service, cast: Cast) -> None:
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.audrey))
        await open_restores(pilot, app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, RestoresScreen)
        assert any("Only operators and custodians may request" in m for m in messages(app))


# ------------------------------------------------------------------ approvals


async def test_two_custodians_approve_and_a_session_opens(
    svc: Service, cast: Cast, target: Path
) -> None:
    r = ask(svc, cast, target)
    labels = [svc.backups.get(b).label for b in r.backups]
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        assert screen.pane == "approvals"
        table = screen.query_one("#approvals-table", DataTable)
        assert cells(table, 1) == [r.id[:8]] and cells(table, 7) == ["waiting for you"]
        detail = shown(screen.query_one("#approvals-request", Static))
        for text in ("oscar", "INC-7: lost", str(target.resolve()), "0 of 2", *labels):
            assert text in detail
        assert "backups v2" in detail  # each backup's KEK version
        dialog = await decide(pilot, app, "ctrl+a", next_code(svc, cast.alice))
        assert app.screen is screen and dialog.is_attached is False  # accepted: it closed
        assert svc.approvals.get(r.id).approvals == ("alice",)
        assert cells(table, 7) == ["you approved"]
        assert any("1 of 2 approvals" in m for m in messages(app))

        await pilot.press("f9")  # alice signs out, bob signs in
        await wait_for(pilot, lambda: app.actor is None)
        sign_in_directly(app, unlock(svc, cast.bob))
        await wait_for(pilot, lambda: cells(table, 7) == ["waiting for you"])
        assert "alice approved" in shown(screen.query_one("#approvals-request", Static))
        await decide(pilot, app, "a", next_code(svc, cast.bob))  # the letter works too
        done = svc.approvals.get(r.id)
        assert done.state == "approved" and done.approvals == ("alice", "bob")
        assert done.session is not None and done.session.state == "open"
        assert table.row_count == 0
        assert any("a session is open until" in m for m in messages(app))
    entries = svc.audit.entries(action="request.approve")
    assert [(e["actor"], e["outcome"]) for e in entries] == [("alice", "ok"), ("bob", "ok")]
    assert "code" not in str(entries)  # the step, never the code
    assert svc.audit.verify().ok


async def test_deny_is_final(svc: Service, cast: Cast, target: Path) -> None:
    r = ask(svc, cast, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.bob))
        screen = await open_restores(pilot, app)
        # a denial needs a reason: refused in the dialog, the code is not spent
        code = next_code(svc, cast.bob)
        dialog = await decide(pilot, app, "ctrl+d", code)
        assert app.screen is dialog and "Say why" in error_of(dialog)
        dialog.query_one("#deny-reason", Input).value = "no ticket [/b] for this"
        await pilot.press("enter")  # enter in the reason goes on to the code
        field = dialog.query_one("#decide-code", Input)
        assert field.has_focus
        field.value = code
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        denied = svc.approvals.get(r.id)
        assert denied.state == "denied" and denied.decisions[0].reason == "no ticket [/b] for this"
        assert screen.query_one("#approvals-table", DataTable).row_count == 0
        screen.show_pane("sessions")
        await pilot.pause()
        assert cells(screen.query_one("#sessions-table", DataTable), 4) == ["denied"]
        summary = shown(screen.query_one("#session-summary", Static))
        # the requester reads why, where they look (the dialog says it is for them)
        assert 'denied by bob: "no ticket [/b] for this" (final)' in summary
        assert any("denial is final" in m for m in messages(app))
    # alice has nothing left to decide, and the core refuses any late approval
    assert svc.approvals.inbox("alice") == []
    with pytest.raises(Exception, match="denied"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))


async def test_a_request_decided_meanwhile_is_refused_in_the_dialog(
    svc: Service, cast: Cast, target: Path
) -> None:
    r = ask(svc, cast, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        await open_restores(pilot, app)
        await pilot.press("ctrl+a")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        dialog = app.screen
        # bob denies at another terminal while alice reads the request
        svc.approvals.deny(r.id, next_code(svc, cast.bob), "not now", by=unlock(svc, cast.bob))
        dialog.query_one("#decide-code", Input).value = next_code(svc, cast.alice)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "is denied" in error_of(dialog))
        assert "final" in error_of(dialog) and "nothing was done" in error_of(dialog)
        assert app.screen is dialog and dialog.query_one("#decide-code", Input).value == ""
    assert svc.approvals.get(r.id).approvals == ()


async def test_a_replayed_code_is_refused(svc: Service, cast: Cast, target: Path) -> None:
    first = ask(svc, cast, target, n=1, reason="first")
    svc.clock.advance(1)  # type: ignore[attr-defined]
    second = ask(svc, cast, target, n=2, reason="second")
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        table = screen.query_one("#approvals-table", DataTable)
        assert cells(table, 1) == [first.id[:8], second.id[:8]]
        code = next_code(svc, cast.alice)
        await decide(pilot, app, "ctrl+a", code)
        assert svc.approvals.get(first.id).approvals == ("alice",)
        table.move_cursor(row=cells(table, 1).index(second.id[:8]))
        await pilot.pause()
        dialog = await decide(pilot, app, "ctrl+a", code)  # the same code again
        assert app.screen is dialog
        assert "already used" in error_of(dialog) and "nothing was done" in error_of(dialog)
        assert dialog.query_one("#decide-code", Input).value == ""  # cleared, even on refusal
        assert svc.approvals.get(second.id).approvals == ()
        # the next code works in the same dialog
        dialog.query_one("#decide-code", Input).value = next_code(svc, cast.alice)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert svc.approvals.get(second.id).approvals == ("alice",)
    refused = svc.audit.entries(action="request.approve", outcome="refused")
    assert refused[-1]["details"]["reason"] == "TOTP code replayed"


async def test_self_approval_is_refused(svc: Service, cast: Cast, target: Path) -> None:
    ids = [b.id for b in svc.backups.list(limit=1)]
    mine = svc.restores.request(ids, "custodians may ask too", target, by=unlock(svc, cast.alice))
    before = len(svc.audit.entries())
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        table = screen.query_one("#approvals-table", DataTable)
        assert cells(table, 7) == ["your own request"]
        assert "Nothing is waiting" in str(screen.query_one("#approvals-hint", Static).render())
        await pilot.press("ctrl+a")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        dialog = app.screen
        assert "You asked for request" in error_of(dialog)
        assert "cannot approve it" in error_of(dialog)
        assert dialog.query_one("#decide-code", Input).disabled
        assert dialog.query_one("#decide-ok", Button).disabled
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    assert svc.approvals.get(mine.id).decisions == ()
    assert len(svc.audit.entries()) == before  # no code was asked, nothing was recorded


async def test_deciding_needs_a_signed_in_custodian(
    svc: Service, cast: Cast, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ask(svc, cast, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_restores(pilot, app)
        assert cells(screen.query_one("#approvals-table", DataTable), 7) == ["sign in to decide"]
        await pilot.press("ctrl+a")
        await pilot.pause()
        assert app.screen is screen and any("Sign in (F9)" in m for m in messages(app))
        sign_in_directly(app, unlock(svc, cast.oscar))
        await pilot.pause()
        screen.show_pane("approvals")
        await pilot.press("ctrl+a")
        await pilot.pause()
        assert app.screen is screen and any("Only a custodian" in m for m in messages(app))
        sign_in_directly(app, unlock(svc, cast.alice))
        monkeypatch.setenv("TEXTUAL_LOG", "textual.log")
        await pilot.press("ctrl+a")
        await pilot.pause()
        assert app.screen is screen and any("TEXTUAL_LOG" in m for m in messages(app))


# ------------------------------------------------------------------ sessions


def tamper(svc: Service, backup_id: str) -> None:
    p = Path(svc.backups.get(backup_id).location)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 1
    p.write_bytes(raw)


async def run_until_done(pilot: Any, screen: RestoresScreen, seconds: float = 10.0) -> None:
    await wait_for(pilot, lambda: screen.running is not None or screen.run_status != "", 2)
    await wait_for(pilot, lambda: screen.running is None, seconds)
    await pilot.pause()


async def test_run_a_session_with_progress_and_a_tampered_backup(
    svc: Service, cast: Cast, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [b.id for b in svc.backups.list(limit=3)]
    session = approved_session(svc, cast, ids, target, reason="INC-9 [/b] restore test")
    tamper(svc, ids[1])
    seen: list[tuple[int, int]] = []
    on_progress = SessionsPane.on_run_progress  # the Sessions pane runs the session

    def spy(pane: SessionsPane, message: RunProgress) -> None:
        seen.append((message.done, message.total))
        on_progress(pane, message)

    monkeypatch.setattr(SessionsPane, "on_run_progress", spy)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        sessions = screen.query_one("#sessions-table", DataTable)
        assert cells(sessions, 0)[0] == "●"  # ready to run, on top (▶ is the cursor)
        summary = shown(screen.query_one("#session-summary", Static))
        assert "session open until" in summary and "min left" in summary
        assert "INC-9 [/b] restore test" in summary
        await run_session(pilot, app)
        await run_until_done(pilot, screen)
        results = screen.query_one("#results-table", DataTable)
        outcomes = cells(results, 2)
        assert outcomes == ["✓ restored", "✗ failed", "✓ restored"]
        bar = screen.query_one("#session-progress", ProgressBar)
        assert bar.percentage == 1.0 and seen and seen[-1][0] == seen[-1][1]
        assert "Done: 2 restored, 1 failed" in str(screen.query_one("#session-status").render())
        results.move_cursor(row=1)
        await pilot.pause()
        reason = str(screen.query_one("#result-reason", Static).render())
        assert reason.startswith("✗ ") and ("chunk" in reason or "authentic" in reason)
        assert any("2 restored, 1 failed" in m for m in messages(app))
        assert cells(sessions, 4)[0] == "done" and cells(sessions, 0)[0] == ""
    r = svc.approvals.get(session.id)
    assert r.state == "done" and [x.outcome for x in r.results] == ["ok", "failed", "ok"]
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(r.payload["files"][b] for b in (ids[0], ids[2]))
    assert svc.audit.verify().ok


async def test_stop_between_backups_keeps_the_session_open(
    svc: Service, cast: Cast, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [b.id for b in svc.backups.list(limit=3)]
    session = approved_session(svc, cast, ids, target)
    slow = svc.restores._decrypt_backup

    def slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)  # time to press keys between backups
        return slow(*args, **kwargs)

    monkeypatch.setattr(svc.restores, "_decrypt_backup", slowly)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await run_session(pilot, app)
        await wait_for(pilot, lambda: screen.running is not None)
        assert "… restoring" in cells(screen.query_one("#results-table", DataTable), 2)
        # while it runs: no sign-out, no other action, no quit
        await pilot.press("f9")
        await pilot.pause()
        assert app.actor is not None and any("Not now" in m for m in messages(app))
        await pilot.press("escape")  # stop after the backup in progress
        await run_until_done(pilot, screen)
        status = str(screen.query_one("#session-status").render())
        assert status.startswith("Stopped") and "stays open" in status
        r = svc.approvals.get(session.id)
        assert r.state == "approved" and r.session is not None and r.session.state == "open"
        assert 1 <= len(r.results) < 3
        await run_session(pilot, app)  # the rest
        await run_until_done(pilot, screen)
        assert cells(screen.query_one("#results-table", DataTable), 2) == ["✓ restored"] * 3
        assert "restored earlier" in str(screen.query_one("#session-status").render())
    assert svc.approvals.get(session.id).state == "done"


async def test_only_the_requester_runs_a_session(svc: Service, cast: Cast, target: Path) -> None:
    ids = [b.id for b in svc.backups.list(limit=1)]
    approved_session(svc, cast, ids, target)
    before = len(svc.audit.entries())
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.bob))
        screen = await open_restores(pilot, app)
        screen.show_pane("sessions")
        await pilot.pause()
        assert "Only oscar, who asked" in shown(screen.query_one("#session-summary", Static))
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert screen.running is None
        assert any("Only oscar, who asked for request" in m for m in messages(app))
    assert len(svc.audit.entries()) == before


async def test_markup_in_reasons_and_labels_does_not_crash(
    svc: Service, cast: Cast, target: Path
) -> None:
    bot = svc.auth.unlock("bot", None)
    evil = svc.backups.encrypt(io.BytesIO(b"x"), target.parent / "evil.cbk", by=bot, label="x")
    # new labels are one printable line (custodian.text.check_label); an older or edited
    # catalog can still hold markup and escapes
    with svc.catalog.transaction() as db:
        db.execute("UPDATE backups SET label=? WHERE id=?", ("[/b]evil[red]\x1b[2J", evil.id))
    r = svc.restores.request(
        [evil.id], "[/b] [bold red]not markup[/]", target, by=unlock(svc, cast.oscar)
    )
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        detail = shown(screen.query_one("#approvals-request", Static))
        assert "[/b] [bold red]not markup[/]" in detail and "[/b]evil[red]" in detail
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        await pilot.press("escape")
        screen.show_pane("sessions")
        await pilot.pause()
        assert "[/b] [bold red]not markup[/]" in shown(screen.query_one("#session-summary", Static))
    assert svc.approvals.get(r.id).decisions == ()  # cancelled dialog: nothing decided


async def test_a_key_destruction_request_is_decided_in_the_same_inbox(
    svc: Service, cast: Cast
) -> None:
    alice = unlock(svc, cast.alice)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    svc.keys.rewrap("backups", by=alice)
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    svc.clock.advance(8 * 86400)  # type: ignore[attr-defined]
    enrol(svc, "carol", ("custodian",), alice)  # two approvers besides alice
    r = svc.keys.request_destroy("backups", 1, "quarterly clean-up", by=alice)
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.bob))
        screen = await open_restores(pilot, app)
        table = screen.query_one("#approvals-table", DataTable)
        assert cells(table, 5) == ["destroy backups v1"] and cells(table, 7) == ["waiting for you"]
        detail = shown(screen.query_one("#approvals-request", Static))
        assert "KEK backups v1" in detail and "cannot be undone" in detail
        assert "backups, " not in detail  # no backup list for a key destruction
        dialog = await decide(pilot, app, "ctrl+a", next_code(svc, cast.bob))
        assert app.screen is screen and not dialog.is_attached
        screen.show_pane("sessions")
        await pilot.pause()
        assert screen.session_rows == []  # not a restore: no session to run
    assert svc.approvals.get(r.id).approvals == ("bob",)


# ------------------------------------------------------------------ cancel


async def cancel_in_dialog(pilot: Any, app: CustodianApp, reason: str = "") -> CancelDialog:
    """Open the cancel dialog (ctrl+k), give a reason, confirm; returns the dialog."""
    await pilot.press("ctrl+k")
    await wait_for(pilot, lambda: isinstance(app.screen, CancelDialog))
    dialog = app.screen
    assert isinstance(dialog, CancelDialog)
    field = dialog.query_one("#cancel-reason", Input)
    assert field.has_focus
    field.value = reason
    await pilot.press("enter")
    await wait_for(
        pilot,
        lambda: app.screen is not dialog or not dialog.query_one("#cancel-ok", Button).disabled,
    )
    await pilot.pause()
    return dialog


async def test_the_requester_cancels_an_open_request(
    svc: Service, cast: Cast, target: Path
) -> None:
    r = ask(svc, cast, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        assert screen.pane == "sessions" and screen.shown == r.id
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, CancelDialog))
        dialog = app.screen
        assert r.id in shown(dialog.query_one("#cancel-request", Static))
        assert "final" in shown(dialog.query_one("#cancel-warning", Static))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        dialog = await cancel_in_dialog(pilot, app, "INC-7 [/b] solved otherwise")
        assert app.screen is screen and not dialog.is_attached
        assert cells(screen.query_one("#sessions-table", DataTable), 4) == ["cancelled"]
        assert "cancelled (final)" in shown(screen.query_one("#session-summary", Static))
        assert any(f"Request {r.id[:8]} is cancelled (final)" in m for m in messages(app))
    assert svc.approvals.get(r.id).state == "cancelled"
    [entry] = svc.audit.entries(action="request.cancel")
    assert (entry["actor"], entry["outcome"]) == ("oscar", "ok")
    assert entry["details"]["reason"] == "INC-7 [/b] solved otherwise"
    assert svc.audit.verify().ok


async def test_a_custodian_cancels_an_approved_request_and_its_session_closes(
    svc: Service, cast: Cast, target: Path
) -> None:
    ids = [b.id for b in svc.backups.list(limit=2)]
    session = approved_session(svc, cast, ids, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.bob))
        screen = await open_restores(pilot, app)
        screen.show_pane("sessions")
        await pilot.pause()
        assert screen.shown == session.request
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, CancelDialog))
        warning = shown(app.screen.query_one("#cancel-warning", Static))
        assert f"session {session.id[:8]} closes at once" in warning
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await cancel_in_dialog(pilot, app)  # no reason: it is optional
        assert app.screen is screen
        assert cells(screen.query_one("#sessions-table", DataTable), 4) == ["cancelled"]
        assert any("is closed" in m and "oscar sees it" in m for m in messages(app))
    r = svc.approvals.get(session.request)
    assert r.state == "cancelled" and r.session is not None and r.session.state == "closed"
    [entry] = svc.audit.entries(action="request.cancel")
    assert (entry["actor"], entry["outcome"]) == ("bob", "ok")
    assert entry["details"]["session"] == session.id


async def test_an_operator_who_did_not_ask_may_not_cancel(
    svc: Service, cast: Cast, target: Path
) -> None:
    ids = [b.id for b in svc.backups.list(limit=1)]
    r = svc.restores.request(ids, "alice asks", target, by=unlock(svc, cast.alice))
    before = len(svc.audit.entries())
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        screen.show_pane("approvals")
        await pilot.pause()
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert app.screen is screen
        assert any(
            f"Only alice, who asked, or a custodian may cancel request {r.id[:8]}" in m
            for m in messages(app)
        )
    assert svc.approvals.get(r.id).state == "open"
    assert len(svc.audit.entries()) == before


async def test_escape_in_the_cancel_dialog_changes_nothing(
    svc: Service, cast: Cast, target: Path
) -> None:
    r = ask(svc, cast, target)
    before = len(svc.audit.entries())
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        assert screen.pane == "approvals"
        await pilot.press("c")  # the plain-letter alias
        await wait_for(pilot, lambda: isinstance(app.screen, CancelDialog))
        await pilot.press(*"typed, then kept")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert cells(screen.query_one("#approvals-table", DataTable), 1) == [r.id[:8]]
    assert svc.approvals.get(r.id).state == "open"
    assert len(svc.audit.entries()) == before


async def test_a_second_cancel_is_refused_as_already_cancelled(
    svc: Service, cast: Cast, target: Path
) -> None:
    r = ask(svc, cast, target)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(app.screen, CancelDialog))
        dialog = app.screen
        # alice cancels at another terminal while oscar reads the dialog
        svc.approvals.cancel(r.id, by=unlock(svc, cast.alice), reason="done elsewhere")
        dialog.query_one("#cancel-reason", Input).value = "no longer needed"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "already cancelled" in error_of(dialog))
        assert app.screen is dialog and "nothing was done" in error_of(dialog)
        assert dialog.query_one("#cancel-reason", Input).value == "no longer needed"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert cells(screen.query_one("#sessions-table", DataTable), 4) == ["cancelled"]
        # the screen now knows it is cancelled: the key says so without a dialog
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert app.screen is screen
        assert any(f"{r.id[:8]} is already cancelled (final)" in m for m in messages(app))
    entries = svc.audit.entries(action="request.cancel")
    assert [(e["actor"], e["outcome"]) for e in entries] == [("alice", "ok"), ("oscar", "refused")]
    assert svc.approvals.get(r.id).state == "cancelled"


async def test_cancel_is_refused_while_its_session_runs(
    svc: Service, cast: Cast, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [b.id for b in svc.backups.list(limit=2)]
    session = approved_session(svc, cast, ids, target)
    slow = svc.restores._decrypt_backup

    def slowly(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)
        return slow(*args, **kwargs)

    monkeypatch.setattr(svc.restores, "_decrypt_backup", slowly)
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await run_session(pilot, app)
        await wait_for(pilot, lambda: screen.running is not None)
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert app.screen is screen
        assert any("Not now: the restore of request" in m for m in messages(app))
        await run_until_done(pilot, screen)
    assert svc.approvals.get(session.request).state == "done"
    assert svc.audit.entries(action="request.cancel") == []
