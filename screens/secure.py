"""Secret input and the guards every ceremony step goes through.

A passphrase is typed into :class:`SecretInput`: masked, not selected on
focus, and refusing copy and cut. The screen reads it once with
:func:`take_secret`, which hands back :class:`~custodian.secret.SecretBytes`
and clears the field, so the value lives in no widget after the step.

:func:`ceremony_blocked` names the reason a ceremony must not run now: Textual
can record what is on screen and what is typed (``TEXTUAL_LOG``,
``TEXTUAL_SCREENSHOT``, the devtools console), and a key ceremony refuses to
run while any of them is active.
"""

from __future__ import annotations

import os
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.widgets import Input

from custodian.secret import SecretBytes

RECORDING_VARIABLES = ("TEXTUAL_LOG", "TEXTUAL_SCREENSHOT", "TEXTUAL_DEVTOOLS_PORT")


class SecretInput(Input):
    """A masked input whose value cannot be copied, cut or selected on focus."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "refuse", show=False, priority=True),
        Binding("ctrl+x", "refuse", show=False, priority=True),
        Binding("super+c", "refuse", show=False, priority=True),
        Binding("super+x", "refuse", show=False, priority=True),
    ]

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, password=True, select_on_focus=False, id=id)

    def action_refuse(self) -> None:
        self.notify("A secret cannot be copied out of custodian.", severity="warning")

    def action_copy(self) -> None:  # the command palette's copy, too
        self.action_refuse()

    def action_cut(self) -> None:
        self.action_refuse()


def take_secret(field: Input, purpose: str = "passphrase") -> SecretBytes:
    """Read a secret field once and clear it."""
    value = SecretBytes(field.value.encode(), purpose)
    field.value = ""
    return value


def ceremony_blocked(app: App[object]) -> str | None:
    """Why a ceremony may not run now, or None when it may."""
    for name in RECORDING_VARIABLES:
        if os.environ.get(name):
            return (
                f"{name} is set, so Textual may record what is typed and shown; "
                "unset it and start custodian again. Nothing was done."
            )
    if "devtools" in app.features or getattr(app, "devtools", None) is not None:
        return (
            "the Textual devtools console is attached and sees everything on screen; "
            "start custodian without --dev. Nothing was done."
        )
    return None
