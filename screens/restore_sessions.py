"""The Sessions pane of the Restores screen: the home's restore requests and their runs.

:class:`SessionsPane` lists the restore requests, newest first, with the ones
the signed-in person may run now on top, and shows the highlighted one in the
session box: where it stands, the run's progress bar and status, one row per
backup (ok or failed, with the reason in full under the table). The screen
checks who may run a session and calls :meth:`SessionsPane.start`; the run
goes in a thread worker of the pane, which posts :class:`RunProgress`,
:class:`RunResult` and :class:`RunEnded` back; Esc (:meth:`SessionsPane.stop`)
cancels it between backups, which keeps the session open. :class:`RunEnded`
goes on to the screen, which reads the requests again. Every reason, label,
name and path is shown as plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, ProgressBar, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from custodian.approvals import Request, RestoreReport, RestoreResult
from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.chrome import CursorTable
from screens.format import human_size, safe, short_id, when
from screens.restore_view import (
    latest_results,
    results_note,
    runnable_by,
    sentence,
    session_note,
    signed_in,
    state_line,
    time_left,
)

RESULT_LABEL = 40  # the Label column of the results table
BOX_CHROME = 6  # the session box's border and padding, and the pane's margins
STATE_STYLE = {
    "open": "yellow",
    "approved": "bold green",
    "done": "",
    "denied": "red",
    "expired": "dim",
    "cancelled": "dim",
}


# ------------------------------------------------------------------ run messages


@dataclass(eq=False)
class RunProgress(Message):
    """Plaintext bytes restored so far in a run (a newer one replaces an older one)."""

    request: str
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgress) and message.request == self.request


@dataclass(eq=False)
class RunResult(Message):
    """One backup of a run is restored or failed, and recorded."""

    request: str
    result: RestoreResult


@dataclass(eq=False)
class RunEnded(Message):
    """A run is over: its report, or why it could not run."""

    request: str
    report: RestoreReport | None
    error: str


# ------------------------------------------------------------------ table helpers


def selected_id(table: DataTable[Any], rows: list[Request]) -> str | None:
    """The id of the request under the cursor of ``table`` (whose rows are ``rows``)."""
    if rows and 0 <= table.cursor_row < len(rows):
        return rows[table.cursor_row].id
    return None


def fixed_columns(table: DataTable[Any], *columns: tuple[str, str, int]) -> Any:
    """(title, key, width) columns: they keep their place whatever the rows hold.
    Returns the last one's key."""
    key: Any = None
    for title, name, width in columns:
        key = table.add_column(title, key=name, width=width)
    return key


def restore_cursor(table: DataTable[Any], rows: list[Request], rid: str | None) -> None:
    """Put the cursor back on request ``rid`` after the table was filled again."""
    ids = [r.id for r in rows]
    if rid in ids:
        table.move_cursor(row=ids.index(rid))


# ------------------------------------------------------------------ the pane


