"""The backend step of generating a KEK on a server backend (vault; aws-kms plugs in).

After :class:`screens.key_dialogs.KekForm` names a server backend, this dialog
asks for what that backend needs: its settings when it is new (address, mount,
CA file), the custody credential (decrypt, rewrap, manage keys: used for this
ceremony only, never stored) and the wrap credential operators will use
(sealed by the home's root key; refused if it can decrypt). **Check** runs the
health check (reachable, authenticated, permissions enough, the wrap
credential wrap-only) in a worker; only a healthy backend moves on to the code
step, so nothing is created or configured before the server has answered well.
The credentials are read once from their fields, which are then cleared; the
dialog's result holds them until the ceremony ends (:meth:`BackendChoice.discard`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Static

from custodian.backends.base import Health
from custodian.errors import BackendError
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.format import safe
from screens.key_dialogs import KeyDialog
from screens.secure import SecretInput, take_secret


@dataclass
class BackendChoice:
    """A checked server backend for a new KEK: its new settings (None when it is
    configured already) and the credentials typed for this ceremony."""

    name: str
    options: dict[str, Any] | None
    custody: SecretBytes
    wrap: SecretBytes | None
    health: Health
    _gone: bool = field(default=False, repr=False)

    def discard(self) -> None:
        if not self._gone:
            self.custody.wipe()
            if self.wrap is not None:
                self.wrap.wipe()
            self._gone = True


def health_text(h: Health) -> Text:
    t = Text()
    for c in h.checks:
        t.append("✓ " if c.ok else "✗ ", style="green" if c.ok else "bold red")
        t.append(f"{safe(c.name)}: ", style="bold")
        t.append(safe(c.detail) + "\n")
    if not h.checks:
        t.append(safe(h.detail))
    return t


class BackendStep(KeyDialog):
    """Settings and credentials of a server backend, checked before anything is made."""

    FRAME_ID = "backend-step"
    ENTER_MOVES: ClassVar[dict[str, str]] = {
        "be-address": "#be-mount",
        "be-mount": "#be-ca",
        "be-ca": "#be-custody",
        "be-custody": "#be-wrap",
    }

    def __init__(self, service: Service, name: str) -> None:
        super().__init__()
        self.service = service
        self.name_ = name
        self.new = name not in service.backends.names()
        be_has = False
        if not self.new:
            try:
                be_has = bool(
                    getattr(service.keys.backend(name), "has_credential", lambda p: False)("wrap")
                )
            except Exception:
                be_has = False
        self.needs_wrap = self.new or not be_has

    def heading(self) -> str:
        return f"Backend {safe(self.name_)}" + (" (new)" if self.new else "")

    def body(self) -> ComposeResult:
        yield Static(
            "A KEK on a Vault or OpenBao server is a transit key there. The custody "
            "credential (a token, or an AppRole secret id, that can decrypt and rewrap) is "
            "used for this ceremony only and never stored. The wrap credential is for "
            "operators: it may only encrypt, and the home's root key seals it. Check runs "
            "the health check; nothing is created before it passes.",
            classes="muted",
            markup=False,
        )
        if self.new:
            yield Label(
                "Server address (https://..., or http://127.0.0.1:... )", classes="field-name"
            )
            yield Input(placeholder="https://vault.example.org:8200", id="be-address")
            yield Label("Transit mount", classes="field-name")
            yield Input(value="transit", id="be-mount")
            yield Label(
                "CA file (when the server's certificate is private; optional)", classes="field-name"
            )
            yield Input(placeholder="/etc/custodian/vault-ca.pem", id="be-ca")
        yield Label("Custody credential (decrypt and rewrap; not stored)", classes="field-name")
        yield SecretInput(placeholder="token", id="be-custody")
        if self.needs_wrap:
            yield Label(
                "Wrap credential for operators (encrypt only; sealed)", classes="field-name"
            )
            yield SecretInput(placeholder="token", id="be-wrap")
        yield Static("", id="be-checks")

    def button_row(self) -> Horizontal:
        return self.buttons("Check", "be-check")

    def on_mount(self) -> None:
        self.query_one("#be-address" if self.new else "#be-custody").focus()

    def refusal(self, message: str) -> str:
        return f"{message} Type the credentials again (they were cleared)."

    def _options(self) -> dict[str, Any] | None:
        if not self.new:
            return None
        opts: dict[str, Any] = {"address": self.query_one("#be-address", Input).value.strip()}
        mount = self.query_one("#be-mount", Input).value.strip()
        if mount and mount != "transit":
            opts["mount"] = mount
        ca = self.query_one("#be-ca", Input).value.strip()
        if ca:
            opts["ca_file"] = ca
        return opts

    def submit(self) -> None:
        opts = self._options()
        if opts is not None and not opts["address"]:
            self.error("Type the server's address.")
            self.query_one("#be-address").focus()
            return
        field_c = self.query_one("#be-custody", SecretInput)
        if not field_c.value:
            self.error("Type the custody credential.")
            field_c.focus()
            return
        custody = take_secret(field_c, "credential")
        wrap = None
        if self.needs_wrap:
            field_w = self.query_one("#be-wrap", SecretInput)
            if not field_w.value:
                custody.wipe()
                self.error("Type the wrap credential operators will use.")
                field_w.focus()
                return
            wrap = take_secret(field_w, "credential")
        name, svc = self.name_, self.service

        def check() -> BackendChoice:
            if opts is not None or wrap is not None:
                merged = {**svc.ctx.config.backends.get(name, {}), **(opts or {})}
                h = svc.backends.check_options(name, merged, custody=custody, wrap=wrap)
            else:
                with svc.backends.custody(name, custody):
                    h = svc.backends.check(name)
            if not h.ok:
                self.app.call_from_thread(self._show, h)
                custody.wipe()
                if wrap is not None:
                    wrap.wipe()
                raise BackendError(f"Backend {name} is not ready: {h.detail}. Nothing was created.")
            return BackendChoice(name, opts, custody, wrap, h)

        self.run_step(
            check,
            working="Checking the backend…",
            description="check a backend's health",
            refocus="#be-custody",
        )

    def _show(self, h: Health) -> None:
        if self.is_attached:
            self.query_one("#be-checks", Static).update(health_text(h))
