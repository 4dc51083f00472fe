"""The backups screen: every backup in the catalog, filtered and sorted in SQL.

The table is virtual (:mod:`screens.backup_table`), so 100,000 backups cost
no more to show than 100. The filter box matches labels and ids (SQL LIKE in
the catalog); the version picker narrows to one KEK version, which is how a
custodian finds the backups still waiting for a rewrap after a rotation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Input, Select, Static

from custodian.catalog import Kek
from custodian.errors import CustodianError
from custodian.service import Service
from screens.backup_detail import BackupDetail
from screens.backup_table import COLUMN_BY_KEY, COLUMNS, BackupQuery, BackupTable
from screens.chrome import AppFooter, SessionBar

FILTER_DELAY = 0.25  # seconds of quiet typing before the filter is applied
ALL_VERSIONS = ""


def _version_key(kek: str, version: int) -> str:
    return f"{kek}:{version}"  # KEK names cannot contain ':' (custodian.container.KEK_NAME_RE)


class BackupsScreen(Screen[None]):
    """A virtual, sortable, filterable table of backups with a detail view."""

    TITLE = "custodian"
    SUB_TITLE = "Backups"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "reload", "Reload"),
        Binding("ctrl+s", "cycle_sort", "Sort column"),
        Binding("ctrl+r", "reverse_sort", "Reverse"),
        Binding("ctrl+f", "focus_filter", "Filter"),
        Binding("slash", "focus_filter", "Filter", show=False),
        Binding("s", "cycle_sort", "Sort column", show=False),
        Binding("r", "reverse_sort", "Reverse", show=False),
        Binding("escape", "escape", "Clear filter", show=False),
    ]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.query_state = BackupQuery()
        self._versions: dict[str, tuple[str, int]] = {}
        self._filter_timer: Timer | None = None
        self._current_versions: dict[str, int] = {}

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with Horizontal(id="backups-bar"):
            yield Input(
                placeholder="Filter by label or id (Ctrl+F)",
                id="backups-filter",
                select_on_focus=False,
            )
            yield Select[str](
                [(Text("All KEK versions"), ALL_VERSIONS)],
                value=ALL_VERSIONS,
                allow_blank=False,
                id="backups-version",
            )
        yield Static(id="backups-counts", markup=False)
        yield BackupTable(self.service, id="backups-table")
        yield AppFooter()

    @property
    def table(self) -> BackupTable:
        return self.query_one(BackupTable)

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()

    # ------------------------------------------------------------------ data

    def reload(self, *, keep_query: bool = True) -> None:
        """Re-read KEK versions and the table, keeping the filter and order."""
        try:
            keks = self.service.keys.list()
        except CustodianError as e:
            self.notify(str(e), title="Cannot read the KEKs", severity="error", markup=False)
            keks = []
        self._set_versions(keks)
        self._apply(self.query_state if keep_query else BackupQuery())

    def _set_versions(self, keks: list[Kek]) -> None:
        options: list[tuple[Text, str]] = [(Text("All KEK versions"), ALL_VERSIONS)]
        self._versions = {}
        for k in keks:
            for v in reversed(k.versions):
                key = _version_key(k.name, v.version)
                self._versions[key] = (k.name, v.version)
                mark = "current" if v.version == k.current_version else v.state
                options.append((Text(f"{k.name} v{v.version} ({mark}, {v.dek_count:,} DEKs)"), key))
        select = self.query_one("#backups-version", Select)
        q = self.query_state
        wanted = (
            _version_key(q.kek, q.version)
            if q.kek is not None and q.version is not None
            else ALL_VERSIONS
        )
        with select.prevent(Select.Changed):
            select.set_options(options)
            select.value = wanted if wanted in self._versions else ALL_VERSIONS
        self._current_versions = {k.name: k.current_version for k in keks}

    def _apply(self, query: BackupQuery) -> None:
        self.query_state = query
        shown = self.table.load(query, current_versions=self._current_versions)
        try:
            total = self.service.backups.total()
        except CustodianError:
            total = shown
        noun = "backup" if total == 1 else "backups"
        counts = f"{shown:,} of {total:,} {noun}"
        if query.text:
            counts += f" matching “{query.text}”"
        if query.version is not None:
            counts += f" under {query.kek} v{query.version}"
        counts += f"  ·  sorted by {query.describe_order()}"
        self.query_one("#backups-counts", Static).update(Text(counts))

    # ------------------------------------------------------------------ filter

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "backups-filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filter)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "backups-filter":
            return
        self._apply_filter()
        self.table.focus()

    def _apply_filter(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        text = self.query_one("#backups-filter", Input).value
        if text != self.query_state.text:
            self._apply(replace(self.query_state, text=text))

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "backups-version":
            return
        kek: str | None = None
        version: int | None = None
        if isinstance(event.value, str) and event.value in self._versions:
            kek, version = self._versions[event.value]
        self._apply(replace(self.query_state, kek=kek, version=version))

    def action_focus_filter(self) -> None:
        self.query_one("#backups-filter", Input).focus()

    def action_escape(self) -> None:
        box = self.query_one("#backups-filter", Input)
        if box.has_focus and box.value:
            box.value = ""
            self._apply_filter()
        elif box.has_focus:
            self.table.focus()
        elif self.query_state.text:
            box.value = ""
            self._apply_filter()

    # ------------------------------------------------------------------ sorting

    def on_backup_table_header_clicked(self, event: BackupTable.HeaderClicked) -> None:
        self.sort_by(event.key)

    def sort_by(self, key: str) -> None:
        """Sort by a column; choosing the column already sorted on reverses it."""
        q = self.query_state
        if key == q.order:
            self._apply(replace(q, descending=not q.descending))
        else:
            self._apply(replace(q, order=key, descending=COLUMN_BY_KEY[key].descending_first))

    def action_cycle_sort(self) -> None:
        keys = [c.key for c in COLUMNS]
        nxt = keys[(keys.index(self.query_state.order) + 1) % len(keys)]
        self.sort_by(nxt)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.query_state.order)

    def action_reload(self) -> None:
        self.reload()
        self.notify(f"{self.table.total:,} backups shown.", title="Reloaded", timeout=3)

    # ------------------------------------------------------------------ details

    def on_backup_table_opened(self, event: BackupTable.Opened) -> None:
        try:
            fresh = self.service.backups.get(event.backup.id)
        except CustodianError as e:
            self.notify(str(e), title="Backup not found", severity="error", markup=False)
            return
        self.app.push_screen(
            BackupDetail(fresh, current_version=self._current_versions.get(fresh.kek))
        )

    def on_backup_table_failed(self, event: BackupTable.Failed) -> None:
        self.notify(event.message, title="Catalog error", severity="error", markup=False)
