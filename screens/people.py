"""People: who may act, with which roles, and their keys.

The table lists everyone enrolled (service identities too). A custodian
enrols people, replaces a person's signing key or TOTP secret, and disables
people; anyone may replace their own key or TOTP secret. While the home has no
custodian, the first one may be enrolled without signing in (the home's own
key signs that entry).

That is bootstrap. Once the home has a quorum KEK, the same keys (n, k, t, d,
and Ctrl+R for roles) ask instead (:class:`ChangeRequest`): a ``person.change``
request that custodians other than its subject approve in the approvals inbox
(F6). Ctrl+O completes an approved change in person (:class:`SubjectCode`,
:class:`NewPassphrase`, :class:`CompletionTotpStep`): the new secret is made and
shown only then, to its owner.

Each ceremony is a chain of dialogs (on :class:`screens.dialogs.Dialog`)
awaited in order by a small coordinator (an async worker of this screen).
Secrets cross the dialogs as :class:`~custodian.secret.SecretBytes` or inside a
:class:`~custodian.service.PendingEnrolment`, which is discarded whenever its
dialog closes, done or not. Slow steps (scrypt) run in a thread.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Header, Input, Label, Static

from custodian.catalog import Person
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import PendingEnrolment, Service
from custodian.service.changes import Completion, describe
from screens.chrome import AppFooter, CursorTable, SessionBar
from screens.dialogs import CodeInput, Dialog, Tick, take_code
from screens.format import safe, when
from screens.secure import SecretInput, ceremony_blocked, take_secret

MIN_PASSPHRASE = 12
NARROW_BELOW = 110  # terminal columns: below this the TOTP step stacks its QR code
ROLES = ("custodian", "operator", "auditor")


def _roles(p: Person) -> str:
    return ", ".join(p.roles)


def _passphrase_pair(screen: Dialog[object]) -> SecretBytes | None:
    """Read the two passphrase fields once (both cleared); None when they do not do."""
    one = screen.query_one("#pw1", SecretInput)
    two = screen.query_one("#pw2", SecretInput)
    problem = None
    if len(one.value) < MIN_PASSPHRASE:
        problem = f"The passphrase needs at least {MIN_PASSPHRASE} characters."
    elif one.value != two.value:
        problem = "The two passphrases differ; type them again."
    a = take_secret(one)
    b = take_secret(two)
    b.wipe()
    if problem:
        a.wipe()
        screen.error(problem)
        one.focus()
        return None
    return a


class EnrolForm(Dialog[object]):
    """Step 1 of an enrolment: name, roles, passphrase. Returns a PendingEnrolment."""

    FRAME_ID = "enrol"

    def __init__(self, service: Service, by: Actor | None) -> None:
        super().__init__()
        self.service = service
        self.by = by

    def heading(self) -> str:
        return "Enrol a person"

    def body(self) -> ComposeResult:
        if self.by is None:
            yield Static(
                "This home has no custodian yet: the first person enrolled here must be "
                "a custodian; the home's own key signs the entry.",
                classes="muted",
                markup=False,
            )
        yield Label("Name (lowercase letters, digits, . _ -)", classes="field-name")
        yield Input(placeholder="e.g. carol", id="enrol-name", max_length=32)
        yield Label("Roles", classes="field-name")
        with Horizontal(classes="checks"):
            for role in ROLES:
                yield Tick(role, value=role == "custodian" and self.by is None, id=f"role-{role}")
        yield Tick(
            "service identity (a cron job: operator only, no passphrase or TOTP)",
            id="enrol-service",
        )
        yield Label("Passphrase (the new person types it)", classes="field-name")
        yield SecretInput(placeholder=f"at least {MIN_PASSPHRASE} characters", id="pw1")
        yield SecretInput(placeholder="the same again", id="pw2")

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "enrol-next", cancel_id="enrol-cancel")

    def on_mount(self) -> None:
        self.query_one("#enrol-name").focus()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "enrol-service":
            service = event.value
            for role in ROLES:
                box = self.query_one(f"#role-{role}", Checkbox)
                box.value = role == "operator" if service else box.value
                box.disabled = service
            for f in self.query(SecretInput):
                f.disabled = service

    def submit(self) -> None:
        name = self.query_one("#enrol-name", Input).value.strip()
        service = self.query_one("#enrol-service", Checkbox).value
        roles = [r for r in ROLES if self.query_one(f"#role-{r}", Checkbox).value]
        if not name:
            self.error("Type the person's name.")
            return
        if not roles:
            self.error("Give the person at least one role.")
            return
        passphrase = None
        if not service:
            passphrase = _passphrase_pair(self)
            if passphrase is None:
                return
        by = self.by

        def begin() -> PendingEnrolment:  # scrypt: about 0.1 s
            try:
                return self.service.people.begin_enrolment(
                    name, roles, passphrase=passphrase, by=by, service=service
                )
            finally:
                if passphrase is not None:
                    passphrase.wipe()

        self.run_step(begin, working="Making the signing key…", description="begin an enrolment")


class TotpStep(Dialog[object]):
    """Show the new TOTP secret as a QR code; accept one code back.

    Used by enrolment and by TOTP replacement. The secret is on screen only
    while this dialog is; closing it, done or not, discards the pending state.
    The instructions and the secret come first, the QR code beside them (or
    under them, on a narrow terminal, where the body scrolls to it); the code
    field, the error line and the buttons stay in view.
    """

    FRAME_ID = "totp-step"
    WIDE = True

    def __init__(self, service: Service, pending: PendingEnrolment, by: Actor | None) -> None:
        super().__init__()
        self.service = service
        self.pending = pending
        self.by = by
        self.discard_on_close(pending)

    def heading(self) -> str:
        what = "Replace the TOTP secret of" if self.pending.replace_totp else "Enrol"
        return f"{what} {safe(self.pending.name)}: authenticator"

    def body(self) -> ComposeResult:
        label = self.service.home.path.name
        secret = self.pending.secret_b32()
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        with Horizontal(id="totp-body"):
            with Vertical(id="totp-side"):
                yield Static(
                    f"{self.pending.name}: scan the QR code with your authenticator app, or "
                    "type the secret below, then type the 6-digit code it shows. The "
                    "secret leaves the screen when this dialog closes.",
                    markup=False,
                )
                yield Static(f"secret\n{grouped}", id="totp-secret", markup=False)
                yield Static(self.pending.uri(label), id="totp-uri", markup=False)
            yield Static("\n".join(self.pending.qr(label)), id="totp-qr", markup=False)

    def fields(self) -> ComposeResult:
        yield Label("Code now shown", classes="field-name")
        yield CodeInput(id="totp-code")

    def button_row(self) -> Horizontal:
        return self.buttons("Confirm", "totp-ok", cancel_id="totp-cancel")

    def on_mount(self) -> None:
        self.query_one("#totp-code").focus()

    def on_resize(self, event: events.Resize) -> None:
        # the QR code (57 columns) and the text side by side need about 100 columns
        self.set_class(event.size.width < NARROW_BELOW, "-narrow")

    def submit(self) -> None:
        field = self.query_one("#totp-code", CodeInput)
        code = take_code(field)
        if not self.code_ok(code):
            field.focus()
            return
        pending, by = self.pending, self.by

        def complete() -> Person:
            if pending.replace_totp:
                assert by is not None
                return self.service.people.complete_totp_replacement(pending, code, by=by)
            return self.service.people.complete_enrolment(pending, code, by=by)

        self.run_step(
            complete,
            working="Checking the code…",
            description="confirm an authenticator",
            refocus="#totp-code",
        )


class NewPassphrase(Dialog[object]):
    """A new passphrase for a replacement signing key. Returns SecretBytes."""

    ENTER_MOVES: ClassVar[dict[str, str]] = {"pw1": "#pw2"}

    def __init__(self, name: str) -> None:
        super().__init__()
        self.person = name

    def heading(self) -> str:
        return f"New signing key for {self.person}"

    def body(self) -> ComposeResult:
        yield Static(
            "The old key stays known, so entries it signed still verify, but it signs "
            "nothing more. The person types their new passphrase.",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        yield SecretInput(placeholder=f"new passphrase, {MIN_PASSPHRASE}+ characters", id="pw1")
        yield SecretInput(placeholder="the same again", id="pw2")

    def button_row(self) -> Horizontal:
        return self.buttons("Replace key", "key-ok", variant="warning", cancel_id="key-cancel")

    def on_mount(self) -> None:
        self.query_one("#pw1").focus()

    def submit(self) -> None:
        pw = _passphrase_pair(self)
        if pw is not None:
            self.dismiss(pw)


class ConfirmDisable(Dialog[object]):
    """Confirm disabling a person, with a reason for the audit log. Returns the reason."""

    def __init__(self, person: Person) -> None:
        super().__init__()
        self.person = person

    def heading(self) -> str:
        return f"Disable {self.person.name}?"

    def body(self) -> ComposeResult:
        yield Static(
            f"{self.person.name} ({_roles(self.person)}) will no longer sign in, approve "
            "or act. Entries they signed still verify. This cannot be undone; enrol "
            "them again under a new name if needed.",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        yield Label("Reason (goes into the audit log)", classes="field-name")
        yield Input(placeholder="e.g. left the company", id="disable-reason", max_length=200)

    def button_row(self) -> Horizontal:
        return self.buttons("Disable", "disable-ok", variant="error", cancel_id="disable-cancel")

    def on_mount(self) -> None:
        self.query_one("#disable-reason").focus()

    def submit(self) -> None:
        reason = self.query_one("#disable-reason", Input).value.strip()
        if not reason:
            self.error("Say why, for the audit log.")
            return
        self.dismiss(reason)


class ConfirmTotpReplace(Dialog[object]):
    """Before a new TOTP secret is made and shown: whose, and what happens. Returns True.

    Nothing secret is on this dialog; the secret is made only once it is confirmed, and
    shows on the next step (:class:`TotpStep`), for the person's own authenticator."""

    FRAME_ID = "totp-confirm"

    def __init__(self, person: Person, by: Actor) -> None:
        super().__init__()
        self.person = person
        self.by = by

    def heading(self) -> str:
        return f"Replace the TOTP secret of {self.person.name}?"

    def body(self) -> ComposeResult:
        whose = "your" if self.person.name == self.by.name else f"{self.person.name}'s"
        yield Static(
            f"A new TOTP secret and its QR code show on the next step, for {whose} "
            "authenticator: make sure "
            "nobody else can see the screen. The current codes keep working until a code "
            "of the new secret is typed back; cancelling then changes nothing.",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons(
            "Show the new secret", "totp-confirm-ok", variant="warning", cancel_id="totp-confirm-no"
        )

    def on_mount(self) -> None:
        self.query_one("#totp-confirm-no").focus()  # Enter alone shows nothing

    def submit(self) -> None:
        self.dismiss(True)


class ChangeRequest(Dialog[object]):
    """After bootstrap: ask for a change about a person, which custodians other than them
    approve (F6, Approvals). Enrolment asks the name and roles, a change of roles the
    roles; every change asks a reason. Returns ``(name, roles, reason)``. Nothing secret
    is on this dialog: a new secret is made when its owner completes the change."""

    FRAME_ID = "change-request"

    def __init__(self, change: str, person: Person | None, need: str) -> None:
        super().__init__()
        self.change = change
        self.person = person
        self.need = need

    def heading(self) -> str:
        who = self.person.name if self.person is not None else "a new person"
        return f"Ask: {describe({'change': self.change, 'person': who})}"

    def body(self) -> ComposeResult:
        yield Static(
            f"This home has a quorum KEK, so this change is a request: {self.need}. "
            + (
                "Its subject then completes it in person (People, Ctrl+O), and only then "
                "is the new secret made and shown, to them."
                if self.change in ("enrol", "key", "totp", "holder")
                else "It takes effect with the approval that completes the quorum."
            ),
            markup=False,
        )

    def fields(self) -> ComposeResult:
        if self.change == "enrol":
            yield Label("Name", classes="field-name")
            yield Input(placeholder="e.g. dave", id="change-name", max_length=32)
        if self.change in ("enrol", "roles"):
            have = self.person.roles if self.person is not None else ()
            with Horizontal(id="change-roles"):
                for role in ROLES:
                    yield Tick(role, role in have, id=f"change-role-{role}")
        yield Label("Reason (custodians decide on it)", classes="field-name")
        yield Input(placeholder="e.g. lost phone", id="change-reason", max_length=2000)

    def button_row(self) -> Horizontal:
        return self.buttons("Ask", "change-ok", cancel_id="change-cancel")

    def on_mount(self) -> None:
        first = "#change-name" if self.change == "enrol" else "#change-reason"
        self.query_one(first).focus()

    def submit(self) -> None:
        name = self.person.name if self.person is not None else ""
        if self.change == "enrol":
            name = self.query_one("#change-name", Input).value.strip()
            if not name:
                self.error("Type the new person's name.")
                return
        roles = [r for r in ROLES if self.change in ("enrol", "roles")
                 and self.query_one(f"#change-role-{r}", Tick).value]  # fmt: skip
        if self.change in ("enrol", "roles") and not roles:
            self.error("Tick at least one role.")
            return
        reason = self.query_one("#change-reason", Input).value.strip()
        if not reason:
            self.error("Say why: custodians decide on it.")
            return
        self.dismiss((name, roles, reason))


class SubjectCode(Dialog[object]):
    """The subject of a new key someone else asked for shows it is them: a code of their
    current authenticator. Returns the code."""

    FRAME_ID = "subject-code"

    def __init__(self, name: str, requester: str) -> None:
        super().__init__()
        self.subject = name
        self.requester = requester

    def heading(self) -> str:
        return f"New signing key for {self.subject}: is it {self.subject}?"

    def body(self) -> ComposeResult:
        yield Static(
            f"{self.requester} asked for this key. {self.subject}: type the code your "
            "authenticator shows now, then choose the new passphrase. Lost the "
            f"authenticator too? Cancel; {self.subject} asks with the command line (custodian "
            f"people request key {self.subject}, no --as).",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        yield Label(f"Current code of {self.subject}", classes="field-name")
        yield CodeInput(id="subject-code")

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "subject-code-ok", cancel_id="subject-code-cancel")

    def on_mount(self) -> None:
        self.query_one("#subject-code").focus()

    def submit(self) -> None:
        field = self.query_one("#subject-code", CodeInput)
        code = take_code(field)
        if self.code_ok(code):
            self.dismiss(code)


class CompletionTotpStep(TotpStep):
    """The subject completes an approved enrolment or TOTP change: the new secret shows
    now, to them, and leaves the screen with this dialog."""

    def __init__(
        self, service: Service, completion: Completion, witness: Actor | None = None
    ) -> None:
        super().__init__(service, completion, None)  # type: ignore[arg-type]
        self.completion = completion
        self.witness = witness

    def heading(self) -> str:
        c = self.completion
        what = "Enrol" if c.change == "enrol" else "New TOTP secret of"
        return f"{what} {safe(c.person)}: authenticator"

    def fields(self) -> ComposeResult:
        yield from super().fields()
        if self.witness is not None:  # the approver who watches confirms with their own code
            yield Label(f"Code of {self.witness.name} (witness)", classes="field-name")
            yield CodeInput(id="witness-code")

    def submit(self) -> None:
        field = self.query_one("#totp-code", CodeInput)
        code = take_code(field)
        if not self.code_ok(code):
            field.focus()
            return
        wcode = None
        if self.witness is not None:
            wfield = self.query_one("#witness-code", CodeInput)
            wcode = take_code(wfield)
            if not self.code_ok(wcode):
                wfield.focus()
                return
        c, w = self.completion, self.witness
        self.run_step(
            lambda: self.service.people.changes.complete(c, code, witness=w, witness_code=wcode),
            working="Checking the code…",
            description="complete a credential change",
            refocus="#totp-code",
        )


class PeopleScreen(Screen[None]):
    """Everyone enrolled, and the ceremonies that change them."""

    TITLE = "custodian"
    SUB_TITLE = "People"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "enrol", "Enrol", tooltip="Enrol a person"),
        Binding("k", "replace_key", "New key", tooltip="Replace the highlighted person's key"),
        Binding("t", "replace_totp", "New TOTP", tooltip="Replace the highlighted person's TOTP"),
        Binding("d", "disable", "Disable", tooltip="Disable the highlighted person"),
        Binding("ctrl+r", "roles", "Roles", tooltip="Ask to change the highlighted person's roles"),
        Binding("ctrl+o", "complete", "Complete", tooltip="Complete an approved change in person"),
        Binding("f5", "reload", "Reload"),
    ]

    _after_bootstrap = False

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service
        self.people: list[Person] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        yield CursorTable(
            id="people-table",
            cursor_type="row",
            zebra_stripes=True,
            flex="enrolled",
            hide_below={"kind": 100, "keys": 100},
        )
        yield Static("", id="people-detail", classes="box", markup=False)
        yield AppFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for title, key in (
            ("Name", "name"),
            ("Roles", "roles"),
            ("Kind", "kind"),
            ("State", "state"),
            ("Signing key", "key"),
            ("Keys", "keys"),
            ("TOTP", "totp"),
            ("Enrolled (UTC)", "enrolled"),
        ):
            table.add_column(title, key=key)
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Roles (Ctrl+R) and Complete (Ctrl+O) exist once changes are requests: they are
        left out of the footer while the home is in bootstrap."""
        if action in ("roles", "complete"):
            return self._after_bootstrap
        return True

    def reload(self, select: str | None = None) -> None:
        after = self._requests()
        if after != self._after_bootstrap:
            self._after_bootstrap = after
            self.refresh_bindings()
        table = self.query_one(DataTable)
        current = select or (self.selected.name if self.selected else None)
        try:
            self.people = self.service.people.list()
        except CustodianError as e:
            self.notify(str(e), title="Could not read people", severity="error", markup=False)
            return
        table.clear()
        for p in self.people:
            key = p.key.key_id[:16] if p.key else "-"
            totp = f"gen {p.totp_generation}" if p.totp_generation else "-"
            table.add_row(
                Text(safe(p.name)),
                Text(_roles(p)),
                Text(p.kind),
                Text(p.state, style="" if p.active else "red"),
                Text(key),
                Text(str(len(p.keys)), justify="right"),
                Text(totp),
                Text(when(p.created_at)),
                key=p.name,
            )
        names = [p.name for p in self.people]
        if current in names:
            table.move_cursor(row=names.index(current))
        self._show_detail()

    @property
    def selected(self) -> Person | None:
        table = self.query_one(DataTable)
        if not self.people or table.cursor_row < 0 or table.cursor_row >= len(self.people):
            return None
        return self.people[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#people-detail", Static)
        p = self.selected
        if p is None:
            detail.update(
                Text(
                    "Nobody is enrolled yet. Press n to enrol the first custodian."
                    if self.service.people.needs_bootstrap()
                    else ""
                )
            )
            return
        lines = [f"{p.name}: {_roles(p)}; {p.kind}; {p.state}"]
        if p.disabled_at:
            lines[0] += f" since {when(p.disabled_at)}"
        for k in p.keys:
            state = f"replaced {when(k.replaced_at)}" if k.replaced_at else "current"
            lines.append(
                f"  key {k.key_id}  {k.protection:<10}  since {when(k.created_at)}  {state}"
            )
        detail.update(Text("\n".join(lines)))
        detail.border_title = "Signing keys (old keys stay known so old entries verify)"

    def action_reload(self) -> None:
        self.reload()

    # ------------------------------------------------------------ ceremonies

    def _ceremony_ok(self) -> bool:
        blocked = ceremony_blocked(self.app)
        if blocked:
            self.notify(blocked, title="Refused", severity="error", markup=False)
            return False
        return True

    def _actor(self, role: str | None, doing: str) -> Actor | None:
        acting = getattr(self.app, "acting", None)
        return acting(role, doing) if acting else None

    # ------------------------------------------------------------ changes under dual control

    def _requests(self) -> bool:
        """True once the home has a quorum KEK: changes are requests (issue 11)."""
        try:
            return not self.service.people.changes.in_bootstrap()
        except CustodianError:
            return False

    async def _ask(self, change: str, p: Person | None) -> None:
        """Ask for ``change`` about ``p`` (None: a new person) through the approvals."""
        by = self._actor(None if change in ("key", "totp", "holder") else "custodian",
                         "ask for a credential change")  # fmt: skip
        if by is None:
            return
        q = self.service.policy.show()
        quorum = next((x.value for x in q if x.name == "approval_quorum"), 2)
        subject = p.name if p is not None else "the new person"
        need = f"{quorum} custodians other than {subject} approve it"
        if p is None or by.name != p.name:
            need += f" ({by.name}, who asks, counts as one)"
        got = await self.app.push_screen_wait(ChangeRequest(change, p, need))
        if not isinstance(got, tuple):
            return
        name, roles, reason = got
        try:
            r = await asyncio.to_thread(
                self.service.people.changes.request,
                change, name, by=by, reason=reason, roles=roles,
            )  # fmt: skip
        except CustodianError as e:
            self.notify(str(e), title="Not asked", severity="error", markup=False)
            return
        self.notify(
            f"Request {r.id[:8]} opened: {describe(r.payload)}. It needs {r.quorum} "
            "approval(s) (F6, Approvals).",
            markup=False,
        )

    async def _ask_own_key(self, p: Person) -> None:
        """``p``, who lost their passphrase, asks for a new key without signing in: the
        key is made now under the new passphrase they type, and signs the request."""
        q = self.service.policy.show()
        quorum = next((x.value for x in q if x.name == "approval_quorum"), 2)
        need = (
            f"{p.name}, you lost your passphrase: {quorum} custodians other than you approve "
            "this; tell them the key id shown next"
        )
        got = await self.app.push_screen_wait(ChangeRequest("key", p, need))
        if not isinstance(got, tuple):
            return
        reason = got[2]
        pw = await self.app.push_screen_wait(NewPassphrase(p.name))
        if not isinstance(pw, SecretBytes):
            return
        try:
            r = await asyncio.to_thread(
                self.service.people.changes.request_own_key, p.name, pw, reason=reason
            )
        except CustodianError as e:
            self.notify(str(e), title="Not asked", severity="error", markup=False)
            return
        finally:
            pw.wipe()
        self.notify(
            f"Request {r.id[:8]} opened: a new key for {p.name}, id "
            f"{str(r.payload['key_id'])[:16]}. Tell the approvers this id; once "
            f"{r.quorum} approve, complete it here with Ctrl+O and the same passphrase.",
            markup=False,
            timeout=30,
        )

    @work(exclusive=True, group="ceremony")
    async def action_roles(self) -> None:
        p = self.selected
        if p is None or not self._ceremony_ok():
            return
        if not self._requests():
            self.notify("Roles change by request once the home has a quorum KEK; until then, "
                        "enrol the person again under a new name.", severity="warning")  # fmt: skip
            return
        await self._ask("roles", p)

    @work(exclusive=True, group="ceremony")
    async def action_complete(self) -> None:
        """Complete an approved change in person: the signed-in person's own TOTP or holder
        key change, else the highlighted person's new key, else a waiting enrolment."""
        if not self._ceremony_ok():
            return
        changes = self.service.people.changes
        waiting = changes.to_complete()
        me = getattr(self.app, "actor", None)
        p = self.selected
        mine = [r for r in waiting if me is not None and r.payload.get("person") == me.name
                and r.payload.get("change") in ("totp", "holder")]  # fmt: skip
        theirs = [r for r in waiting if p is not None and r.payload.get("person") == p.name
                  and r.payload.get("change") == "key"]  # fmt: skip
        enrols = [r for r in waiting if r.payload.get("change") == "enrol"]
        pick = (mine or theirs or enrols or [None])[0]
        if pick is None:
            self.notify("No approved change is waiting to be completed here.", markup=False)
            return
        change, name = str(pick.payload["change"]), str(pick.payload["person"])
        witness: Actor | None = None
        if change == "enrol":
            if me is None or me.name not in pick.approvals:
                self.notify(
                    f"{name}'s enrolment is completed in front of a custodian who approved it "
                    f"({', '.join(pick.approvals)}): they sign in (F9), then Ctrl+O.",
                    title="Sign in as a witness",
                    severity="warning",
                    markup=False,
                )
                return
            witness = me
        passphrase: SecretBytes | None = None
        try:
            if change in ("enrol", "key"):
                code = None
                if change == "key" and not pick.payload.get("key_id"):
                    got_code = await self.app.push_screen_wait(SubjectCode(name, pick.requester))
                    if not isinstance(got_code, str):
                        return
                    code = got_code
                got = await self.app.push_screen_wait(NewPassphrase(name))
                if not isinstance(got, SecretBytes):
                    return
                passphrase = got
                c = await asyncio.to_thread(
                    changes.begin, pick.id, passphrase=passphrase, code=code
                )
            else:
                c = changes.begin(pick.id, by=me)
        except CustodianError as e:
            self.notify(str(e), title="Not completed", severity="error", markup=False)
            return
        finally:
            if passphrase is not None:
                passphrase.wipe()
        if c.totp is not None:
            person = await self.app.push_screen_wait(CompletionTotpStep(self.service, c, witness))
        else:
            try:
                person = await asyncio.to_thread(changes.complete, c)
            except CustodianError as e:
                c.discard()
                self.notify(str(e), title="Not completed", severity="error", markup=False)
                return
        if isinstance(person, Person):
            self.reload(select=person.name)
            self.notify(f"Done: {describe(pick.payload)}.", markup=False)

    @work(exclusive=True, group="ceremony")
    async def action_enrol(self) -> None:
        if not self._ceremony_ok():
            return
        if self._requests():
            await self._ask("enrol", None)
            return
        by: Actor | None = None
        if not self.service.people.needs_bootstrap():
            by = self._actor("custodian", "enrol people")
            if by is None:
                return
        pending = await self.app.push_screen_wait(EnrolForm(self.service, by))
        if not isinstance(pending, PendingEnrolment):
            return
        if pending.totp is None:  # a service identity: no authenticator to set up
            try:
                person = self.service.people.complete_enrolment(pending, None, by=by)
            except CustodianError as e:
                self.notify(str(e), title="Not enrolled", severity="error", markup=False)
                return
        else:
            person = await self.app.push_screen_wait(TotpStep(self.service, pending, by))
        if isinstance(person, Person):
            self.reload(select=person.name)
            self.notify(f"{person.name} is enrolled as {_roles(person)}.", markup=False)

    @work(exclusive=True, group="ceremony")
    async def action_replace_key(self) -> None:
        p = self.selected
        if p is None or not self._ceremony_ok():
            return
        if self._requests():
            if getattr(self.app, "actor", None) is None:
                await self._ask_own_key(p)  # lost passphrase: nobody can sign in as them
            else:
                await self._ask("key", p)
            return
        by = self._actor(None, "replace a signing key")
        if by is None:
            return
        if by.name != p.name and not by.has("custodian"):
            self.notify("Only a custodian may replace someone else's key.", severity="warning")
            return
        passphrase: SecretBytes | None = None
        if p.kind == "person":
            got = await self.app.push_screen_wait(NewPassphrase(p.name))
            if not isinstance(got, SecretBytes):
                return
            passphrase = got
        try:
            await asyncio.to_thread(self.service.people.replace_key, p.name, passphrase, by=by)
        except CustodianError as e:
            self.notify(str(e), title="Key not replaced", severity="error", markup=False)
            return
        finally:
            if passphrase is not None:
                passphrase.wipe()
        self.reload()
        if by.name == p.name:
            sign_out = getattr(self.app, "sign_out", None)
            if sign_out:
                sign_out(reason="after replacing their own key; sign in with the new passphrase")
        self.notify(f"{p.name} has a new signing key.", markup=False)

    @work(exclusive=True, group="ceremony")
    async def action_replace_totp(self) -> None:
        p = self.selected
        if p is None or not self._ceremony_ok():
            return
        if self._requests():
            await self._ask("totp", p)
            return
        by = self._actor(None, "replace a TOTP secret")
        if by is None:
            return
        refusal = None  # what the core would refuse, said before anything is shown
        if p.kind != "person":
            refusal = f"{p.name} is a service identity and has no TOTP; nothing was done."
        elif not p.active:
            refusal = f"{p.name} is disabled; nothing was done."
        elif by.name != p.name and not by.has("custodian"):
            refusal = "Only a custodian may replace someone else's TOTP; nothing was done."
        if refusal:
            self.notify(refusal, title="Refused", severity="warning", markup=False)
            return
        if await self.app.push_screen_wait(ConfirmTotpReplace(p, by)) is not True:
            return
        try:
            pending = self.service.people.begin_totp_replacement(p.name, by=by)
        except CustodianError as e:
            self.notify(str(e), title="Refused", severity="error", markup=False)
            return
        person = await self.app.push_screen_wait(TotpStep(self.service, pending, by))
        if isinstance(person, Person):
            self.reload()
            self.notify(
                f"{p.name}'s authenticator is replaced; old codes no longer work.", markup=False
            )

    @work(exclusive=True, group="ceremony")
    async def action_disable(self) -> None:
        p = self.selected
        if p is None:
            return
        if self._requests():
            await self._ask("disable", p)
            return
        by = self._actor("custodian", "disable people")
        if by is None:
            return
        others = [
            q.name
            for q in self.people
            if q.active and q.has("custodian") and q.kind == "person" and q.name != p.name
        ]
        refusal = None  # what the core would refuse, said before a reason is typed
        if not p.active:
            refusal = f"{p.name} is already disabled; nothing was done."
        elif p.has("custodian") and not others:
            refusal = f"{p.name} is the last active custodian; enrol another custodian first."
        if refusal:
            self.notify(refusal, title="Not disabled", severity="warning", markup=False)
            return
        reason = await self.app.push_screen_wait(ConfirmDisable(p))
        if not isinstance(reason, str):
            return
        try:
            self.service.people.disable(p.name, by=by, reason=reason)
        except CustodianError as e:
            self.notify(str(e), title="Not disabled", severity="error", markup=False)
            return
        self.reload()
        self.notify(f"{p.name} is disabled.", markup=False)
