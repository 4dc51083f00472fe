"""The TUI's credential changes after bootstrap (issue 11): the People screen asks
(a request that custodians other than its subject approve), the request shows in the
approvals inbox (F6) with what it changes, and its subject completes it in person,
the new TOTP secret shown only then. At 80x24 and 120x36."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static

from custodian import people as P
from custodian.service import Service
from screens.app import CustodianApp
from screens.people import ChangeRequest, CompletionTotpStep, PeopleScreen
from screens.restores import RestoresScreen
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_screens import plain


def _app(svc: Service) -> CustodianApp:
    return CustodianApp(svc)


async def _until(pilot: Any, ok: Any) -> None:
    for _ in range(200):
        await pilot.pause(0.03)
        if ok():
            return
    raise AssertionError("timed out")


@pytest.fixture
def quorum_ui(ui_svc: Service, ui_cast: Cast) -> tuple[Service, Any]:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    carol = enrol(ui_svc, "carol", ("custodian",), alice)
    holders = [alice, unlock(ui_svc, ui_cast.bob), unlock(ui_svc, carol)]
    ui_svc.keys.create_quorum("vault", holders, 2, by=alice, code=next_code(ui_svc, ui_cast.alice))
    return ui_svc, carol


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_ask_see_in_the_inbox_approve_and_complete(
    quorum_ui: tuple[Service, Any], ui_cast: Cast, size: tuple[int, int]
) -> None:
    svc, carol = quorum_ui
    app = _app(svc)
    async with app.run_test(size=size) as pilot:
        sign_in_directly(app, unlock(svc, ui_cast.alice))
        await pilot.press("f4")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        table = app.screen.query_one(DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("bob"))
        await pilot.press("t")  # after bootstrap: a request, not a new secret on screen
        await _until(pilot, lambda: isinstance(app.screen, ChangeRequest))
        dialog = app.screen
        assert dialog.query_one("#change-ok").region.bottom <= size[1]  # buttons in view
        dialog.query_one("#change-reason", Input).value = "bob lost his phone"
        await pilot.click("#change-ok")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        (r,) = [x for x in svc.approvals.requests("open") if x.kind == "person.change"]
        assert r.payload["change"] == "totp" and r.quorum == 1
        assert svc.people.get("bob").totp_generation == 1  # nothing shown, nothing changed
        # carol sees it in her inbox with what it changes, and approves with a code
        sign_in_directly(app, unlock(svc, carol))
        await pilot.press("f6")
        await _until(pilot, lambda: isinstance(app.screen, RestoresScreen))
        inbox = app.screen.query_one("#approvals-table", DataTable)
        await _until(pilot, lambda: inbox.row_count == 1)
        assert "new TOTP secret for bob" in " ".join(str(c) for c in inbox.get_row_at(0))
        detail = plain(app.screen.query_one("#approvals-request", Static))
        assert "new TOTP secret for bob" in detail and "bob, whom it is about" in detail
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    # bob completes it in person: the secret shows now, to him
    app = _app(svc)
    async with app.run_test(size=size) as pilot:
        sign_in_directly(app, unlock(svc, ui_cast.bob))
        await pilot.press("f4")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        await pilot.press("ctrl+o")
        await _until(pilot, lambda: isinstance(app.screen, CompletionTotpStep))
        step = app.screen
        assert isinstance(step, CompletionTotpStep)
        totp = step.completion.totp
        assert totp is not None
        secret = P.SecretBytes(bytes(totp.reveal()))
        field = step.query_one("#totp-code", Input)
        field.value = P.hotp(secret, P.current_step(svc.clock()))
        field.focus()
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
    assert svc.people.get("bob").totp_generation == 2
    with pytest.raises(ValueError, match="wiped"):
        totp.reveal()  # the secret left memory with the dialog
    assert svc.audit.verify().ok


async def test_a_lost_passphrase_is_asked_for_without_signing_in(
    quorum_ui: tuple[Service, Any], ui_cast: Cast
) -> None:
    """Nobody signed in, bob highlighted, k: bob types a reason and a new passphrase; the
    key is made now and signs the request, which the others then approve."""
    from screens.people import NewPassphrase

    svc, _ = quorum_ui
    app = _app(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        table = app.screen.query_one(DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("bob"))
        await pilot.press("k")
        await _until(pilot, lambda: isinstance(app.screen, ChangeRequest))
        app.screen.query_one("#change-reason", Input).value = "forgot my passphrase"
        await pilot.click("#change-ok")
        await _until(pilot, lambda: isinstance(app.screen, NewPassphrase))
        for field in ("#pw1", "#pw2"):
            app.screen.query_one(field, Input).value = "bob brand new passphrase long enough"
        await pilot.click("#key-ok")
        await _until(
            pilot, lambda: any(r.kind == "person.change" for r in svc.approvals.requests("open"))
        )
    (r,) = [x for x in svc.approvals.requests("open") if x.kind == "person.change"]
    assert r.requester == "bob" and r.payload["change"] == "key" and r.quorum == 2
    assert svc.people.get("bob").key.key_id != r.payload["key_id"]  # type: ignore[union-attr]
    assert svc.audit.verify().ok


async def test_an_enrolment_is_completed_in_front_of_an_approver(
    quorum_ui: tuple[Service, Any], ui_cast: Cast
) -> None:
    """carol approved dave's enrolment and is signed in: Ctrl+O asks dave's passphrase,
    then shows his new secret with a field for his first code and one for carol's."""
    from screens.people import NewPassphrase

    svc, carol = quorum_ui
    alice = unlock(svc, ui_cast.alice)
    r = svc.people.changes.request("enrol", "dave", by=alice, reason="new", roles=["custodian"])
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    app = _app(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        sign_in_directly(app, alice)  # alice asked, did not approve: she cannot witness
        await pilot.press("f4")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)
        assert isinstance(app.screen, PeopleScreen)
        sign_in_directly(app, unlock(svc, carol))
        await pilot.press("ctrl+o")
        await _until(pilot, lambda: isinstance(app.screen, NewPassphrase))
        for field in ("#pw1", "#pw2"):
            app.screen.query_one(field, Input).value = "dave brand new passphrase long enough"
        await pilot.click("#key-ok")
        await _until(pilot, lambda: isinstance(app.screen, CompletionTotpStep))
        step = app.screen
        assert isinstance(step, CompletionTotpStep) and step.completion.totp is not None
        step.query_one("#totp-code", Input).value = P.hotp(
            step.completion.totp, P.current_step(svc.clock())
        )
        wfield = step.query_one("#witness-code", Input)
        wfield.value = next_code(svc, carol)
        wfield.focus()
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, PeopleScreen))
    dave = svc.people.get("dave")
    assert dave.active and dave.roles == ("custodian",)
    (w,) = svc.audit.entries(action="person.enrol.witness")
    assert w["actor"] == "carol" and w["details"]["key_id"] == dave.key.key_id  # type: ignore[union-attr]
    assert svc.audit.verify().ok
