"""The dialogs of a KEK migration (m on Keys): where to, who holds, each holder present.

1. :class:`MigrateForm`: the census per backend and version, the target backend
   (quorum, or another configured backend), and for quorum the holders (ticks,
   the active custodians) and M. Returns a :class:`MigrateSpec` (names only).
2. :class:`HolderPassphrase`, once per holder other than the signed-in custodian:
   the holder types their own passphrase at the workstation; it is read once,
   the field cleared, and the holder unlocked in a thread worker. Returns the
   holder's :class:`~custodian.people.Actor` (kept by the ceremony, never shown).
3. The screen's :class:`~screens.key_dialogs.CodeConfirm` with :func:`migrate_body`:
   the signed-in custodian's code, and the migration starts; the job then runs
   in the rewrap pane.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, RadioSet, Static

from custodian.catalog import Kek
from custodian.people import Actor
from custodian.service import Service
from custodian.service.migrate import CensusRow
from screens.dialogs import Choice, Tick
from screens.format import safe
from screens.key_dialogs import KeyDialog, pairs
from screens.secure import SecretInput, take_secret

QUORUM = "quorum"


@dataclass(frozen=True)
class MigrateSpec:
    """What the migration form asked for (no secret: names and numbers only)."""

    kek: str
    to: str
    holders: tuple[str, ...] = ()
    m: int = 2


def census_rows(rows: tuple[CensusRow, ...], to: str | None = None, new: int = 0) -> Table:
    """DEKs per backend and version (and, with ``to``, where they all go)."""
    t = Table(box=None, padding=(0, 2), pad_edge=False, header_style="bold dim")
    t.add_column("Backend", no_wrap=True)
    t.add_column("Version", no_wrap=True)
    t.add_column("State", no_wrap=True)
    t.add_column("DEKs now", justify="right", no_wrap=True)
    for r in rows:
        t.add_row(Text(safe(r.backend)), f"v{r.version}", r.state, f"{r.deks:,}")
    if to is not None:
        total = sum(r.deks for r in rows)
        t.add_row(Text(safe(to), style="bold"), f"v{new}", "new", Text(f"→ {total:,}", "bold"))
    return t


class MigrateForm(KeyDialog):
    """Step 1: the census, the target backend, and for quorum the holders and M."""

    FRAME_ID = "migrate-form"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"migrate-m": "#migrate-next"}

    DEFAULT_CSS = """
    MigrateForm #migrate-choices {
        height: auto;
    }
    MigrateForm #migrate-to-col {
        width: 24;
        height: auto;
    }
    MigrateForm #migrate-holders-col {
        width: 1fr;
        height: auto;
    }
    MigrateForm #migrate-m {
        width: 12;
    }
    """

    def __init__(self, service: Service, kek: Kek, census: tuple[CensusRow, ...]) -> None:
        super().__init__()
        self.service = service
        self.kek = kek
        self.census = census
        others = [b for b in service.config.backends if b != kek.backend]
        self.targets = [QUORUM, *[b for b in others if b != QUORUM]]
        self.custodians = [
            p.name
            for p in service.people.list()
            if p.kind == "person" and p.active and p.has("custodian")
        ]

    def heading(self) -> str:
        return f"Migrate KEK {safe(self.kek.name)} to another backend"

    def body(self) -> ComposeResult:
        k = self.kek
        yield Static(
            Group(
                pairs(("KEK", k.name), ("Now on", k.backend), ("Suite", k.suite)),
                Text(""),
                census_rows(self.census),
            ),
            id="migrate-census",
        )
        yield Static(
            f"A new version v{k.current_version + 1} is made on the backend you choose and "
            "wraps every new DEK from then on; a rewrap job then moves every older DEK to it "
            "(it resumes after a stop). To quorum custody, each holder types their own "
            "passphrase here, one after another; you confirm with your code.",
            classes="muted note",
            markup=False,
        )
        with Horizontal(id="migrate-choices"):
            with Vertical(id="migrate-to-col"):
                yield Label("To backend", classes="field-name")
                with RadioSet(id="migrate-to"):
                    for i, b in enumerate(self.targets):
                        yield Choice(Text(safe(b)), value=i == 0, id=f"to-{i}")
            with Vertical(id="migrate-holders-col"):
                yield Label("Holders (quorum: custodians, one share each)", classes="field-name")
                for i, name in enumerate(self.custodians):
                    yield Tick(name, value=i < 3, id=f"holder-{i}")
                yield Label("Quorum M (of the holders ticked)", classes="field-name")
                yield Input(value="2", id="migrate-m", max_length=2, restrict=r"[0-9]*")

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "migrate-next")

    def on_mount(self) -> None:
        self.query_one("#migrate-to").focus()

    def submit(self) -> None:
        index = self.query_one("#migrate-to", RadioSet).pressed_index
        to = self.targets[index] if 0 <= index < len(self.targets) else self.targets[0]
        if to != QUORUM:
            self.dismiss(MigrateSpec(self.kek.name, to))
            return
        holders = tuple(
            name
            for i, name in enumerate(self.custodians)
            if self.query_one(f"#holder-{i}", Tick).value
        )
        text = self.query_one("#migrate-m", Input).value.strip()
        m = int(text) if text.isdigit() else 0
        if len(holders) < 3:
            self.error("Tick at least three holders: a quorum of M needs 2 <= M <= N-1.")
            return
        if not 2 <= m <= len(holders) - 1:
            self.error(
                f"A quorum of {m} of {len(holders)} is not allowed: choose M from 2 to "
                f"{len(holders) - 1} (one holder alone opens nothing, losing one loses nothing)."
            )
            self.query_one("#migrate-m").focus()
            return
        self.dismiss(MigrateSpec(self.kek.name, to, holders, m))


class HolderPassphrase(KeyDialog):
    """One holder, present, types their passphrase; returns them unlocked."""

    FRAME_ID = "holder-passphrase"

    def __init__(self, service: Service, holder: str, index: int, count: int) -> None:
        super().__init__()
        self.service = service
        self.holder = holder
        self.index = index
        self.count = count

    def heading(self) -> str:
        return f"Holder {self.index} of {self.count}: {safe(self.holder)}"

    def body(self) -> ComposeResult:
        yield Static(
            f"{self.holder}, at the keyboard: type your own passphrase. It unlocks your "
            "personal key, which seals your new holder key; nobody else sees it, and the "
            "field is cleared as soon as it is read.",
            classes="muted",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        yield Label(f"Passphrase of {safe(self.holder)}", classes="field-name", markup=False)
        yield SecretInput(placeholder="passphrase", id="holder-pw")

    def button_row(self) -> Horizontal:
        return self.buttons("Unlock", "holder-ok")

    def on_mount(self) -> None:
        self.query_one("#holder-pw").focus()

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (it was cleared)."

    def submit(self) -> None:
        field = self.query_one("#holder-pw", SecretInput)
        pw = take_secret(field)
        if not pw.reveal():
            pw.wipe()
            self.error("Type the passphrase.")
            field.focus()
            return

        def unlock(name: str) -> Actor:
            with pw:
                return self.service.auth.unlock(name, pw)

        self.run_step(
            partial(unlock, self.holder),
            working="Unlocking…",
            description="unlock a holder",
            refocus="#holder-pw",
        )


def migrate_body(kek: Kek, spec: MigrateSpec, census: tuple[CensusRow, ...]) -> RenderableType:
    new = kek.current_version + 1
    rows: list[tuple[str, str | Text]] = [
        ("KEK", kek.name),
        ("From", kek.backend),
        ("To", f"{spec.to}, as v{new}"),
    ]
    if spec.to == QUORUM:
        rows.append(("Holders", f"{', '.join(spec.holders)}: any {spec.m} of {len(spec.holders)}"))
    return Group(
        pairs(*rows),
        Text(""),
        census_rows(census, spec.to, new),
        Text(""),
        Text(
            "After the rewrap, the old versions still open the DEKs in the containers' "
            "headers until they are retired (t) and destroyed (x: waiting period, then "
            "two other custodians approve).",
            style="dim",
        ),
    )
