"""Keys (F7): generate, rotate and rewrap, cancel and resume, retire, request destruction.

Each test drives the real app on the real home of tests/ui/conftest.py (the
KEK ``backups`` on x25519, v1 with 14 DEKs, v2 current with 10) and then
checks what the core recorded, not only what the screen shows. Codes are
real TOTP codes; where one person confirms twice, a :class:`Clock` moves on.
The snapshot tests at the end use :class:`FrozenKeys`, which also fixes the
ids and times of rewrap jobs.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, ProgressBar, Static

import screens.app
from custodian import people as P
from custodian.catalog import Kek
from custodian.rotation import RewrapFailure, RewrapJob, RotationPreview
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.app import CustodianApp
from screens.dashboard import DashboardScreen
from screens.key_dialogs import (
    CodeConfirm,
    DestroyRequestDialog,
    KekCreated,
    KekForm,
    RotatePreviewDialog,
)
from screens.keys import KeysScreen
from screens.restore_view import describe_request
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.ui.conftest import (
    FIXED_NOW,
    Frozen,
    Namespace,
    fake_id,
    fixed_clock,
    sign_in_directly,
    stamp,
)

SIZE = (130, 42)
Compare = Callable[..., bool]


class KeysApp(CustodianApp):
    """The real app, with the Keys screen's batch size and worker count set by the test."""

    CSS_PATH = str(Path(screens.app.__file__).with_name("app.tcss"))

    def __init__(self, service: Any, *, batch_size: int = 500, **kw: Any) -> None:
        super().__init__(service, clock=kw.pop("clock", fixed_clock), **kw)
        self.batch_size = batch_size

    def _keys(self) -> Screen[None]:
        return KeysScreen(self.service, clock=self.clock, batch_size=self.batch_size, workers=1)


