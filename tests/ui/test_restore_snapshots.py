"""Snapshot tests of dual control: the approvals inbox and a session after its run.

The same pattern as tests/ui/test_snapshots.py (the real app on the real home,
130x42, cursor blink off), with :class:`FrozenRestores` on top of
:class:`Frozen`: request and session ids come from a counter, and the times,
backup ids and paths of requests are fixed on the way out, so every run draws
the same picture. Look at the pictures after a deliberate change, then update
with ``pytest tests/ui/test_restore_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from custodian import approvals as A
from custodian.approvals import Request, Session
from custodian.catalog import Backup
from custodian.service import Service
from screens.app import CustodianApp
from screens.restore_dialogs import RunConfirm
from screens.restores import RestoresScreen
from tests.conftest import Cast, Clock, approved_session, next_code, unlock
from tests.ui.conftest import (
    FIXED_NOW,
    Frozen,
    Namespace,
    fake_id,
    fixed_clock,
    sign_in_directly,
)

SIZE = (130, 42)
Compare = Callable[..., bool]


def at(minutes: float) -> str:
    """A catalog stamp ``minutes`` after the frozen now (negative: before)."""
    return (FIXED_NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


class FrozenRestores(Frozen):
    """Frozen, and requests with fixed times, backup ids and paths; the clock stands still."""

    def __init__(self, svc: Service, tmp: Path) -> None:
        super().__init__(svc)
        self._tmp = (str(tmp.resolve()), str(tmp))
        self._fake: dict[str, str] = {}  # real backup id -> the id the snapshot shows
        self._real: dict[str, str] = {}
        self.backups = Namespace(svc.backups, list=self.backups_list, get=self.backup)
        self.approvals = Namespace(
            svc.approvals, requests=self.requests, get=self.request, inbox=self.inbox
        )
        # the target check looks at the real directory, not the path the snapshot shows
        self.restores = Namespace(
            svc.restores,
            target_problems=lambda r: svc.restores.target_problems(svc.approvals.get(r.id)),
        )

    def clock(self) -> float:
        return FIXED_NOW.timestamp()

    def _path(self, text: str) -> str:
        for prefix in self._tmp:
            text = text.replace(prefix, "/srv")
        return text

    def _bid(self, real: str) -> str:
        if real not in self._fake:
            fake = fake_id(self._svc.backups.get(real).label)
            self._fake[real], self._real[fake] = fake, real
        return self._fake[real]

    def backup(self, id_or_prefix: str) -> Backup:
        return self._backup(self._svc.backups.get(self._real.get(id_or_prefix, id_or_prefix)))

    def _request(self, r: Request) -> Request:
        payload = dict(r.payload)
        payload["backups"] = [self._bid(b) for b in r.backups]
        payload["files"] = {self._bid(b): f for b, f in r.payload.get("files", {}).items()}
        payload["target"] = self._path(r.target)
        decisions = tuple(replace(d, at=at(-12 + 6 * i)) for i, d in enumerate(r.decisions))
        session: Session | None = None
        if r.session is not None:
            s = r.session
            session = replace(
                s,
                opened_at=at(-6),
                expires_at=at(54),
                closed_at=at(-1) if s.closed_at else None,
            )
        results = tuple(
            replace(
                x,
                backup=self._bid(x.backup),
                reason=self._path(x.reason),
                path=self._path(x.path) if x.path else None,
                at=at(-1),
            )
            for x in r.results
        )
        return replace(
            r,
            created_at=at(-25),
            expires_at=at(-25 + 24 * 60),
            closed_at=at(-1) if r.closed_at else None,
            payload=payload,
            decisions=decisions,
            session=session,
            results=results,
        )

    def requests(self, state: str | None = None) -> list[Request]:
        return [self._request(r) for r in self._svc.approvals.requests(state)]

    def request(self, id_or_prefix: str) -> Request:
        return self._request(self._svc.approvals.get(id_or_prefix))

    def inbox(self, name: str) -> list[Request]:
        return [self._request(r) for r in self._svc.approvals.inbox(name)]


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Request and session ids from a counter (the service draws them from approvals.new_id)."""
    n = iter(range(1, 1000))
    monkeypatch.setattr(A, "new_id", lambda: str(uuid.uuid5(uuid.NAMESPACE_OID, str(next(n)))))
    yield


@pytest.fixture
def frozen(ui_svc: Service, tmp_path: Path, counted_ids: None) -> Service:
    ui_svc.clock = Clock()
    return ui_svc


def frozen_app(svc: Service, tmp: Path) -> CustodianApp:
    return CustodianApp(FrozenRestores(svc, tmp), clock=fixed_clock)  # type: ignore[arg-type]


async def until(pilot: Pilot[Any], condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    assert condition(), "the screen never reached the state the snapshot needs"


async def settle(pilot: Pilot[Any]) -> None:
    pilot.app.clear_notifications()
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def three_backups(svc: Service) -> list[str]:
    """The two newest (KEK v2) and one from before the rotation (v1)."""
    b = svc.backups.list(limit=24)
    return [b[0].id, b[1].id, b[12].id]


def test_inbox_shows_the_whole_request(
    snap_compare: Compare, frozen: Service, ui_cast: Cast, tmp_path: Path
) -> None:
    target = tmp_path / "restore" / "INC-2041"
    target.mkdir(parents=True)
    r = frozen.restores.request(
        three_backups(frozen),
        "INC-2041: the orders table was dropped by a migration [/b]; restore the dumps to compare",
        target,
        by=unlock(frozen, ui_cast.oscar),
    )
    frozen.approvals.approve(
        r.id, next_code(frozen, ui_cast.alice), by=unlock(frozen, ui_cast.alice)
    )
    bob = unlock(frozen, ui_cast.bob)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, bob)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(pilot.app.screen, RestoresScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RestoresScreen)
        await until(pilot, lambda: screen.waiting == {r.id})
        await settle(pilot)

    assert snap_compare(frozen_app(frozen, tmp_path), terminal_size=SIZE, run_before=run_before)


def test_session_after_a_run_with_a_tampered_backup(
    snap_compare: Compare, frozen: Service, ui_cast: Cast, tmp_path: Path
) -> None:
    target = tmp_path / "restore" / "INC-2041"
    target.mkdir(parents=True)
    ids = three_backups(frozen)
    approved_session(
        frozen, ui_cast, ids, target, reason="INC-2041: restore test [/b] of last night"
    )
    tampered = Path(frozen.backups.get(ids[1]).location)
    raw = bytearray(tampered.read_bytes())
    raw[len(raw) // 2] ^= 1
    tampered.write_bytes(raw)
    oscar = unlock(frozen, ui_cast.oscar)

    async def run_before(pilot: Pilot[Any]) -> None:
        sign_in_directly(pilot.app, oscar)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(pilot.app.screen, RestoresScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RestoresScreen)
        await until(pilot, lambda: screen.pane == "sessions" and screen.shown is not None)
        await pilot.press("ctrl+e")
        await until(pilot, lambda: isinstance(pilot.app.screen, RunConfirm))
        await pilot.click("#run-ok")
        await until(pilot, lambda: screen.run_status.startswith("Done"))
        await pilot.app.workers.wait_for_complete()
        await settle(pilot)

    assert snap_compare(frozen_app(frozen, tmp_path), terminal_size=SIZE, run_before=run_before)
