"""Snapshots of the first set-up's and the quorum ceremony's key steps, at 80x24 and 120x36.

Each picture shows one step over the set-up screen with fixed data: a home path that
is never made, fixed holder keys (so the manifest fingerprint is the same each run),
a fixed share (words of the SLIP-39 list, not a real set's) and a fixed generated
passphrase. At 80x24 the frame's error line and buttons must be on screen
(tests/ui/test_dialog_snapshots.visible). After a deliberate change to one of these
steps, look at the new pictures and update them with ``--snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from custodian.custody import personal
from custodian.custody import quorum as Q
from custodian.custody.breakglass import ShareMnemonic
from custodian.home import Home
from custodian.secret import SecretBytes
from custodian.service import Service
from custodian.service.keys import QuorumDraft
from screens.dialogs import Dialog
from screens.quorum import HoldersForm, HolderUnlock, ManifestConfirm
from screens.setup import SetupApp, SetupScreen
from screens.setup_dialogs import (
    BreakGlassForm,
    CustodianForm,
    EnrollerUnlock,
    GeneratedPassphrase,
    HomeForm,
)
from screens.setup_shares import ShareCheck, ShareGate, ShareReveal
from tests.ui.test_dialog_snapshots import visible
from tests.ui.test_snapshots import settle, until

Compare = Callable[..., bool]
HOME = Home(Path("/srv/custodian"))
HOME_ID = "7d3f0c2a-1b9e-4c55-8e21-6a0f4b7d9e13"
WORDS = (
    "academic acid acne acquire acrobat activity actress adapt adequate adjust admit "
    "adorn adult advance advocate afraid again agency agree aide aircraft airline "
    "airport ajar alarm album alcohol alien alive alpha already alto aluminum"
)
FINGERPRINT = "ea82 3434 3469 f0a5 8e55 e937 f24f 2d1a"
GENERATED = "provide group debut spill adapt pupal cargo uncover"


def draft() -> QuorumDraft:
    man = Q.Manifest(
        HOME_ID, "backups", 1, "x25519", 2,
        tuple(Q.Holder(n, i + 1, bytes([i + 1]) * 32)
              for i, n in enumerate(("alice", "bob", "carol"))), "",
    ).check()  # fmt: skip
    return QuorumDraft("backups", "x25519", "", ("alice", "bob", "carol"), man, ())


def steps(svc: Service) -> dict[str, tuple[Callable[[], Screen[Any]] | None, str]]:
    """name -> (the step, what its error line says)."""
    share = ShareMnemonic(WORDS, 1, 8509)
    return {
        "setup_start": (None, ""),
        "home": (lambda: HomeForm(HOME), ""),
        "custodian": (
            lambda: CustodianForm(svc, None, 1),
            "The two passphrases differ; type them again (both were cleared).",
        ),
        "generated": (lambda: GeneratedPassphrase(svc, "bob", None), ""),
        "enroller": (
            lambda: EnrollerUnlock(svc, ("alice", "bob"), "the next custodians' enrolment"),
            "",
        ),
        "holders": (
            lambda: HoldersForm(svc.people.list(), kek="backups"),
            "oscar is not a custodian: only custodians hold shares. Untick oscar, or give "
            "the custodian role first (People, F4).",
        ),
        "holder_unlock": (
            lambda: HolderUnlock(
                svc, "bob", index=2, count=3, purpose="which makes your holder key of KEK backups"
            ),
            "wrong passphrase for bob; nothing was signed. Type the passphrase again (it "
            "was cleared).",
        ),
        "manifest": (lambda: ManifestConfirm(draft(), "bob", index=2), ""),
        "breakglass": (lambda: BreakGlassForm(("alice", "bob", "carol")), ""),
        "share_gate": (lambda: ShareGate("bob", 2, 3), ""),
        "share_reveal": (lambda: ShareReveal("bob", share, FINGERPRINT, 3), ""),
        "share_check": (
            lambda: ShareCheck("bob", share, [2, 16, 28]),
            "Word 17 is not what the share says (the fields were cleared). Check your "
            "paper, or show the share again.",
        ),
    }


NAMES_80 = [
    "setup_start", "home", "custodian", "generated", "enroller", "holders",
    "holder_unlock", "manifest", "breakglass", "share_gate", "share_reveal", "share_check",
]  # fmt: skip
NAMES_120 = ["setup_start", "holders", "manifest", "share_reveal"]


def _case(
    snap_compare: Compare,
    ui_svc: Service,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    size: tuple[int, int],
) -> bool:
    monkeypatch.setattr(
        personal, "generate_passphrase", lambda words=8: SecretBytes(GENERATED.encode())
    )
    make, refusal = steps(ui_svc)[name]

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        if make is not None:
            dialog = make()
            app.push_screen(dialog)
            await until(
                pilot, lambda: app.screen is dialog and bool(dialog.query(".dialog-buttons"))
            )
            if refusal:
                assert isinstance(dialog, Dialog)
                dialog.error(refusal)
            await pilot.pause(0.2)
            if size == (80, 24):
                visible(app)  # type: ignore[arg-type]
        await settle(pilot)

    return snap_compare(SetupApp(HOME), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("name", NAMES_80)
def test_setup_step_at_80x24(
    snap_compare: Compare, ui_svc: Service, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    assert _case(snap_compare, ui_svc, monkeypatch, name, (80, 24))


@pytest.mark.parametrize("name", NAMES_120)
def test_setup_step_at_120x36(
    snap_compare: Compare, ui_svc: Service, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    assert _case(snap_compare, ui_svc, monkeypatch, name, (120, 36))
