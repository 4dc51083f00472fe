"""The dialogs of the first set-up (:mod:`screens.setup`): the home, a custodian's name and
passphrase (typed twice, or generated and shown once), the custodian who signs the
next enrolments, the break-glass set's holders and threshold.

Each is a step on :class:`screens.dialogs.Dialog`; a step that changes something
runs its service call in a thread worker (:meth:`~screens.dialogs.Dialog.run_step`)
and shows a refusal on its error line. A passphrase is read once and its field
cleared (:func:`screens.secure.take_secret`); a generated one is wiped when its
dialog closes, done or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, OptionList, RadioSet, Static
from textual.widgets.option_list import Option

from custodian.errors import CustodianError
from custodian.home import Home
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import PendingEnrolment, Service
from screens.dialogs import Choice, Dialog, Tick
from screens.format import safe
from screens.key_dialogs import NAME_CHARS
from screens.secure import SecretInput, take_secret


class SetupDialog(Dialog[Any]):
    WIDE = True

    DEFAULT_CSS = """
    SetupDialog {
        align: center middle;
    }
    SetupDialog RadioSet {
        width: 100%;
        border: round $primary 30%;
        background: transparent;
    }
    SetupDialog RadioSet:focus {
        border: round $primary;
    }
    SetupDialog .fp {
        color: $text-accent;
    }
    """


# ---------------------------------------------------------------- 1. the home


class HomeForm(SetupDialog):
    """Where the home lives, its first KEK's name, its keyring. Returns the new Service."""

    FRAME_ID = "setup-home"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"home-path": "#home-kek"}

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home

    def heading(self) -> str:
        return "First set-up: the home"

    def body(self) -> ComposeResult:
        yield Static(
            "The home is one private directory: the catalog, the sealed store, the audit "
            "log and the configuration. Its directory's name labels this home's entries in "
            "the custodians' authenticator apps.",
            classes="muted",
            markup=False,
        )
        yield Label("Directory", classes="field-name")
        yield Input(value=str(self.home.path), id="home-path")
        yield Label("First KEK's name (made on step 3, as a quorum KEK)", classes="field-name")
        yield Input(value="backups", id="home-kek", max_length=64, restrict=NAME_CHARS)
        yield Label("Where the home's root key lives", classes="field-name")
        with RadioSet(id="home-keyring"):
            yield Choice("the OS keyring (for real use)", value=True, id="keyring-system")
            yield Choice(
                "a file in the home (demos and tests only)",
                id="keyring-file",
            )

    def button_row(self) -> Horizontal:
        return self.buttons("Create the home", "home-ok", cancel="Leave")

    def on_mount(self) -> None:
        self.query_one("#home-ok").focus()

    def submit(self) -> None:
        from custodian.container import KEK_NAME_RE

        path = self.query_one("#home-path", Input).value.strip()
        kek = self.query_one("#home-kek", Input).value.strip()
        if not path:
            self.error("Type the directory for the home.")
            return
        if not KEK_NAME_RE.fullmatch(kek):
            self.error(
                "A KEK name is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit."
            )
            return
        keyring = (
            "home-file"
            if self.query_one("#home-keyring", RadioSet).pressed_index == 1
            else "system"
        )

        def init() -> Service:
            return Service.init(Path(path), kek=kek, keyring_backend=keyring, custody="quorum")

        # a refusal is most often the keyring (none on a server): the focus goes there
        self.run_step(
            init, working="Creating the home…", description="create a home", refocus="#home-keyring"
        )


# ---------------------------------------------------------------- 2. the custodians


class Generate:
    """CustodianForm's answer when the person wants a generated passphrase."""

    def __init__(self, name: str) -> None:
        self.name = name


