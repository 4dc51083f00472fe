"""Keys (F7): no service call of the screen runs on the UI thread.

A rewrap holds the catalog lock for a batch at a time; a ceremony step or a
census read waiting for it on the UI thread would freeze the whole app. Here
the service is slowed on purpose (a call that waits for the test to let it
go) and the app must keep drawing, ticking its timers and taking keys
meanwhile; refusals and failures that come back from a worker still show
where they showed before: on the dialog's error line, or as a notification.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from textual.command import CommandPalette
from textual.widgets import Button, Input

import screens.keys as keys_screen
from custodian.errors import CustodianError
from custodian.service import Service
from screens.key_dialogs import (
    CodeConfirm,
    DestroyRequestDialog,
    KekCreated,
    KekForm,
    RotatePreviewDialog,
)
from tests.conftest import Cast, next_code, unlock
from tests.ui.conftest import Namespace, sign_in_directly
from tests.ui.test_keys import (
    SIZE,
    KeysApp,
    add_deks,
    answered,
    noted,
    open_keys,
    retired_v1,
    select_version,
    shown,
    type_code,
    wait_for,
)

KEYS_MODULES = ("key_dialogs.py", "key_view.py", "keys.py", "rewrap_pane.py")


class Slow:
    """The real service; the calls named in ``hold`` ("keys.create") wait until the test
    lets them go, and every call records whether it ran on the UI (main) thread and who
    made it."""

    def __init__(self, svc: Service, *hold: str) -> None:
        self._svc = svc
        self.hold = set(hold)
        self.entered = threading.Event()  # a held call is waiting
        self.go = threading.Event()
        self.left = threading.Event()  # a held call came back (or raised)
        self.calls: list[tuple[str, str, bool]] = []  # (ns.method, caller's file, main thread)

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._svc, name)
        if name in ("keys", "backups", "people", "auth", "approvals", "restores", "audit"):
            return _Recorded(self, name, real)
        return real

    def record(self, name: str, real: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            caller = Path(sys._getframe(1).f_code.co_filename).name
            on_main = threading.current_thread() is threading.main_thread()
            self.calls.append((name, caller, on_main))
            if name not in self.hold:
                return real(*args, **kw)
            self.entered.set()
            assert self.go.wait(20), "the test never let the held call go"
            try:
                return real(*args, **kw)
            finally:
                self.left.set()

        return call

    def from_keys_on_ui_thread(self) -> list[str]:
        return [n for n, caller, main in self.calls if main and caller in KEYS_MODULES]


class _Recorded:
    """One capability namespace of the service, its calls recorded (and held) by Slow."""

    def __init__(self, slow: Slow, ns: str, real: Any) -> None:
        self._slow, self._ns, self._real = slow, ns, real

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._real, name)
        return self._slow.record(f"{self._ns}.{name}", real) if callable(real) else real


class Ticks:
    """A timer of the app's own: it only advances while the UI thread is free."""

    def __init__(self, app: Any) -> None:
        self.n = 0
        app.set_interval(0.02, self.tick)

    def tick(self) -> None:
        self.n += 1


async def still_responds(pilot: Any) -> None:
    """The event loop runs timers and handles input while a held call waits."""
    ticks = Ticks(pilot.app)
    await wait_for(pilot, lambda: ticks.n >= 5, seconds=5)
    await pilot.press("escape")  # handled: a dialog waiting for its step ignores it
    await pilot.pause()


