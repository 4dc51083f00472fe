"""Snapshot tests of the key screens (CONVENTIONS.md, point 10).

Each test drives the real app on the real home of tests/ui/conftest.py,
wrapped in :class:`Frozen` so paths, ids, times, fingerprints and hashes are
the same on every run, with the clock fixed and the cursor blink off, at one
terminal size. The snapshots live in ``__snapshots__/test_snapshots/`` beside
this file; after a deliberate change to a screen, look at the new pictures
and update them with ``pytest tests/ui/test_snapshots.py --snapshot-update``.

These tests are plain functions: ``snap_compare`` runs the app in its own
event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from custodian import people as P
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.app import CustodianApp
from screens.audit import AuditScreen
from screens.backups import BackupsScreen
from screens.people import EnrolForm, PeopleScreen, TotpStep
from screens.signin import SignInScreen
from tests.conftest import Cast, unlock
from tests.ui.conftest import Frozen, fixed_clock, sign_in_directly

SIZE = (130, 42)
Compare = Callable[..., bool]


def frozen_app(svc: Service) -> CustodianApp:
    return CustodianApp(Frozen(svc), clock=fixed_clock)  # type: ignore[arg-type]


async def until(pilot: Pilot[Any], condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Pause until ``condition()`` holds; fail the test if it never does."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), "the screen never reached the state the snapshot needs"


async def settle(pilot: Pilot[Any]) -> None:
    """Stop every input's cursor from blinking (it would show or not by chance)."""
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False  # leaves the cursor shown where the field has focus
    await pilot.pause()


def text_of(pilot: Pilot[Any], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())


# ------------------------------------------------------------------ dashboard


def test_dashboard(snap_compare: Compare, ui_svc: Service) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: bool(pilot.app.screen.query("#dash-home-pairs")))
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------ backups


def test_backups(snap_compare: Compare, ui_svc: Service) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(pilot.app.screen, BackupsScreen))
        await until(pilot, lambda: "of 24 backups" in text_of(pilot, "#backups-counts"))
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------ people


def test_people_signed_in(snap_compare: Compare, ui_svc: Service, ui_cast: Cast) -> None:
    alice = unlock(ui_svc, ui_cast.alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, alice)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(pilot.app.screen, PeopleScreen))
        await until(pilot, lambda: "Signed in: alice" in text_of(pilot, "SessionBar"))
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------ audit


def test_audit_after_verify(snap_compare: Compare, ui_svc: Service) -> None:
    total = len(ui_svc.audit.entries())

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("f8")
        await until(pilot, lambda: isinstance(pilot.app.screen, AuditScreen))
        screen = pilot.app.screen
        assert isinstance(screen, AuditScreen)
        await until(pilot, lambda: len(screen.rows) == total)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: "verified" in text_of(pilot, "#audit-result"))
        # a good verification reloads the table in a thread worker: wait for it
        await pilot.app.workers.wait_for_complete()
        await until(pilot, lambda: "matching entries" in text_of(pilot, "#audit-counts"))
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------ sign-in


def test_sign_in_dialog(snap_compare: Compare, ui_svc: Service) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press("f9")
        await until(pilot, lambda: isinstance(pilot.app.screen, SignInScreen))
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------ enrolment


FIXED_TOTP = bytes(range(20))


def test_enrolment_totp_step(
    snap_compare: Compare, ui_svc: Service, ui_cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service draws the secret through custodian.people.new_totp_secret:
    # a fixed one makes the QR code and the secret shown the same every run.
    monkeypatch.setattr(P, "new_totp_secret", lambda: SecretBytes(FIXED_TOTP, "TOTP secret"))
    alice = unlock(ui_svc, ui_cast.alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        sign_in_directly(app, alice)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, PeopleScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, EnrolForm))
        form = app.screen
        form.query_one("#enrol-name", Input).value = "carol"
        form.query_one("#role-auditor").value = True
        form.query_one("#pw1", Input).value = "carol long passphrase for tests"
        form.query_one("#pw2", Input).value = "carol long passphrase for tests"
        await pilot.click("#enrol-next")
        await until(pilot, lambda: isinstance(app.screen, TotpStep))
        step = app.screen
        assert isinstance(step, TotpStep)
        assert step.pending.secret_b32() == "AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT"
        await settle(pilot)

    assert snap_compare(frozen_app(ui_svc), terminal_size=SIZE, run_before=run_before)
