"""The dialogs of the KEK lifecycle: generation, rotation preview, TOTP steps, destruction.

Each dialog is one step of a ceremony that :class:`screens.keys.KeysScreen`
awaits in order, on the frame of :class:`screens.dialogs.Dialog`. A step that
changes something calls the service itself, in a thread worker
(:meth:`~screens.dialogs.Dialog.run_step`), so a refusal shows inside the dialog
and the person can try again, and returns what the service returned; escape
or Cancel returns None and changes nothing. A TOTP code is read once and its
field cleared before the service sees it, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, RadioSet, Static

from custodian.approvals import Request
from custodian.catalog import Kek, KekVersion
from custodian.config import SUITES
from custodian.rotation import RotationPreview
from custodian.service import Service
from screens.dialogs import Choice, CodeInput, Dialog, take_code
from screens.format import duration, safe, when

SUITE_NOTES = {
    "mlkem768-x25519": "post-quantum hybrid, ML-KEM-768 + X25519",
    "x25519": "X25519 only: smaller wraps, not post-quantum",
    "p256": "NIST P-256 only: where policy asks for NIST curves",
}
NAME_CHARS = r"[A-Za-z0-9._-]*"
# server backends the KEK form offers to set up when the home has none of that name
# (screens/backend_dialogs.py asks for their settings and checks them); aws-kms adds itself
NEW_BACKENDS = ["vault"]


def pairs(*rows: tuple[str, str | Text]) -> Table:
    """Name and value rows; a str value is untrusted and shown as plain text."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column(overflow="fold")
    for name, value in rows:
        t.add_row(name, value if isinstance(value, Text) else Text(safe(value)))
    return t


def fingerprint_text(fp: str) -> Text:
    """A fingerprint in bold, its groups of four spaced for reading aloud."""
    return Text("  ".join(safe(fp).split()), style="bold")


class KeyDialog(Dialog[Any]):
    """The key dialogs' own looks: centred, 100 columns, the KEK form's radio sets."""

    WIDE = True

    DEFAULT_CSS = """
    KeyDialog {
        align: center middle;
    }
    KeyDialog #kek-choices {
        height: auto;
    }
    KeyDialog #kek-backend-col {
        width: 26;
        height: auto;
    }
    KeyDialog #kek-suite-col {
        width: 1fr;
        height: auto;
    }
    KeyDialog RadioSet {
        width: 100%;
        border: round $primary 30%;
        background: transparent;
    }
    KeyDialog RadioSet:focus {
        border: round $primary;
    }
    KeyDialog .fp {
        color: $text-accent;
        padding: 0 1;
    }
    KeyDialog .note {
        margin-top: 1;
    }
    KeyDialog #rotate-unfinished, KeyDialog #destroy-note {
        margin-top: 1;
    }
    """


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class KekSpec:
    """What the generation form asked for (no secret: names and choices only)."""

    name: str
    backend: str
    suite: str
    purpose: str
    custody: str = "single"  # or "quorum": screens.quorum's ceremony follows


CUSTODIES = {
    "quorum": "quorum: M of N custodians together open a backup",
    "single": "single: one key pair, sealed by the home's root key",
}


