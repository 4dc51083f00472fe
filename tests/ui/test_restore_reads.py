"""Restores (F6) as issue 13 asks: the run asks before it writes plaintext (Ctrl+E, not
Ctrl+R, which reverses the Backups screen's order), a problem at the target is said
before anything is decrypted and never closes the session, and the requester reads
why a request was denied."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from custodian.service import Service
from screens.restore_dialogs import RunConfirm
from tests.conftest import Cast, approved_session, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_restore import (  # noqa: F401  (fixtures)
    SIZE,
    app_for,
    ask,
    cast,
    messages,
    open_restores,
    shown,
    svc,
    target,
    wait_for,
)


async def test_the_run_says_which_plaintext_goes_where_before_writing_it(
    svc: Service,  # noqa: F811
    cast: Cast,  # noqa: F811
    target: Path,  # noqa: F811
) -> None:
    ids = [b.id for b in svc.backups.list(limit=2)]
    session = approved_session(svc, cast, ids, target)
    files = svc.approvals.get(session.id).payload["files"]
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await pilot.press("ctrl+r")  # the Backups screen's "reverse": nothing here
        await pilot.pause()
        assert app.screen is screen and screen.running is None
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, RunConfirm))
        dialog = app.screen
        said = shown(dialog.query_one("#run-summary", Static))
        assert "2 backups" in said and str(target) in said and "plaintext files" in said
        listed = shown(dialog.query_one("#run-files", Static))
        assert all(name in listed for name in files.values())
        assert dialog.query_one("#run-cancel").has_focus  # Enter alone writes nothing
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert list(target.iterdir()) == [] and screen.running is None
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, RunConfirm))
        await pilot.click("#run-ok")
        await wait_for(pilot, lambda: screen.run_status.startswith("Done"))
    assert sorted(p.name for p in target.iterdir()) == sorted(files.values())


async def test_a_file_in_the_way_is_said_before_the_run_and_the_session_stays_open(
    svc: Service,  # noqa: F811
    cast: Cast,  # noqa: F811
    target: Path,  # noqa: F811
) -> None:
    ids = [b.id for b in svc.backups.list(limit=2)]
    session = approved_session(svc, cast, ids, target)
    name = next(iter(svc.approvals.get(session.id).payload["files"].values()))
    (target / name).write_bytes(b"precious")
    app = app_for(svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: any("already holds" in m for m in messages(app)))
        assert not isinstance(app.screen, RunConfirm) and screen.running is None
        assert any("the session stays open" in m for m in messages(app))
    r = svc.approvals.get(session.id)
    assert r.session is not None and r.session.state == "open" and not r.results
    assert (target / name).read_bytes() == b"precious"


async def test_the_requester_reads_why_the_request_was_denied(
    svc: Service,  # noqa: F811
    cast: Cast,  # noqa: F811
    target: Path,  # noqa: F811
) -> None:
    r = ask(svc, cast, target)
    svc.approvals.deny(
        r.id, next_code(svc, cast.bob), "no ticket for this", by=unlock(svc, cast.bob)
    )
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.oscar))
        screen = await open_restores(pilot, app)
        await wait_for(pilot, lambda: screen.pane == "sessions")
        summary = shown(screen.query_one("#session-summary", Static))
        assert 'denied by bob: "no ticket for this" (final)' in summary


async def test_f6_again_switches_the_panes(svc: Service, cast: Cast) -> None:  # noqa: F811
    app = app_for(svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        screen = await open_restores(pilot, app)
        assert screen.pane == "approvals"
        await pilot.press("f6")
        await wait_for(pilot, lambda: screen.pane == "sessions")
        await pilot.press("f6")
        await wait_for(pilot, lambda: screen.pane == "approvals")
