"""Break-glass screen (F10): the split ceremony one holder at a time, the drill and the
recovery through the share entry (word completion, each share checked, "1 of 2"), at
80x24 and 120x36, and no share left on screen after its step (issue 11)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.widgets import Input, Static

from custodian.service import Service
from screens.app import CustodianApp
from screens.breakglass import (
    BreakGlassScreen,
    CodeStep,
    HolderUnlock,
    Reenrol,
    ShareEntry,
    ShowShare,
    SplitForm,
)
from screens.dashboard import DashboardScreen
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock
from tests.ui.conftest import sign_in_directly
from tests.ui.test_keys import notes, wait_for

SIZES = [(80, 24), (120, 36)]


def everything_shown(app: Any) -> str:
    """The text of every Static and every Input value on every screen of the stack."""
    console = Console(width=200, file=io.StringIO(), record=True)
    for screen in app.screen_stack:
        for w in screen.query(Static):
            console.print(w.content)
        for i in screen.query(Input):
            console.print(i.value)
    return console.export_text().lower()


def leftover(text: str, share: str) -> int:
    """How many distinct words of ``share`` stand as words in ``text``. A share left on
    screen shows all 33; the screens' own sentences hold a few SLIP-39 words ("away")."""
    return len(set(share.split()) & set(text.lower().split()))


async def _open(pilot: Any) -> BreakGlassScreen:
    await pilot.press("f10")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, BreakGlassScreen))
    return pilot.app.screen  # type: ignore[no-any-return]


async def _dialog(pilot: Any, kind: type) -> Any:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, kind))
    return pilot.app.screen


async def _answered(pilot: Any, dialog: Any) -> None:
    await wait_for(pilot, lambda: not dialog.is_attached or not dialog.ok_button.disabled)
    await pilot.pause()


async def press_ok(pilot: Any, d: Any) -> None:
    """The dialog's main button, from the keyboard (it holds the focus between steps)."""
    await wait_for(pilot, lambda: not d.ok_button.has_class("-active"))  # presses ignored
    d.ok_button.focus()
    await pilot.press("enter")
    await pilot.pause()


async def split_in_tui(
    pilot: Any,
    svc: Service,
    cast: Cast,
    carol: Enrolled,
    key: str = "ctrl+s",
    old: list[str] | None = None,
) -> list[str]:
    """Runs the split ceremony (or, with ``key`` and the current set's shares ``old``,
    reshare or rekey) as the holders would; returns the shares as written down."""
    app = pilot.app
    await pilot.press(key)
    if old is not None:
        await type_shares(pilot, old)
    form = await _dialog(pilot, SplitForm)
    form.query_one("#bg-holders", Input).value = "alice, bob, carol"
    await pilot.click("#bg-split-ok")
    for who in (cast.bob, carol):
        d = await _dialog(pilot, HolderUnlock)
        assert d.holder == who.name
        d.query_one("#bg-pw", Input).value = who.passphrase
        await pilot.press("enter")
        await _answered(pilot, d)
    code = await _dialog(pilot, CodeStep)
    code.query_one("#bg-code-in", Input).value = next_code(svc, cast.alice)
    await pilot.press("enter")
    await _answered(pilot, code)
    papers: list[str] = []
    for holder in ("alice", "bob", "carol"):
        d = await _dialog(pilot, ShowShare)
        assert d.holder == holder
        # the screen was wiped: no word of an earlier share is anywhere on it
        now = everything_shown(app)
        for p in papers:
            assert leftover(now, p) < 6, holder
        assert f"only {holder} looks" in now
        await press_ok(pilot, d)  # show
        words = [w.lower() for w in d.share.words()]
        assert all(w.upper() in everything_shown(app).upper() for w in words[-3:])
        papers.append(" ".join(words))
        assert leftover(everything_shown(app), papers[-1]) >= 20  # what the check would see
        await press_ok(pilot, d)  # written down: hidden
        assert leftover(everything_shown(app), " ".join(words)) < 6
        first = d.asked[0]
        d.query_one(f"#bg-w{first}", Input).value = "wrong"
        for i in d.asked[1:]:
            d.query_one(f"#bg-w{i}", Input).value = words[i]
        await press_ok(pilot, d)  # a wrong word: shown again
        assert "did not match" in everything_shown(app) and d.is_attached
        for phase in ("shown", "check"):
            await press_ok(pilot, d)
            assert d.phase == phase
        for i in d.asked:
            d.query_one(f"#bg-w{i}", Input).value = words[i][:4]  # a prefix is enough
        await press_ok(pilot, d)
        await pilot.pause()
        assert not d.is_attached, (holder, d.phase, everything_shown(app)[-600:])
    await wait_for(pilot, lambda: isinstance(app.screen, BreakGlassScreen))
    return papers


async def type_shares(pilot: Any, shares: list[str]) -> ShareEntry:
    entry = await _dialog(pilot, ShareEntry)
    for i, text in enumerate(shares):
        field = entry.query_one("#bg-share", Input)
        field.value = text
        field.focus()
        await pilot.press("enter")
        await pilot.pause()
        if i == 0 and len(shares) > 1:
            assert "1 of 2" in everything_shown(pilot.app)
            assert field.value == ""  # accepted: cleared
    return entry