async def test_generating_a_kek_keeps_the_ui_running_while_the_service_works(
    ui_svc: Service, ui_cast: Cast
) -> None:
    slow = Slow(ui_svc, "keys.create")
    app = KeysApp(slow)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        app.screen.query_one("#kek-name", Input).value = "archive-2027"
        await pilot.click("#kek-next")
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        dialog = app.screen
        dialog.query_one("#code", Input).value = next_code(ui_svc, ui_cast.alice)
        await pilot.press("enter")
        await wait_for(pilot, lambda: slow.entered.is_set())
        # the call waits in its thread; the app goes on
        await still_responds(pilot)
        assert app.screen is dialog  # escape waits for the answer: the KEK may be made
        assert "Checking the code…" in shown(app, ".error")
        assert dialog.query_one("#code-ok", Button).disabled
        assert dialog.query_one("#code", Input).value == ""  # read once, already cleared
        slow.go.set()
        await wait_for(pilot, lambda: isinstance(app.screen, KekCreated))
        await pilot.press("enter")  # Done
        await noted(pilot, "KEK generated")
    assert [k.name for k in ui_svc.keys.list()] == ["archive-2027", "backups"]
    assert ("keys.create", "keys.py", False) in slow.calls
    assert slow.from_keys_on_ui_thread() == [
        "keys.jobs",
        "keys.list",
        "keys.failures",
        "approvals.requests",
        "keys.job_states",
        "keys.custody_jobs",  # the refresh and redistribution jobs of quorum KEKs
    ]


async def test_a_step_answered_while_another_screen_is_in_front_closes_on_return(
    ui_svc: Service, ui_cast: Cast
) -> None:
    slow = Slow(ui_svc, "keys.create")
    app = KeysApp(slow)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        app.screen.query_one("#kek-name", Input).value = "scratch"
        await pilot.click("#kek-next")
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        dialog = app.screen
        dialog.query_one("#code", Input).value = next_code(ui_svc, ui_cast.alice)
        await pilot.press("enter")
        await wait_for(pilot, lambda: slow.entered.is_set())
        await pilot.press("ctrl+p")  # the app takes keys: the command palette opens meanwhile
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        slow.go.set()
        await wait_for(pilot, lambda: "scratch" in [k.name for k in ui_svc.keys.list()])
        await pilot.pause(0.2)
        assert isinstance(app.screen, CommandPalette)  # the answer waits for the dialog
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, KekCreated))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.selected_name == "scratch"


async def test_signing_out_during_a_step_closes_the_dialog_and_drops_the_answer(
    ui_svc: Service, ui_cast: Cast
) -> None:
    slow = Slow(ui_svc, "keys.create")
    app = KeysApp(slow)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        app.screen.query_one("#kek-name", Input).value = "scratch"
        await pilot.click("#kek-next")
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        app.screen.query_one("#code", Input).value = next_code(ui_svc, ui_cast.alice)
        await pilot.press("enter")
        await wait_for(pilot, lambda: slow.entered.is_set())
        app.sign_out(reason="after 15 idle minutes")  # what the idle timer does
        await wait_for(pilot, lambda: app.screen is screen)
        slow.go.set()  # the call goes on, done or refused: its answer finds no dialog
        await wait_for(pilot, lambda: slow.left.is_set())
        await pilot.pause(0.2)
        assert app.screen is screen and app.actor is None  # no dialog comes back


async def test_a_refusal_from_the_worker_shows_in_the_dialog_as_before(
    ui_svc: Service, ui_cast: Cast, monkeypatch: Any
) -> None:
    def refuse(*args: Any, **kw: Any) -> Any:
        assert threading.current_thread() is not threading.main_thread()
        raise CustodianError("the KEK backend is unreachable; nothing was created.")

    monkeypatch.setattr(ui_svc.keys, "create", refuse)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        app.screen.query_one("#kek-name", Input).value = "archive-2027"
        await pilot.click("#kek-next")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        dialog = app.screen
        assert isinstance(dialog, CodeConfirm)
        assert (
            shown(app, ".error").strip() == "the KEK backend is unreachable; nothing was created."
        )
        assert not dialog.query_one("#code-ok", Button).disabled
        assert dialog.query_one("#code", Input).has_focus  # ready for the next code
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    assert [k.name for k in ui_svc.keys.list()] == ["backups"]


