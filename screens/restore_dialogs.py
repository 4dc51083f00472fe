"""The dialogs of dual control: ask for a restore, approve, deny or cancel one.

Each dialog calls the service itself (in a thread) and stays open on a
refusal, showing the service's own words, so that what was typed is not lost
and the person can correct it. The TOTP code is read once from its field,
which is cleared at that moment: no code stays in any widget after a submit.
Everything shown from a request (reason, target, labels, names) is plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from custodian.approvals import Request
from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.format import fit, human_size, safe, short_id
from screens.restore_view import describe_request, sentence
from screens.signin import CodeInput

SHOWN_BACKUPS = 8  # the request dialog lists this many marked backups, then "and N more"


class _Dialog(ModalScreen[Request | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def error(self, message: str) -> None:
        self.query_one(".error", Static).update(Text(sentence(safe(message))))

    def action_cancel(self) -> None:
        self.dismiss(None)


class RequestDialog(_Dialog):
    """Reason and target for the marked backups; returns the new :class:`Request`.

    ``draft`` holds the reason and target as typed; it is updated as they are
    typed, so that cancelling and coming back keeps them.
    """

    def __init__(
        self, service: Service, by: Actor, backups: list[Backup], draft: dict[str, str]
    ) -> None:
        super().__init__()
        self.service = service
        self.by = by
        self.backups = backups
        self.draft = draft

    def compose(self) -> ComposeResult:
        policy = self.service.config.policy
        n = len(self.backups)
        size = sum(b.size for b in self.backups if b.size >= 0)
        with Vertical(classes="dialog wide", id="request-dialog"):
            yield Label("Request a restore", classes="dialog-title")
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
            yield Static("", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Request restore", variant="primary", id="request-ok")
                yield Button("Cancel", id="request-cancel")

    def _listing(self) -> Text:
        lines = [
            f"  {short_id(b.id)}  {fit(safe(b.label), 40)}  {human_size(b.size):>10}  "
            f"{safe(b.kek)} v{b.kek_version}"
            for b in self.backups[:SHOWN_BACKUPS]
        ]
        if len(self.backups) > SHOWN_BACKUPS:
            lines.append(f"  and {len(self.backups) - SHOWN_BACKUPS} more")
        return Text("\n".join(lines))

    def on_mount(self) -> None:
        self.query_one("#request-reason").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "request-reason":
            self.draft["reason"] = event.value
        elif event.input.id == "request-target":
            self.draft["target"] = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "request-reason":
            self.query_one("#request-target").focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "request-cancel":
            self.action_cancel()
        else:
            self.submit()

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
        self.error("Recording the request…")
        self.query_one("#request-ok", Button).disabled = True
        self._request([b.id for b in self.backups], reason, target)

    @work(thread=True, exclusive=True, group="request")
    def _request(self, ids: list[str], reason: str, target: str) -> None:
        try:
            r = self.service.request_restore(ids, reason, target, by=self.by)
        except CustodianError as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self.dismiss, r)

    def _failed(self, message: str) -> None:
        self.error(message)
        self.query_one("#request-ok", Button).disabled = False
        self.query_one("#request-target").focus()


class DecisionDialog(_Dialog):
    """The whole request, then a fresh TOTP code (and, to deny, a reason).

    Returns the request as it stands after the decision. When the screen
    already knows the decision would be refused (the custodian asked for it,
    or decided it already), the dialog says so and asks for no code.
    """

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
                f"You already {mine[0].decision}d request {short_id(r.id)}; a quorum needs "
                "distinct custodians. Nothing was done."
            )
        return None

    def compose(self) -> ComposeResult:
        verb = "Approve" if self.approving else "Deny"
        with Vertical(classes="dialog wide", id="decide"):
            kind = "restore" if self.request.kind == "restore" else "destruction"
            yield Label(
                f"{verb} {kind} request {short_id(self.request.id)}",
                classes="dialog-title",
                markup=False,
            )
            with VerticalScroll(id="decide-request"):
                yield Static(describe_request(self.request, self.backups, self.now))
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
            yield Static("", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(verb, variant="success" if self.approving else "error", id="decide-ok")
                yield Button("Cancel", id="decide-cancel")

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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "deny-reason":
            self.query_one("#decide-code").focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "decide-cancel":
            self.action_cancel()
        else:
            self.submit()

    def submit(self) -> None:
        if self.known_refusal() or self.query_one("#decide-ok", Button).disabled:
            return
        field = self.query_one("#decide-code", CodeInput)
        code = field.value
        field.value = ""  # the code leaves the widget the moment it is read, whatever follows
        reason = ""
        if not self.approving:
            reason = self.query_one("#deny-reason", Input).value.strip()
            if not reason:
                self.error("Say why you deny it, for the requester and the audit log.")
                self.query_one("#deny-reason").focus()
                return
        if len(code) != 6:
            self.error("Type the 6-digit code your authenticator shows now.")
            field.focus()
            return
        self.error("Checking the code…")
        self.query_one("#decide-ok", Button).disabled = True
        self._decide(code, reason)

    # a fixed description: Textual would otherwise put the arguments (the code) in
    # the worker's description, which its log writes at every state change
    @work(thread=True, exclusive=True, group="decide", description="decide a request")
    def _decide(self, code: str, reason: str) -> None:
        try:
            if self.approving:
                r = self.service.approve(self.request.id, code, by=self.by)
            else:
                r = self.service.deny(self.request.id, code, reason, by=self.by)
        except CustodianError as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self.dismiss, r)

    def _failed(self, message: str) -> None:
        self.error(message)
        self.query_one("#decide-ok", Button).disabled = False
        self.query_one("#decide-code").focus()


class CancelDialog(ModalScreen[str | None]):
    """The whole request, a warning that cancelling is final, and an optional reason.

    ``cancel(reason)`` is the screen's own call to the service (the screen
    decides who cancels); it runs in a thread when the person confirms. A
    refusal (:class:`CustodianError`) is shown here and the dialog stays open,
    the reason kept. Returns the reason given ("" for none) once the request
    is cancelled, or None when the person keeps it (Esc, "Keep it").
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "keep", "Keep it")]

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

    def compose(self) -> ComposeResult:
        r = self.request
        kind = "restore" if r.kind == "restore" else "destruction"
        with Vertical(classes="dialog wide", id="cancel-dialog"):
            yield Label(
                f"Cancel {kind} request {short_id(r.id)}", classes="dialog-title", markup=False
            )
            with VerticalScroll(id="cancel-request"):
                yield Static(describe_request(r, self.backups, self.now))
            yield Static(Text(self.warning(), style="bold red"), id="cancel-warning")
            yield Label(
                f"Reason (optional; it goes into the audit log as {self.by.name}'s)",
                classes="field-name",
                markup=False,
            )
            yield Input(
                placeholder="e.g. restored by other means", id="cancel-reason", max_length=500
            )
            yield Static("", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel request", variant="error", id="cancel-ok")
                yield Button("Keep it", id="cancel-keep")

    def on_mount(self) -> None:
        self.query_one("#cancel-reason").focus()

    def error(self, message: str) -> None:
        self.query_one(".error", Static).update(Text(sentence(safe(message))))

    def action_keep(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel-keep":
            self.action_keep()
        else:
            self.submit()

    def submit(self) -> None:
        ok = self.query_one("#cancel-ok", Button)
        if ok.disabled:
            return
        self.error("Cancelling…")
        ok.disabled = True
        self._cancel(self.query_one("#cancel-reason", Input).value.strip())

    @work(thread=True, exclusive=True, group="cancel")
    def _cancel(self, reason: str) -> None:
        try:
            self.cancel(reason)
        except CustodianError as e:
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self.dismiss, reason)

    def _failed(self, message: str) -> None:
        self.error(message)
        self.query_one("#cancel-ok", Button).disabled = False
        self.query_one("#cancel-reason").focus()