class KekForm(KeyDialog):
    """Step 1 of generating a KEK: name, custody, backend, suite, purpose. Returns a
    KekSpec. Custody is quorum by default once the home has three custodians (a quorum
    needs 2 <= M <= N-1), single before."""

    def __init__(self, service: Service, *, existing: list[str], custodians: int = 0) -> None:
        super().__init__()
        self.service = service
        self.existing = existing
        self.backends = list(service.config.backends) or ["local"]
        # a server backend not configured yet can be set up in the ceremony's next step
        self.new_backends = [b for b in NEW_BACKENDS if b not in self.backends]
        self.backends += self.new_backends
        self.default_suite = service.config.default_suite
        self.custodians = custodians
        self.default_custody = "quorum" if custodians >= 3 else "single"

    FRAME_ID = "kek-form"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"kek-name": "#kek-backend"}

    def heading(self) -> str:
        return "Generate a KEK"

    def body(self) -> ComposeResult:
        yield Static(
            "A key-encryption key wraps the data keys of backups. Its first version is "
            "made now; you confirm with a code from your authenticator on the next step.",
            classes="muted",
            markup=False,
        )
        yield Label("Name (letters, digits, . _ -; e.g. archive-2027)", classes="field-name")
        yield Input(placeholder="name", id="kek-name", max_length=64, restrict=NAME_CHARS)
        yield Label("Custody", classes="field-name")
        with RadioSet(id="kek-custody"):
            for c, text in CUSTODIES.items():
                yield Choice(Text(text), value=c == self.default_custody, id=f"custody-{c}")
        if self.custodians < 3:
            yield Static(
                f"A quorum needs 3 custodians; this home has {self.custodians}.",
                classes="muted",
                id="custody-note",
                markup=False,
            )
        with Horizontal(id="kek-choices"):
            with Vertical(id="kek-backend-col"):
                yield Label("Backend", classes="field-name")
                with RadioSet(id="kek-backend"):
                    for i, b in enumerate(self.backends):
                        label = f"{b} (new)" if b in self.new_backends else b
                        yield Choice(
                            Text(safe(label)), value=(b == "local" or i == 0), id=f"backend-{i}"
                        )
            with Vertical(id="kek-suite-col"):
                yield Label("Suite", classes="field-name")
                with RadioSet(id="kek-suite"):
                    for s in SUITES:
                        yield Choice(
                            Text.assemble(
                                (s, "bold"),
                                "  ",
                                (SUITE_NOTES.get(s, ""), "dim"),
                                (" (default)" if s == self.default_suite else "", "dim"),
                            ),
                            value=s == self.default_suite,
                            id=f"suite-{s}",
                        )
        yield Label("Purpose (shown to custodians and auditors)", classes="field-name")
        yield Input(placeholder="e.g. long-term archive backups", id="kek-purpose", max_length=200)

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "kek-next")

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "kek-custody":  # a quorum KEK is its own backend
            quorum = self._chosen("#kek-custody", list(CUSTODIES)) == "quorum"
            self.query_one("#kek-backend", RadioSet).disabled = quorum

    def on_mount(self) -> None:
        self.query_one("#kek-name").focus()
        self.query_one("#kek-backend", RadioSet).disabled = self.default_custody == "quorum"

    def _chosen(self, radios: str, choices: list[str]) -> str:
        index = self.query_one(radios, RadioSet).pressed_index
        return choices[index] if 0 <= index < len(choices) else choices[0]

    def submit(self) -> None:
        from custodian.container import KEK_NAME_RE

        name = self.query_one("#kek-name", Input).value.strip()
        purpose = " ".join(self.query_one("#kek-purpose", Input).value.split())
        if not name:
            self.error("Type a name for the KEK.")
            self.query_one("#kek-name").focus()
            return
        if not KEK_NAME_RE.fullmatch(name):
            self.error(
                "A KEK name is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit."
            )
            self.query_one("#kek-name").focus()
            return
        clash = [k for k in self.existing if k.lower() == name.lower()]
        if clash:
            self.error(f"A KEK named {clash[0]} exists; choose another name.")
            self.query_one("#kek-name").focus()
            return
        custody = self._chosen("#kek-custody", list(CUSTODIES))
        if custody == "quorum" and self.custodians < 3:
            self.error(
                f"A quorum KEK needs at least 3 custodians (M of N, 2 <= M <= N-1); this "
                f"home has {self.custodians}. Enrol more (People, F4), or choose single."
            )
            return
        self.dismiss(
            KekSpec(
                name,
                "quorum" if custody == "quorum" else self._chosen("#kek-backend", self.backends),
                self._chosen("#kek-suite", list(SUITES)),
                purpose,
                custody,
            )
        )


