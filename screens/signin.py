"""Sign-in: choose a person, type the passphrase, then the current TOTP code.

The passphrase unlocks the person's signing key (scrypt, about 0.1 s, in a
thread); the code is checked against their TOTP secret, one step either side,
and a code already used is refused. Every failure is an audit entry, written
by the core. The passphrase field is cleared the moment it is read.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service
from screens.dialogs import CodeInput
from screens.secure import SecretInput, take_secret


class SignInScreen(ModalScreen[Actor | None]):
    """Returns the signed-in :class:`Actor`, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.people = [p for p in service.people() if p.active and p.kind == "person"]

    def compose(self) -> ComposeResult:
        with Vertical(id="signin", classes="dialog"):
            yield Label("Sign in", classes="dialog-title")
            yield Label("Person", classes="field-name")
            yield OptionList(
                *[Option(f"{p.name}  ({', '.join(p.roles)})", id=p.name) for p in self.people],
                id="signin-person",
            )
            yield Label("Passphrase", classes="field-name")
            yield SecretInput(placeholder="your passphrase", id="signin-passphrase")
            yield Label("Code from your authenticator", classes="field-name")
            yield CodeInput(id="signin-code")
            yield Static("", id="signin-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Sign in", variant="primary", id="signin-ok")
                yield Button("Cancel", id="signin-cancel")

    def on_mount(self) -> None:
        if self.people:
            self.query_one("#signin-person", OptionList).highlighted = 0
            self.query_one("#signin-person").focus()
        else:
            self._error(
                "Nobody is enrolled yet. Enrol the first custodian on the People screen (F4)."
            )

    def _error(self, message: str) -> None:
        self.query_one("#signin-error", Static).update(Text(message))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#signin-passphrase").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "signin-cancel":
            self.action_cancel()
        else:
            self.submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "signin-passphrase":
            self.query_one("#signin-code").focus()
        else:
            self.submit()

    def submit(self) -> None:
        people = self.query_one("#signin-person", OptionList)
        index = people.highlighted
        person = self.people[index].name if index is not None and self.people else None
        pw_field = self.query_one("#signin-passphrase", SecretInput)
        code_field = self.query_one("#signin-code", CodeInput)
        if not isinstance(person, str):
            self._error("Choose who you are first.")
            return
        if not pw_field.value:
            self._error("Type your passphrase.")
            pw_field.focus()
            return
        if len(code_field.value) != 6:
            self._error("Type the 6-digit code your authenticator shows now.")
            code_field.focus()
            return
        code = code_field.value
        code_field.value = ""
        self._error("Checking…")
        self.query_one("#signin-ok", Button).disabled = True
        self._sign_in(person, take_secret(pw_field), code)

    # a fixed description: Textual would otherwise put the arguments (the code) in
    # the worker's description, which its log writes at every state change
    @work(thread=True, exclusive=True, group="signin", description="sign in")
    def _sign_in(self, name: str, passphrase: SecretBytes, code: str) -> None:
        try:
            actor = self.service.sign_in(name, passphrase, code)
        except CustodianError as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        finally:
            passphrase.wipe()
        self.app.call_from_thread(self.dismiss, actor)

    def _failed(self, message: str) -> None:
        self._error(message)
        self.query_one("#signin-ok", Button).disabled = False
        self.query_one("#signin-passphrase").focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
