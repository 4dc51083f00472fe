"""Every ceremony dialog at 80x24 (CONVENTIONS.md, point 17; issue 13).

Each snapshot shows a dialog on the real app at the smallest terminal the README
supports, with a refusal on its error line (two lines long where one can be), so
that what a newcomer types, what the core refused and the buttons are all in view.
The data are fixed (tests/ui/conftest.Frozen, requests and previews made here), so
the pictures are the same on every run. After a deliberate change to a dialog,
look at the new pictures and update them with ``--snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from custodian import people as P
from custodian.approvals import Decision, Request, Session
from custodian.rotation import RotationPreview
from custodian.secret import SecretBytes
from custodian.service import Service
from custodian.service.migrate import CensusRow
from screens.app import CustodianApp
from screens.dialogs import Dialog
from screens.key_dialogs import (
    CodeConfirm,
    DestroyRequestDialog,
    KekCreated,
    KekForm,
    RotatePreviewDialog,
    pairs,
    retire_body,
    rotate_body,
)
from screens.migrate_dialogs import HolderPassphrase, MigrateForm, MigrateSpec, migrate_body
from screens.people import ConfirmDisable, ConfirmTotpReplace, EnrolForm, NewPassphrase, TotpStep
from screens.restore_dialogs import CancelDialog, DecisionDialog, RequestDialog, RunConfirm
from screens.signin import SignInScreen
from tests.conftest import Cast, unlock
from tests.ui.conftest import FIXED_NOW, Frozen, fake_id, fixed_clock, sign_in_directly, stamp
from tests.ui.test_snapshots import FIXED_TOTP, settle, until

SIZE = (80, 24)
Compare = Callable[..., bool]
NOW = FIXED_NOW.timestamp()
TWO_LINES = (
    "KEK backups v1 was retired at 2026-11-01 09:00 UTC; the waiting period of 7 day(s) "
    "ends 2026-11-08 09:00 UTC. Nothing was done."
)


def _request(svc: Service, *, state: str = "open", session: bool = False) -> Request:
    backups = [svc.backups.list(limit=3)[i] for i in range(3)]
    rid = fake_id("request")
    s = Session(fake_id("session"), rid, stamp(1), stamp(-8), "open", None) if session else None
    return Request(
        id=rid,
        kind="restore",
        requester="oscar",
        created_at=stamp(2),
        expires_at=stamp(-2),
        state=state,
        payload={
            "backups": [fake_id(b.label) for b in backups],
            "files": {fake_id(b.label): b.label for b in backups},
            "reason": "INC-2041: the orders table was dropped by a migration; restore last "
            "night's dumps",
            "target": "/srv/restore/INC-2041",
        },
        decisions=(Decision("alice", "approve", stamp(1), 1),) if session else (),
        session=s,
        quorum=2,
    )


def _backups(svc: Service, r: Request) -> dict[str, Any]:
    return {fake_id(b.label): replace(b, id=fake_id(b.label)) for b in svc.backups.list(limit=3)}


def _preview() -> RotationPreview:
    return RotationPreview(
        kek="backups",
        backend="local",
        suite="x25519",
        current_version=2,
        new_version=3,
        census={2: 10, 1: 14},
        to_rewrap=24,
        rate=12_000.0,
        workers=1,
        unfinished=None,
        batch_size=50,
        batch_seconds=0.004,
        dek_seconds=0.00002,
    )


def dialogs(svc: Frozen, cast: Cast) -> dict[str, tuple[Callable[[], Screen[Any]], str]]:
    """name -> (the dialog, what its error line says: a refusal the core gives)."""
    k = svc.keys.list()[0]
    v1 = replace(k.versions[0], state="retired", retired_at=stamp(1), dek_count=0)
    alice = unlock(svc._svc, cast.alice)
    oscar = unlock(svc._svc, cast.oscar)
    bob = next(p for p in svc.people.list() if p.name == "bob")
    real = svc._svc
    r = _request(real)
    approved = _request(real, state="approved", session=True)
    return {
        "sign_in": (
            lambda: SignInScreen(svc),  # type: ignore[arg-type]
            "The code is wrong or was used already; 4 more tries before a 30 s wait. "
            "Nothing was done.",
        ),
        "kek_form": (
            lambda: KekForm(svc, existing=["backups"], custodians=2),  # type: ignore[arg-type]
            "A KEK named backups exists; choose another name.",
        ),
        "kek_code": (
            lambda: CodeConfirm(
                "Generate KEK archive-2027",
                pairs(("Name", "archive-2027"), ("Backend", "local"), ("Suite", "x25519")),
                lambda code: None,
                ok="Generate",
                who="alice",
            ),
            "That code is not the current one, or it was used already; type the code "
            "your authenticator shows now. Nothing was done.",
        ),
        "kek_created": (lambda: KekCreated(k), ""),
        "rotate_preview": (lambda: RotatePreviewDialog(_preview()), ""),
        "rotate_code": (
            lambda: CodeConfirm(
                "Confirm the rotation of KEK backups",
                rotate_body(_preview()),
                lambda code: None,
                ok="Rotate",
                variant="warning",
                who="alice",
            ),
            "That code was used already: each code counts once. Type the next one.",
        ),
        "retire_code": (
            lambda: CodeConfirm(
                "Retire KEK backups v1",
                retire_body(k, replace(v1, state="active"), 7, 2),
                lambda code: None,
                ok="Retire",
                variant="warning",
                who="alice",
            ),
            TWO_LINES,
        ),
        "destroy_request": (
            lambda: DestroyRequestDialog(real, k, v1, by=alice, quorum=2, wait_days=7),
            "Say why, for the audit log and the approving custodians.",
        ),
        "approve": (
            lambda: DecisionDialog(real, r, _backups(real, r), "approve", alice, NOW),
            CODE_WRONG,
        ),
        "deny": (
            lambda: DecisionDialog(real, r, _backups(real, r), "deny", alice, NOW),
            "Say why you deny it, for the requester and the audit log.",
        ),
        "cancel": (
            lambda: CancelDialog(r, _backups(real, r), alice, NOW, lambda reason: None),
            "",
        ),
        "request": (
            lambda: RequestDialog(
                real, oscar, list(_backups(real, r).values()), {"reason": "INC-2041"}
            ),
            "The target /srv/restore/INC-2041 already holds pg-orders-023.sql, the restore "
            "name of a backup it asks for; nothing was requested.",
        ),
        "run_confirm": (lambda: RunConfirm(approved, _backups(real, approved), NOW), ""),
        "totp_confirm": (lambda: ConfirmTotpReplace(bob, alice), ""),
        "enrol": (
            lambda: EnrolForm(svc, alice),  # type: ignore[arg-type]
            "The two passphrases differ; type them again.",
        ),
        "new_passphrase": (
            lambda: NewPassphrase("bob"),
            "The passphrase needs at least 12 characters.",
        ),
        "disable": (lambda: ConfirmDisable(bob), "Say why, for the audit log."),
        "migrate_form": (
            lambda: MigrateForm(real, k, _census()),
            "Tick at least three holders: a quorum of M needs 2 <= M <= N-1.",
        ),
        "holder_passphrase": (
            lambda: HolderPassphrase(real, "bob", 1, 2),
            "the passphrase of bob is wrong; nothing was done. Type the passphrase again "
            "(it was cleared).",
        ),
        "migrate_code": (
            lambda: CodeConfirm(
                "Confirm the migration of KEK backups to quorum",
                migrate_body(
                    k, MigrateSpec("backups", "quorum", ("alice", "bob", "carol"), 2), _census()
                ),
                lambda code: None,
                ok="Migrate",
                variant="warning",
                who="alice",
            ),
            CODE_WRONG,
        ),
    }


def _census() -> tuple[CensusRow, ...]:
    return (CensusRow("local", 1, "active", 14), CensusRow("local", 2, "active", 10))


CODE_WRONG = (
    "That code is not the current one, or it was used already (each code counts once); "
    "type the code your authenticator shows now. Nothing was done."
)
NAMES = [
    "sign_in",
    "kek_form",
    "kek_code",
    "kek_created",
    "rotate_preview",
    "rotate_code",
    "retire_code",
    "destroy_request",
    "approve",
    "deny",
    "cancel",
    "request",
    "run_confirm",
    "totp_confirm",
    "enrol",
    "new_passphrase",
    "disable",
    "migrate_form",
    "holder_passphrase",
    "migrate_code",
]


def visible(app: CustodianApp) -> None:
    """The frame's error line and buttons are on screen (inside the terminal)."""
    screen = app.screen
    assert isinstance(screen, Dialog)
    height = app.size.height
    for w in [*screen.query(".dialog-buttons Button"), *screen.query(".dialog .error")]:
        region = w.region
        assert region.height > 0 and region.y >= 0 and region.bottom <= height, (w, region)


