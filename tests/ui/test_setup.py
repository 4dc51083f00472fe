"""The first set-up ceremony (screens/setup.py) driven end to end with Pilot.

A home is made from nothing, three custodians are enrolled one after another
(typed and generated passphrases, each with their authenticator), the first quorum
KEK is created with them as holders, the break-glass set is split and each share
handed out one holder at a time. After every step that showed a secret, the text of
the whole screen is checked: no passphrase, TOTP secret or share word is left on it.
The core's records are checked too (people, the KEK's manifest, the set, the audit
log verifies), so a ceremony that only looks right fails.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.widgets import Input, OptionList

from custodian import people as P
from custodian.home import Home
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.key_dialogs import CodeConfirm, KekCreated
from screens.people import TotpStep
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
from tests.conftest import Clock

SIZE = (120, 36)


def screen_text(app: App[Any]) -> str:
    w, h = app.size
    c = Console(width=w, height=h, file=io.StringIO(), record=True, legacy_windows=False)
    c.print(app.screen._compositor.render_update(full=True))
    return c.export_text()


async def until(pilot: Any, condition: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), f"never reached; the screen is {type(pilot.app.screen).__name__}"


async def on(pilot: Any, kind: type) -> Any:
    await until(pilot, lambda: isinstance(pilot.app.screen, kind))
    await pilot.pause()
    return pilot.app.screen


class Secrets:
    """Every secret the ceremony showed or was typed, to look for on screen later."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.totp: dict[str, SecretBytes] = {}
        self.passphrases: dict[str, str] = {}

    def add(self, *texts: str) -> None:
        self.items.extend(t for t in texts if t)

    def none_on(self, app: App[Any]) -> None:
        text = screen_text(app)
        flat = " ".join(text.split())
        for s in self.items:
            assert s not in text and s not in flat, f"a secret is left on screen: {s[:6]}…"


def code_for(svc: Service, secret: SecretBytes, name: str) -> str:
    """A code for a step ``name`` has not used (the test clock moves on when needed)."""
    clock = svc.clock
    assert isinstance(clock, Clock)
    now = P.current_step(clock())
    step = max(svc.catalog.totp_last_step(name) + 1, now)
    if step > now + 1:
        clock.advance(P.TOTP_PERIOD * (step - now - 1))
    return P.hotp(secret, step)


async def make_home(pilot: Any, app: SetupApp, path: Path) -> Service:
    await on(pilot, SetupScreen)
    await pilot.click("#setup-go")
    form = await on(pilot, HomeForm)
    form.query_one("#home-path", Input).value = str(path)
    form.query_one("#keyring-file").value = True
    await pilot.click("#home-ok")
    await until(pilot, lambda: app.service is not None and isinstance(app.screen, SetupScreen))
    assert app.service is not None
    app.service.clock = Clock()
    return app.service


async def enrol(
    pilot: Any, app: SetupApp, seen: Secrets, name: str, *, generated: bool = False
) -> None:
    svc = app.service
    assert svc is not None
    await pilot.click("#setup-go")
    await until(pilot, lambda: isinstance(app.screen, CustodianForm | EnrollerUnlock))
    if isinstance(app.screen, EnrollerUnlock):
        first = svc.setup.progress().custodians[0]
        app.screen.query_one("#enroller-passphrase", Input).value = seen.passphrases[first]
        await pilot.click("#enroller-ok")
    form = await on(pilot, CustodianForm)
    form.query_one("#custodian-name", Input).value = name
    if generated:
        form.query_one("#mode-generated").value = True
        await pilot.pause()
        await pilot.click("#custodian-next")
        shown = await on(pilot, GeneratedPassphrase)
        assert shown.passphrase is not None
        phrase = bytes(shown.passphrase.reveal()).decode()
        assert phrase.split()[0] in screen_text(app)  # shown once, to its custodian
        shown.query_one("#generated-again", Input).value = "not it at all, no"
        await pilot.click("#generated-next")
        await pilot.pause()
        assert "not the passphrase shown" in screen_text(app)
        assert shown.query_one("#generated-again", Input).value == ""
        await pilot.pause(0.3)  # a button ignores a second click within its 0.2 s flash
        shown.query_one("#generated-again", Input).value = phrase
        await pilot.click("#generated-next")
    else:
        phrase = f"{name} test passphrase long enough"
        form.query_one("#pw1", Input).value = phrase
        form.query_one("#pw2", Input).value = phrase
        await pilot.click("#custodian-next")
    seen.passphrases[name] = phrase
    seen.add(phrase)
    step = await on(pilot, TotpStep)
    assert step.pending.totp is not None
    secret = SecretBytes(bytes(step.pending.totp.reveal()))
    b32 = P.totp_b32(secret)
    seen.add(b32, " ".join(b32[i : i + 4] for i in range(0, len(b32), 4)))
    seen.totp[name] = secret
    step.query_one("#totp-code", Input).value = P.hotp(secret, P.current_step())
    await pilot.click("#totp-ok")
    await on(pilot, SetupScreen)
    await until(pilot, lambda: name in svc.setup.progress().custodians)
    await pilot.pause(0.1)
    assert f"{name} is enrolled" in screen_text(app)
    seen.none_on(app)  # the screen between two people holds nothing of theirs


