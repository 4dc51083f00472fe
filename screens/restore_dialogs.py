"""The dialogs of dual control: ask for a restore, approve, deny or cancel one.

Each dialog stands on :class:`screens.dialogs.Dialog`, calls the service
itself (in a thread, :meth:`~screens.dialogs.Dialog.run_step`) and stays open on
a refusal, showing the service's own words as a sentence, so that what was
typed is not lost and the person can correct it. The TOTP code is read once
from its field, which is cleared at that moment: no code stays in any widget
after a submit. Everything shown from a request (reason, target, labels,
names) is plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, TypeVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Static

from custodian.approvals import Request
from custodian.catalog import Backup
from custodian.people import Actor
from custodian.service import Service
from screens.dialogs import CodeInput, Dialog, take_code
from screens.format import human_size, safe, short_id
from screens.restore_view import DECIDED, describe_request, sentence

SHOWN_BACKUPS = 8  # the request dialog lists this many marked backups, then "and N more"

T = TypeVar("T")


class _RestoreDialog(Dialog[T]):
    """The restore dialogs' own ways: 100 columns, the core's words as a sentence."""

    WIDE = True

    def error_text(self, message: str) -> Text:
        return Text(sentence(safe(message)))


class RequestDialog(_RestoreDialog[Request | None]):
    """Reason and target for the marked backups; returns the new :class:`Request`.

    ``draft`` holds the reason and target as typed; it is updated as they are
    typed, so that cancelling and coming back keeps them.
    """

    FRAME_ID = "request-dialog"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"request-reason": "#request-target"}

    def __init__(
        self, service: Service, by: Actor, backups: list[Backup], draft: dict[str, str]
    ) -> None:
        super().__init__()
        self.service = service
        self.by = by
        self.backups = backups
        self.draft = draft

    def heading(self) -> str:
        return "Request a restore"

    def body(self) -> ComposeResult:
        policy = self.service.config.policy
        n = len(self.backups)
        size = sum(b.size for b in self.backups if b.size >= 0)
        yield Static(
            Text(
                f"{n} backup{'s' if n != 1 else ''}, {human_size(size)} in all. "
                f"{policy.approval_quorum} custodians other than {self.by.name} approve it, "
                "each with a fresh code; then you run it within "
                f"{policy.session_minutes} minutes."
            ),
            id="request-summary",
        )
        yield Static(self._listing(), id="request-backups", classes="muted")

    def fields(self) -> ComposeResult:
        yield Label(
            "Reason (custodians decide on it; it goes into the audit log)", classes="field-name"
        )
        yield Input(
            value=self.draft.get("reason", ""),
            placeholder="e.g. INC-2041: orders table lost, restore last night's dump",
            id="request-reason",
            max_length=2000,
        )
        yield Label(
            "Target directory (it must exist, outside the home; one file per backup)",
            classes="field-name",
        )
        yield Input(
            value=self.draft.get("target", ""),
            placeholder="e.g. /srv/restore/INC-2041",
            id="request-target",
            max_length=4096,
        )

    def button_row(self) -> Horizontal:
        return self.buttons("Request restore", "request-ok", cancel_id="request-cancel")

    def _listing(self) -> Table:
        """The marked backups, one row each; a label too long for the terminal ends in '…'."""
        t = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False, expand=True)
        t.add_column(no_wrap=True)
        t.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        t.add_column(justify="right", no_wrap=True)
        t.add_column(no_wrap=True)
        for b in self.backups[:SHOWN_BACKUPS]:
            t.add_row(
                short_id(b.id),
                Text(safe(b.label)),
                human_size(b.size),
                f"{safe(b.kek)} v{b.kek_version}",
            )
        if len(self.backups) > SHOWN_BACKUPS:
            t.add_row("", Text(f"and {len(self.backups) - SHOWN_BACKUPS:,} more"), "", "")
        return t

    def on_mount(self) -> None:
        self.query_one("#request-reason").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "request-reason":
            self.draft["reason"] = event.value
        elif event.input.id == "request-target":
            self.draft["target"] = event.value

    def submit(self) -> None:
        reason = self.query_one("#request-reason", Input).value.strip()
        target = self.query_one("#request-target", Input).value.strip()
        if not reason:
            self.error("Say why you need the restore: custodians decide on the reason.")
            self.query_one("#request-reason").focus()
            return
        if not target:
            self.error("Type the directory to restore into.")
            self.query_one("#request-target").focus()
            return
        ids, by = [b.id for b in self.backups], self.by

        def request() -> Request:
            return self.service.restores.request(ids, reason, target, by=by)

        self.run_step(
            request,
            working="Recording the request…",
            description="request a restore",
            refocus="#request-target",
        )


class DecisionDialog(_RestoreDialog[Request | None]):
    """The whole request, then a fresh TOTP code (and, to deny, a reason).

    Returns the request as it stands after the decision. When the screen
    already knows the decision would be refused (the custodian asked for it,
    or decided it already), the dialog says so and asks for no code.
    """

    FRAME_ID = "decide"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"deny-reason": "#decide-code"}

    def __init__(
        self,
        service: Service,
        request: Request,
        backups: Mapping[str, Backup | None],
        decision: str,
        by: Actor,
        now: float,
    ) -> None:
        super().__init__()
        self.service = service
        self.request = request
        self.backups = backups
        self.decision = decision
        self.by = by
        self.now = now

    @property
    def approving(self) -> bool:
        return self.decision == "approve"

    def known_refusal(self) -> str | None:
        """Why the core will refuse this decision, when the request already shows it."""
        r, name = self.request, self.by.name
        verb = "approve" if self.approving else "deny"
        if r.requester == name:
            return (
                f"You asked for request {short_id(r.id)}, so you cannot {verb} it: "
                f"{r.quorum} other custodians decide. Nothing was done."
            )
        mine = [d for d in r.decisions if d.custodian == name]
        if mine:
            return (
                f"You already {DECIDED.get(mine[0].decision, mine[0].decision)} request "
                f"{short_id(r.id)}; a quorum needs "
                "distinct custodians. Nothing was done."
            )
        return None

    @property
    def verb(self) -> str:
        return "Approve" if self.approving else "Deny"

    def heading(self) -> str:
        kind = "restore" if self.request.kind == "restore" else "destruction"
        return f"{self.verb} {kind} request {short_id(self.request.id)}"

    def body(self) -> ComposeResult:
        yield Static(describe_request(self.request, self.backups, self.now), id="decide-request")

    def fields(self) -> ComposeResult:
        if not self.approving:
            yield Label(
                "Reason for the denial (final; it goes into the audit log)",
                classes="field-name",
            )
            yield Input(placeholder="e.g. no ticket for this", id="deny-reason", max_length=500)
        yield Label(
            f"{self.by.name}: the code your authenticator shows now (each code counts once)",
            classes="field-name",
            markup=False,
        )
        yield CodeInput(id="decide-code")

    def button_row(self) -> Horizontal:
        variant = "success" if self.approving else "error"
        return self.buttons(self.verb, "decide-ok", variant=variant, cancel_id="decide-cancel")

    def on_mount(self) -> None:
        refusal = self.known_refusal()
        if refusal:
            self.error(refusal)
            for field in self.query(Input):
                field.disabled = True
            self.query_one("#decide-ok", Button).disabled = True
            self.query_one("#decide-cancel").focus()
            return
        self.query_one("#decide-code" if self.approving else "#deny-reason").focus()

    def submit(self) -> None:
        if self.known_refusal():
            return
        field = self.query_one("#decide-code", CodeInput)
        code = take_code(field)  # the code leaves the widget the moment it is read
        reason = ""
        if not self.approving:
            reason = self.query_one("#deny-reason", Input).value.strip()
            if not reason:
                self.error("Say why you deny it, for the requester and the audit log.")
                self.query_one("#deny-reason").focus()
                return
        if not self.code_ok(code):
            field.focus()
            return
        rid, by, approving = self.request.id, self.by, self.approving

        def decide() -> Request:
            if approving:
                return self.service.approvals.approve(rid, code, by=by)
            return self.service.approvals.deny(rid, code, reason, by=by)

        # a fixed description: Textual would otherwise put the arguments (the code) in
        # the worker's description, which its log writes at every state change
        self.run_step(
            decide,
            working="Checking the code…",
            description="decide a request",
            refocus="#decide-code",
        )


class CancelDialog(_RestoreDialog[str | None]):
    """The whole request, a warning that cancelling is final, and an optional reason.

    ``cancel(reason)`` is the screen's own call to the service (the screen
    decides who cancels); it runs in a thread when the person confirms. A
    refusal (:class:`CustodianError`) is shown here and the dialog stays open,
    the reason kept. Returns the reason given ("" for none) once the request
    is cancelled, or None when the person keeps it (Esc, "Keep it").
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "keep", "Keep it")]
    FRAME_ID = "cancel-dialog"

    def __init__(
        self,
        request: Request,
        backups: Mapping[str, Backup | None],
        by: Actor,
        now: float,
        cancel: Callable[[str], object],
    ) -> None:
        super().__init__()
        self.request = request
        self.backups = backups
        self.by = by
        self.now = now
        self.cancel = cancel

    def warning(self) -> str:
        r = self.request
        text = (
            f"Cancelling is final: request {short_id(r.id)} can never be approved or run again; "
            "a new request starts from the beginning."
        )
        if r.session is not None and r.session.state == "open":
            text += f" Its open session {short_id(r.session.id)} closes at once."
        return text

    def heading(self) -> str:
        kind = "restore" if self.request.kind == "restore" else "destruction"
        return f"Cancel {kind} request {short_id(self.request.id)}"

    def body(self) -> ComposeResult:
        yield Static(describe_request(self.request, self.backups, self.now), id="cancel-request")

    def fields(self) -> ComposeResult:
        yield Static(Text(self.warning(), style="bold red"), id="cancel-warning")
        yield Label(
            f"Reason (optional; it goes into the audit log as {self.by.name}'s)",
            classes="field-name",
            markup=False,
        )
        yield Input(placeholder="e.g. restored by other means", id="cancel-reason", max_length=500)

    def button_row(self) -> Horizontal:
        return self.buttons(
            "Cancel request",
            "cancel-ok",
            variant="error",
            cancel="Keep it",
            cancel_id="cancel-keep",
        )

    def on_mount(self) -> None:
        self.query_one("#cancel-reason").focus()

    def action_keep(self) -> None:  # escape: "cancel" would read as cancelling the request
        self.action_cancel()

    def submit(self) -> None:
        reason = self.query_one("#cancel-reason", Input).value.strip()

        def cancel() -> str:
            self.cancel(reason)
            return reason

        self.run_step(
            cancel, working="Cancelling…", description="cancel a request", refocus="#cancel-reason"
        )