class CustodianForm(SetupDialog):
    """A custodian's name and passphrase (typed twice), or the wish for a generated one.
    Returns a PendingEnrolment (typed) or :class:`Generate`."""

    FRAME_ID = "setup-custodian"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"custodian-name": "#pw1", "pw1": "#pw2"}

    def __init__(self, service: Service, by: Actor | None, number: int) -> None:
        super().__init__()
        self.service = service
        self.by = by
        self.number = number

    def heading(self) -> str:
        return f"Custodian {self.number}: name and passphrase"

    def body(self) -> ComposeResult:
        who = (
            "the home's own key signs this first enrolment"
            if self.by is None
            else f"{self.by.name}'s key signs the enrolment"
        )
        yield Static(
            f"Only the new custodian at the keyboard now ({who}). The passphrase opens "
            "their keys: 5 words or 24 characters at least, not a well-known phrase.",
            classes="muted",
            markup=False,
        )
        yield Label("Name (lowercase letters, digits, . _ -)", classes="field-name")
        yield Input(placeholder="name", id="custodian-name", max_length=32)
        with RadioSet(id="custodian-mode"):
            yield Choice("I type my own passphrase", value=True, id="mode-typed")
            yield Choice("Generate one for me (8 words, shown once)", id="mode-generated")
        yield SecretInput(placeholder="passphrase", id="pw1")
        yield SecretInput(placeholder="the same again", id="pw2")

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "custodian-next")

    def on_mount(self) -> None:
        self.query_one("#custodian-name").focus()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        generated = event.radio_set.pressed_index == 1
        for f in self.query(SecretInput):
            f.value = ""
            f.disabled = generated

    def submit(self) -> None:
        from custodian import people as P

        name = self.query_one("#custodian-name", Input).value.strip()
        try:
            P.check_name(name)
        except CustodianError as e:
            self.error(str(e))
            self.query_one("#custodian-name").focus()
            return
        if any(p.name == name for p in self.service.people.list(include_home=True)):
            self.error(f"{name} is enrolled already; choose another name.")
            return
        if self.query_one("#custodian-mode", RadioSet).pressed_index == 1:
            self.dismiss(Generate(name))
            return
        one, two = self.query_one("#pw1", SecretInput), self.query_one("#pw2", SecretInput)
        differ = one.value != two.value
        empty = not one.value
        passphrase, other = take_secret(one), take_secret(two)
        other.wipe()
        if empty or differ:
            passphrase.wipe()
            self.error(
                "Type the passphrase twice."
                if empty
                else "The two passphrases differ; type them again (both were cleared)."
            )
            one.focus()
            return
        self.run_step(
            _begin(self.service, name, passphrase, self.by),
            working="Making the keys…",
            description="begin an enrolment",
            refocus="#pw1",
        )

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (both fields were cleared)."


def _begin(service: Service, name: str, passphrase: SecretBytes, by: Actor | None) -> Any:
    def begin() -> PendingEnrolment:  # Argon2id: about half a second
        try:
            return service.people.begin_enrolment(name, ["custodian"], passphrase=passphrase, by=by)
        finally:
            passphrase.wipe()

    return begin


class GeneratedPassphrase(SetupDialog):
    """A generated passphrase, shown once to its custodian, typed back. Returns the
    PendingEnrolment made with it."""

    FRAME_ID = "setup-generated"

    def __init__(self, service: Service, name: str, by: Actor | None) -> None:
        super().__init__()
        from custodian.custody.personal import generate_passphrase

        self.service = service
        self.person = name
        self.by = by
        self.passphrase: SecretBytes | None = generate_passphrase()
        self.discard_on_close(self)

    def discard(self) -> None:
        if self.passphrase is not None:
            self.passphrase.wipe()
            self.passphrase = None

    def heading(self) -> str:
        return f"{safe(self.person)}'s passphrase"

    def body(self) -> ComposeResult:
        assert self.passphrase is not None
        words = bytes(self.passphrase.reveal()).decode().split()
        yield Static(
            Text(f"Only {self.person} looks at the screen now.", style="bold"),
            id="generated-note",
        )
        yield Static(
            Text("   ".join(words[:4]) + "\n" + "   ".join(words[4:]), style="bold"),
            id="generated-words",
            classes="fp",
        )
        yield Static(
            "Write it down, or learn it: it is shown only here, and nobody can recover "
            "it. Type it back below; it leaves the screen when this step closes.",
            classes="muted",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        yield Label("The passphrase again (words separated by spaces)", classes="field-name")
        yield SecretInput(placeholder="type it back", id="generated-again")

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "generated-next")

    def on_mount(self) -> None:
        self.query_one("#generated-again").focus()

    def submit(self) -> None:
        field = self.query_one("#generated-again", SecretInput)
        typed = take_secret(field)
        try:
            same = (
                self.passphrase is not None
                and " ".join(bytes(typed.reveal()).decode(errors="replace").split())
                == bytes(self.passphrase.reveal()).decode()
            )
        finally:
            typed.wipe()
        if not same or self.passphrase is None:
            self.error("That is not the passphrase shown; type it again (the field was cleared).")
            field.focus()
            return
        # the enrolment gets its own copy: this dialog's is wiped when it closes
        copy = SecretBytes(bytes(self.passphrase.reveal()), "passphrase")
        self.run_step(
            _begin(self.service, self.person, copy, self.by),
            working="Making the keys…",
            description="begin an enrolment",
        )