async def wait_for(pilot: Any, condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition()


def text(widget: Static) -> str:
    """What a Static shows, as plain text (tables and groups too)."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def shown(app: Any, selector: str) -> str:
    return text(app.screen.query_one(selector, Static))


def notes(app: Any) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def open_keys(pilot: Any) -> KeysScreen:
    await pilot.press("f7")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, KeysScreen))
    screen = pilot.app.screen
    assert isinstance(screen, KeysScreen)
    return screen


async def type_code(pilot: Any, code: str) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CodeConfirm))
    dialog = pilot.app.screen
    dialog.query_one("#code", Input).value = code
    await pilot.press("enter")
    await answered(pilot, dialog)


async def answered(pilot: Any, dialog: Any) -> None:
    """Wait until the service answered the dialog's step (it runs in a thread worker)."""
    await wait_for(pilot, lambda: not dialog.is_attached or not dialog.ok_button.disabled)
    await pilot.pause()


async def noted(pilot: Any, text: str) -> None:
    """Wait for a notification: a ceremony reads the keys (in a thread) before it says so."""
    await wait_for(pilot, lambda: any(text in n for n in notes(pilot.app)))


def add_deks(svc: Service, n: int, *, version: int | None = None, bad: bool = False) -> None:
    """``n`` catalog rows under KEK backups, each with a real wrapped DEK of its own
    (cheap: no container is written), or, with ``bad``, a DEK wrapped for another
    backup (it fails to rewrap, with a reason). Ids sort before the fixture's."""
    k = svc.keys.get("backups")
    v = version or k.current_version
    b0 = svc.backups.list(version=1, limit=1)[0]
    base = 0x10000 if bad else svc.backups.count()
    ids = [f"{base + i:08x}-0000-4000-8000-{base + i:012x}" for i in range(n)]
    if bad:  # b0's own wrap, under v1, on rows that are not b0: it never opens
        wrapped = [b0.wrapped_dek] * n
        v = 1
    else:
        wrapped = svc.keys.backend("local").wrap(
            "backups", v, [(bid, SecretBytes(os.urandom(32), "DEK")) for bid in ids]
        )
    with svc.catalog.transaction():
        svc.catalog.add_backups(
            replace(
                b0,
                id=bid,
                label=f"bulk-{i:05d}.tar",
                location=f"/nowhere/bulk-{i}.cbk",
                kek_version=v,
                wrapped_dek=w,
            )
            for i, (bid, w) in enumerate(zip(ids, wrapped, strict=True))
        )


def census(svc: Service) -> dict[int, int]:
    return {v.version: v.dek_count for v in svc.keys.get("backups").versions}


def wrong_code(svc: Service, who: Any) -> str:
    """A six-digit code that matches none of the steps a check accepts now."""
    step = P.current_step(svc.clock())
    valid = {P.hotp(who.totp, step + d) for d in (-1, 0, 1)}
    return next(c for c in ("000000", "123456", "999999", "424242") if c not in valid)


# ------------------------------------------------------------------ guards


async def test_keys_actions_need_a_signed_in_custodian(
    ui_svc: Service, ui_cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await open_keys(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert any("Sign in (F9) to generate a KEK" in n for n in notes(app))
        sign_in_directly(app, unlock(ui_svc, ui_cast.oscar))
        await pilot.press("r")
        await pilot.pause(0.2)
        assert any("Only a custodian may rotate a KEK" in n for n in notes(app))
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        monkeypatch.setenv("TEXTUAL_LOG", "/tmp/x")
        await pilot.press("t")
        await pilot.pause(0.2)
        assert any("TEXTUAL_LOG" in n for n in notes(app))
        assert app.screen is screen  # no dialog opened
        assert [v.state for v in ui_svc.keys.get("backups").versions] == ["active", "active"]


# ------------------------------------------------------------------ generation


async def test_generate_a_kek_shows_its_fingerprint_everywhere(
    ui_svc: Service, ui_cast: Cast
) -> None:
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        form = app.screen
        # the form checks the name before any code is asked
        form.query_one("#kek-name", Input).value = "BACKUPS"
        await pilot.click("#kek-next")
        await pilot.pause()
        assert "A KEK named backups exists" in shown(app, ".error")
        form.query_one("#kek-name", Input).value = "archive-2027"
        await pilot.click("#suite-x25519")
        form.query_one("#kek-purpose", Input).value = "long-term [b]archive[/b]"
        form.query_one("#kek-purpose", Input).focus()
        await pilot.press("enter")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: isinstance(app.screen, KekCreated))
        k = ui_svc.keys.get("archive-2027")
        assert (k.backend, k.suite, k.purpose) == ("local", "x25519", "long-term [b]archive[/b]")
        fp = k.versions[0].fingerprint
        assert shown(app, "#kek-created-fp").split() == fp.split()
        assert not any("KEK generated" in n for n in notes(app))  # no toast over Done
        await pilot.press("enter")  # Done
        await wait_for(pilot, lambda: app.screen is screen)
        await noted(pilot, "KEK generated")
        assert any("KEK generated" in n and fp in n for n in notes(app))
        table = screen.query_one("#keks-table", DataTable)
        assert table.row_count == 2 and screen.selected_name == "archive-2027"
        entry = [e for e in ui_svc.audit.entries() if e["action"] == "kek.create"][-1]
        assert entry["outcome"] == "ok" and entry["actor"] == "alice"
        assert entry["details"]["fingerprint"] == fp
        # the dashboard shows it when you go back to it
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: bool(app.screen.query("#kek-archive-2027")))


async def test_generate_refuses_a_wrong_or_replayed_code_and_creates_nothing(
    ui_svc: Service, ui_cast: Cast
) -> None:
    # the clock stands at alice's last used step, so its code counts as replayed
    last = ui_svc.catalog.totp_last_step("alice")
    ui_svc.clock = Clock(last * P.TOTP_PERIOD + 5)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
        app.screen.query_one("#kek-name", Input).value = "-bad"
        await pilot.press("enter")  # in the name field: on to the backend choice
        await pilot.click("#kek-next")
        await pilot.pause()
        assert "starting with a letter or digit" in shown(app, ".error")
        app.screen.query_one("#kek-name", Input).value = "scratch"
        app.screen.query_one("#kek-purpose", Input).focus()
        await pilot.press("enter")
        await type_code(pilot, wrong_code(ui_svc, ui_cast.alice))
        assert "not valid now" in shown(app, ".error")
        assert app.screen.query_one("#code", Input).value == ""  # no code stays in a widget
        assert ui_cast.alice.totp is not None
        await type_code(pilot, P.hotp(ui_cast.alice.totp, last))
        assert "already used" in shown(app, ".error")
        assert app.screen.query_one("#code", Input).value == ""
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert [k.name for k in ui_svc.keys.list()] == ["backups"]
        refusals = [
            e
            for e in ui_svc.audit.entries()
            if e["action"] == "kek.create" and e["outcome"] != "ok"
        ]
        assert len(refusals) == 2


# ------------------------------------------------------------------ rotation


async def test_rotate_with_preview_and_code_rewraps_everything(
    ui_svc: Service, ui_cast: Cast
) -> None:
    add_deks(ui_svc, 300)
    app = KeysApp(ui_svc, batch_size=100)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        census_text = shown(app, "#rotate-census")
        assert "v2 current" in census_text and "310" in census_text and "v3 new" in census_text
        assert "324" in shown(app, "#rotate-pairs")  # DEKs to rewrap
        await pilot.press("enter")  # "Next: confirm with a code" has focus
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: screen.rewrapping is None and bool(ui_svc.keys.jobs()))
        await wait_for(pilot, lambda: ui_svc.keys.jobs()[-1].state == "done")
        await pilot.pause()
        assert census(ui_svc) == {1: 0, 2: 0, 3: 324}
        bar = screen.query_one("#rewrap-bar", ProgressBar)
        assert bar.progress == bar.total == 324
        assert "finished" in shown(app, "#rewrap-title")
        assert "324 rewrapped, 0 failed" in shown(app, "#rewrap-stats")
        assert "done" in shown(app, "#history") and "324 of 324" in shown(app, "#history")
        assert any("Rewrap finished" in n for n in notes(app))
        assert any("KEK rotated" in n for n in notes(app))


