"""Pieces every screen shares: the line that says who is signed in."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class SessionBar(Static):
    """One line under the header: who is signed in, and how to sign in or out.

    It follows the app's ``who`` reactive, which holds a display string only
    (a name and roles), never anything secret.
    """

    DEFAULT_CSS = """
    SessionBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    SessionBar.signed-in {
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "who", self._show, init=True)

    def _show(self, who: str) -> None:
        self.set_class(bool(who), "signed-in")
        if who:
            self.update(Text.assemble(("● ", "green"), f"Signed in: {who}", "   F9 sign out"))
        else:
            self.update(Text("Not signed in. F9 signs in; viewing needs no sign-in."))
