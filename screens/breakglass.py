"""Break-glass (F10): the home's SLIP-39 share set, its ceremonies and its last good drill.

- **Split** (Ctrl+S), **reshare** (Ctrl+E) and **rekey** (Ctrl+K): the custodian
  signed in names the holders and the threshold; each other holder unlocks with
  their own passphrase; a TOTP code confirms; then each share is shown to one
  named holder at a time (:class:`ShowShare`: "only alice looks now", the 33
  words in large numbered groups, then three words the app picks typed back),
  and the dialog is gone, with its words, before the next holder's starts.
  Reshare and rekey first take the current set's shares (:class:`ShareEntry`).
- **Drill** (Ctrl+D): shares typed into :class:`ShareEntry` reconstruct the set;
  nothing changes but the date of the last good drill.
- **Recover** (Ctrl+R), on a home whose keyring lost the root key: shares at
  threshold install it again and open the holder keys the log vouches for; then
  each person is re-enrolled with a new passphrase (:class:`Reenrol`).

:class:`ShareEntry` checks each share as it is typed (SLIP-39 words completed
from the word list with Tab or the right arrow, the checksum, the set, revoked
sets, the same share twice), says "1 of 2", and at threshold shows that the
check value matched. The field is cleared when a share is accepted; no share is
left on screen after its step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.breakglass_dialogs import (
    CodeStep,
    HolderUnlock,
    Reenrol,
    ShareEntry,
    ShowShare,
    SplitForm,
    WordSuggester,
)
from screens.chrome import AppFooter, SessionBar
from screens.format import safe, when
from screens.secure import ceremony_blocked

if TYPE_CHECKING:
    from custodian.custody.breakglass import ShareSet

__all__ = [
    "BreakGlassScreen",
    "CodeStep",
    "HolderUnlock",
    "Reenrol",
    "ShareEntry",
    "ShowShare",
    "SplitForm",
    "WordSuggester",
]


# ---------------------------------------------------------------- the screen


class BreakGlassScreen(Screen[None]):
    """The set, its holders, its recovery key and last good drill; the ceremonies."""

    TITLE = "custodian"
    SUB_TITLE = "Break-glass"

    DEFAULT_CSS = """
    #bg { padding: 0 1; }
    #bg-status { height: auto; }
    #bg-help { color: $text-muted; margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "split", "Split", tooltip="Make a new break-glass set"),
        Binding("ctrl+d", "drill", "Drill", tooltip="Check the set's shares; change nothing"),
        Binding("ctrl+r", "recover", "Recover", tooltip="Install the root key from shares"),
        Binding("ctrl+e", "reshare", "Reshare", tooltip="New shares of the same secret"),
        Binding("ctrl+k", "rekey", "Rekey", tooltip="A new secret; reseal everything"),
        Binding("f5", "refresh", "Refresh"),
    ]

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service = service

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with VerticalScroll(id="bg"):
            box = Vertical(id="bg-box", classes="box")
            box.border_title = "Break-glass set"
            with box:
                yield Static(self._status(), id="bg-status")
            yield Static(
                Text(
                    "Ctrl+S split · Ctrl+D drill · Ctrl+R recover (no root key) · Ctrl+E "
                    "reshare · Ctrl+K rekey. Shares are shown to one holder at a time and "
                    "never stored."
                ),
                id="bg-help",
            )
        yield AppFooter()

    def _status(self) -> Table | Text:
        st = self.service.custody.status()
        s = st.current
        if s is None:
            return Text("No break-glass set yet: custodians make one with Ctrl+S (split).")
        t = Table.grid(padding=(0, 1))
        t.add_column(style="dim", no_wrap=True, width=17)
        t.add_column(overflow="fold")
        t.add_row("Set", Text(f"{s.set_id}: {s.threshold} of {s.count}"))
        t.add_row("Holders", Text(safe(", ".join(s.holders))))
        t.add_row("Made", Text(when(s.split_at)))
        t.add_row("Recovery key", Text(s.fingerprint))
        t.add_row(
            "Last good drill",
            Text(
                when(s.last_drill) if s.last_drill else "never",
                style="" if s.last_drill else "yellow",
            ),
        )
        if s.revoked:
            t.add_row("Revoked sets", Text(", ".join(map(str, s.revoked))))
        if st.uncovered:
            t.add_row(
                "Not covered",
                Text(safe(", ".join(st.uncovered)) + " (sealed at the next split or rekey)",
                     style="yellow"),
            )  # fmt: skip
        if st.problem:
            t.add_row("PROBLEM", Text(safe(st.problem), style="bold red"))
        return t

    def action_refresh(self) -> None:
        if self.is_attached and self.query("#bg-status"):  # not while the app closes
            self.query_one("#bg-status", Static).update(self._status())

    def _blocked(self) -> bool:
        why = ceremony_blocked(self.app)
        if why:
            self.notify(why, title="Refused", severity="error", markup=False)
        return why is not None

    def _acting(self, doing: str) -> Actor | None:
        acting = getattr(self.app, "acting", None)
        return acting("custodian", doing) if acting is not None else None

    # ------------------------------------------------------------ the ceremonies

    def action_split(self) -> None:
        self._make("split")

    def action_reshare(self) -> None:
        self._make("reshare")

    def action_rekey(self) -> None:
        self._make("rekey")

    @work(exclusive=True, group="bg-ceremony")
    async def _make(self, kind: str) -> None:
        if self._blocked():
            return
        by = self._acting(f"{kind} the break-glass set")
        if by is None:
            return
        old: list[str] = []
        if kind != "split":
            got = await self.app.push_screen_wait(
                ShareEntry(self.service, f"{kind.capitalize()}: the current set's shares")
            )
            if got is None:
                return
            old = got
        cur = self.service.custody.current()
        default = list(cur.holders) if cur else [by.name]
        form = await self.app.push_screen_wait(
            SplitForm(f"{kind.capitalize()}: holders", by, default)
        )
        if form is None:
            return
        names, threshold = form
        holders: list[Actor] = []
        for name in names:
            if name == by.name:
                holders.append(by)
                continue
            a = await self.app.push_screen_wait(HolderUnlock(self.service, name))
            if a is None:
                return
            holders.append(a)
        custody = self.service.custody

        def act(code: str) -> ShareSet:
            if kind == "split":
                return custody.split(holders, by=by, code=code, threshold=threshold)
            fn = custody.reshare if kind == "reshare" else custody.rekey
            return fn(old, holders, by=by, code=code, threshold=threshold)

        what = {
            "split": "A new recovery secret, split",
            "reshare": "New shares of the same secret; the current set is revoked",
            "rekey": "A new recovery secret; everything sealed to the old key is sealed again",
        }[kind]
        ss = await self.app.push_screen_wait(
            CodeStep(f"Break-glass {kind}", f"{what}: {threshold} of {len(names)} "
                     f"({', '.join(names)}).", act, by.name)
        )  # fmt: skip
        old.clear()
        if ss is None:
            return
        try:
            for name, share in zip(names, ss.shares, strict=True):
                ok = await self.app.push_screen_wait(
                    ShowShare(name, share, ss.fingerprint, f"{ss.threshold} of {ss.count}")
                )
                if not ok:
                    self.notify(
                        f"Stopped before {name} had their share: set {ss.set_id} is made, but "
                        "the shares not handed out are gone. Make a new set (Ctrl+S).",
                        severity="error", markup=False, timeout=12,
                    )  # fmt: skip
                    return
            self.notify(
                f"Set {ss.set_id}: {ss.threshold} of {ss.count}, every share handed out. "
                "Keep the papers apart; drill the set (Ctrl+D).",
                title="Break-glass set made", markup=False, timeout=8,
            )  # fmt: skip
        finally:
            ss.wipe()
            self.action_refresh()

    @work(exclusive=True, group="bg-ceremony")
    async def action_drill(self) -> None:
        if self._blocked():
            return
        acting = getattr(self.app, "actor", None)
        if acting is None:
            self.notify("Sign in (F9) to drill the set.", severity="warning", markup=False)
            return
        texts = await self.app.push_screen_wait(ShareEntry(self.service, "Drill: type the shares"))
        if texts is None:
            return
        try:
            rec = self.service.custody.drill(texts, by=acting)
        except CustodianError as e:
            self.notify(str(e), title="Drill refused", severity="error", markup=False)
            return
        finally:
            texts.clear()
        if rec.ok:
            self.notify(
                f"Set {rec.set_id} reconstructs from {rec.shares_checked} shares; nothing "
                "changed but the date of the last good drill.",
                title="Drill passed", markup=False,
            )  # fmt: skip
        else:
            self.notify(rec.problem, title="Drill FAILED", severity="error", markup=False)
        self.action_refresh()

    @work(exclusive=True, group="bg-ceremony")
    async def action_recover(self) -> None:
        if self._blocked():
            return
        texts = await self.app.push_screen_wait(
            ShareEntry(self.service, "Recover: the root key from shares")
        )
        if texts is None:
            return
        try:
            rec = self.service.custody.recover(texts)
        except CustodianError as e:
            self.notify(str(e), title="Nothing was installed", severity="error", markup=False)
            return
        finally:
            texts.clear()
        try:
            self.notify(rec.note, title="Root key installed", markup=False, timeout=10)
            names = [p.name for p in self.service.people.list() if p.active]
            while True:
                left = [n for n in names if n not in rec.reenrolled]
                if not left:
                    break
                done = await self.app.push_screen_wait(Reenrol(self.service, rec, left))
                if done is None:
                    break
                self.notify(f"{done} re-enrolled with a new key.", markup=False, timeout=4)
        finally:
            rec.close()
            self.action_refresh()