async def test_rotation_cancelled_at_the_preview_or_code_changes_nothing(
    ui_svc: Service, ui_cast: Cast
) -> None:
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("enter")
        await type_code(pilot, wrong_code(ui_svc, ui_cast.alice))
        assert "not valid now" in shown(app, ".error")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    assert ui_svc.keys.get("backups").current_version == 2
    assert ui_svc.keys.jobs() == []


class Gate:
    """The real service, except that the first rewrap holds after its first batch until
    it is cancelled: a cancel then lands mid-job on any machine, however fast."""

    def __init__(self, svc: Service) -> None:
        self._svc = svc
        self.held = threading.Event()
        self.armed = True
        self.keys = Namespace(svc.keys, rewrap=self.rewrap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._svc, name)

    def rewrap(self, name: str, **kw: Any) -> Any:
        progress, cancelled = kw["progress"], kw["cancelled"]
        calls = [0]
        armed, self.armed = self.armed, False

        def gated(done: int, total: int) -> None:
            progress(done, total)
            calls[0] += 1
            if armed and calls[0] == 2:  # the first batch has committed
                self.held.set()
                deadline = time.monotonic() + 20
                while not cancelled() and time.monotonic() < deadline:
                    time.sleep(0.01)

        return self._svc.keys.rewrap(name, **{**kw, "progress": gated})


async def test_cancel_mid_rewrap_then_resume(ui_svc: Service, ui_cast: Cast) -> None:
    add_deks(ui_svc, 3000)
    gate = Gate(ui_svc)
    app = KeysApp(gate, batch_size=100)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("enter")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: gate.held.is_set())
        await wait_for(pilot, lambda: "100 of 3,024 done" in shown(app, "#rewrap-stats"))
        assert screen.check_action("cancel_rewrap", ()) is True
        assert screen.check_action("resume", ()) is False
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.rewrapping is None)
        await pilot.pause()
        job = ui_svc.keys.jobs()[-1]
        assert (job.state, job.rewrapped, job.runs) == ("running", 100, 1)
        assert census(ui_svc)[3] == 100
        assert "paused" in shown(app, "#rewrap-title")
        assert any("Rewrap cancelled" in n and "2,924" in n for n in notes(app))
        assert screen.check_action("resume", ()) is True
        # w resumes the same job from its cursor
        await pilot.press("w")
        await wait_for(
            pilot, lambda: screen.rewrapping is None and "finished" in shown(app, "#rewrap-title")
        )
        job = ui_svc.keys.jobs()[-1]
        assert (job.state, job.rewrapped, job.failed, job.runs) == ("done", 3024, 0, 2)
        assert len(ui_svc.keys.jobs()) == 1
        assert census(ui_svc) == {1: 0, 2: 0, 3: 3024}
        actions = [e["action"] for e in ui_svc.audit.entries()]
        assert "kek.rewrap.pause" in actions and actions.count("kek.rewrap.run") == 2