async def unlock_holders(pilot: Any, app: SetupApp, seen: Secrets, count: int) -> list[str]:
    """Answer each HolderUnlock in turn (a wrong passphrase first, for the first one)."""
    asked: list[str] = []
    wrong_once = False
    for _ in range(count):
        await until(pilot, lambda: isinstance(app.screen, HolderUnlock | ManifestConfirm
                                              | CodeConfirm))  # fmt: skip
        screen = app.screen
        if not isinstance(screen, HolderUnlock):
            break
        field = screen.query_one("#holder-passphrase", Input)
        if not wrong_once:
            wrong_once = True
            field.value = "a wrong passphrase of some length"
            await pilot.click("#holder-ok")
            await until(pilot, lambda s=screen: "Type the passphrase again" in screen_text(app))
            assert app.screen is screen and field.value == ""
            await pilot.pause(0.3)
        field.value = seen.passphrases[screen.person]
        asked.append(screen.person)
        await pilot.click("#holder-ok")
        await until(pilot, lambda s=screen: app.screen is not s)
        seen.none_on(app)
    return asked


async def test_the_first_set_up_from_nothing_to_a_quorum_home(tmp_path: Path) -> None:
    path = tmp_path / "new-home"
    app = SetupApp(Home.resolve(path))
    seen = Secrets()
    async with app.run_test(size=SIZE) as pilot:
        svc = await make_home(pilot, app, path)
        assert svc.keys.list() == [] and svc.setup.progress().step == "custodians"

        await enrol(pilot, app, seen, "alice")
        await enrol(pilot, app, seen, "bob", generated=True)
        assert app.enroller is not None and app.enroller.name == "alice"
        assert not app.screen.query_one("#setup-more").display  # two: no KEK yet
        await enrol(pilot, app, seen, "carol")
        assert svc.setup.progress().step == "kek"
        assert app.screen.query_one("#setup-more").display

        # the quorum KEK: holders and M, each unlocks, each confirms the manifest
        await pilot.click("#setup-go")
        form = await on(pilot, HoldersForm)
        form.query_one("#holders-m", Input).value = "3"
        await pilot.click("#holders-next")
        await pilot.pause()
        assert "For 3 holders M is 2" in screen_text(app)  # 3 of 3 is refused
        await pilot.pause(0.3)  # a button ignores a second click within its 0.2 s flash
        form.query_one("#holders-m", Input).value = "2"
        await pilot.click("#holders-next")
        asked = await unlock_holders(pilot, app, seen, 3)
        assert asked == ["bob", "carol"]  # alice signed the enrolments, unlocked already
        fingerprints = []
        for holder in ("alice", "bob", "carol"):
            confirm = await on(pilot, ManifestConfirm)
            assert confirm.holder == holder
            fingerprints.append(confirm.draft.fingerprint)
            await pilot.click("#manifest-ok")
            await until(pilot, lambda c=confirm: app.screen is not c)
        assert len(set(fingerprints)) == 1
        code = await on(pilot, CodeConfirm)
        code.query_one("#code", Input).value = code_for(svc, seen.totp["alice"], "alice")
        await pilot.click("#code-ok")
        created = await on(pilot, KekCreated)
        assert created.kek.versions[0].fingerprint == fingerprints[0]
        await pilot.click("#kek-done")
        await on(pilot, SetupScreen)
        man = svc.keys.manifest("backups", 1)
        assert (man.m, man.n, [h.name for h in man.holders]) == (2, 3, ["alice", "bob", "carol"])
        assert svc.setup.progress().step == "breakglass"

        # the break-glass set, each share to its holder, typed back, wiped between
        await pilot.click("#setup-go")
        await on(pilot, BreakGlassForm)
        await pilot.click("#bg-next")
        code = await on(pilot, CodeConfirm)  # everyone is unlocked already
        assert code.who == "bob"  # not alice, whose last code confirmed the KEK
        code.query_one("#code", Input).value = code_for(svc, seen.totp["bob"], "bob")
        await pilot.click("#code-ok")
        words_of: dict[str, list[str]] = {}
        for holder in ("alice", "bob", "carol"):
            gate = await on(pilot, ShareGate)
            assert gate.holder == holder
            seen.none_on(app)  # the previous holder's words are gone
            await pilot.press("escape")  # the set is recorded: no way out of the hand-out
            await pilot.pause()
            assert app.screen is gate and "every holder takes their share" in screen_text(app)
            await pilot.click("#share-show")
            reveal = await on(pilot, ShareReveal)
            words = reveal.share.words()
            words_of[holder] = words
            assert words[0] in screen_text(app)
            await pilot.click("#share-written")
            check = await on(pilot, ShareCheck)
            if holder == "alice":  # a wrong word first: refused, cleared
                check.query_one("#share-word-0", Input).value = "wrong"
                await pilot.click("#share-check-ok")
                await pilot.pause()
                assert "not what the share says" in screen_text(app)
                assert check.query_one("#share-word-0", Input).value == ""
                await pilot.pause(0.3)
            for i, p in enumerate(check.positions):
                check.query_one(f"#share-word-{i}", Input).value = words[p]
            await pilot.click("#share-check-ok")
            await until(pilot, lambda c=check: app.screen is not c)
            seen.add(" ".join(words[:3]), " ".join(words[-3:]))
        await on(pilot, SetupScreen)
        await until(pilot, lambda: svc.setup.progress().step == "done")
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "Open custodian" in text and "recovery key" in text
        seen.none_on(app)
        await pilot.click("#setup-go")
        await until(pilot, lambda: not app.is_running)
    assert app.return_value is svc
    assert app.unlocked == {}  # every key unlocked for the set-up is dropped
    try:
        s = svc.custody.current()
        assert s is not None and (s.threshold, s.count) == (2, 3)
        assert s.holders == ("alice", "bob", "carol")
        # the shares handed out recover the set (any two of them)
        texts = [" ".join(words_of["carol"]), " ".join(words_of["alice"])]
        assert svc.custody.drill(texts, by=svc.auth.unlock(
            "carol", SecretBytes(seen.passphrases["carol"].encode()))).ok  # fmt: skip
        actions = [e["action"] for e in svc.audit.entries()]
        assert actions.count("person.enrol") == 3
        assert actions.count("kek.manifest.sign") == 3 and "kek.create" in actions
        assert actions.count("breakglass.sign") == 3 and "breakglass.split" in actions
        assert svc.audit.verify().ok
        # the generated passphrase is bob's: it opens his key
        assert svc.auth.unlock("bob", SecretBytes(seen.passphrases["bob"].encode())).name == "bob"
    finally:
        svc.close()


