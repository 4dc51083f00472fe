"""Sign-in: choose a person, type the passphrase, then the current TOTP code.

The passphrase unlocks the person's signing key (scrypt, about 0.1 s, in a
thread); the code is checked against their TOTP secret, one step either side,
and a code already used is refused. Every failure is an audit entry, written
by the core. The passphrase field is cleared the moment it is read.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from custodian.people import Actor
from custodian.service import Service
from screens.dialogs import CodeInput, Dialog
from screens.secure import SecretInput, take_secret


class SignInScreen(Dialog[Actor | None]):
    """Returns the signed-in :class:`Actor`, or None when cancelled."""

    FRAME_ID = "signin"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"signin-passphrase": "#signin-code"}
    ERROR_ID = "signin-error"

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.people = [p for p in service.people.list() if p.active and p.kind == "person"]

    def heading(self) -> str:
        return "Sign in"

    def body(self) -> ComposeResult:
        yield Label("Person", classes="field-name")
        yield OptionList(
            *[Option(f"  {p.name}  ({', '.join(p.roles)})", id=p.name) for p in self.people],
            id="signin-person",
        )
        yield Label("Passphrase", classes="field-name")
        yield SecretInput(placeholder="your passphrase", id="signin-passphrase")
        yield Label("Code from your authenticator", classes="field-name")
        yield CodeInput(id="signin-code")

    def button_row(self) -> Horizontal:
        return self.buttons("Sign in", "signin-ok", cancel_id="signin-cancel")

    def on_mount(self) -> None:
        if self.people:
            self.query_one("#signin-person", OptionList).highlighted = 0
            self.query_one("#signin-person").focus()
        else:
            self.error(
                "Nobody is enrolled yet. Enrol the first custodian on the People screen (F4)."
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#signin-passphrase").focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """The highlighted person carries a glyph (▶), not a colour only."""
        people = event.option_list
        for i, p in enumerate(self.people):
            mark = "▶ " if i == event.option_index else "  "
            people.replace_option_prompt_at_index(i, f"{mark}{p.name}  ({', '.join(p.roles)})")

    def refusal(self, message: str) -> str:
        # the passphrase was read once and cleared, whatever the answer
        return f"{message} Type your passphrase again (it was cleared), then the code."

    def submit(self) -> None:
        people = self.query_one("#signin-person", OptionList)
        index = people.highlighted
        person = self.people[index].name if index is not None and self.people else None
        pw_field = self.query_one("#signin-passphrase", SecretInput)
        code_field = self.query_one("#signin-code", CodeInput)
        if not isinstance(person, str):
            self.error("Choose who you are first.")
            return
        if not pw_field.value:
            self.error("Type your passphrase.")
            pw_field.focus()
            return
        if len(code_field.value) != 6:
            self.error("Type the 6-digit code your authenticator shows now.")
            code_field.focus()
            return
        code = code_field.value
        code_field.value = ""
        passphrase = take_secret(pw_field)

        def sign_in() -> Actor:
            try:
                return self.service.auth.sign_in(person, passphrase, code)
            finally:
                passphrase.wipe()

        # a fixed description: Textual would otherwise put the arguments (the code) in
        # the worker's description, which its log writes at every state change
        self.run_step(
            sign_in, working="Checking…", description="sign in", refocus="#signin-passphrase"
        )