async def test_no_sign_out_while_the_rewrap_runs_and_it_resumes_later(
    ui_svc: Service, ui_cast: Cast
) -> None:
    """Each batch is signed with the actor's key: F9 (and quit) are refused while the
    job runs; after a cancel the job keeps its cursor and anyone may resume it."""
    add_deks(ui_svc, 1000)
    gate = Gate(ui_svc)
    app = KeysApp(gate, batch_size=100)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("enter")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: gate.held.is_set())
        await pilot.press("f9")
        await pilot.pause()
        assert app.actor is not None and screen.rewrapping == "backups"
        assert any("Not now: the rewrap of KEK backups" in n.message for n in app._notifications)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.rewrapping is None)
        job = ui_svc.keys.jobs()[-1]
        assert job.state == "running" and job.rewrapped == 100
        await pilot.press("f9")  # now it signs out
        await wait_for(pilot, lambda: app.actor is None)
        assert ui_svc.audit.verify().ok
        sign_in_directly(app, unlock(ui_svc, ui_cast.bob))
        await pilot.press("w")
        await wait_for(pilot, lambda: ui_svc.keys.jobs()[-1].state == "done")
        await wait_for(pilot, lambda: screen.rewrapping is None)
        assert census(ui_svc) == {1: 0, 2: 0, 3: 1024}


async def test_rewrap_failures_are_listed_with_their_reasons(
    ui_svc: Service, ui_cast: Cast
) -> None:
    add_deks(ui_svc, 2, bad=True)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RotatePreviewDialog))
        await pilot.press("enter")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: bool(ui_svc.keys.jobs()))
        await wait_for(pilot, lambda: screen.rewrapping is None)
        await pilot.pause()
        assert "2 DEK(s) left" in shown(app, "#rewrap-title")
        failures = shown(app, "#failures")
        assert "failed to rewrap in job" in failures and "(2)" in failures, failures
        assert "00010000-0000-4000-8000-000000010000" in failures
        assert "does not open under KEK backups" in failures
        assert "listed under the rotation history" in shown(app, "#rewrap-failures")
        assert any("Rewrap finished with failures" in n for n in notes(app))
        # the job stays retryable: "Rewrap" is offered (the job itself is done)
        assert screen.check_action("rewrap", ()) is True


# ------------------------------------------------------------------ retire and destroy


async def select_version(pilot: Any, screen: KeysScreen, version: int) -> None:
    table = screen.query_one("#versions-table", DataTable)
    k = screen.selected
    assert k is not None
    table.move_cursor(row=[v.version for v in reversed(k.versions)].index(version))
    await pilot.pause()
    assert screen.selected_version is not None
    assert screen.selected_version.version == version


async def test_retire_is_refused_while_deks_remain_and_accepted_after(
    ui_svc: Service, ui_cast: Cast
) -> None:
    ui_svc.clock = Clock()
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 2)
        await pilot.press("t")
        await pilot.pause(0.2)
        await noted(pilot, "current version")
        assert any("current version" in n for n in notes(app))
        await select_version(pilot, screen, 1)
        await pilot.press("t")
        await pilot.pause(0.2)
        await noted(pilot, "Retirement refused")
        assert any(
            "Retirement refused" in n and "v1 still wraps 14 DEK(s)" in n for n in notes(app)
        )
        assert app.screen is screen and ui_svc.keys.get("backups").versions[0].state == "active"
        # rewrap the 14 (no rotation: w offers "Rewrap"), then retire
        assert screen.check_action("rewrap", ()) is True
        await pilot.press("w")
        await wait_for(pilot, lambda: census(ui_svc)[1] == 0 and screen.rewrapping is None)
        await select_version(pilot, screen, 1)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, CodeConfirm))
        assert "DEKs under it  0" in shown(app, "#code-body")
        await pilot.press("escape")  # cancel: nothing changes
        await wait_for(pilot, lambda: app.screen is screen)
        assert ui_svc.keys.get("backups").versions[0].state == "active"
        await pilot.press("t")
        await type_code(pilot, next_code(ui_svc, ui_cast.alice))
        await wait_for(pilot, lambda: app.screen is screen)
        await noted(pilot, "Version retired")
        v1 = ui_svc.keys.get("backups").versions[0]
        assert v1.state == "retired" and v1.retired_at
        assert any("Version retired" in n for n in notes(app))
        table = screen.query_one("#versions-table", DataTable)
        assert "retired" in str(table.get_row("1"))