@pytest.mark.parametrize("stop_after", ["home", "two custodians"])
async def test_a_set_up_cut_short_carries_on_where_it_stopped(
    tmp_path: Path, stop_after: str
) -> None:
    path = tmp_path / "h"
    seen = Secrets()
    app = SetupApp(Home.resolve(path))
    async with app.run_test(size=SIZE) as pilot:
        svc = await make_home(pilot, app, path)
        if stop_after == "two custodians":
            await enrol(pilot, app, seen, "alice")
            await enrol(pilot, app, seen, "bob")
        await pilot.press("ctrl+q")
    assert app.return_value is None
    svc.close()
    # the next start: the home's own state says where the set-up stands
    again = Service.open(path)
    try:
        p = again.setup.progress()
        assert p.step == "custodians"
        app = SetupApp(again.home, again)
        async with app.run_test(size=SIZE) as pilot:
            await on(pilot, SetupScreen)
            text = screen_text(app)
            assert "✓ 1. Create the home" in text and "● 2. Enrol the custodians" in text
            await pilot.click("#setup-go")
            if stop_after == "home":
                await on(pilot, CustodianForm)  # the first one: no enroller yet
            else:
                who = await on(pilot, EnrollerUnlock)  # a custodian unlocks to enrol the rest
                names = [
                    str(who.query_one(OptionList).get_option_at_index(i).prompt).strip("▶ ")
                    for i in range(2)
                ]
                assert names == ["alice", "bob"]
                assert "▶ alice" in screen_text(app)  # the highlighted one has a glyph
                who.query_one("#enroller-passphrase", Input).value = "not alice's passphrase"
                await pilot.click("#enroller-ok")
                await until(pilot, lambda: "Type the passphrase again" in screen_text(app))
                assert isinstance(app.screen, EnrollerUnlock)
    finally:
        again.close()
