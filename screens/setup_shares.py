"""Handing out a new break-glass set, one holder at a time (the first set-up's last step).

A minimal share display for :mod:`screens.setup`; the Break-glass screen
(``screens/breakglass.py``) has its own. :func:`hand_out_shares` is the one
place the set-up calls, so it can call that screen's display instead later.

For each holder, in turn:

1. :class:`ShareGate`: only the named holder looks at the screen; nothing secret
   is on it yet.
2. :class:`ShareReveal`: their share's words, numbered in groups of four, with
   the recovery key's fingerprint for the share's cover sheet.
3. :class:`ShareCheck`: they type back three words the app picks (at random
   positions); a wrong word sends them back to their paper, and the share can be
   shown again. The words typed are cleared at each check.

Each step is a dialog of its own, closed before the next opens: when the next
holder's gate shows, no word of the previous share is on screen. The set is
already recorded when the hand-out starts, so a gate cannot be cancelled: a share
not handed out now is lost (the set would have to be split again).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Static

from custodian.custody.breakglass import ShareMnemonic, ShareSet
from screens.dialogs import Dialog
from screens.format import safe

CHECK_WORDS = 3
NO_CANCEL = (
    "The set is recorded already: every holder takes their share now. A share not "
    "handed out is lost, and the set would have to be split again."
)


def word_grid(words: Sequence[str], per_row: int = 4) -> Table:
    t = Table.grid(padding=(0, 3))
    for _ in range(per_row):
        t.add_column(no_wrap=True)
    for i in range(0, len(words), per_row):
        row = [
            Text.assemble((f"{i + j + 1:>2}. ", "dim"), (w, "bold"))
            for j, w in enumerate(words[i : i + per_row])
        ]
        t.add_row(*row)
    return t


class ShareDialog(Dialog[Any]):
    WIDE = True

    DEFAULT_CSS = """
    ShareDialog {
        align: center middle;
    }
    ShareDialog .fp {
        color: $text-accent;
    }
    """

    def action_cancel(self) -> None:
        self.error(NO_CANCEL)


class ShareGate(ShareDialog):
    """Before a share shows: only its holder looks. Returns True."""

    FRAME_ID = "share-gate"

    def __init__(self, holder: str, number: int, count: int) -> None:
        super().__init__()
        self.holder = holder
        self.number = number
        self.count = count

    def heading(self) -> str:
        return f"Break-glass share {self.number} of {self.count}: {safe(self.holder)}"

    def body(self) -> ComposeResult:
        yield Static(
            Text.assemble(
                (f"Only {safe(self.holder)} looks at the screen now.", "bold"),
                " Everyone else looks away. Have paper and a pen ready: the share is "
                "shown once, and it is stored nowhere else.",
            ),
            id="share-gate-note",
        )

    def button_row(self) -> Horizontal:
        return self.buttons(f"Show {self.holder}'s share", "share-show", cancel=None)

    def on_mount(self) -> None:
        self.query_one("#share-show").focus()

    def submit(self) -> None:
        self.dismiss(True)


class ShareReveal(ShareDialog):
    """A share's words, to write down. Returns True when written."""

    FRAME_ID = "share-reveal"

    def __init__(self, holder: str, share: ShareMnemonic, fingerprint: str, count: int) -> None:
        super().__init__()
        self.holder = holder
        self.share = share
        self.fingerprint = fingerprint
        self.count = count

    def heading(self) -> str:
        return (
            f"{safe(self.holder)}'s share ({self.share.number} of {self.count}, "
            f"set {self.share.set_id})"
        )

    def body(self) -> ComposeResult:
        yield Static(word_grid(self.share.words()), id="share-words")
        yield Static(
            Group(
                Text("Recovery key fingerprint (for the share's cover sheet):", style="dim"),
                Text("  ".join(safe(self.fingerprint).split()), style="bold"),
            ),
            id="share-fp",
            classes="fp",
        )
        yield Static(
            f"{self.holder}: write every word, in order, on paper; keep it where only "
            "you can reach it. Next, you type three of the words back.",
            classes="muted",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons("I wrote it down", "share-written", cancel=None)

    def on_mount(self) -> None:
        self.query_one("#share-written").focus()

    def submit(self) -> None:
        self.dismiss(True)


class ShareCheck(ShareDialog):
    """The holder types back the words at three positions the app picked. Returns True
    when they match, False to see the share again."""

    FRAME_ID = "share-check"
    ENTER_MOVES: ClassVar[dict[str, str]] = {"share-word-0": "#share-word-1",
                                             "share-word-1": "#share-word-2"}  # fmt: skip

    def __init__(self, holder: str, share: ShareMnemonic, positions: Sequence[int]) -> None:
        super().__init__()
        self.holder = holder
        self.share = share
        self.positions = list(positions)  # 0-based

    def heading(self) -> str:
        return f"{safe(self.holder)}: check the share you wrote"

    def body(self) -> ComposeResult:
        shown = ", ".join(str(p + 1) for p in self.positions)
        yield Static(
            f"From your paper, type words {shown} of your share. The share is not on screen now.",
            markup=False,
        )

    def fields(self) -> ComposeResult:
        for i, p in enumerate(self.positions):
            yield Label(f"Word {p + 1}", classes="field-name")
            yield Input(placeholder=f"word {p + 1}", id=f"share-word-{i}", max_length=16)

    def button_row(self) -> Horizontal:
        row = self.buttons("Check", "share-check-ok", cancel="Show the share again",
                           cancel_id="share-again")  # fmt: skip
        return row

    def on_mount(self) -> None:
        self.query_one("#share-word-0").focus()

    def action_cancel(self) -> None:  # escape: back to the share, not out of the hand-out
        self.dismiss(False)

    def on_button_pressed(self, event: Any) -> None:
        if event.button.id == "share-again":
            self.dismiss(False)
        else:
            self.ok()

    def submit(self) -> None:
        fields = [self.query_one(f"#share-word-{i}", Input) for i in range(len(self.positions))]
        typed = [" ".join(f.value.lower().split()) for f in fields]
        for f in fields:
            f.value = ""  # words of a share: not left in a widget
        words = self.share.words()
        wrong = [p + 1 for p, t in zip(self.positions, typed, strict=True) if t != words[p]]
        if wrong:
            which = ", ".join(str(w) for w in wrong)
            self.error(
                f"Word{'s' if len(wrong) > 1 else ''} {which} {'are' if len(wrong) > 1 else 'is'}"
                " not what the share says (the fields were cleared). Check your paper, or "
                "show the share again."
            )
            fields[0].focus()
            return
        self.dismiss(True)


def pick_positions(count: int, k: int = CHECK_WORDS) -> list[int]:
    """``k`` distinct word positions, chosen at random, in order."""
    chosen: set[int] = set()
    while len(chosen) < min(k, count):
        chosen.add(secrets.randbelow(count))
    return sorted(chosen)


async def hand_out_shares(app: App[Any], shares: ShareSet, holders: Sequence[str]) -> None:
    """Show each holder their share, one at a time (see the module's docstring). The
    caller wipes ``shares`` afterwards (``ShareSet.wipe``)."""
    count = len(holders)
    for holder, share in zip(holders, shares.shares, strict=True):
        await app.push_screen_wait(ShareGate(holder, share.number, count))
        while True:
            await app.push_screen_wait(ShareReveal(holder, share, shares.fingerprint, count))
            positions = pick_positions(len(share.words()))
            if await app.push_screen_wait(ShareCheck(holder, share, positions)) is True:
                break