def retired_v1(svc: Service, cast: Cast) -> None:
    """v1's DEKs rewrapped (through the core) and v1 retired, with a Clock installed, and a
    third custodian: a destruction needs two approvers besides its requester."""
    svc.clock = Clock()
    alice = unlock(svc, cast.alice)
    enrol(svc, "carol", ("custodian",), alice)
    svc.keys.rewrap("backups", by=alice, workers=1)
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)


async def test_destroy_request_waits_for_the_period_then_needs_two_others(
    ui_svc: Service, ui_cast: Cast
) -> None:
    retired_v1(ui_svc, ui_cast)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 2)
        await pilot.press("x")
        await pilot.pause(0.2)
        assert any("only a retired version can be destroyed" in n for n in notes(app))
        await select_version(pilot, screen, 1)
        # refused up front, before a reason is typed: the waiting period is not over
        await pilot.press("x")
        await wait_for(pilot, lambda: any("waiting period of 7 day(s)" in n for n in notes(app)))
        assert app.screen is screen and ui_svc.approvals.requests() == []
        assert isinstance(ui_svc.clock, Clock)
        ui_svc.clock.advance(8 * 86400)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, DestroyRequestDialog))
        assert "2 other custodians must approve" in shown(app, "#destroy-note")
        assert "7 days: over" in shown(app, "#destroy-pairs")
        await pilot.press("enter")  # no reason
        assert "Say why" in shown(app, ".error")
        app.screen.query_one("#destroy-reason", Input).value = "rotated out in 2026"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        await noted(pilot, "Destruction requested")
        (r,) = ui_svc.approvals.requests("open")
        assert r.kind == "kek.destroy" and r.requester == "alice"
        assert r.payload["version"] == 1 and r.payload["reason"] == "rotated out in 2026"
        assert r.payload["fingerprint"] == ui_svc.keys.get("backups").versions[0].fingerprint
        assert any("Destruction requested" in n and "2 other" in n for n in notes(app))
        table = screen.query_one("#versions-table", DataTable)
        assert "⚑" in str(table.get_row("1"))
        assert "0 of 2 approvals" in shown(app, "#versions-note")
        # alice cannot approve her own request; bob and then the key material goes with
        # a second custodian (the inbox does this with the same service call)
        bob = unlock(ui_svc, ui_cast.bob)
        ui_svc.approvals.approve(r.id, next_code(ui_svc, ui_cast.bob), by=bob)
        await pilot.press("f5")
        await pilot.pause()
        await noted(pilot, "Keys reloaded")
        assert "1 of 2 approvals (bob)" in shown(app, "#versions-note")
    # what the approvals inbox shows of it (markup in the reason stays text)
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(describe_request(ui_svc.approvals.get(r.id), {}, ui_svc.clock()))
    seen = console.export_text()
    assert "KEK backups v1" in seen and "bob approved" in seen and "rotated out in 2026" in seen
    assert r.payload["fingerprint"] in seen


async def test_destroy_request_cancelled_creates_nothing(ui_svc: Service, ui_cast: Cast) -> None:
    retired_v1(ui_svc, ui_cast)
    assert isinstance(ui_svc.clock, Clock)
    ui_svc.clock.advance(8 * 86400)
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        screen = await open_keys(pilot)
        await select_version(pilot, screen, 1)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, DestroyRequestDialog))
        app.screen.query_one("#destroy-reason", Input).value = "not yet"
        await pilot.click("#dialog-cancel")
        await wait_for(pilot, lambda: app.screen is screen)
    assert ui_svc.approvals.requests() == []


# ------------------------------------------------------------------ dashboard


async def test_dashboard_shows_rotation_dates_and_overdue_in_red(ui_svc: Service) -> None:
    app = CustodianApp(ui_svc, clock=lambda: FIXED_NOW + timedelta(days=400))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        line = app.screen.query_one("#kek-backups .rotation", Static)
        assert line.has_class("overdue") and not line.has_class("warn")
        assert "Last rotated" in text(line) and "OVERDUE" in text(line)
    calm = CustodianApp(ui_svc, clock=fixed_clock)
    async with calm.run_test(size=SIZE) as pilot:
        await pilot.pause()
        line = calm.screen.query_one("#kek-backups .rotation", Static)
        assert not line.has_class("overdue")
        assert "Next rotation due" in text(line)