class SessionsPane(TabPane):
    """The Sessions tab: the requests' table and the session box of the highlighted one."""

    def __init__(
        self,
        service: Service,
        *,
        backup: Callable[[str], Backup | None],
        now: Callable[[], float],
    ) -> None:
        super().__init__("Sessions", id="sessions")
        self.service = service
        self.backup = backup  # the screen's cached catalog look-up
        self.now = now
        self.requests: list[Request] = []
        self.rows: list[Request] = []  # the table's rows
        self.shown: str | None = None  # the request whose session box is shown
        self.running: str | None = None  # the request whose session is running now
        self.run_for: str | None = None  # the request the progress bar and status belong to
        self.run_results: dict[str, RestoreResult] = {}
        # the results table, row by row: the request, the backup, its latest result
        self._result_rows: list[tuple[Request, str, RestoreResult | None]] = []
        self.run_status = ""
        self.run_style = ""
        self.stopping = False
        self._reason_column: Any = None  # the results table's last column, set up below
        self._reason_width = 30

    def compose(self) -> ComposeResult:
        yield CursorTable(
            id="sessions-table",
            cursor_type="row",
            zebra_stripes=True,
            hide_below={"created": 110, "results": 90},
            flex="session",
        )
        with Vertical(id="session-box", classes="box"):
            yield Static("", id="session-summary")
            with Horizontal(id="session-progress-row"):
                yield ProgressBar(id="session-progress", show_eta=False)
                yield Static("", id="session-status")
            # the reason of the highlighted row is in full under the table: below 110
            # columns its own column goes, and the label takes what the others leave
            yield CursorTable(
                id="results-table", cursor_type="row", flex="label", hide_below={"reason": 110}
            )
            yield Static("", id="result-reason")

    def set_up(self) -> None:
        """The tables' columns (the screen calls this on mount, before its first read)."""
        fixed_columns(
            self.query_one("#sessions-table", DataTable),
            ("", "mark", 1),
            ("Request", "id", 8),
            ("Asked by", "by", 12),
            ("Created (UTC)", "created", 16),
            ("State", "state", 9),
            ("Backups", "n", 7),
            ("Session", "session", 26),
            ("Results", "results", 16),
        )
        self._reason_column = fixed_columns(
            self.query_one("#results-table", DataTable),
            ("Backup", "id", 8),
            ("Label", "label", RESULT_LABEL),
            ("Outcome", "outcome", 11),
            ("Size", "size", 10),
            ("Reason (the highlighted one in full below)", "reason", 30),
        )
        self.query_one("#session-box").border_title = "Session"
        self.query_one("#session-progress-row").display = False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "sessions-table":
            if self.running is None:
                self.shown = selected_id(event.data_table, self.rows)
            self.show()
        elif event.data_table.id == "results-table":
            self._show_reason()

    # ------------------------------------------------------------ the table and the box

    def fill(self, requests: list[Request], select: str | None) -> None:
        """The sessions table from ``requests`` (``select``: the one to show), then the box."""
        self.requests = requests
        table = self.query_one("#sessions-table", DataTable)
        current = select or self.shown
        me = signed_in(self.app)
        name = me.name if me is not None else None
        now = self.now()
        restores = [r for r in self.requests if r.kind == "restore"]  # others have no session
        rows = sorted(restores, key=lambda r: r.created_at, reverse=True)
        rows.sort(key=lambda r: not runnable_by(r, name))
        if current is None:
            current = next((r.id for r in rows if runnable_by(r, name)), None)
        self.rows = rows
        table.clear()
        for r in rows:
            ready = runnable_by(r, name)
            table.add_row(
                # ● ready for you (the approvals pane's mark); ▶ is the cursor's
                Text("●", style="bold green") if ready else Text(""),
                Text(short_id(r.id)),
                Text(safe(r.requester)),
                Text(when(r.created_at)),
                Text(r.state, style=STATE_STYLE.get(r.state, "")),
                Text(f"{len(r.backups):,}", justify="right"),
                Text(session_note(r, now)),
                Text(results_note(r)),
                key=r.id,
            )
        restore_cursor(table, rows, current)
        self.shown = selected_id(table, rows)
        ready = sum(1 for r in rows if runnable_by(r, name))
        self.screen.query_one(TabbedContent).get_tab("sessions").label = (
            f"Sessions ({ready} ready)" if ready else "Sessions"
        )
        self.show()

    def shown_request(self) -> Request | None:
        return next((r for r in self.requests if r.id == self.shown), None)

    def show(self) -> None:
        """The session box of the shown request: its state, the run, the results."""
        r = self.shown_request()
        summary = self.query_one("#session-summary", Static)
        results = self.query_one("#results-table", DataTable)
        box = self.query_one("#session-box")
        row = self.query_one("#session-progress-row")
        if r is None:
            box.border_title = "Session"
            summary.update(
                Text(
                    "No restore has been requested in this home yet. Ctrl+N asks for one: mark "
                    "backups, give a reason and a target; two custodians approve it.",
                    style="dim",
                )
            )
            results.clear()
            results.display = False
            row.display = False
            self.query_one("#result-reason", Static).update("")
            return
        results.display = True
        me = signed_in(self.app)
        now = self.now()
        n = len(r.backups)
        size = sum(
            b.size for b in (self.backup(bid) for bid in r.backups) if b is not None and b.size >= 0
        )
        box.border_title = (
            f"Session {short_id(r.session.id)} of request {short_id(r.id)}"
            if r.session is not None
            else f"Request {short_id(r.id)}: no session yet"
        )
        lines = Text()
        lines.append(safe(state_line(r, now)), style="bold")
        lines.append(
            f"\n{n} backup{'s' if n != 1 else ''}, {human_size(size)}, asked by "
            f"{safe(r.requester)}, into {safe(r.target)}"
        )
        lines.append("\nreason  ", style="dim")
        lines.append(safe(r.reason))
        hint = self._session_hint(r, me)
        if hint:
            lines.append("\n" + hint, style="dim")
        summary.update(lines)
        row.display = self.run_for == r.id
        if self.run_for == r.id:
            self._status()
        self._fill_results(r)

    def _session_hint(self, r: Request, me: Actor | None) -> str:
        if self.running == r.id:
            return "Esc stops after the backup in progress; the session stays open."
        if runnable_by(r, me.name if me else None) and r.session is not None:
            left = time_left(r.session.expires_at, self.now())
            return (
                f"Ctrl+E runs the session ({left}): each backup is decrypted into the target and "
                "checked; one that fails leaves nothing behind."
            )
        if r.state == "open":
            return f"Waiting for custodians: {len(r.approvals)} of {r.quorum} approvals."
        if r.state == "approved" and (me is None or me.name != r.requester):
            return f"Only {safe(r.requester)}, who asked, may run this session."
        return ""

    def _fill_results(self, r: Request) -> None:
        table = self.query_one("#results-table", DataTable)
        cursor = table.cursor_row
        recorded = latest_results(r)
        recorded.update(self.run_results if self.run_for == r.id else {})
        in_progress = None
        if self.running == r.id:  # the first backup this run has not reported on yet
            earlier = {b for b, x in latest_results(r).items() if x.outcome == "ok"}
            in_progress = next(
                (b for b in r.backups if b not in self.run_results and b not in earlier), None
            )
        table.clear()
        self._result_rows = []
        for bid in r.backups:
            b = self.backup(bid)
            res = recorded.get(bid)
            if res is not None and res.outcome == "ok":
                outcome = Text("✓ restored", style="green")
                size = human_size(res.plaintext_size or 0)
            elif res is not None:
                outcome = Text("✗ failed", style="bold red")
                size = human_size(b.size) if b else ""
            elif bid == in_progress:
                outcome = Text("… restoring", style="yellow")
                size = human_size(b.size) if b else ""
            else:
                outcome = Text("waiting" if self.running == r.id else "-", style="dim")
                size = human_size(b.size) if b else ""
            reason = res.reason if res is not None and res.outcome != "ok" else ""
            table.add_row(
                Text(short_id(bid)),
                Text(safe(b.label) if b else "not in the catalog", style="" if b else "red"),
                outcome,
                Text(size, justify="right"),
                Text(safe(reason) if reason else ""),
                key=bid,
            )
            self._result_rows.append((r, bid, res))
        if 0 <= cursor < table.row_count:
            table.move_cursor(row=cursor)
        self._show_reason()

    def _show_reason(self) -> None:
        label = self.query_one("#result-reason", Static)
        table = self.query_one("#results-table", DataTable)
        rows = self._result_rows
        if not rows or not 0 <= table.cursor_row < len(rows):
            label.update("")
            return
        r, bid, res = rows[table.cursor_row]
        if res is None:
            file = str(r.payload.get("files", {}).get(bid, bid))
            label.update(Text(f"restores to {safe(str(Path(r.target) / file))}", style="dim"))
        elif res.outcome == "ok":
            label.update(
                Text(f"✓ {human_size(res.plaintext_size or 0)} written to {safe(res.path or '')}")
            )
        else:
            label.update(Text(f"✗ {safe(res.reason)}", style="red"))

    def fit_reason_column(self, width: int) -> None:
        """The label takes what the other columns leave (CursorTable's flex); the Reason
        column keeps its width, and below 110 columns it goes (the highlighted row's
        reason is in full under the table)."""
        self.query_one("#results-table", CursorTable).fit_flex()

    # ------------------------------------------------------------ the run

    def start(self, r: Request, by: Actor) -> None:
        """Run the session of ``r`` as ``by`` (the screen checked they may)."""
        self.running = self.run_for = self.shown = r.id
        self.run_results = {}
        self.stopping = False
        self.run_status, self.run_style = "Starting…", ""
        self.app.busy = (  # type: ignore[attr-defined]
            f"the restore of request {short_id(r.id)} is running (Esc on Restores, F6, stops it "
            "between backups)"
        )
        bar = self.query_one("#session-progress", ProgressBar)
        bar.update(total=None, progress=0)
        self.screen.refresh_bindings()
        self.show()
        self._run(r.id, by)

    # a fixed description: the arguments (the actor) stay out of Textual's worker log
    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="restore-run",
        description="run a restore session",
    )
    def _run(self, rid: str, by: Actor) -> None:
        worker = get_current_worker()
        report: RestoreReport | None = None
        error = "the run stopped on an unexpected error"
        try:
            report = self.service.restores.run(
                rid,
                by=by,
                progress=lambda done, total: self.post_message(RunProgress(rid, done, total)),
                cancelled=lambda: worker.is_cancelled,
                on_result=lambda res: self.post_message(RunResult(rid, res)),
            )
            error = ""
        except CustodianError as e:
            error = str(e)
        except Exception as e:
            error = f"the run stopped on an unexpected error: {e}"
            raise
        finally:
            self.post_message(RunEnded(rid, report, error))

    def stop(self) -> None:
        if self.running is None or self.stopping:
            return
        for w in self.workers:
            if w.group == "restore-run" and not w.is_finished:
                w.cancel()
        self.stopping = True
        self._status("Stopping after the backup in progress…", "yellow")

    def on_run_progress(self, message: RunProgress) -> None:
        bar = self.query_one("#session-progress", ProgressBar)
        bar.update(total=max(message.total, 1), progress=message.done)
        if not self.stopping:
            done = len(self.run_results)
            r = self.shown_request()
            n = len(r.backups) if r is not None else done
            self._status(f"Restoring: {done:,} of {n:,} done, {human_size(message.done)} written")

    def _status(self, text: str | None = None, style: str | None = None) -> None:
        """Set (when given) and show the line beside the progress bar."""
        if text is not None:
            self.run_status, self.run_style = text, style or ""
        line = Text(safe(self.run_status), style=self.run_style)
        self.query_one("#session-status", Static).update(line)

    def on_run_result(self, message: RunResult) -> None:
        self.run_results[message.result.backup] = message.result
        self.show()

    def on_run_ended(self, message: RunEnded) -> None:
        self.running = None
        self.stopping = False
        self.app.busy = ""  # type: ignore[attr-defined]
        report = message.report
        bar = self.query_one("#session-progress", ProgressBar)
        if report is None:
            self.run_status, self.run_style = f"Did not run: {message.error}", "bold red"
            self.notify(
                sentence(message.error),
                title="Restore not run",
                severity="error",
                markup=False,
                timeout=10,
            )
        else:
            ok, failed = len(report.ok), len(report.failed)
            if report.cancelled:
                self.run_style = "yellow"
                self.run_status = (
                    f"Stopped: {ok:,} restored, {failed:,} failed. The session stays open; "
                    "Ctrl+E runs the rest."
                )
            else:
                total = bar.total or 1
                bar.update(total=total, progress=total)
                self.run_style = "bold red" if failed else "green"
                self.run_status = (
                    f"Done: {ok:,} restored, {failed:,} failed"
                    + (f", {len(report.skipped):,} restored earlier" if report.skipped else "")
                    + (
                        f". The session stays open: {report.kept_open}."
                        if report.kept_open
                        else f". The session is {report.session_state}."
                    )
                )
            self.notify(
                sentence(safe(report.summary())),
                title="Restore finished" if not report.cancelled else "Restore stopped",
                severity="warning" if failed else "information",
                markup=False,
                timeout=10,
            )
        self.screen.refresh_bindings()
        self.run_results = {}  # from here on the catalog's record is what is shown
        # the message goes on to the screen, which reads the requests again

    def point_at_first_failure(self, report: RestoreReport | None) -> None:
        """After a run and the read that follows it: the first failure, reason shown below."""
        r = self.shown_request()
        if report is not None and report.failed and r is not None:
            recorded = latest_results(r)  # the first failure, with its reason shown below
            first = next(
                (
                    i
                    for i, b in enumerate(r.backups)
                    if b in recorded and recorded[b].outcome != "ok"
                ),
                None,
            )
            if first is not None:
                self.query_one("#results-table", DataTable).move_cursor(row=first)