class RunConfirm(_RestoreDialog[bool | None]):
    """Before a session's run writes plaintext: which files, where. Returns True to run.

    The run decrypts every backup of the request into its target, as plaintext files;
    this says so, with each file's name, before anything is written (Ctrl+E asked for
    it; Esc or "Not now" writes nothing)."""

    FRAME_ID = "run-confirm"

    def __init__(self, request: Request, backups: Mapping[str, Backup | None], now: float) -> None:
        super().__init__()
        self.request = request
        self.backups = backups
        self.now = now

    def heading(self) -> str:
        return f"Write the plaintext of request {short_id(self.request.id)}?"

    def body(self) -> ComposeResult:
        r = self.request
        done = {x.backup for x in r.results if x.outcome == "ok"}
        todo = [b for b in r.backups if b not in done]
        files = r.payload.get("files", {})
        size = sum(
            b.size for b in (self.backups.get(x) for x in todo) if b is not None and b.size >= 0
        )
        yield Static(
            Text.assemble(
                (
                    f"{len(todo):,} backup{'s' if len(todo) != 1 else ''}, {human_size(size)}, ",
                    "bold",
                ),
                "are decrypted into ",
                (safe(r.target), "bold"),
                " as plaintext files readable by this account. Each file takes its name only "
                "once it is complete and checked; one that fails leaves nothing behind."
                + (f" {len(done):,} restored earlier are skipped." if done else ""),
            ),
            id="run-summary",
        )
        t = Table(box=None, show_header=True, padding=(0, 1), pad_edge=False, expand=True)
        t.add_column(Text("Backup", style="dim"), no_wrap=True)
        t.add_column(Text("File", style="dim"), ratio=1, no_wrap=True, overflow="ellipsis")
        t.add_column(Text("Size", style="dim"), justify="right", no_wrap=True)
        for bid in todo:
            b = self.backups.get(bid)
            t.add_row(
                short_id(bid), Text(safe(str(files.get(bid, bid)))), human_size(b.size) if b else ""
            )
        yield Static(t, id="run-files")

    def button_row(self) -> Horizontal:
        return self.buttons(
            "Write plaintext", "run-ok", variant="warning", cancel="Not now", cancel_id="run-cancel"
        )

    def on_mount(self) -> None:
        self.query_one("#run-cancel").focus()  # Enter alone does not write plaintext

    def submit(self) -> None:
        self.dismiss(True)
