"""The quorum KEK ceremony on the Keys screen (F7, n, custody quorum; screens/quorum.py).

The signed-in custodian chooses custody, holders and M; each other holder types their
passphrase in turn (a wrong one is refused and cleared); each holder confirms the
manifest fingerprint; the signed-in custodian's code creates it. Refusals come before
anyone types a passphrase (a holder who is not a custodian, M out of range, too few
custodians). No passphrase is left on screen after its step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from custodian.catalog import Kek
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.app import CustodianApp
from screens.key_dialogs import CodeConfirm, KekCreated, KekForm
from screens.keys import KeysScreen
from screens.quorum import HoldersForm, HolderUnlock, ManifestConfirm, quorum_problem
from tests.conftest import Cast, Clock, Enrolled, _make, enrol, next_code, unlock
from tests.ui.conftest import fixed_clock, sign_in_directly
from tests.ui.test_setup import screen_text, until

SIZE = (120, 36)


@pytest.fixture
def three(tmp_path: Path) -> Iterator[tuple[Service, Cast, Enrolled]]:
    """The test cast, and carol: three custodians (alice, bob, carol)."""
    svc, cast = _make(tmp_path / "home", "x25519")
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    svc.clock = Clock()
    yield svc, cast, carol
    svc.close()


async def open_form(pilot: Any, app: CustodianApp) -> KekForm:
    await pilot.press("f7")
    await until(pilot, lambda: isinstance(app.screen, KeysScreen))
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, KekForm))
    form = app.screen
    assert isinstance(form, KekForm)
    await pilot.pause(0.2)  # mounted and laid out before the first click
    return form


def tick(form: HoldersForm, name: str, value: bool) -> None:
    i = next(i for i, p in enumerate(form.people) if p.name == name)
    form.query_one(f"#holder-{i}").value = value  # type: ignore[attr-defined]


async def test_quorum_kek_made_with_holders_one_after_another(
    three: tuple[Service, Cast, Enrolled],
) -> None:
    svc, cast, carol = three
    phrases = {"bob": cast.bob.passphrase, "carol": carol.passphrase}
    app = CustodianApp(svc, clock=fixed_clock)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(svc, cast.alice))
        form = await open_form(pilot, app)
        assert form.query_one("#custody-quorum").value  # three custodians: quorum by default
        form.query_one("#kek-name", Input).value = "archive-q"
        await pilot.click("#kek-next")
        holders = await _on(pilot, HoldersForm)
        names = [p.name for p in holders.people]
        assert {"alice", "bob", "carol", "oscar", "audrey"} <= set(names)  # not the bot
        assert holders.query_one("#holders-m", Input).value == "2"
        # an operator ticked as a holder: refused by name before any passphrase
        tick(holders, "oscar", True)
        await pilot.click("#holders-next")
        await pilot.pause()
        assert "oscar is not a custodian" in screen_text(app)
        tick(holders, "oscar", False)
        await pilot.pause(0.3)  # a button ignores a second click within its 0.2 s flash
        # M out of range
        holders.query_one("#holders-m", Input).value = "1"
        await pilot.click("#holders-next")
        await pilot.pause()
        assert "For 3 holders M is 2" in screen_text(app)
        await pilot.pause(0.3)
        holders.query_one("#holders-m", Input).value = "2"
        await pilot.click("#holders-next")

        # bob, then carol, at the keyboard (alice is signed in: she types nothing again)
        for name in ("bob", "carol"):
            step = await _on(pilot, HolderUnlock)
            assert step.person == name and f"Only {name} at the keyboard" in screen_text(app)
            field = step.query_one("#holder-passphrase", Input)
            if name == "bob":
                field.value = "bob's wrong passphrase, quite long"
                await pilot.click("#holder-ok")
                await until(pilot, lambda: "wrong passphrase for bob" in screen_text(app))
                assert app.screen is step and field.value == ""
                assert "Type the passphrase again" in screen_text(app)
                await pilot.pause(0.3)
            field.value = phrases[name]
            await pilot.click("#holder-ok")
            await until(pilot, lambda s=step: app.screen is not s)
            text = screen_text(app)
            assert phrases[name] not in text and phrases[name] not in " ".join(text.split())

        seen = []
        for name in ("alice", "bob", "carol"):
            confirm = await _on(pilot, ManifestConfirm)
            assert confirm.holder == name
            fp = confirm.draft.fingerprint
            assert "  ".join(fp.split()) in screen_text(app)  # the fingerprint, as read aloud
            seen.append(fp)
            await pilot.click("#manifest-ok")
            await until(pilot, lambda c=confirm: app.screen is not c)
        assert svc.keys.list()[-1].name != "archive-q"  # nothing is kept before the code
        code = await _on(pilot, CodeConfirm)
        code.query_one("#code", Input).value = next_code(svc, cast.alice)
        await pilot.click("#code-ok")
        created = await _on(pilot, KekCreated)
        assert isinstance(created.kek, Kek) and created.kek.versions[0].fingerprint == seen[0]
        await pilot.click("#kek-done")
        await until(pilot, lambda: isinstance(app.screen, KeysScreen))
        await until(pilot, lambda: any("Quorum KEK archive-q" in n.message
                                       for n in app._notifications))  # fmt: skip
    k = svc.keys.get("archive-q")
    man = svc.keys.manifest("archive-q", 1)
    assert (k.backend, man.m) == ("quorum", 2)
    assert [h.name for h in man.holders] == ["alice", "bob", "carol"]
    signs = [e for e in svc.audit.entries() if e["action"] == "kek.manifest.sign"]
    assert [e["actor"] for e in signs] == ["alice", "bob", "carol"]
    refused = [e for e in svc.audit.entries() if e["action"] == "person.unlock"]
    assert refused and refused[-1]["outcome"] != "ok"  # bob's wrong passphrase is on record
    assert svc.audit.verify().ok


async def test_quorum_ceremony_cancelled_creates_nothing_and_forgets_the_holders(
    three: tuple[Service, Cast, Enrolled], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, cast, _ = three
    unlocked: list[Any] = []
    real = svc.auth.unlock

    def unlock_and_keep(name: str, passphrase: Any) -> Any:
        actor = real(name, passphrase)
        unlocked.append(actor)
        return actor

    monkeypatch.setattr(svc.auth, "unlock", unlock_and_keep)
    before = len(svc.audit.entries())
    app = CustodianApp(svc, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, real("alice", SecretBytes(cast.alice.passphrase.encode())))
        form = await open_form(pilot, app)
        form.query_one("#kek-name", Input).value = "archive-q"
        await pilot.click("#kek-next")
        await _on(pilot, HoldersForm)
        await pilot.pause(0.2)
        await pilot.click("#holders-next")
        step = await _on(pilot, HolderUnlock)
        step.query_one("#holder-passphrase", Input).value = cast.bob.passphrase
        await pilot.click("#holder-ok")
        await until(pilot, lambda: isinstance(app.screen, HolderUnlock) and app.screen is not step)
        await pilot.press("escape")  # carol's turn: she is not there, the ceremony ends
        await until(pilot, lambda: isinstance(app.screen, KeysScreen))
        assert app.actor is not None and app.actor._key is not None  # alice stays signed in
    assert [a.name for a in unlocked] == ["bob"]
    assert unlocked[0]._key is None and unlocked[0]._personal is None  # bob's key is dropped
    assert "archive-q" not in [k.name for k in svc.keys.list()]
    assert svc.audit.entries()[before:] == []  # nothing recorded


async def test_quorum_needs_three_custodians(ui_svc: Service, ui_cast: Cast) -> None:
    app = CustodianApp(ui_svc, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        form = await open_form(pilot, app)
        assert form.query_one("#custody-single").value  # two custodians: single by default
        assert "A quorum needs 3 custodians; this home has 2." in screen_text(app)
        form.query_one("#kek-name", Input).value = "archive-q"
        await pilot.click("#custody-quorum")
        await pilot.click("#kek-next")
        await pilot.pause()
        assert app.screen is form
        assert "A quorum KEK needs at least 3 custodians" in screen_text(app)


def test_quorum_problem_names_what_is_allowed() -> None:
    assert quorum_problem(2, 3) is None and quorum_problem(3, 5) is None
    assert "at least 3 holders" in (quorum_problem(2, 2) or "")
    assert "M is 2 to 4" in (quorum_problem(5, 5) or "")
    assert "nothing was typed" in (quorum_problem(None, 4) or "")


async def _on(pilot: Any, kind: type) -> Any:
    await until(pilot, lambda: isinstance(pilot.app.screen, kind))
    await pilot.pause()
    return pilot.app.screen
