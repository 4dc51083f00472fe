"""The quorum KEK creation ceremony: holders one after another at the workstation.

Used by the Keys screen (F7, n, custody "quorum") and by the first set-up
(:mod:`screens.setup`). The steps, each a dialog on :class:`screens.dialogs.Dialog`:

1. :class:`HoldersForm`: which custodians hold a share, and M of N
   (2 <= M <= N-1: one holder alone opens nothing, losing one loses nothing).
2. :class:`HolderUnlock`, once per holder not yet unlocked, in turn: only that
   holder types their passphrase; each is a new dialog, so the field is empty
   for the next one, and a refused passphrase is cleared too. The unlock (the
   Argon2id of their personal key) runs in a thread worker.
3. The draft (:meth:`custodian.service.keys.Keys.draft_quorum`, in a thread):
   each holder's new key, sealed to their personal key, and the manifest.
4. :class:`ManifestConfirm`, once per holder, in turn: the manifest (KEK, M of N,
   each holder's share index and key fingerprint) and its fingerprint, which the
   holder confirms before their signature goes into the log.
5. The acting custodian's fresh TOTP code (:class:`screens.key_dialogs.CodeConfirm`),
   then :meth:`~custodian.service.keys.Keys.create_quorum` with the draft.

Escape at any step ends the ceremony and nothing is created. Whoever was unlocked
for it (and was not unlocked before) is forgotten when it ends, done or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Static

from custodian.catalog import Kek, Person
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from custodian.service.keys import QuorumDraft
from screens.dialogs import Tick
from screens.format import safe
from screens.key_dialogs import CodeConfirm, KekCreated, KeyDialog, fingerprint_text, pairs
from screens.secure import SecretInput, take_secret

MIN_HOLDERS = 3


def default_quorum(n: int) -> int:
    """A majority, within 2 <= M <= N-1 (2 of 3, 3 of 4, 3 of 5)."""
    return max(2, min(n - 1, n // 2 + 1))


def quorum_problem(m: int | None, n: int) -> str | None:
    """Why M of N is not allowed (None: it is)."""
    if n < MIN_HOLDERS:
        return (
            f"A quorum KEK needs at least {MIN_HOLDERS} holders (M of N with 2 <= M <= N-1); "
            f"{n} {'is' if n == 1 else 'are'} ticked."
        )
    if m is None or not 2 <= m <= n - 1:
        shown = "nothing" if m is None else str(m)
        allowed = "M is 2" if n == MIN_HOLDERS else f"M is 2 to {n - 1}"
        return (
            f"For {n} holders {allowed} (one holder alone opens nothing, losing one loses "
            f"nothing); {shown} was typed."
        )
    return None


@dataclass(frozen=True)
class HolderChoice:
    """What :class:`HoldersForm` asked for: who holds a share (in share-index order), M."""

    holders: tuple[str, ...]
    m: int


class HoldersForm(KeyDialog):
    """Who holds a share of the new KEK, and how many of them open it. Returns a
    :class:`HolderChoice`. Only custodians hold shares: ticking anyone else is refused
    here, by name, before anyone types a passphrase."""

    FRAME_ID = "holders-form"
    DEFAULT_CSS = """
    HoldersForm #holders-m {
        width: 12;
    }
    """

    def __init__(self, people: Sequence[Person], *, kek: str, ticked: Sequence[str] = ()) -> None:
        super().__init__()
        self.people = [p for p in people if p.active and p.kind == "person"]
        self.kek = kek
        custodians = [p.name for p in self.people if p.has("custodian")]
        self.ticked = set(ticked) if ticked else set(custodians)
        n = len(self.ticked)
        self.m_default = default_quorum(n) if n >= MIN_HOLDERS else 2

    def heading(self) -> str:
        return f"Holders of KEK {safe(self.kek)}"

    def body(self) -> ComposeResult:
        yield Static(
            "Each holder gets a share of every backup's data key, sealed to a key of "
            "their own; any M of them together open a backup, fewer open nothing. Holders "
            "unlock in turn on the next steps, each with their own passphrase.",
            classes="muted",
            markup=False,
        )
        yield Label("Holders (share index in this order)", classes="field-name")
        for i, p in enumerate(self.people):
            roles = ", ".join(p.roles)
            yield Tick(f"{p.name}  ({roles})", value=p.name in self.ticked, id=f"holder-{i}")

    def fields(self) -> ComposeResult:
        yield Label("M: holders needed to open a backup", classes="field-name")
        yield Input(value=str(self.m_default), restrict=r"[0-9]*", max_length=2, id="holders-m")

    def button_row(self) -> Horizontal:
        return self.buttons("Next: holders unlock", "holders-next")

    def on_mount(self) -> None:
        self.query_one("#holders-m").focus()

    def chosen(self) -> list[Person]:
        return [p for i, p in enumerate(self.people) if self.query_one(f"#holder-{i}", Tick).value]

    def submit(self) -> None:
        chosen = self.chosen()
        not_custodians = [p.name for p in chosen if not p.has("custodian")]
        if not_custodians:
            who = ", ".join(not_custodians)
            self.error(
                f"{who} {'is' if len(not_custodians) == 1 else 'are'} not a custodian: only "
                f"custodians hold shares. Untick {who}, or give the custodian role first "
                "(People, F4)."
            )
            return
        text = self.query_one("#holders-m", Input).value
        m = int(text) if text.isdigit() else None
        problem = quorum_problem(m, len(chosen))
        if problem or m is None:
            self.error(problem or "Type M.")
            self.query_one("#holders-m").focus()
            return
        self.dismiss(HolderChoice(tuple(p.name for p in chosen), m))


class HolderUnlock(KeyDialog):
    """One holder types their passphrase; returns their unlocked :class:`Actor`.

    A refused passphrase is cleared and said on the error line (with the wait the
    core imposes after several); the holder types it again, or Cancel ends the
    ceremony."""

    FRAME_ID = "holder-unlock"
    ENTER_MOVES: ClassVar[dict[str, str]] = {}

    def __init__(
        self, service: Service, name: str, *, index: int, count: int, purpose: str
    ) -> None:
        super().__init__()
        self.service = service
        self.person = name
        self.index = index
        self.count = count
        self.purpose = purpose

    def heading(self) -> str:
        return f"Holder {self.index} of {self.count}: {safe(self.person)}"

    def body(self) -> ComposeResult:
        yield Static(
            Text.assemble(
                (f"Only {safe(self.person)} at the keyboard now. ", "bold"),
                f"Type your passphrase: it opens your personal key, {self.purpose}. The "
                "field is cleared as soon as it is read.",
            ),
            id="holder-unlock-note",
        )

    def fields(self) -> ComposeResult:
        yield Label(f"Passphrase of {safe(self.person)}", classes="field-name", markup=False)
        yield SecretInput(placeholder="passphrase", id="holder-passphrase")

    def button_row(self) -> Horizontal:
        return self.buttons("Unlock", "holder-ok")

    def on_mount(self) -> None:
        self.query_one("#holder-passphrase").focus()

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (it was cleared)."

    def submit(self) -> None:
        field = self.query_one("#holder-passphrase", SecretInput)
        if not field.value:
            self.error(f"{self.person}: type your passphrase.")
            return
        passphrase = take_secret(field)
        name = self.person

        def unlock() -> Actor:
            try:
                return self.service.auth.unlock(name, passphrase)
            finally:
                passphrase.wipe()

        self.run_step(
            unlock,
            working="Opening the personal key…",
            description="unlock a holder",
            refocus="#holder-passphrase",
        )


def manifest_table(draft: QuorumDraft) -> Table:
    t = Table(box=None, padding=(0, 2), pad_edge=False, header_style="bold dim")
    t.add_column("x", justify="right", no_wrap=True)
    t.add_column("Holder", no_wrap=True)
    t.add_column("Holder key fingerprint", overflow="fold")
    suite = draft.manifest.suite
    for h in draft.manifest.holders:
        t.add_row(str(h.x), Text(safe(h.name)), Text(h.fingerprint(suite), style="dim"))
    return t


class ManifestConfirm(KeyDialog):
    """One holder confirms the manifest their signature vouches for. Returns True."""

    FRAME_ID = "manifest-confirm"

    def __init__(self, draft: QuorumDraft, holder: str, *, index: int) -> None:
        super().__init__()
        self.draft = draft
        self.holder = holder
        self.index = index

    def heading(self) -> str:
        n, kek = len(self.draft.holders), safe(self.draft.name)
        return f"{safe(self.holder)} signs the manifest of {kek} ({self.index} of {n})"

    def body(self) -> ComposeResult:
        d = self.draft
        yield Static(
            Group(
                pairs(
                    ("KEK", f"{d.name} v1 ({d.suite})"),
                    ("Quorum", Text(f"{d.m} of {len(d.holders)}", style="bold")),
                ),
                manifest_table(d),
            ),
            id="manifest-pairs",
        )
        yield Label("Manifest fingerprint", classes="field-name")
        yield Static(fingerprint_text(d.fingerprint), id="manifest-fp", classes="fp")
        yield Static(
            f"{self.holder}: check your name, M and N. Your signature in the audit log "
            "vouches for this manifest; every wrap to this KEK checks it. Note the "
            "fingerprint: the Keys screen and 'custodian kek list' show it from now on.",
            classes="muted",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons(f"Sign as {self.holder}", "manifest-ok")

    def on_mount(self) -> None:
        self.query_one("#manifest-ok").focus()

    def submit(self) -> None:
        self.dismiss(True)


async def unlock_holders(
    app: App[Any],
    service: Service,
    names: Sequence[str],
    unlocked: dict[str, Actor],
    *,
    purpose: str,
) -> list[Actor] | None:
    """Each of ``names`` not in ``unlocked`` types their passphrase in turn (added to
    ``unlocked``); the actors in ``names``' order, or None when one cancelled."""
    out: list[Actor] = []
    for i, name in enumerate(names, start=1):
        actor = unlocked.get(name)
        if actor is None:
            got = await app.push_screen_wait(
                HolderUnlock(service, name, index=i, count=len(names), purpose=purpose)
            )
            if not isinstance(got, Actor):
                return None
            actor = unlocked[name] = got
        out.append(actor)
    return out


