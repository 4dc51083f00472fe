"""The full catalog record of one backup, in a modal."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from custodian.catalog import Backup
from screens.format import human_size, safe, short_id, when_seconds


def _size(n: int) -> str:
    return human_size(n) if n < 1024 else f"{human_size(n)} ({n:,} bytes)"


class BackupDetail(ModalScreen[None]):
    """Everything the catalog records about a backup, except its wrapped DEK."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, backup: Backup, *, current_version: int | None = None) -> None:
        super().__init__()
        self.backup = backup
        self.current_version = current_version

    def compose(self) -> ComposeResult:
        b = self.backup
        kek = f"{b.kek} v{b.kek_version}"
        if self.current_version is not None:
            if b.kek_version < self.current_version:
                kek += f"  (older than current v{self.current_version}: awaits rewrap)"
            else:
                kek += "  (current version)"
        fields = [
            ("ID", b.id),
            ("Label", safe(b.label)),
            ("Created", when_seconds(b.created_at)),
            ("Size", _size(b.size)),
            ("Container size", _size(b.container_size)),
            ("Container digest", b.container_sha256),
            ("Location", safe(b.location)),
            ("KEK", safe(kek)),
            ("Chunk size", human_size(b.chunk_size)),
        ]
        with Vertical(id="detail"):
            yield Static(Text(f"Backup {short_id(b.id)}"), id="detail-title")
            with Grid(id="detail-grid"):
                for name, value in fields:
                    yield Label(name, classes="detail-name", markup=False)
                    yield Static(
                        Text(value),
                        classes="detail-value",
                        id=f"detail-{name.lower().replace(' ', '-').replace('-256', '')}",
                    )
            with Horizontal(id="detail-buttons"):
                yield Button("Close", id="detail-close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#detail-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