@pytest.fixture
def carol(ui_svc: Service, ui_cast: Cast) -> Enrolled:
    return enrol(ui_svc, "carol", ("custodian",), unlock(ui_svc, ui_cast.alice))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x36"])
async def test_split_then_drill_through_the_screen(
    ui_svc: Service, ui_cast: Cast, carol: Enrolled, size: tuple[int, int]
) -> None:
    ui_svc.clock = Clock()
    app = CustodianApp(ui_svc)
    async with app.run_test(size=size, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await _open(pilot)
        assert "no break-glass set yet" in everything_shown(app)
        papers = await split_in_tui(pilot, ui_svc, ui_cast, carol)
        s = ui_svc.custody.current()
        assert s is not None and s.holders == ("alice", "bob", "carol")
        assert any("every share handed out" in n for n in notes(app))
        shown = everything_shown(app)
        assert all(leftover(shown, p) < 6 for p in papers)
        assert str(s.set_id) in shown and "never" in shown
        # drill: a misspelt word is named, then two shares pass
        await pilot.press("ctrl+d")
        entry = await _dialog(pilot, ShareEntry)
        bad = papers[0].split()
        bad[7] = "qqqq"
        entry.query_one("#bg-share", Input).value = " ".join(bad)
        entry.query_one("#bg-share", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert "word 8 'qqqq' is not a slip-39 word" in everything_shown(app)
        entry.query_one("#bg-share", Input).value = ""
        await type_shares(pilot, [papers[2], papers[0]])
        await wait_for(pilot, lambda: any("Drill passed" in n for n in notes(app)))
        assert ui_svc.custody.current().last_drill is not None  # type: ignore[union-attr]
        assert leftover(everything_shown(app), papers[2]) < 6
        assert screen.is_attached
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: "last good drill" in everything_shown(app))


async def test_share_entry_completes_words_from_the_slip39_list(
    ui_svc: Service, ui_cast: Cast, carol: Enrolled
) -> None:
    from screens.breakglass import WordSuggester

    s = WordSuggester(ui_svc)
    assert await s.get_suggestion("academic acid acro") == "academic acid acrobat"
    assert await s.get_suggestion("ac") is None  # many words start so
    assert await s.get_suggestion("acid ") is None


async def test_recovery_and_reenrolment_through_the_screen(
    ui_svc: Service, ui_cast: Cast, carol: Enrolled, tmp_path: Path
) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    holders = [alice, unlock(ui_svc, ui_cast.bob), unlock(ui_svc, carol)]
    with ui_svc.custody.split(holders, by=alice, code=next_code(ui_svc, ui_cast.alice)) as ss:
        papers = [x.reveal() for x in ss.shares]
    ui_svc.close()
    copy = tmp_path / "copy"
    shutil.copytree(ui_svc.home.path, copy)
    shutil.rmtree(copy / "keyring")
    with Service.open(copy) as other:
        app = CustodianApp(other)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await _open(pilot)
            await pilot.press("ctrl+r")
            # one short, then a second share: the root key is installed
            await type_shares(pilot, [papers[1], papers[0]])
            d = await _dialog(pilot, Reenrol)
            await wait_for(pilot, lambda: any("Root key installed" in n for n in notes(app)))
            d.query_one("#pw1", Input).value = "alice new passphrase after recovery"
            d.query_one("#pw2", Input).value = "alice new passphrase after recovery"
            await press_ok(pilot, d)
            await _answered(pilot, d)
            assert not d.is_attached, everything_shown(app)[-400:]
            await wait_for(pilot, lambda: app.screen is not d and isinstance(app.screen, Reenrol))
            d = app.screen
            assert "alice" not in d.names
            await pilot.press("escape")  # Done
            await wait_for(pilot, lambda: isinstance(app.screen, BreakGlassScreen))
            assert leftover(everything_shown(app), papers[1]) < 6
        from custodian.secret import SecretBytes

        a = other.auth.unlock("alice", SecretBytes(b"alice new passphrase after recovery"))
        assert a.name == "alice" and other.ctx.load_ksk() is not None
        assert other.audit.verify().ok


@pytest.mark.parametrize("key", ["ctrl+e", "ctrl+k"], ids=["reshare", "rekey"])
async def test_reshare_and_rekey_through_the_screen(
    ui_svc: Service, ui_cast: Cast, carol: Enrolled, key: str
) -> None:
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    holders = [alice, unlock(ui_svc, ui_cast.bob), unlock(ui_svc, carol)]
    with ui_svc.custody.split(holders, by=alice, code=next_code(ui_svc, ui_cast.alice)) as ss:
        old, old_id, old_fp = [x.reveal() for x in ss.shares], ss.set_id, ss.fingerprint
    app = CustodianApp(ui_svc)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        sign_in_directly(app, alice)
        await _open(pilot)
        papers = await split_in_tui(pilot, ui_svc, ui_cast, carol, key, old[1:])
        s = ui_svc.custody.current()
        assert s is not None and s.revoked == (old_id,)
        assert (s.fingerprint == old_fp) == (key == "ctrl+e")
        assert "revoked sets" in everything_shown(app) and str(old_id) in everything_shown(app)
        assert ui_svc.custody.drill(papers[:2], by=alice).ok
        assert not ui_svc.custody.drill(old[:2], by=alice).ok
        assert ui_svc.audit.verify().ok