async def create_quorum_kek(
    app: App[Any],
    service: Service,
    *,
    by: Actor | None,
    name: str,
    choice: HolderChoice,
    suite: str | None = None,
    purpose: str = "",
    unlocked: dict[str, Actor] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Kek | None:
    """Steps 2 to 5 of the ceremony (the module's docstring); the new KEK, or None.

    ``by`` confirms with their code (None: the first holder does). ``unlocked`` holds
    people already unlocked (the signed-in custodian, a set-up's enroller): they do not
    type again; anyone this ceremony unlocks is added to it when given, and forgotten
    at the end when not."""
    mine: dict[str, Actor] = {}
    known = unlocked if unlocked is not None else mine
    if by is not None:
        known.setdefault(by.name, by)
    before = set(known)
    try:
        holders = await unlock_holders(
            app,
            service,
            choice.holders,
            known,
            purpose=f"which makes your holder key of KEK {name}",
        )
        if holders is None:
            return None
        try:
            draft = await asyncio.to_thread(
                service.keys.draft_quorum,
                name,
                holders,
                choice.m,
                by=by or holders[0],
                suite=suite,
                purpose=purpose,
            )
        except CustodianError as e:
            app.notify(str(e), title="No KEK created", severity="error", markup=False)
            return None
        for i, h in enumerate(holders, start=1):
            if await app.push_screen_wait(ManifestConfirm(draft, h.name, index=i)) is not True:
                return None
        acting = by or holders[0]

        def create(code: str) -> Kek:
            return service.keys.create_quorum(
                name, holders, choice.m, by=acting, code=code, draft=draft
            )

        body = Group(
            pairs(
                ("KEK", f"{name} v1 ({draft.suite})"),
                ("Custody", f"quorum, {choice.m} of {len(holders)}"),
                ("Holders", ", ".join(choice.holders)),
                ("Manifest", fingerprint_text(draft.fingerprint)),
            ),
            Text(""),
            Text(
                f"Every holder confirmed the manifest. {acting.name} confirms with a code; "
                "the holders' signatures and the KEK go into the audit log together.",
                style="dim",
            ),
        )
        kek = await app.push_screen_wait(
            CodeConfirm(
                f"Create quorum KEK {safe(name)}", body, create, ok="Create", who=acting.name
            )
        )
        if not isinstance(kek, Kek):
            return None
        await app.push_screen_wait(KekCreated(kek))
        if notify is not None:
            notify(
                f"Quorum KEK {kek.name} v1 created ({choice.m} of {len(holders)}); manifest "
                f"fingerprint {kek.versions[0].fingerprint}."
            )
        return kek
    finally:
        if unlocked is None:
            for name_, actor in mine.items():
                if name_ not in before:
                    actor.forget()
