"""Restores (F6): the approvals inbox, restore sessions, and asking for a restore.

Dual control in the TUI (DESIGN.md, "Restore approvals"), on one screen with
two panes:

- **Approvals**: every open request, those waiting for the signed-in
  custodian first (``Service.inbox``), and the whole of the highlighted one:
  requester, times, reason, target, every backup with its label, size and KEK
  version, the decisions so far and the quorum. Ctrl+A approves and Ctrl+D
  denies, each in a dialog that asks a fresh TOTP code.
- **Sessions** (:mod:`screens.restore_sessions`): the requests of the home,
  newest first, with the ones the signed-in person may run now on top. Ctrl+E
  (after a dialog that says which plaintext files go where) runs the session in a
  thread worker (progress bar, one row per backup, ok or
  failed with the reason); Esc stops it between backups, which keeps the
  session open. Ctrl+N asks for a new restore on
  :class:`~screens.restore_request.RequestScreen`, the catalog table with marks.

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

import asyncio
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane

from custodian.approvals import Request
from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.chrome import AppFooter, CursorTable, SessionBar
from screens.format import safe, short_id, when
from screens.restore_dialogs import CancelDialog, DecisionDialog, RunConfirm
from screens.restore_request import RequestScreen, may_request
from screens.restore_sessions import (
    RunEnded,
    SessionsPane,
    fixed_columns,
    restore_cursor,
    selected_id,
)
from screens.restore_view import (
    DECIDED,
    acting,
    describe_request,
    runnable_by,
    sentence,
    signed_in,
    state_line,
    what,
)
from screens.secure import ceremony_blocked

TICK = 30.0  # seconds between refreshes of times left (and of the lists, when idle)


class RestoresScreen(Screen[None]):
    """Approvals inbox and restore sessions (F6)."""

    TITLE = "custodian"
    SUB_TITLE = "Restores"

    BINDINGS: ClassVar[list[BindingType]] = [
        # F6 again, on this screen: the other pane (the tabs are not reached by keys)
        Binding("f6", "other_pane", "Panes", tooltip="Switch Approvals and Sessions"),
        Binding("f5", "reload", "Reload"),
        # each pane shows its own keys (check_action); plain letters are aliases
        Binding("ctrl+a", "approve", "Approve", tooltip="Approve the highlighted request"),
        Binding("ctrl+d", "deny", "Deny", tooltip="Deny the highlighted request"),
        # ctrl+e ("execute"): ctrl+r reverses the order on the Backups screen
        Binding("ctrl+e", "run", "Run", tooltip="Run the highlighted session (asks first)"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_request", "New request", tooltip="Request a restore"),
        Binding(
            "ctrl+k", "cancel_request", "Cancel request", tooltip="Cancel the highlighted request"
        ),
        Binding("a", "approve", "Approve", show=False),
        Binding("d", "deny", "Deny", show=False),
        Binding("e", "run", "Run session", show=False),
        Binding("n", "new_request", "New request", show=False),
        Binding("c", "cancel_request", "Cancel request", show=False),
    ]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.requests: list[Request] = []
        self.waiting: set[str] = set()  # ids the signed-in custodian may decide
        self.approval_rows: list[Request] = []
        self._backups: dict[str, Backup | None] = {}
        # a new request in the making: kept while it is not submitted
        self.marks: dict[str, Backup] = {}
        self.draft: dict[str, str] = {"reason": "", "target": ""}
        self._tick: Timer | None = None
        self.sessions = SessionsPane(service, backup=self._backup, now=self._now)

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        me = signed_in(self.app)
        initial = "sessions" if me is not None and not me.has("custodian") else "approvals"
        yield Header()
        yield SessionBar()
        with TabbedContent(initial=initial, id="restores-tabs"):
            with TabPane("Approvals", id="approvals"):
                yield Static("", id="approvals-hint")
                yield CursorTable(
                    id="approvals-table",
                    cursor_type="row",
                    zebra_stripes=True,
                    hide_below={"created": 110, "expires": 90},
                    flex="note",
                )
                with VerticalScroll(id="approvals-detail", classes="box"):
                    yield Static("", id="approvals-request")
            yield self.sessions
        yield AppFooter()

    def on_mount(self) -> None:
        fixed_columns(
            self.query_one("#approvals-table", DataTable),
            ("", "mark", 1),
            ("Request", "id", 8),
            ("Asked by", "by", 12),
            ("Created (UTC)", "created", 16),
            ("Expires (UTC)", "expires", 16),
            ("Asks to", "what", 22),
            ("Approvals", "approvals", 9),
            ("For you", "note", 18),
        )
        self.sessions.set_up()
        self.query_one("#approvals-detail").border_title = "Request"
        self.watch(self.app, "who", self._who_changed, init=False)
        self._tick = self.set_interval(TICK, self._on_tick)
        self.reload()

    # what the Sessions pane holds, as the screen's own
    @property
    def running(self) -> str | None:
        """The request whose session is running now, if any."""
        return self.sessions.running

    @property
    def shown(self) -> str | None:
        return self.sessions.shown

    @property
    def session_rows(self) -> list[Request]:
        return self.sessions.rows

    @property
    def run_status(self) -> str:
        return self.sessions.run_status

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

    def action_other_pane(self) -> None:
        self.show_pane("sessions" if self.pane == "approvals" else "approvals")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        table = "#approvals-table" if event.pane.id == "approvals" else "#sessions-table"
        self.query_one(table).focus()

    # ------------------------------------------------------------ data

    def _backup(self, bid: str) -> Backup | None:
        if bid not in self._backups:
            try:
                self._backups[bid] = self.service.backups.get(bid)
            except CustodianError:
                self._backups[bid] = None
        return self._backups[bid]

    async def _holder_left(self, person: str) -> None:
        """A holder disabled (or no longer a custodian): their share still opens DEKs with
        M-1 others until a redistribution leaves them out; say which KEKs and how."""
        try:
            needs = await asyncio.to_thread(self.service.keys.holder_disabled, person)
        except CustodianError:
            return
        for need in needs:
            self.notify(need.summary(), title="Redistribution needed", severity="warning",
                        markup=False, timeout=30)  # fmt: skip

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
        me = signed_in(self.app)
        try:
            reqs = self.service.approvals.requests()
            waiting = (
                {r.id for r in self.service.approvals.inbox(me.name)}
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
        self.sessions.fill(self.requests, select)

    def _on_tick(self) -> None:
        if self.running is None and self.app.screen is self:
            self.reload()
        else:
            self.sessions.show()

    def _who_changed(self, who: str) -> None:
        if self.running:
            return
        # someone else: start from the top (what they may run comes first)
        self.sessions.shown = self.sessions.run_for = None
        self.reload()
        me = signed_in(self.app)
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
        current = select or selected_id(table, self.approval_rows)
        me = signed_in(self.app)
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
        restore_cursor(table, rows, current)
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

    @property
    def selected_approval(self) -> Request | None:
        table = self.query_one("#approvals-table", DataTable)
        rows = self.approval_rows
        return rows[table.cursor_row] if rows and 0 <= table.cursor_row < len(rows) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "approvals-table":  # the Sessions pane follows its own
            self._show_request()

    def _show_request(self) -> None:
        detail = self.query_one("#approvals-request", Static)
        r = self.selected_approval
        if r is None:
            detail.update(Text("No restore request is open.", style="dim"))
            return
        detail.update(describe_request(r, self._backups_of(r), self._now()))

    def on_resize(self) -> None:
        self.sessions.fit_reason_column(self.size.width)

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
        by = acting(self.app, "custodian", f"{decision} restores")
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
            if result.state == "done" and result.payload.get("change") in ("disable", "roles"):
                await self._holder_left(str(result.payload.get("person")))
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
        by = acting(self.app, None, "request a restore")
        if by is None or not may_request(self.app, by):
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
        r = self.selected_approval if self.pane == "approvals" else self.sessions.shown_request()
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
        by = acting(self.app, None, "cancel a request")
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
            cancelled.append(self.service.approvals.cancel(r.id, by=by, reason=reason))

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
            self.sessions.fill(self.requests, None)
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

    @work(exclusive=True, group="ceremony")
    async def action_run(self) -> None:
        r = self.sessions.shown_request()
        if r is None or self.running:
            return
        if not self._ceremony_ok():
            return
        by = acting(self.app, None, "run a restore")
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
        # what the run would refuse at the target is said now; the session stays open
        problem = await asyncio.to_thread(self.service.restores.target_problems, r)
        if problem:
            self.notify(
                sentence(problem) + "; nothing was decrypted and the session stays open.",
                title="Restore not run",
                severity="error",
                markup=False,
            )
            return
        confirmed = await self.app.push_screen_wait(RunConfirm(r, self._backups_of(r), self._now()))
        if confirmed is not True or self.running:
            return
        self.sessions.start(r, by)

    def action_stop(self) -> None:
        self.sessions.stop()

    def on_run_ended(self, message: RunEnded) -> None:
        # after the pane told how the run went: the catalog's record from here on
        self.reload(select=message.request)
        self.sessions.point_at_first_failure(message.report)
