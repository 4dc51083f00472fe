"""The audit log: entries, filters, the detail of one entry, and verification.

Entries are read through the service in a thread (a long log takes a moment)
and the newest :data:`MAX_ROWS` that match the filters are shown, newest
first. Verification runs in a thread worker with a progress bar and can be
cancelled; when the log does not verify, the table jumps to the first bad
entry and marks it, and the reason is shown in words.

Everything in an entry is untrusted text: it is shown as plain text, never
parsed as markup.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Header,
    Input,
    ProgressBar,
    Select,
    Static,
)
from textual.worker import get_current_worker

from custodian.audit import VerifyResult
from custodian.errors import CustodianError
from custodian.service import Service
from screens.chrome import AppFooter, CursorTable, SessionBar
from screens.format import safe

MAX_ROWS = 2000
OUTCOMES = ("ok", "refused", "failed")
# each outcome has a glyph of its own, not a colour only: refused and failed differ
OUTCOME_GLYPH = {"ok": "✓", "refused": "⊘", "failed": "✗"}
OUTCOME_WIDTH = 9
NARROW_BELOW = 140  # columns: the entry's detail goes under the table
SMALL_BELOW = 100  # columns: narrower actor and action columns
FILTER_DELAY = 0.25


def _subject(e: dict[str, Any]) -> str:
    return safe(str(e.get("subject", "")))


class AuditScreen(Screen[None]):
    """Browse and verify the signed, hash-chained audit log."""

    TITLE = "custodian"
    SUB_TITLE = "Audit log"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "reload", "Reload"),
        Binding("ctrl+t", "verify", "Verify"),
        Binding("ctrl+f", "focus_filter", "Filter"),
        Binding("escape", "cancel_verify", "Cancel verify", show=False),
    ]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.rows: list[dict[str, Any]] = []
        self.matching = 0
        self.bad_seq: int | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with Horizontal(id="audit-bar"):
            yield Input(placeholder="Filter subject and details (Ctrl+F)", id="audit-text")
            yield Select([], prompt="Any actor", id="audit-actor")
            yield Select([(o, o) for o in OUTCOMES], prompt="Any outcome", id="audit-outcome")
        yield Static("", id="audit-counts", markup=False)
        with Horizontal(id="audit-main"):
            yield CursorTable(
                id="audit-table", cursor_type="row", zebra_stripes=True, flex="subject"
            )
            yield Static("", id="audit-detail", classes="box", markup=False)
        with Vertical(id="audit-verify", classes="box"):
            yield Static(
                "Verification checks every entry's hash, chain link and signature, offline. "
                "Ctrl+T.",
                id="audit-result",
                markup=False,
            )
            yield ProgressBar(id="audit-progress", show_eta=False)
        yield AppFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # the outcome early and whole (refused and failed must not look alike); actor and
        # action at fixed widths, cut with '…'; the subject takes the rest
        table.add_column("", key="mark", width=1)
        table.add_column("Seq", key="seq")
        table.add_column("Time (UTC)", key="time")
        table.add_column("Outcome", key="outcome", width=OUTCOME_WIDTH)
        table.add_column("Actor", key="actor", width=12)
        table.add_column("Action", key="action", width=24)
        table.add_column("Subject", key="subject")
        self.query_one("#audit-verify").border_title = "Verify"
        self.query_one("#audit-detail").border_title = "Entry"
        self.query_one("#audit-progress").display = False
        actors = sorted({p.name for p in self.service.people.list(include_home=True)})
        self.query_one("#audit-actor", Select).set_options((a, a) for a in actors)
        self.reload()

    def on_resize(self, event: events.Resize) -> None:
        """Below 140 columns the entry goes under the table; below 100 the actor and
        action columns narrow (their cells end in '…'), so the subject keeps some room."""
        width = event.size.width
        self.set_class(width < NARROW_BELOW, "-narrow")
        table = self.query_one("#audit-table", CursorTable)
        small = width < SMALL_BELOW
        for key, wide, narrow in (("actor", 12, 10), ("action", 24, 16), ("time", 19, 16)):
            col = table.columns.get(key)  # type: ignore[call-overload]
            if col is not None:
                col.auto_width = False
                col.width = narrow if small else wide
        table._changed_widths()
        table.call_after_refresh(table.fit_flex)

    # ------------------------------------------------------------ loading

    def _filters(self) -> dict[str, Any]:
        actor = self.query_one("#audit-actor", Select).value
        outcome = self.query_one("#audit-outcome", Select).value
        return {
            "actor": actor if isinstance(actor, str) else None,
            "outcome": outcome if isinstance(outcome, str) else None,
            "text": self.query_one("#audit-text", Input).value.strip(),
        }

    def action_reload(self) -> None:
        self.reload()

    def reload(self, *, around: int | None = None) -> None:
        self.query_one("#audit-counts", Static).update("Reading the audit log…")
        self._load(self._filters(), around)

    @work(thread=True, exclusive=True, group="audit-load")
    def _load(self, filters: dict[str, Any], around: int | None) -> None:
        try:
            entries = self.service.audit.entries(**filters)
        except CustodianError as e:
            self.app.call_from_thread(
                self.notify, str(e), title="Audit log", severity="error", markup=False
            )
            return
        if get_current_worker().is_cancelled:
            return
        self.app.call_from_thread(self._show, entries, around)

    def _show(self, entries: list[dict[str, Any]], around: int | None) -> None:
        self.matching = len(entries)
        if around is not None:
            index = next((i for i, e in enumerate(entries) if e.get("seq") == around), None)
            if index is not None:
                lo = max(0, index - MAX_ROWS // 2)
                entries = entries[lo : lo + MAX_ROWS]
            else:
                entries = entries[-MAX_ROWS:]
        else:
            entries = entries[-MAX_ROWS:]
        self.rows = list(reversed(entries))
        table = self.query_one(DataTable)
        table.clear()
        for e in self.rows:
            outcome = str(e.get("outcome", ""))
            bad = e.get("seq") == self.bad_seq
            table.add_row(
                Text("✗", style="bold red") if bad else Text(""),
                Text(str(e.get("seq", "?")), justify="right", style="bold red" if bad else ""),
                Text(str(e.get("time", ""))[:19].replace("T", " ")),
                Text(
                    f"{OUTCOME_GLYPH.get(outcome, '?')} {safe(outcome)}",
                    style="" if outcome == "ok" else "bold red" if bad else "yellow",
                ),
                Text(safe(str(e.get("actor", "")))),
                Text(safe(str(e.get("action", "")))),
                Text(_subject(e)),
            )
        shown = len(self.rows)
        note = f"{self.matching:,} matching entries"
        if shown < self.matching:
            note += f", showing {shown:,}" + (" around the bad entry" if around else "")
        self.query_one("#audit-counts", Static).update(note + "  ·  newest first")
        if around is not None:
            for i, e in enumerate(self.rows):
                if e.get("seq") == around:
                    table.move_cursor(row=i)
                    break
        self._show_detail()

    # ------------------------------------------------------------ filters

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(FILTER_DELAY, self.reload)

    def on_select_changed(self, event: Select.Changed) -> None:
        self.reload()

    def action_focus_filter(self) -> None:
        self.query_one("#audit-text").focus()

    # ------------------------------------------------------------ detail

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one(DataTable)
        detail = self.query_one("#audit-detail", Static)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            detail.update(Text("No entry matches." if self.rows == [] else ""))
            return
        detail.update(Text(describe(self.rows[table.cursor_row])))

    # ------------------------------------------------------------ verify

    def action_verify(self) -> None:
        bar = self.query_one("#audit-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self._result("Verifying…", "")
        self._verify()

    def action_cancel_verify(self) -> None:
        for w in self.workers:
            if w.group == "audit-verify" and w.is_running:
                w.cancel()

    @work(thread=True, exclusive=True, group="audit-verify")
    def _verify(self) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self._progress, done, total)

        try:
            result = self.service.audit.verify(
                progress=progress, cancelled=lambda: worker.is_cancelled
            )
        except CustodianError as e:
            self.app.call_from_thread(self._result, f"Could not verify: {e}", "bad")
            return
        self.app.call_from_thread(self._verified, result)

    def _progress(self, done: int, total: int) -> None:
        self.query_one("#audit-progress", ProgressBar).update(total=total, progress=done)

    def _verified(self, result: VerifyResult) -> None:
        bar = self.query_one("#audit-progress", ProgressBar)
        if result.ok:
            bar.update(total=result.entries or 1, progress=result.entries or 1)
            self.bad_seq = None
            self._result("✓ " + result.summary(), "good")
            self.reload()
            return
        self._result("✗ " + result.summary(), "bad")
        if result.first_bad is not None:
            self.bad_seq = result.first_bad
            self.reload(around=result.first_bad)
            self.notify(
                f"Entry {result.first_bad} is the first bad entry: {result.reason}",
                title="The audit log does not verify",
                severity="error",
                timeout=10,
                markup=False,
            )

    def _result(self, message: str, kind: str) -> None:
        label = self.query_one("#audit-result", Static)
        label.update(Text(safe(message)))
        label.set_class(kind == "good", "good")
        label.set_class(kind == "bad", "bad")


FIELDS = ("seq", "time", "actor", "action", "subject", "outcome")
HASHES = ("key_id", "prev", "hash", "sig")


def describe(e: dict[str, Any]) -> str:
    """One entry as 'name  value' lines; details one per line; every value made safe."""
    lines = [f"{name:<8} {safe(str(e.get(name, '')))}" for name in FIELDS]
    details = e.get("details")
    if isinstance(details, dict) and details:
        lines.append("details")
        for k, v in details.items():
            value = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            lines.append(f"  {safe(str(k))}: {safe(value)}")
    for name in HASHES:  # long values: the name on its own line, the value below
        lines += ["", name, safe(str(e.get(name, "")))]
    extra = sorted(set(e) - set(FIELDS) - set(HASHES) - {"details"})
    lines += [f"{safe(k):<8} {safe(json.dumps(e[k], ensure_ascii=False))}" for k in extra]
    return "\n".join(lines)