# ------------------------------------------------------------------ snapshots


class FrozenKeys(Frozen):
    """:class:`Frozen`, plus fixed ids and times of rewrap jobs, failures and retirement."""

    def __init__(self, svc: Service) -> None:
        super().__init__(svc)
        self.keys = Namespace(
            svc.keys,
            list=self.keks,
            jobs=self.rewrap_jobs,
            failures=self.rewrap_failures,
            rotate_preview=self.rotate_preview,
        )

    def _job_id(self, real: str) -> str:
        ids = [j.id for j in self._svc.keys.jobs()]
        return fake_id(f"job{ids.index(real)}") if real in ids else fake_id(real)

    def _freeze_job(self, j: RewrapJob) -> RewrapJob:
        return replace(
            j,
            id=self._job_id(j.id),
            created_at=stamp(3),
            updated_at=stamp(2),
            finished_at=stamp(2) if j.finished_at else None,
        )

    def rewrap_jobs(self, name: str | None = None) -> list[RewrapJob]:
        return [self._freeze_job(j) for j in self._svc.keys.jobs(name)]

    def rewrap_failures(self, job_id: str | None = None) -> list[RewrapFailure]:
        return [
            replace(f, job=self._job_id(f.job), at=stamp(2))
            for f in self._svc.keys.failures(job_id)
        ]

    @staticmethod
    def _kek(k: Kek) -> Kek:
        k = Frozen._kek(k)
        versions = tuple(
            replace(
                v,
                retired_at=stamp(1) if v.retired_at else None,
                destroyed_at=stamp(0) if v.destroyed_at else None,
            )
            for v in k.versions
        )
        return replace(k, versions=versions)

    def rotate_preview(self, name: str, **kw: Any) -> RotationPreview:
        p = self._svc.keys.rotate_preview(name, measure=False)
        unfinished = self._freeze_job(p.unfinished) if p.unfinished else None
        return replace(p, rate=12_000.0, workers=2, unfinished=unfinished)


def frozen_keys_app(svc: Service) -> CustodianApp:
    return CustodianApp(FrozenKeys(svc), clock=fixed_clock)  # type: ignore[arg-type]


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def test_keys_screen_snapshot(snap_compare: Compare, ui_svc: Service, ui_cast: Cast) -> None:
    """Two KEKs; backups rotated to v3 with two DEKs that failed, v1 retired."""
    ui_svc.clock = Clock()
    alice = unlock(ui_svc, ui_cast.alice)
    ui_svc.keys.create(
        "archive",
        by=alice,
        suite="x25519",
        purpose="long-term archive of [b]mail[/b]",
        code=next_code(ui_svc, ui_cast.alice),
    )
    add_deks(ui_svc, 2, bad=True)
    ui_svc.keys.rotate("backups", next_code(ui_svc, ui_cast.alice), by=alice)
    ui_svc.keys.rewrap("backups", by=alice, workers=1)
    ui_svc.keys.retire("backups", 2, next_code(ui_svc, ui_cast.alice), by=alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, alice)
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, KeysScreen))
        screen = pilot.app.screen
        assert isinstance(screen, KeysScreen)
        screen.query_one("#keks-table", DataTable).move_cursor(row=1)
        await wait_for(pilot, lambda: screen.selected_name == "backups")
        await settle(pilot)

    assert snap_compare(frozen_keys_app(ui_svc), terminal_size=SIZE, run_before=run_before)


def test_rotation_preview_snapshot(snap_compare: Compare, ui_svc: Service, ui_cast: Cast) -> None:
    """The preview of a second rotation while the first one's job is unfinished."""
    alice = unlock(ui_svc, ui_cast.alice)
    add_deks(ui_svc, 1200)
    ui_svc.keys.rotate("backups", next_code(ui_svc, ui_cast.alice), by=alice)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, alice)
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, KeysScreen))
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RotatePreviewDialog))
        await settle(pilot)

    assert snap_compare(frozen_keys_app(ui_svc), terminal_size=SIZE, run_before=run_before)
