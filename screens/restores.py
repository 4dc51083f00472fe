"""Restores (F6): the approvals inbox, restore sessions, and asking for a restore.

Dual control in the TUI (DESIGN.md, "Restore approvals"), on one screen with
two panes:

- **Approvals**: every open request, those waiting for the signed-in
  custodian first (``Service.inbox``), and the whole of the highlighted one:
  requester, times, reason, target, every backup with its label, size and KEK
  version, the decisions so far and the quorum. Ctrl+A approves and Ctrl+D
  denies, each in a dialog that asks a fresh TOTP code.
- **Sessions**: the requests of the home, newest first, with the ones the
  signed-in person may run now on top. Ctrl+R runs the session in a thread
  worker (progress bar, one row per backup, ok or failed with the reason); Esc
  stops it between backups, which keeps the session open. Ctrl+N asks for a
  new restore on :class:`RequestScreen`, the catalog table with marks.

On both panes Ctrl+K cancels the highlighted request (the requester or any
custodian; final, and an open session closes), after :class:`CancelDialog`
shows the whole request and takes an optional reason. It is refused while
that request's session runs here.

The session run is the only long work. While it runs, this screen does not
re-read the requests (the run's own messages say what happens) and the app
refuses sign-out and quit (``app.busy``): the run signs each backup's audit
entry with the signed-in person's key. Every reason, label, name and path is
shown as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import get_current_worker

from custodian.approvals import Request, RestoreReport, RestoreResult
from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.backup_table import BackupQuery, BackupTable, MarkingBackupTable
from screens.chrome import SessionBar
from screens.format import fit, human_size, safe, short_id, when
from screens.restore_dialogs import CancelDialog, DecisionDialog, RequestDialog
from screens.restore_view import (
    DECIDED,
    describe_request,
    latest_results,
    results_note,
    runnable_by,
    sentence,
    session_note,
    state_line,
    time_left,
    what,
)
from screens.secure import ceremony_blocked

TICK = 30.0  # seconds between refreshes of times left (and of the lists, when idle)
FILTER_DELAY = 0.25
SHOWN_MARKS = 5
RESULT_LABEL = 40  # the Label column of the results table
BOX_CHROME = 6  # the session box's border and padding, and the pane's margins


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


# ------------------------------------------------------------------ helpers


def _me(app: Any) -> Actor | None:
    actor = getattr(app, "actor", None)
    return actor if isinstance(actor, Actor) else None


def _acting(app: Any, role: str | None, doing: str) -> Actor | None:
    acting = getattr(app, "acting", None)
    return acting(role, doing) if acting else None


def _may_request(app: Any, actor: Actor) -> bool:
    if actor.has("operator") or actor.has("custodian"):
        return True
    app.notify(
        f"Only operators and custodians may request a restore; {actor.name} is "
        f"{', '.join(actor.roles)}.",
        severity="warning",
        markup=False,
    )
    return False


class RestoresScreen(Screen[None]):
    """Approvals inbox and restore sessions (F6)."""

    TITLE = "custodian"
    SUB_TITLE = "Restores"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "reload", "Reload"),
        # each pane shows its own keys (check_action); plain letters are aliases
        Binding("ctrl+a", "approve", "Approve"),
        Binding("ctrl+d", "deny", "Deny"),
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_request", "New request"),
        Binding("ctrl+k", "cancel_request", "Cancel request"),
        Binding("a", "approve", "Approve", show=False),
        Binding("d", "deny", "Deny", show=False),
        Binding("r", "run", "Run session", show=False),
        Binding("n", "new_request", "New request", show=False),
        Binding("c", "cancel_request", "Cancel request", show=False),
    ]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.requests: list[Request] = []
        self.waiting: set[str] = set()  # ids the signed-in custodian may decide
        self.approval_rows: list[Request] = []
        self.session_rows: list[Request] = []
        self._backups: dict[str, Backup | None] = {}
        # the session pane
        self.shown: str | None = None  # the request whose session box is shown
        self.running: str | None = None  # the request whose session is running now
        self.run_for: str | None = None  # the request the progress bar and status belong to
        self.run_results: dict[str, RestoreResult] = {}
        # the results table, row by row: the request, the backup, its latest result
        self._result_rows: list[tuple[Request, str, RestoreResult | None]] = []
        self.run_status = ""
        self.run_style = ""
        self.stopping = False
        # a new request in the making: kept while it is not submitted
        self.marks: dict[str, Backup] = {}
        self.draft: dict[str, str] = {"reason": "", "target": ""}
        self._tick: Timer | None = None
        self._reason_column: Any = None  # the results table's last column, set on mount
        self._reason_width = 30

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        me = _me(self.app)
        initial = "sessions" if me is not None and not me.has("custodian") else "approvals"
        yield Header()
        yield SessionBar()
        with TabbedContent(initial=initial, id="restores-tabs"):
            with TabPane("Approvals", id="approvals"):
                yield Static("", id="approvals-hint")
                yield DataTable(id="approvals-table", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="approvals-detail", classes="box"):
                    yield Static("", id="approvals-request")
            with TabPane("Sessions", id="sessions"):
                yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
                with Vertical(id="session-box", classes="box"):
                    yield Static("", id="session-summary")
                    with Horizontal(id="session-progress-row"):
                        yield ProgressBar(id="session-progress", show_eta=False)
                        yield Static("", id="session-status")
                    yield DataTable(id="results-table", cursor_type="row")
                    yield Static("", id="result-reason")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        a = self.query_one("#approvals-table", DataTable)
        # fixed widths: the columns keep their place whatever the rows hold
        a.add_column("", key="mark", width=1)
        for title, key, width in (
            ("Request", "id", 8),
            ("Asked by", "by", 12),
            ("Created (UTC)", "created", 16),
            ("Expires (UTC)", "expires", 16),
            ("Asks to", "what", 22),
            ("Approvals", "approvals", 9),
            ("For you", "note", 18),
        ):
            a.add_column(title, key=key, width=width)
        s = self.query_one("#sessions-table", DataTable)
        s.add_column("", key="mark", width=1)
        for title, key, width in (
            ("Request", "id", 8),
            ("Asked by", "by", 12),
            ("Created (UTC)", "created", 16),
            ("State", "state", 9),
            ("Backups", "n", 7),
            ("Session", "session", 26),
            ("Results", "results", 16),
        ):
            s.add_column(title, key=key, width=width)
        r = self.query_one("#results-table", DataTable)
        for title, key, width in (
            ("Backup", "id", 8),
            ("Label", "label", RESULT_LABEL),
            ("Outcome", "outcome", 11),
            ("Size", "size", 10),
            ("Reason (the highlighted one in full below)", "reason", 30),
        ):
            column = r.add_column(title, key=key, width=width)
        self._reason_column = column  # the last one
        self.query_one("#session-box").border_title = "Session"
        self.query_one("#approvals-detail").border_title = "Request"
        self.query_one("#session-progress-row").display = False
        self.watch(self.app, "who", self._who_changed, init=False)
        self._tick = self.set_interval(TICK, self._on_tick)
        self.reload()

    @property
    def pane(self) -> str:
        return self.query_one(TabbedContent).active

    def show_pane(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "deny"):
            return self.pane == "approvals"
        if action == "run":
            return self.pane == "sessions" and self.running is None
        if action == "stop":
            return self.pane == "sessions" and self.running is not None
        if action == "new_request":
            return self.pane == "sessions"
        return True

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        table = "#approvals-table" if event.pane.id == "approvals" else "#sessions-table"
        self.query_one(table).focus()

    # ------------------------------------------------------------ data

    def _backup(self, bid: str) -> Backup | None:
        if bid not in self._backups:
            try:
                self._backups[bid] = self.service.backup(bid)
            except CustodianError:
                self._backups[bid] = None
        return self._backups[bid]

    def _backups_of(self, r: Request) -> dict[str, Backup | None]:
        return {bid: self._backup(bid) for bid in r.backups}

    def _now(self) -> float:
        return float(self.service.clock())

    def action_reload(self) -> None:
        if self.running:
            self.notify("A restore is running; the lists refresh when it ends.", timeout=3)
            return
        self.reload()

    def reload(self, select: str | None = None) -> None:
        """Read the requests again (not while a run goes on: its messages tell the story)."""
        if self.running:
            return
        me = _me(self.app)
        try:
            reqs = self.service.requests()
            waiting = (
                {r.id for r in self.service.inbox(me.name)}
                if me is not None and me.has("custodian")
                else set()
            )
        except CustodianError as e:
            self.notify(
                sentence(str(e)),
                title="Could not read the requests",
                severity="error",
                markup=False,
            )
            return
        self.requests, self.waiting = reqs, waiting
        self._backups = {}
        self._fill_approvals(select)
        self._fill_sessions(select)

    def _on_tick(self) -> None:
        if self.running is None and self.app.screen is self:
            self.reload()
        else:
            self._show_session()

    def _who_changed(self, who: str) -> None:
        if self.running:
            return
        self.shown = None  # someone else: start from the top (what they may run comes first)
        self.run_for = None
        self.reload()
        me = _me(self.app)
        if me is None:
            return
        if me.has("custodian") and self.waiting:
            self.show_pane("approvals")
        elif not me.has("custodian"):
            self.show_pane("sessions")

    # ------------------------------------------------------------ approvals pane

    def _note(self, r: Request, me: Actor | None) -> str:
        if me is None:
            return "sign in to decide"
        if not me.has("custodian"):
            return ""
        if r.id in self.waiting:
            return "waiting for you"
        if r.requester == me.name:
            return "your own request"
        mine = [d for d in r.decisions if d.custodian == me.name]
        return f"you {DECIDED.get(mine[0].decision, mine[0].decision)}" if mine else ""

    def _fill_approvals(self, select: str | None) -> None:
        table = self.query_one("#approvals-table", DataTable)
        current = select or self._selected_id(table, self.approval_rows)
        me = _me(self.app)
        rows = [r for r in self.requests if r.state == "open"]
        rows.sort(key=lambda r: (r.id not in self.waiting, r.created_at))
        self.approval_rows = rows
        table.clear()
        for r in rows:
            waiting = r.id in self.waiting
            table.add_row(
                Text("●", style="bold green") if waiting else Text(""),
                Text(short_id(r.id)),
                Text(safe(r.requester)),
                Text(when(r.created_at)),
                Text(when(r.expires_at)),
                Text(what(r), style="" if r.kind == "restore" else "bold red"),
                Text(f"{len(r.approvals)} of {r.quorum}", justify="right"),
                Text(self._note(r, me), style="bold" if waiting else "dim"),
                key=r.id,
            )
        self._restore_cursor(table, rows, current)
        count = len(self.waiting) if me is not None and me.has("custodian") else len(rows)
        self.query_one(TabbedContent).get_tab("approvals").label = (  # waiting for you
            f"Approvals ({count})" if count else "Approvals"
        )
        hint = self.query_one("#approvals-hint", Static)
        if me is None:
            hint.update(Text("Open requests. Sign in (F9) as a custodian to approve or deny."))
        elif not me.has("custodian"):
            hint.update(
                Text(f"Open requests. Only custodians decide; {me.name} can follow them here.")
            )
        elif self.waiting:
            n = len(self.waiting)
            hint.update(
                Text.assemble(
                    ("● ", "bold green"),
                    f"{n} request{'s' if n != 1 else ''} waiting for you. Read the whole request "
                    "below; Ctrl+A approves, Ctrl+D denies (each asks a fresh code).",
                )
            )
        else:
            hint.update(Text("Nothing is waiting for your decision."))
        self._show_request()

    @staticmethod
    def _selected_id(table: DataTable[Any], rows: list[Request]) -> str | None:
        if rows and 0 <= table.cursor_row < len(rows):
            return rows[table.cursor_row].id
        return None

    @staticmethod
    def _restore_cursor(table: DataTable[Any], rows: list[Request], rid: str | None) -> None:
        ids = [r.id for r in rows]
        if rid in ids:
            table.move_cursor(row=ids.index(rid))

    @property
    def selected_approval(self) -> Request | None:
        table = self.query_one("#approvals-table", DataTable)
        rows = self.approval_rows
        return rows[table.cursor_row] if rows and 0 <= table.cursor_row < len(rows) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "approvals-table":
            self._show_request()
        elif event.data_table.id == "sessions-table":
            if self.running is None:
                self.shown = self._selected_id(event.data_table, self.session_rows)
            self._show_session()
        elif event.data_table.id == "results-table":
            self._show_reason()

    def _show_request(self) -> None:
        detail = self.query_one("#approvals-request", Static)
        r = self.selected_approval
        if r is None:
            detail.update(Text("No restore request is open.", style="dim"))
            return
        detail.update(describe_request(r, self._backups_of(r), self._now()))

    # ------------------------------------------------------------ sessions pane

    def _fill_sessions(self, select: str | None) -> None:
        table = self.query_one("#sessions-table", DataTable)
        current = select or self.shown
        me = _me(self.app)
        name = me.name if me is not None else None
        now = self._now()
        restores = [r for r in self.requests if r.kind == "restore"]  # others have no session
        rows = sorted(restores, key=lambda r: r.created_at, reverse=True)
        rows.sort(key=lambda r: not runnable_by(r, name))
        if current is None:
            current = next((r.id for r in rows if runnable_by(r, name)), None)
        self.session_rows = rows
        table.clear()
        for r in rows:
            ready = runnable_by(r, name)
            table.add_row(
                Text("▶", style="bold green") if ready else Text(""),
                Text(short_id(r.id)),
                Text(safe(r.requester)),
                Text(when(r.created_at)),
                Text(r.state, style=STATE_STYLE.get(r.state, "")),
                Text(str(len(r.backups)), justify="right"),
                Text(session_note(r, now)),
                Text(results_note(r)),
                key=r.id,
            )
        self._restore_cursor(table, rows, current)
        self.shown = self._selected_id(table, rows)
        ready = sum(1 for r in rows if runnable_by(r, name))
        self.query_one(TabbedContent).get_tab("sessions").label = (
            f"Sessions ({ready} ready)" if ready else "Sessions"
        )
        self._show_session()

    def _shown_request(self) -> Request | None:
        return next((r for r in self.requests if r.id == self.shown), None)

    def _show_session(self) -> None:
        r = self._shown_request()
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
        me = _me(self.app)
        now = self._now()
        n = len(r.backups)
        size = sum(b.size for b in self._backups_of(r).values() if b is not None and b.size >= 0)
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
            left = time_left(r.session.expires_at, self._now())
            return (
                f"Ctrl+R runs the session ({left}): each backup is decrypted into the target and "
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
            b = self._backup(bid)
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
                Text(
                    fit(safe(b.label), RESULT_LABEL) if b else "not in the catalog",
                    style="" if b else "red",
                ),
                outcome,
                Text(size, justify="right"),
                Text(fit(safe(reason), self._reason_width) if reason else ""),
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

    def on_resize(self) -> None:
        """The Reason column takes the width the others leave (the full text is shown below)."""
        table = self.query_one("#results-table", DataTable)
        reason = table.columns.get(self._reason_column)
        if reason is None:
            return
        others = sum(c.width + 2 for key, c in table.columns.items() if key != self._reason_column)
        reason.auto_width = False
        reason.width = self._reason_width = max(20, self.size.width - BOX_CHROME - others - 2)
        table.refresh()

    # ------------------------------------------------------------ ceremonies

    def _ceremony_ok(self) -> bool:
        blocked = ceremony_blocked(self.app)
        if blocked:
            self.notify(blocked, title="Refused", severity="error", markup=False)
            return False
        return True

    @work(exclusive=True, group="ceremony")
    async def action_approve(self) -> None:
        await self._decide("approve")

    @work(exclusive=True, group="ceremony")
    async def action_deny(self) -> None:
        await self._decide("deny")

    async def _decide(self, decision: str) -> None:
        r = self.selected_approval
        if r is None:
            self.notify("No open request is selected.", severity="warning")
            return
        if not self._ceremony_ok():
            return
        by = _acting(self.app, "custodian", f"{decision} restores")
        if by is None:
            return
        dialog = DecisionDialog(self.service, r, self._backups_of(r), decision, by, self._now())
        result = await self.app.push_screen_wait(dialog)
        self.reload(select=r.id)  # what the catalog says now, decided or not
        if not isinstance(result, Request):
            return
        if decision == "deny":
            self.notify(
                f"You denied request {short_id(r.id)}; denial is final."
                + (f" {result.requester} sees it under Sessions." if r.kind == "restore" else ""),
                markup=False,
            )
        elif r.kind != "restore" and result.state != "open":
            self.notify(
                f"Request {short_id(r.id)} ({what(r)}): {state_line(result, self._now())}.",
                title="Quorum reached",
                markup=False,
            )
        elif result.state == "approved" and result.session is not None:
            self.notify(
                f"Request {short_id(r.id)} is approved: a session is open until "
                f"{when(result.session.expires_at)} UTC. {result.requester} can run it now.",
                title="Quorum reached",
                markup=False,
            )
        else:
            self.notify(
                f"You approved request {short_id(r.id)}: {len(result.approvals)} of "
                f"{result.quorum} approvals.",
                markup=False,
            )

    @work(exclusive=True, group="ceremony")
    async def action_new_request(self) -> None:
        if self.running:
            self.notify("A restore is running; ask for another when it ends.", severity="warning")
            return
        by = _acting(self.app, None, "request a restore")
        if by is None or not _may_request(self.app, by):
            return
        result = await self.app.push_screen_wait(
            RequestScreen(self.service, self.marks, self.draft)
        )
        if not isinstance(result, Request):
            return
        self.marks.clear()
        self.draft.update(reason="", target=self.draft.get("target", ""))
        self.show_pane("sessions")
        self.reload(select=result.id)
        self.notify(
            f"Request {short_id(result.id)} is recorded. {result.quorum} custodians must approve "
            f"it; it expires {when(result.expires_at)} UTC.",
            markup=False,
        )

    @work(exclusive=True, group="ceremony")
    async def action_cancel_request(self) -> None:
        r = self.selected_approval if self.pane == "approvals" else self._shown_request()
        if r is None:
            self.notify("No request is selected.", severity="warning")
            return
        if r.final:
            self.notify(
                f"Request {short_id(r.id)} is already {r.state} (final); nothing was done.",
                severity="warning",
                markup=False,
            )
            return
        if self.running == r.id:
            self.notify(
                f"Not now: {getattr(self.app, 'busy', '') or 'its session is running'}. Stop it "
                "(Esc), then cancel the request.",
                severity="warning",
                markup=False,
            )
            return
        by = _acting(self.app, None, "cancel a request")
        if by is None:
            return
        if by.name != r.requester and not by.has("custodian"):
            self.notify(
                f"Only {r.requester}, who asked, or a custodian may cancel request "
                f"{short_id(r.id)}; nothing was done.",
                severity="warning",
                markup=False,
            )
            return
        cancelled: list[Request] = []

        def cancel(reason: str) -> None:  # in the dialog's thread; a refusal stays there
            cancelled.append(self.service.cancel(r.id, by=by, reason=reason))

        reason = await self.app.push_screen_wait(
            CancelDialog(r, self._backups_of(r), by, self._now(), cancel)
        )
        if reason is None or not cancelled:
            self.reload(select=r.id)  # what the catalog says now
            return
        result = cancelled[0]
        if self.running:  # another request's run goes on: no re-read, just this one
            self.requests = [result if x.id == result.id else x for x in self.requests]
            self.waiting.discard(result.id)
            self._fill_approvals(None)
            self._fill_sessions(None)
        else:
            self.reload(select=r.id)
        closed = r.session is not None and r.session.state == "open"
        self.notify(
            f"Request {short_id(r.id)} is cancelled (final)"
            + (
                f"; its session {short_id(r.session.id)} is closed."
                if closed and r.session
                else "."
            )
            + (f" {r.requester} sees it under Sessions." if by.name != r.requester else ""),
            title="Request cancelled",
            markup=False,
        )

    # ------------------------------------------------------------ the session run

    def action_run(self) -> None:
        r = self._shown_request()
        if r is None or self.running:
            return
        if not self._ceremony_ok():
            return
        by = _acting(self.app, None, "run a restore")
        if by is None:
            return
        if by.name != r.requester:
            self.notify(
                f"Only {r.requester}, who asked for request {short_id(r.id)}, may run it.",
                severity="warning",
                markup=False,
            )
            return
        if not runnable_by(r, by.name):
            self.notify(
                f"Request {short_id(r.id)} has no open session: {state_line(r, self._now())}.",
                severity="warning",
                markup=False,
            )
            return
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
        self.refresh_bindings()
        self._show_session()
        self._run(r.id, by)

    @work(thread=True, exclusive=True, exit_on_error=False, group="restore-run")
    def _run(self, rid: str, by: Actor) -> None:
        worker = get_current_worker()
        report: RestoreReport | None = None
        error = "the run stopped on an unexpected error"
        try:
            report = self.service.run_restore(
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

    def action_stop(self) -> None:
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
            r = self._shown_request()
            n = len(r.backups) if r is not None else done
            self._status(f"Restoring: {done} of {n} done, {human_size(message.done)} written")

    def _status(self, text: str | None = None, style: str | None = None) -> None:
        """Set (when given) and show the line beside the progress bar."""
        if text is not None:
            self.run_status, self.run_style = text, style or ""
        line = Text(safe(self.run_status), style=self.run_style)
        self.query_one("#session-status", Static).update(line)

    def on_run_result(self, message: RunResult) -> None:
        self.run_results[message.result.backup] = message.result
        self._show_session()

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
                    f"Stopped: {ok} restored, {failed} failed. The session stays open; "
                    "Ctrl+R runs the rest."
                )
            else:
                total = bar.total or 1
                bar.update(total=total, progress=total)
                self.run_style = "bold red" if failed else "green"
                self.run_status = (
                    f"Done: {ok} restored, {failed} failed"
                    + (f", {len(report.skipped)} restored earlier" if report.skipped else "")
                    + f". The session is {report.session_state}."
                )
            self.notify(
                sentence(safe(report.summary())),
                title="Restore finished" if not report.cancelled else "Restore stopped",
                severity="warning" if failed else "information",
                markup=False,
                timeout=10,
            )
        self.refresh_bindings()
        self.run_results = {}  # from here on the catalog's record is what is shown
        self.reload(select=message.request)
        r = self._shown_request()
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


STATE_STYLE = {
    "open": "yellow",
    "approved": "bold green",
    "done": "",
    "denied": "red",
    "expired": "dim",
    "cancelled": "dim",
}


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
        yield Footer(compact=True)

    @property
    def table(self) -> MarkingBackupTable:
        return self.query_one(MarkingBackupTable)

    def on_mount(self) -> None:
        self.query_one("#request-marked").border_title = "Marked for restore"
        self.reload()
        self.table.focus()

    def reload(self) -> None:
        try:
            self._current_versions = {k.name: k.current_version for k in self.service.keks()}
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
        text.append("  ·  space or enter marks a backup; Ctrl+R asks for their restore")
        self.query_one("#request-counts", Static).update(text)
        marked = self.query_one("#request-marked", Static)
        if not n:
            marked.update(Text("Nothing marked yet.", style="dim"))
            return
        backups = list(self.marks.values())
        size = sum(b.size for b in backups if b.size >= 0)
        lines = [
            f"● {short_id(b.id)}  {fit(safe(b.label), 48)}  {human_size(b.size):>10}  "
            f"{safe(b.kek)} v{b.kek_version}"
            for b in backups[:SHOWN_MARKS]
        ]
        if n > SHOWN_MARKS:
            lines.append(f"  and {n - SHOWN_MARKS} more")
        marked.update(Text("\n".join(lines)))
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
        by = _acting(self.app, None, "request a restore")
        if by is None or not _may_request(self.app, by):
            return
        result = await self.app.push_screen_wait(
            RequestDialog(self.service, by, list(self.marks.values()), self.draft)
        )
        if isinstance(result, Request):
            self.dismiss(result)