class KekCreated(KeyDialog):
    """The last step of generation: the new KEK's fingerprint, to read aloud and compare."""

    FRAME_ID = "kek-created"
    ERROR_LINE = False

    def __init__(self, kek: Kek) -> None:
        super().__init__()
        self.kek = kek

    def heading(self) -> str:
        return f"KEK {safe(self.kek.name)} is ready"

    def body(self) -> ComposeResult:
        k = self.kek
        v = k.versions[0]
        yield Static(
            pairs(
                ("KEK", k.name),
                ("Version", "v1 (current: wraps every new DEK under this KEK)"),
                ("Backend", k.backend),
                ("Suite", k.suite),
                ("Purpose", k.purpose or "-"),
                ("Created (UTC)", when(v.created_at)),
            ),
            id="kek-created-pairs",
        )
        yield Label("Fingerprint", classes="field-name")
        yield Static(fingerprint_text(v.fingerprint), id="kek-created-fp", classes="fp")
        yield Static(
            "Read the fingerprint aloud to a second custodian, who compares it with the "
            "dashboard or 'custodian kek list'. It is in the audit log too.",
            classes="muted",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons("Done", "kek-done", cancel=None)

    def on_mount(self) -> None:
        self.query_one("#kek-done").focus()

    def submit(self) -> None:
        self.dismiss(self.kek)


# ---------------------------------------------------------------- confirmation with a code


class CodeConfirm(KeyDialog):
    """Show what is about to happen, take one TOTP code, and do it.

    ``act(code)`` runs the service call, in a thread worker (it must touch no
    widget); its result is what the dialog returns. A refusal (a mistyped or
    replayed code, a rule of the core) shows in the dialog, nothing changes,
    and the person may type the next code.
    """

    FRAME_ID = "code-confirm"

    def __init__(
        self,
        title: str,
        body: RenderableType,
        act: Callable[[str], object],
        *,
        ok: str = "Confirm",
        variant: str = "primary",
        who: str = "",
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.what = body
        self.act = act
        self.ok_label = ok
        self.variant = variant
        self.who = who

    def heading(self) -> str:
        return self.title_text

    def body(self) -> ComposeResult:
        yield Static(self.what, id="code-body")

    def fields(self) -> ComposeResult:
        label = "Code from your authenticator" + (f" ({safe(self.who)})" if self.who else "")
        yield Label(label, classes="field-name", markup=False)
        yield CodeInput(id="code")

    def button_row(self) -> Horizontal:
        return self.buttons(self.ok_label, "code-ok", variant=self.variant)

    def on_mount(self) -> None:
        self.query_one("#code").focus()

    def submit(self) -> None:
        field = self.query_one("#code", CodeInput)
        code = take_code(field)
        if not self.code_ok(code):
            field.focus()
            return
        # a fixed description: the worker's would otherwise hold the code
        self.run_step(
            partial(self.act, code),
            working="Checking the code…",
            description="confirm a key ceremony with a code",
            refocus="#code",
        )


# ---------------------------------------------------------------- rotation


def census_table(
    census: dict[int, int], current: int, new: int | None = None, after: str = "After the rewrap"
) -> Table:
    t = Table(box=None, padding=(0, 2), pad_edge=False, header_style="bold dim")
    t.add_column("Version", no_wrap=True)
    t.add_column("DEKs now", justify="right", no_wrap=True)
    t.add_column(after, justify="right", no_wrap=True)
    total = sum(census.values())
    for v in sorted(census, reverse=True):
        t.add_row(
            Text(f"v{v}" + (" current" if v == current else ""), style="cyan"),
            f"{census[v]:,}",
            "0" if new is not None else "",
        )
    if new is not None:
        t.add_row(Text(f"v{new} new", style="bold cyan"), "0", f"{total:,}")
    return t


class RotatePreviewDialog(KeyDialog):
    """Step 1 of a rotation: what it will do. Returns True to go on to the code."""

    FRAME_ID = "rotate-preview"

    def __init__(self, preview: RotationPreview) -> None:
        super().__init__()
        self.preview = preview

    def heading(self) -> str:
        return f"Rotate KEK {safe(self.preview.kek)}"

    def body(self) -> ComposeResult:
        p = self.preview
        est = (
            f"{duration(p.estimated_seconds)} at {p.estimated_rate:,.0f} DEKs/s "
            f"({p.workers} worker{'s' if p.workers != 1 else ''}, measured here just now)"
            if p.rate > 0
            else "unknown (the backend gives no rate beforehand)"
        )
        rows: list[tuple[str, str | Text]] = [
            ("KEK", p.kek),
            ("Backend, suite", f"{p.backend}, {p.suite}"),
            ("Versions", Text(f"v{p.current_version} -> v{p.new_version}", style="bold")),
            ("DEKs to rewrap", Text(f"{p.to_rewrap:,}", style="bold")),
            ("Estimated time", est),
        ]
        yield Static(pairs(*rows), id="rotate-pairs")
        yield Label("DEK census per version", classes="field-name")
        yield Static(census_table(p.census, p.current_version, p.new_version), id="rotate-census")
        if p.unfinished is not None:
            u = p.unfinished
            yield Static(
                Text(
                    f"An unfinished rewrap job ({u.id[:8]}, to v{u.target_version}, "
                    f"{u.done:,} of {u.total:,} done) is superseded: the new job covers "
                    "its DEKs too."
                ),
                id="rotate-unfinished",
                classes="warn",
            )
        yield Static(
            f"v{p.new_version} wraps every new DEK from the moment you confirm; the rewrap "
            "job then starts here and can be cancelled and resumed. Old versions keep "
            "unwrapping until you retire them.",
            classes="muted note",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons("Next: confirm with a code", "rotate-next")

    def on_mount(self) -> None:
        self.query_one("#rotate-next").focus()

    def submit(self) -> None:
        self.dismiss(True)


def rotate_body(p: RotationPreview) -> RenderableType:
    return Group(
        pairs(
            ("KEK", p.kek),
            ("New version", Text(f"v{p.new_version} (after v{p.current_version})", style="bold")),
            ("DEKs to rewrap", f"{p.to_rewrap:,}"),
        ),
        Text(""),
        Text("Confirming makes the new version and starts the rewrap job.", style="dim"),
    )


def waiting_period(wait_days: int) -> str:
    """The policy's wait between retiring a version and destroying it, in words."""
    if wait_days == 0:
        return "no waiting period (this home's policy; 7 days on a new home)"
    return f"a waiting period of {wait_days} day{'s' if wait_days != 1 else ''}"


def retire_body(k: Kek, v: KekVersion, wait_days: int, quorum: int) -> RenderableType:
    when_destroyed = (
        "From then on"
        if wait_days == 0
        else f"After {wait_days} day{'s' if wait_days != 1 else ''}"
    )
    return Group(
        pairs(
            ("KEK", k.name),
            ("Version", Text(f"v{v.version}", style="bold")),
            ("Fingerprint", fingerprint_text(v.fingerprint)),
            ("DEKs under it", Text(f"{v.dek_count:,}", style="bold")),
            ("Then", f"{waiting_period(wait_days)} before destruction"),
        ),
        Text(""),
        Text(
            f"A retired version unwraps nothing any more. {when_destroyed} its key "
            f"material may be destroyed, with the approval of {quorum} other custodians.",
            style="dim",
        ),
    )


# ---------------------------------------------------------------- destruction


class DestroyRequestDialog(KeyDialog):
    """Ask for a retired version's key material to be destroyed. Returns the Request."""

    FRAME_ID = "destroy-request"

    def __init__(
        self,
        service: Service,
        kek: Kek,
        version: KekVersion,
        *,
        by: Any,
        quorum: int,
        wait_days: int = 7,
    ) -> None:
        super().__init__()
        self.service = service
        self.kek = kek
        self.version = version
        self.by = by
        self.quorum = quorum
        self.wait_days = wait_days

    def heading(self) -> str:
        return f"Request destruction of KEK {safe(self.kek.name)} v{self.version.version}"

    def body(self) -> ComposeResult:
        k, v = self.kek, self.version
        yield Static(
            pairs(
                ("KEK", k.name),
                ("Version", f"v{v.version} ({v.state})"),
                ("Fingerprint", fingerprint_text(v.fingerprint)),
                ("Retired (UTC)", when(v.retired_at or "") or "-"),
                (
                    "Waiting period",
                    "none on this home (7 days on a new home)"
                    if self.wait_days == 0
                    else f"{self.wait_days} day{'s' if self.wait_days != 1 else ''}: over",
                ),
                ("DEKs under it", f"{v.dek_count:,}"),
            ),
            id="destroy-pairs",
        )
        yield Static(
            Text.assemble(
                ("Destroying the key material cannot be undone. ", "bold"),
                f"{self.quorum} other custodians must approve this request, each with a "
                "fresh code (Restores inbox, F6, or 'custodian approve'); you cannot "
                "approve your own request. At quorum the key material is destroyed.",
            ),
            id="destroy-note",
        )

    def fields(self) -> ComposeResult:
        yield Label("Reason (goes into the audit log)", classes="field-name")
        yield Input(placeholder="e.g. retired after the 2026 rotation", id="destroy-reason")

    def button_row(self) -> Horizontal:
        return self.buttons("Request destruction", "destroy-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#destroy-reason").focus()

    def submit(self) -> None:
        reason = " ".join(self.query_one("#destroy-reason", Input).value.split())
        if not reason:
            self.error("Say why, for the audit log and the approving custodians.")
            return
        k, v, by = self.kek.name, self.version.version, self.by

        def request() -> Request:
            return self.service.keys.request_destroy(k, v, reason, by=by)

        self.run_step(
            request, working="Recording the request…", description="request a KEK destruction"
        )
