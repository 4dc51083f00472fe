"""The vault backend in the TUI, against a real OpenBao on 127.0.0.1: the KEK
generation ceremony with the backend step (settings, credentials, the health check
before anything is made) and the dashboard's backend health, read in a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, RadioSet

from custodian.secret import SecretBytes
from custodian.service import Service
from screens.backend_dialogs import BackendStep
from screens.dashboard import DashboardScreen
from screens.key_dialogs import KekCreated, KekForm
from tests.conftest import Cast, unlock
from tests.integration import openbao
from tests.ui.conftest import sign_in_directly
from tests.ui.test_keys import KeysApp, open_keys, shown, type_code, wait_for

SIZE = (100, 36)
SERVER_WAIT = 30.0  # seconds: the health check's HTTP calls run on a loaded machine


async def answered(pilot: Any, dialog: Any) -> None:
    """Wait until the dialog's step (a health check in a thread) answered."""
    await wait_for(
        pilot, lambda: not dialog.is_attached or not dialog.ok_button.disabled, SERVER_WAIT
    )
    await pilot.pause()


Compare = Callable[..., bool]


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[openbao.Server]:
    s = openbao.dev(tmp_path / "bao")
    try:
        yield s
    finally:
        s.stop()


def prefix(svc: Service) -> str:
    return f"custodian-{svc.ctx.config.home_id[:8]}-"


async def _to_backend_step(pilot: object, app: KeysApp, name: str) -> BackendStep:
    await open_keys(pilot)
    await pilot.press("n")  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: isinstance(app.screen, KekForm))
    form = app.screen
    assert isinstance(form, KekForm)
    form.query_one("#kek-name", Input).value = name
    i = form.backends.index("vault")
    await pilot.click(f"#backend-{i}")  # type: ignore[attr-defined]
    assert form.query_one("#kek-backend", RadioSet).pressed_index == i
    form.query_one("#kek-purpose", Input).focus()
    await pilot.press("enter")  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: isinstance(app.screen, BackendStep))
    step = app.screen
    assert isinstance(step, BackendStep)
    return step


async def test_generate_a_vault_kek_with_the_backend_step(
    ui_svc: Service, ui_cast: Cast, bao: openbao.Server
) -> None:
    bao.setup_transit(prefix(ui_svc))
    wrap, custody = bao.token("custodian-wrap"), bao.token("custodian-custody")
    app = KeysApp(ui_svc)
    async with app.run_test(size=SIZE) as pilot:
        sign_in_directly(app, unlock(ui_svc, ui_cast.alice))
        step = await _to_backend_step(pilot, app, "vaulted")
        assert "(new)" in step.heading()
        # a custody token that cannot rewrap: the check says so, nothing is configured
        step.query_one("#be-address", Input).value = bao.address
        step.query_one("#be-custody", Input).value = wrap
        step.query_one("#be-wrap", Input).value = wrap
        await pilot.click("#be-check")
        await answered(pilot, step)
        assert isinstance(app.screen, BackendStep)
        assert "not ready" in shown(app, ".error") and "cleared" in shown(app, ".error")
        assert "cannot" in shown(app, "#be-checks")
        assert step.query_one("#be-custody", Input).value == ""  # cleared after reading
        assert "vault" not in ui_svc.backends.names()
        # the right credentials: checked, then the code, then the KEK on the server
        step.query_one("#be-custody", Input).value = custody
        step.query_one("#be-wrap", Input).value = wrap
        await pilot.click("#be-check")
        await answered(pilot, step)
        await type_code(pilot, _code(ui_svc, ui_cast))
        await wait_for(pilot, lambda: isinstance(app.screen, KekCreated), SERVER_WAIT)
        k = ui_svc.keys.get("vaulted")
        assert k.backend == "vault"
        key = bao.admin().secrets.transit.read_key(prefix(ui_svc) + "vaulted")["data"]
        assert key["latest_version"] == 1 and key["derived"] is True
        assert ui_svc.backends.check("vault").ok
        cfg = ui_svc.ctx.home.config.read_text()
        assert custody not in cfg and wrap not in cfg


def _code(svc: Service, cast: Cast) -> str:
    from tests.conftest import next_code

    return next_code(svc, cast.alice)


async def test_dashboard_reads_backend_health_in_a_worker(
    ui_svc: Service, ui_cast: Cast, bao: openbao.Server
) -> None:
    bao.setup_transit(prefix(ui_svc))
    alice = unlock(ui_svc, ui_cast.alice)
    ui_svc.backends.configure("vault", {"address": bao.address}, by=alice)
    ui_svc.backends.set_wrap_credential(
        "vault", SecretBytes(bao.token("custodian-wrap").encode()), by=alice
    )
    app = KeysApp(ui_svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: "healthy" in shown(app, "#backend-health-vault"), SERVER_WAIT)
        assert "checks pass" in shown(app, "#backend-detail-vault")
        bao.stop()
        await pilot.press("f5")
        await wait_for(
            pilot, lambda: "unreachable" in shown(app, "#backend-health-vault"), SERVER_WAIT
        )
        assert "cannot be reached" in shown(app, "#backend-detail-vault")


def test_backend_step_at_80x24(snap_compare: Compare, ui_svc: Service, ui_cast: Cast) -> None:
    """The backend step of a new vault KEK, with the refusal of a failed check on its error
    line and the checks listed: fields, checks and buttons in view at 80x24."""
    from custodian.backends.base import Check, Health
    from screens.backend_dialogs import health_text
    from tests.ui.conftest import Frozen, fixed_clock
    from tests.ui.test_dialog_snapshots import visible
    from tests.ui.test_snapshots import settle, until

    frozen = Frozen(ui_svc)
    alice = unlock(ui_svc, ui_cast.alice)
    h = Health(
        "vault",
        False,
        "x",
        (
            Check("reachable", True, "https://vault.example.org:8200, version 2.7.2"),
            Check("custody credential", True, "authenticated (policies custodian-wrap)"),
            Check("permissions (custody)", False, "custodian-1a2b-* (custody: cannot rewrap)"),
        ),
    )

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        sign_in_directly(app, alice)
        dialog = BackendStep(ui_svc, "vault")
        app.push_screen(dialog)
        await until(pilot, lambda: app.screen is dialog and bool(dialog.query(".dialog-buttons")))
        dialog.query_one("#be-address", Input).value = "https://vault.example.org:8200"
        dialog.query_one("#be-checks").update(health_text(h))  # type: ignore[attr-defined]
        dialog.error(
            dialog.refusal("Backend vault is not ready: cannot rewrap. Nothing was created.")
        )
        await pilot.pause(0.2)
        dialog.fit_body()  # the two-line error line is there now: fit the body again
        await pilot.pause(0.2)
        visible(app)  # type: ignore[arg-type]
        await settle(pilot)

    from screens.app import CustodianApp

    app = CustodianApp(frozen, clock=fixed_clock)  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