class EnrollerUnlock(SetupDialog):
    """An enrolled custodian unlocks once; their key signs the next enrolments and they
    confirm the set-up's ceremonies with a code. Returns their Actor."""

    FRAME_ID = "setup-enroller"
    ENTER_MOVES: ClassVar[dict[str, str]] = {}

    def __init__(self, service: Service, custodians: tuple[str, ...], doing: str) -> None:
        super().__init__()
        self.service = service
        self.custodians = custodians
        self.doing = doing

    def heading(self) -> str:
        return "A custodian signs the next steps"

    def body(self) -> ComposeResult:
        yield Static(
            f"One of the custodians already enrolled unlocks their key once, for the rest "
            f"of this set-up: it signs {self.doing}, and they confirm the quorum KEK with "
            "a code.",
            classes="muted",
            markup=False,
        )
        yield Label("Custodian", classes="field-name")
        yield OptionList(*[Option(f"  {n}", id=n) for n in self.custodians], id="enroller")

    def fields(self) -> ComposeResult:
        yield Label("Their passphrase", classes="field-name")
        yield SecretInput(placeholder="passphrase", id="enroller-passphrase")

    def button_row(self) -> Horizontal:
        return self.buttons("Unlock", "enroller-ok")

    def on_mount(self) -> None:
        self.query_one("#enroller", OptionList).highlighted = 0
        self.query_one("#enroller-passphrase").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#enroller-passphrase").focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """The highlighted custodian carries a glyph (▶), not a colour only."""
        for i, name in enumerate(self.custodians):
            mark = "▶ " if i == event.option_index else "  "
            event.option_list.replace_option_prompt_at_index(i, f"{mark}{name}")

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (it was cleared)."

    def submit(self) -> None:
        index = self.query_one("#enroller", OptionList).highlighted
        name = self.custodians[index or 0]
        field = self.query_one("#enroller-passphrase", SecretInput)
        if not field.value:
            self.error(f"{name}: type your passphrase.")
            return
        passphrase = take_secret(field)

        def unlock() -> Actor:
            try:
                return self.service.auth.unlock(name, passphrase)
            finally:
                passphrase.wipe()

        self.run_step(
            unlock,
            working="Opening the personal key…",
            description="unlock the enroller",
            refocus="#enroller-passphrase",
        )


# ---------------------------------------------------------------- 4. the break-glass set


class BreakGlassForm(SetupDialog):
    """Who holds a break-glass share, and how many shares recover the home. Returns
    ``(holders, threshold)``."""

    FRAME_ID = "setup-breakglass"

    def __init__(self, custodians: tuple[str, ...]) -> None:
        super().__init__()
        self.custodians = custodians

    def heading(self) -> str:
        return "The break-glass set"

    def body(self) -> ComposeResult:
        yield Static(
            "A recovery secret, split into paper shares (SLIP-39), one per holder: any T "
            "of them recover the home on a new machine when the keyring or passphrases "
            "are lost. Each holder sees only their own share, one at a time; no share is "
            "stored anywhere.",
            classes="muted",
            markup=False,
        )
        yield Label("Holders", classes="field-name")
        for i, name in enumerate(self.custodians):
            yield Tick(name, value=True, id=f"bg-holder-{i}")

    def fields(self) -> ComposeResult:
        yield Label("T: shares needed to recover", classes="field-name")
        yield Input(value="2", restrict=r"[0-9]*", max_length=2, id="bg-threshold")

    def button_row(self) -> Horizontal:
        return self.buttons("Next: holders unlock", "bg-next")

    def on_mount(self) -> None:
        self.query_one("#bg-next").focus()

    def submit(self) -> None:
        chosen = tuple(
            n
            for i, n in enumerate(self.custodians)
            if self.query_one(f"#bg-holder-{i}", Tick).value
        )
        text = self.query_one("#bg-threshold", Input).value
        t = int(text) if text.isdigit() else 0
        if len(chosen) < 2:
            self.error("Tick at least two holders: one share alone must never recover the home.")
            return
        if not 2 <= t <= len(chosen):
            self.error(
                f"T must be between 2 and {len(chosen)} for {len(chosen)} holders (2 of 3 is "
                "usual: losing one share loses nothing)."
            )
            return
        self.dismiss((chosen, t))
