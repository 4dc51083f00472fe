"""The dialogs of the Break-glass screen (:mod:`screens.breakglass`): the holders and
threshold of a new set, a holder's unlock, one share shown to one holder
(:class:`ShowShare`), shares typed and checked one at a time (:class:`ShareEntry`, with
SLIP-39 word completion), the confirming code, and re-enrolment after a recovery."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.suggester import Suggester
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.dialogs import Dialog
from screens.secure import SecretInput, take_secret

if TYPE_CHECKING:
    from custodian.custody.breakglass import Recovery, ShareMnemonic
    from custodian.service.custody import Recovered

TYPE_BACK = 3  # words a holder types back from their paper
WORDS_PER_ROW = 4


class WordSuggester(Suggester):
    """Completes the word being typed from the SLIP-39 list (when one word fits)."""

    def __init__(self, service: Service) -> None:
        super().__init__(use_cache=True, case_sensitive=False)
        self.service = service

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.endswith(" "):
            return None
        head, _, last = value.rpartition(" ")
        hits = self.service.custody.complete(last)
        if len(hits) != 1 or hits[0] == last:
            return None
        return (head + " " if head else "") + hits[0]


# ---------------------------------------------------------------- dialogs


class SplitForm(Dialog[tuple[list[str], int] | None]):
    """Who holds a share of the new set, and how many open it."""

    FRAME_ID = "bg-split"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"bg-holders": "#bg-threshold"}

    def __init__(self, what: str, by: Actor, default: list[str]) -> None:
        super().__init__()
        self.what, self.by, self.default = what, by, default

    def heading(self) -> str:
        return self.what

    def body(self) -> ComposeResult:
        yield Static(
            Text(
                "Each holder gets one paper share and must be here: they unlock with their "
                "own passphrase, then see their share alone. "
                f"{self.by.name} confirms with a code."
            ),
            classes="muted",
        )
        yield Label("Holders (custodians, comma-separated)", classes="field-name")
        yield Input(value=", ".join(self.default), id="bg-holders")
        yield Label("Shares needed to recover (T of N, at least 2)", classes="field-name")
        yield Input(value="2", id="bg-threshold", restrict=r"[0-9]*", max_length=2)

    def button_row(self) -> Horizontal:
        return self.buttons("Next", "bg-split-ok")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#bg-holders").focus()

    def submit(self) -> None:
        names = [n.strip() for n in self.query_one("#bg-holders", Input).value.split(",")]
        names = [n for n in names if n]
        t = self.query_one("#bg-threshold", Input).value
        if len(names) < 2 or not t.isdigit() or not 2 <= int(t) <= len(names):
            self.error("Name at least two holders and a threshold from 2 to their number.")
            return
        self.dismiss((names, int(t)))


class HolderUnlock(Dialog[Actor | None]):
    """One holder, at the keyboard, unlocks their own key with their passphrase."""

    FRAME_ID = "bg-unlock"

    def __init__(self, service: Service, name: str) -> None:
        super().__init__()
        self.service, self.holder = service, name

    def heading(self) -> str:
        return f"Holder {self.holder}"

    def body(self) -> ComposeResult:
        yield Static(Text(f"{self.holder}: type your passphrase (the others look away)."))

    def fields(self) -> ComposeResult:
        yield Label("Passphrase", classes="field-name")
        yield SecretInput(placeholder=f"{self.holder}'s passphrase", id="bg-pw")

    def button_row(self) -> Horizontal:
        return self.buttons("Unlock", "bg-unlock-ok")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#bg-pw").focus()

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (it was cleared)."

    def submit(self) -> None:
        pw = take_secret(self.query_one("#bg-pw", SecretInput))
        name = self.holder

        def unlock() -> Actor:
            try:
                return self.service.auth.unlock(name, pw)
            finally:
                pw.wipe()

        self.run_step(unlock, working="Unlocking…", description="unlock a holder", refocus="#bg-pw")


class ShowShare(Dialog[bool | None]):
    """One share for one holder: ready (nothing shown), shown, typed back. Closing the
    dialog removes the words; the next holder's dialog starts empty."""

    FRAME_ID = "bg-show"
    WIDE = True
    DEFAULT_CSS = """
    ShowShare #bg-typeback { height: auto; }
    ShowShare #bg-typeback Input { width: 1fr; }
    """

    def __init__(self, holder: str, share: ShareMnemonic, fingerprint: str, of: str) -> None:
        super().__init__()
        self.holder, self.share, self.fingerprint, self.of = holder, share, fingerprint, of
        self.phase = "ready"
        n = len(share.words())
        self.asked = sorted(secrets.SystemRandom().sample(range(n), TYPE_BACK))

    def heading(self) -> str:
        return f"Share {self.share.number} for {self.holder} ({self.of})"

    def body(self) -> ComposeResult:
        yield Static(self._ready(), id="bg-words")

    def fields(self) -> ComposeResult:
        yield Horizontal(
            *[
                Input(placeholder=f"word {i + 1}", id=f"bg-w{i}", classes="bg-word")
                for i in self.asked
            ],
            id="bg-typeback",
        )

    def button_row(self) -> Horizontal:
        return self.buttons(f"Show {self.holder}'s share", "bg-show-ok")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#bg-typeback").display = False
        self.ok_button.focus()

    def _ready(self) -> Text:
        return Text.assemble(
            (f"Only {self.holder} looks at the screen now.\n\n", "bold"),
            "Everyone else looks away. The share appears when you press the button, and "
            "disappears before the next holder.\n\n",
            ("Recovery key ", "dim"),
            (self.fingerprint, "bold"),
            ("\nwrite it on the share's cover sheet.", "dim"),
        )

    def _words(self) -> Table:
        t = Table.grid(padding=(0, 2))
        for _ in range(WORDS_PER_ROW):
            t.add_column(no_wrap=True)
        words = self.share.words()
        for r in range(0, len(words), WORDS_PER_ROW):
            t.add_row(
                *[
                    Text.assemble((f"{i + 1:>2} ", "dim"), (words[i].upper(), "bold reverse"))
                    for i in range(r, min(r + WORDS_PER_ROW, len(words)))
                ]
            )
        return t

    def submit(self) -> None:
        area = self.query_one("#bg-words", Static)
        if self.phase in ("ready", "check-failed"):
            self.phase = "shown"
            area.update(self._words())
            self.ok_button.label = "Written: hide it"
            self.error(f"{self.holder}: write every word on the paper, in order.")
        elif self.phase == "shown":
            self.phase = "check"
            area.update(
                Text(
                    f"{self.holder}: the words are hidden. From your paper, type words "
                    + ", ".join(str(i + 1) for i in self.asked)
                    + "."
                )
            )
            self.query_one("#bg-typeback").display = True
            self.query_one(f"#bg-w{self.asked[0]}").focus()
            self.ok_button.label = "Check"
            self.error("")
        else:
            self._check(area)

    def _check(self, area: Static) -> None:
        words = self.share.words()
        wrong = []
        for i in self.asked:
            field = self.query_one(f"#bg-w{i}", Input)
            typed, field.value = field.value.strip().lower(), ""
            if not typed or not (
                typed == words[i] or (len(typed) >= 4 and words[i].startswith(typed))
            ):
                wrong.append(i + 1)
        del words
        if wrong:
            self.phase = "check-failed"
            self.query_one("#bg-typeback").display = False
            area.update(self._ready())
            self.ok_button.label = f"Show {self.holder}'s share again"
            self.error(
                f"Word {', '.join(map(str, wrong))} did not match the share; look at it again "
                "and correct the paper."
            )
            return
        area.update(Text(""))
        self.dismiss(True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        ids = [f"bg-w{i}" for i in self.asked]
        if event.input.id in ids[:-1]:
            self.query_one(f"#{ids[ids.index(event.input.id) + 1]}").focus()
        else:
            self.ok()


class ShareEntry(Dialog[list[str] | None]):
    """Shares typed one at a time, each checked as typed; returns them at threshold (the
    check value matched)."""

    FRAME_ID = "bg-entry"
    WIDE = True

    def __init__(self, service: Service, what: str) -> None:
        super().__init__()
        self.service, self.what = service, what
        self.checker: Recovery | None = None
        self.texts: list[str] = []

    def heading(self) -> str:
        return self.what

    def body(self) -> ComposeResult:
        yield Static(self._progress(), id="bg-progress")

    def fields(self) -> ComposeResult:
        yield Label("Share (its words in order; Tab or → completes a word)", classes="field-name")
        yield Input(
            placeholder="word word word …", id="bg-share", suggester=WordSuggester(self.service)
        )
        yield Label("SLIP-39 passphrase (leave empty if the set has none)", classes="field-name")
        yield SecretInput(placeholder="optional", id="bg-slip-pw")

    def button_row(self) -> Horizontal:
        return self.buttons("Add share", "bg-entry-ok")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#bg-share").focus()

    def _progress(self) -> Text:
        s = self.service.custody.current()
        p = self.checker.progress if self.checker is not None else None
        need = s.threshold if s is not None else 2
        have = p.have if p is not None else 0
        return Text.assemble(
            (f"{have} of {need}", "bold"),
            f" shares of set {s.set_id if s else '?'} entered."
            if s
            else " (no set recorded in the catalog)",
            ("\nEach share is checked as you add it; the field is cleared when it is "
             "accepted.", "dim"),
        )  # fmt: skip

    def submit(self) -> None:
        from custodian.custody.breakglass import BreakGlassError

        field = self.query_one("#bg-share", Input)
        pw_field = self.query_one("#bg-slip-pw", SecretInput)
        text = " ".join(field.value.split())
        try:
            if self.checker is None:
                self.checker = self.service.custody.entry(self._passphrase(pw_field))
            if self.checker.progress.done and not text:
                self.checker.retry(self._passphrase(pw_field))
            else:
                if not text:
                    self.error("Type a share's words first.")
                    return
                self.checker.add(text)
                field.value = ""
                self.texts.append(text)
        except BreakGlassError as e:
            msg = e.message
            if "passphrase" in msg:
                field.value = ""
                msg += " Type the passphrase below and press Enter."
                pw_field.focus()
            self.error(msg)
            self.query_one("#bg-progress", Static).update(self._progress())
            return
        except CustodianError as e:
            self.error(str(e))
            return
        self.query_one("#bg-progress", Static).update(self._progress())
        if self.checker.progress.done:
            self.error("")
            self.dismiss(list(self.texts))
        else:
            self.error(f"Share accepted: {self.checker.progress} — type the next holder's share.")

    @staticmethod
    def _passphrase(field: Input) -> bytes:
        """The SLIP-39 passphrase, read once (the field is cleared); b"" for none. It is
        ``bytes`` here: the checker copies it into a wipeable buffer."""
        value, field.value = field.value.encode(), ""
        return value

    def on_unmount(self) -> None:
        super().on_unmount()
        if self.checker is not None:
            self.checker.wipe()
        self.texts.clear()


class CodeStep(Dialog[Any]):
    """The signed-in custodian's TOTP code confirms the ceremony; ``act(code)`` runs it."""

    FRAME_ID = "bg-code"

    def __init__(self, heading: str, body: str, act: Any, who: str) -> None:
        super().__init__()
        self.title_text, self.text, self.act, self.who = heading, body, act, who

    def heading(self) -> str:
        return self.title_text

    def body(self) -> ComposeResult:
        yield Static(Text(self.text))

    def fields(self) -> ComposeResult:
        from screens.dialogs import CodeInput

        yield Label(f"Code from {self.who}'s authenticator", classes="field-name")
        yield CodeInput(id="bg-code-in")

    def button_row(self) -> Horizontal:
        return self.buttons("Confirm", "bg-code-ok")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#bg-code-in").focus()

    def submit(self) -> None:
        from functools import partial

        from screens.dialogs import CodeInput, take_code

        code = take_code(self.query_one("#bg-code-in", CodeInput))
        if self.code_ok(code):
            self.run_step(
                partial(self.act, code),
                working="Working…",
                description="a break-glass ceremony",
                refocus="#bg-code-in",
            )


class Reenrol(Dialog[str | None]):
    """After a recovery: one person at a time gets a new key under a new passphrase (and
    their holder keys). Returns the name re-enrolled; Cancel ends the re-enrolment."""

    FRAME_ID = "bg-reenrol"

    def __init__(self, service: Service, rec: Recovered, names: list[str]) -> None:
        super().__init__()
        self.service, self.rec, self.names = service, rec, names

    def heading(self) -> str:
        return "Re-enrol after the recovery"

    def body(self) -> ComposeResult:
        yield Static(
            Text(
                "Everyone's keys went with the keyring. Each person, in turn, chooses a new "
                "passphrase (5 words or 24 characters); their TOTP stays. Holders get their "
                f"holder keys back. Done so far: {', '.join(self.rec.reenrolled) or 'nobody'}."
            )
        )
        yield OptionList(*[Option(f"  {n}", id=n) for n in self.names], id="bg-who")

    def fields(self) -> ComposeResult:
        yield Label("New passphrase, twice", classes="field-name")
        yield SecretInput(id="pw1")
        yield SecretInput(id="pw2")

    def button_row(self) -> Horizontal:
        return self.buttons("Re-enrol", "bg-reenrol-ok", cancel="Done")

    def on_mount(self) -> None:
        super().on_mount()
        if self.names:
            self.query_one("#bg-who", OptionList).highlighted = 0
        self.query_one("#bg-who").focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """The highlighted person carries a glyph (▶), not a colour only."""
        for i, n in enumerate(self.names):
            mark = "▶ " if i == event.option_index else "  "
            event.option_list.replace_option_prompt_at_index(i, f"{mark}{n}")

    def submit(self) -> None:
        opts = self.query_one("#bg-who", OptionList)
        if opts.highlighted is None or not self.names:
            self.error("Choose who is re-enrolled.")
            return
        name = self.names[opts.highlighted]
        service = self.service.people.get(name).kind == "service"
        one, two = (
            take_secret(self.query_one("#pw1", SecretInput)),
            take_secret(self.query_one("#pw2", SecretInput)),
        )
        if not service and one.reveal() != two.reveal():
            one.wipe()
            two.wipe()
            self.error("The two passphrases differ; type them again.")
            return
        two.wipe()

        def act() -> str:
            try:
                self.rec.reenrol(name, None if service else one)
                return name
            finally:
                one.wipe()

        self.run_step(act, working="Making the new key…", description="re-enrol", refocus="#pw1")