async def test_an_unexpected_error_in_a_step_leaves_the_dialog_usable(
    ui_svc: Service, ui_cast: Cast, monkeypatch: Any
) -> None:
    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("backend library fell over")

    retired_v1(ui_svc, ui_cast)
    assert hasattr(ui_svc.clock, "advance")
    ui_svc.clock.advance(8 * 86400)
    monkeypatch.setattr(ui_svc.keys, "request_destroy", broken)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 1)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, DestroyRequestDialog))
        dialog = app.screen
        dialog.query_one("#destroy-reason", Input).value = "rotated out"
        await pilot.press("enter")
        await answered(pilot, dialog)
        assert app.screen is dialog
        assert "unexpected error: backend library fell over" in shown(app, ".error")
        await pilot.click("#dialog-cancel")
        await wait_for(pilot, lambda: app.screen is screen)
    assert ui_svc.approvals.requests() == []


class FirstBatchGate:
    """The real service, except that a rewrap stops after its first batch until ``go``."""

    def __init__(self, svc: Service) -> None:
        self._svc = svc
        self.held = threading.Event()
        self.go = threading.Event()
        self.keys = Namespace(svc.keys, rewrap=self.rewrap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._svc, name)

    def rewrap(self, name: str, **kw: Any) -> Any:
        progress, calls = kw["progress"], [0]

        def gated(done: int, total: int) -> None:
            progress(done, total)
            calls[0] += 1
            if calls[0] == 2:  # the first batch has committed
                self.held.set()
                assert self.go.wait(20), "the test never let the rewrap go on"

        return self._svc.keys.rewrap(name, **{**kw, "progress": gated})


async def test_census_reads_during_a_rewrap_run_in_a_thread(
    ui_svc: Service, ui_cast: Cast, monkeypatch: Any
) -> None:
    """The census follows a running rewrap (every ~2 s; here at every batch). A read that
    waits does not stop the screen from showing the job's progress, and none of the
    screen's service calls is on the UI thread once the screen is open."""
    monkeypatch.setattr(keys_screen, "CENSUS_EVERY", 0.0)
    add_deks(ui_svc, 1000)
    gate = FirstBatchGate(ui_svc)
    slow = Slow(gate, "keys.list")  # type: ignore[arg-type]
    slow.go.set()  # reads pass until the rewrap is under way
    app = KeysApp(slow, batch_size=100)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        opened = len(slow.calls)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("enter")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: gate.held.is_set())
        slow.go.clear()
        slow.entered.clear()
        gate.go.set()  # the job goes on; its next batch asks for the census, which waits
        await wait_for(pilot, lambda: slow.entered.is_set())
        # the job's progress still reaches the screen while the census read waits
        await wait_for(pilot, lambda: "1,024 of 1,024 done" in shown(app, "#rewrap-stats"))
        await still_responds(pilot)
        assert screen.rewrapping == "backups"  # it ends when its last read comes back
        slow.go.set()
        await wait_for(pilot, lambda: screen.rewrapping is None)
        await wait_for(pilot, lambda: "finished" in shown(app, "#rewrap-title"))
        assert "1,024 of 1,024" in shown(app, "#history")
    late = [n for n, caller, main in slow.calls[opened:] if main and caller in KEYS_MODULES]
    assert late == []
    assert any(n == "keys.list" and not main for n, _, main in slow.calls[opened:])


async def test_a_read_that_fails_in_its_worker_says_so_as_before(
    ui_svc: Service, ui_cast: Cast, monkeypatch: Any
) -> None:
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_keys(pilot)

        def unreadable(*args: Any, **kw: Any) -> Any:
            raise CustodianError("the catalog is locked by another process")

        monkeypatch.setattr(ui_svc.keys, "jobs", unreadable)
        await pilot.press("f5")
        await noted(pilot, "Could not read the keys: the catalog is locked by another process")
        assert app.screen is screen and screen.selected_name == "backups"  # the last read stays
