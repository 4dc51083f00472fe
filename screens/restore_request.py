"""A new restore request: mark backups in the catalog table, then ask for them.

:class:`RequestScreen` is pushed by the Restores screen (Ctrl+N on Sessions).
The marks and the draft reason and target belong to the Restores screen, so
cancelling and coming back keeps them; Ctrl+R opens
:class:`~screens.restore_dialogs.RequestDialog`, which records the request.
Labels typed into the filter and shown in the counts are plain text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Static

from custodian.approvals import Request
from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.backup_table import BackupQuery, BackupTable, MarkingBackupTable
from screens.chrome import AppFooter, SessionBar
from screens.format import human_size, safe, short_id
from screens.restore_dialogs import RequestDialog
from screens.restore_view import acting

FILTER_DELAY = 0.25
SHOWN_MARKS = 5


def may_request(app: Any, actor: Actor) -> bool:
    """Operators and custodians ask for restores; anyone else is told so."""
    if actor.has("operator") or actor.has("custodian"):
        return True
    app.notify(
        f"Only operators and custodians may request a restore; {actor.name} is "
        f"{', '.join(actor.roles)}.",
        severity="warning",
        markup=False,
    )
    return False


class RequestScreen(Screen[Request | None]):
    """Mark backups in the catalog table, then ask for their restore (Ctrl+R).

    Returns the new :class:`Request`, or None when the person goes back. The
    marks and the draft reason and target belong to the caller, so they are
    still there when this screen opens again.
    """

    TITLE = "custodian"
    SUB_TITLE = "Restores: new request"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "reload", "Reload"),
        Binding("ctrl+r", "request", "Request restore…"),
        Binding("ctrl+u", "clear_marks", "Unmark all"),
        Binding("ctrl+f", "focus_filter", "Filter", show=False),  # the filter box says so
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, service: Service, marks: dict[str, Backup], draft: dict[str, str]) -> None:
        super().__init__()
        self.service = service
        self.marks = marks
        self.draft = draft
        self.query_state = BackupQuery()
        self._timer: Timer | None = None
        self._current_versions: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with Horizontal(id="request-bar"):
            yield Input(
                placeholder="Filter by label or id (Ctrl+F)",
                id="request-filter",
                select_on_focus=False,
            )
        yield Static("", id="request-counts")
        yield MarkingBackupTable(self.service, marked=self.marks, id="request-table")
        yield Static("", id="request-marked", classes="box")
        yield AppFooter()

    @property
    def table(self) -> MarkingBackupTable:
        return self.query_one(MarkingBackupTable)

    def on_mount(self) -> None:
        self.query_one("#request-marked").border_title = "Marked for restore"
        self.reload()
        self.table.focus()

    def reload(self) -> None:
        try:
            self._current_versions = {k.name: k.current_version for k in self.service.keys.list()}
        except CustodianError as e:
            self.notify(str(e), title="Cannot read the KEKs", severity="error", markup=False)
        self._apply(self.query_state)

    def action_reload(self) -> None:
        self.reload()

    def _apply(self, query: BackupQuery) -> None:
        self.query_state = query
        self.table.load(query, current_versions=self._current_versions)
        self._counts()

    def _counts(self) -> None:
        t = self.table
        n = len(self.marks)
        text = Text(f"{t.total:,} backup{'s' if t.total != 1 else ''}")
        if self.query_state.text:
            text.append(f" matching “{safe(self.query_state.text)}”")
        text.append("  ·  ")
        text.append(f"{n} marked", style="bold" if n else "")
        text.append("  ·  space marks; Ctrl+R asks for their restore")
        self.query_one("#request-counts", Static).update(text)
        marked = self.query_one("#request-marked", Static)
        if not n:
            marked.update(Text("Nothing marked yet.", style="dim"))
            return
        backups = list(self.marks.values())
        size = sum(b.size for b in backups if b.size >= 0)
        t = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False, expand=True)
        t.add_column(no_wrap=True)
        t.add_column(ratio=1, no_wrap=True, overflow="ellipsis")  # the label: cut with '…'
        t.add_column(justify="right", no_wrap=True)
        t.add_column(no_wrap=True)
        for b in backups[:SHOWN_MARKS]:
            t.add_row(
                f"● {short_id(b.id)}",
                Text(safe(b.label)),
                human_size(b.size),
                f"{safe(b.kek)} v{b.kek_version}",
            )
        if n > SHOWN_MARKS:
            t.add_row("", Text(f"and {n - SHOWN_MARKS:,} more"), "", "")
        marked.update(t)
        marked.border_subtitle = f"{n} backup{'s' if n != 1 else ''}, {human_size(size)}"

    def on_marking_backup_table_marks_changed(self, event: MarkingBackupTable.MarksChanged) -> None:
        self._counts()

    def on_backup_table_failed(self, event: BackupTable.Failed) -> None:
        self.notify(event.message, title="Catalog error", severity="error", markup=False)

    # filter, as on the backups screen
    def on_input_changed(self, event: Input.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(FILTER_DELAY, self._apply_filter)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter()
        self.table.focus()

    def _apply_filter(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        text = self.query_one("#request-filter", Input).value
        if text != self.query_state.text:
            self._apply(replace(self.query_state, text=text))

    def action_focus_filter(self) -> None:
        self.query_one("#request-filter").focus()

    def action_back(self) -> None:
        box = self.query_one("#request-filter", Input)
        if box.has_focus and box.value:
            box.value = ""
            self._apply_filter()
            return
        self.dismiss(None)

    def action_clear_marks(self) -> None:
        self.table.clear_marks()

    @work(exclusive=True, group="request")
    async def action_request(self) -> None:
        if not self.marks:
            self.notify(
                "Mark at least one backup first: space or enter on its row.", severity="warning"
            )
            return
        by = acting(self.app, None, "request a restore")
        if by is None or not may_request(self.app, by):
            return
        result = await self.app.push_screen_wait(
            RequestDialog(self.service, by, list(self.marks.values()), self.draft)
        )
        if isinstance(result, Request):
            self.dismiss(result)