@pytest.mark.parametrize("name", NAMES)
def test_ceremony_dialog_at_80x24(
    snap_compare: Compare, ui_svc: Service, ui_cast: Cast, name: str
) -> None:
    frozen = Frozen(ui_svc)
    make, refusal = dialogs(frozen, ui_cast)[name]
    alice = unlock(ui_svc, ui_cast.alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        sign_in_directly(app, alice)
        dialog = make()
        app.push_screen(dialog)
        await until(pilot, lambda: app.screen is dialog and bool(dialog.query(".dialog-buttons")))
        if refusal:
            assert isinstance(dialog, Dialog)
            dialog.error(refusal)
        await pilot.pause(0.2)
        visible(app)  # type: ignore[arg-type]
        await settle(pilot)

    app = CustodianApp(frozen, clock=fixed_clock)  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_totp_step_at_80x24(
    snap_compare: Compare, ui_svc: Service, ui_cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fixed test secret (not anyone's): the QR code and the secret are the same each run."""
    monkeypatch.setattr(P, "new_totp_secret", lambda: SecretBytes(FIXED_TOTP, "TOTP secret"))
    frozen = Frozen(ui_svc)
    alice = unlock(ui_svc, ui_cast.alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        sign_in_directly(app, alice)
        pending = ui_svc.people.begin_enrolment(
            "carol",
            ["auditor"],
            passphrase=SecretBytes(b"carol long passphrase for tests"),
            by=alice,
        )
        dialog = TotpStep(frozen, pending, alice)  # type: ignore[arg-type]
        app.push_screen(dialog)
        await until(pilot, lambda: app.screen is dialog and bool(dialog.query(".dialog-buttons")))
        dialog.error("That code does not match the new secret; type the code it shows now.")
        await pilot.pause(0.2)
        visible(app)  # type: ignore[arg-type]
        assert dialog.query_one("#totp-code", Input).has_focus
        await settle(pilot)

    app = CustodianApp(frozen, clock=fixed_clock)  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
