"""The Keys screen's quorum parts: the rotate ceremony of a quorum KEK (every holder
present, one after another at this workstation) and the pane of its refresh or
redistribution job, with each holder's progress; a holder applies their part here.

:class:`RefreshPane` runs holders' parts in a thread worker (``svc.keys.refresh``
for each present holder in turn); progress comes back as messages that replace
each other. A cancel is checked between batches, so nothing half-done is left; a
part resumes from its last committed batch. Names and reasons are untrusted: each
goes into a ``Text`` after :func:`~screens.format.safe`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, ProgressBar, Static
from textual.worker import get_current_worker

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.format import safe
from screens.key_dialogs import KeyDialog, census_table, pairs
from screens.secure import SecretInput, take_secret

REFRESH_GROUP = "refresh"
DEALER = "*dealer"  # custodian.custody.jobs.DEALER


def step_text(view: Any, mine: str = "") -> Text:
    """One line per step of a custody job: who, what, how far (a glyph, not colour only)."""
    j = view.job
    out = Text()
    for s in view.steps:
        who = "dealer" if s.who == DEALER else s.who
        verb = ("dealt" if s.who == DEALER else "re-shared") if s.role == "source" else "sealed"
        done = s.done >= j.total
        out.append("✓ " if done else "· ", style="green" if done else "yellow")
        out.append(f"{safe(who)} {verb} {s.done:,} of {j.total:,}")
        if s.who == mine:
            out.append("  (you)", style="bold")
        out.append("\n")
    out.rstrip()
    return out


def job_title(view: Any) -> Text:
    j = view.job
    census = ", ".join(f"v{n}: {c:,}" for n, c in sorted(view.census.items()))
    what = "Refresh" if j.kind == "refresh" else "Redistribution"
    return Text(
        f"{what} job {j.id[:8]} of KEK {safe(j.kek)} to v{j.target_version}: {j.state}; "
        f"{j.completed:,} of {j.total:,} DEK(s) moved, {j.failed:,} failed. Census {census}.",
        style="bold green" if j.state == "done" else "bold yellow",
    )


@dataclass
class RefreshProgress(Message):
    kek: str
    who: str
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RefreshProgress)


@dataclass
class RefreshEnded(Message):
    kek: str
    summaries: list[str]
    error: str | None
    view: Any  # the job as it stands after the run (None if it could not be read)


class RefreshPane(Vertical):
    """The custody job of the highlighted quorum KEK, and the run of holders' parts."""

    def __init__(self, service: Service, *, workers: int | None = None) -> None:
        super().__init__(id="keys-refresh", classes="box")
        self.service = service
        self.part_workers = workers
        self.border_title = "Refresh job"
        self.display = False
        self.running: str | None = None
        self.view: Any = None
        self._cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static("", id="refresh-title")
        yield ProgressBar(id="refresh-bar", show_eta=False)
        yield Static("", id="refresh-steps")

    def show_idle(self, view: Any, me: str = "") -> None:
        if self.running is not None:
            return
        self.view = view
        if view is None:
            self.display = False
            return
        self.display = True
        j = view.job
        self.border_title = f"{'Refresh' if j.kind == 'refresh' else 'Redistribution'} job"
        self.border_subtitle = "a apply my part" if j.state == "running" else ""
        self.query_one("#refresh-title", Static).update(job_title(view))
        self.query_one("#refresh-bar", ProgressBar).update(
            total=max(j.total, 1), progress=j.completed
        )
        steps = step_text(view, me)
        if view.failures:
            steps.append(f"{len(view.failures):,} DEK(s) failed, first: ", style="bold red")
            bid, why = view.failures[0]
            steps.append(f"{safe(bid)}: {safe(why)}")
        self.query_one("#refresh-steps", Static).update(steps)

    def start(self, name: str, actors: Sequence[Actor], keep: Actor | None = None) -> None:
        """Run each of ``actors``' parts in turn; every actor but ``keep`` (the person
        signed in) is forgotten when the run ends: a holder present for the ceremony
        stays unlocked no longer than it."""
        self.running = name
        self.app.busy = (  # type: ignore[attr-defined]
            f"the refresh of KEK {name} is running (c on Keys, F7, stops it after its batch)"
        )
        self._cancel.clear()
        self.display = True
        self.border_subtitle = "c cancel  ·  a resumes later"
        who = ", ".join(a.name for a in actors)
        self.query_one("#refresh-title", Static).update(
            Text(f"Applying the part of {safe(who)} in the job of KEK {safe(name)}…")
        )
        self.query_one("#refresh-bar", ProgressBar).update(total=None, progress=0)
        self._run(name, list(actors), keep)

    def cancel(self) -> None:
        if self.running is not None:
            self._cancel.set()
            self.query_one("#refresh-title", Static).update(
                Text("Cancelling after the batch in flight…", style="yellow")
            )

    @work(thread=True, exclusive=True, exit_on_error=False, group=REFRESH_GROUP,
          description="apply holders' parts of a refresh")  # fmt: skip
    def _run(self, name: str, actors: list[Actor], keep: Actor | None) -> None:
        worker = get_current_worker()
        summaries: list[str] = []
        error: str | None = None
        try:
            for a in actors:
                if self._cancel.is_set() or worker.is_cancelled:
                    break

                def progress(done: int, total: int, who: str = a.name) -> None:
                    self.post_message(RefreshProgress(name, who, done, total))

                rep = self.service.keys.refresh(
                    name,
                    by=a,
                    workers=self.part_workers,
                    progress=progress,
                    cancelled=lambda: self._cancel.is_set() or worker.is_cancelled,
                )
                if rep.interrupted:
                    summaries.append(rep.interrupted)
                summaries.append(rep.summary())
                if rep.finished:
                    break
        except CustodianError as e:
            error = str(e)
        finally:
            for a in actors:
                if a is not keep:
                    a.forget()
        view = None
        with suppress(CustodianError):
            views = [v for v in self.service.keys.custody_jobs(name)]
            view = views[-1] if views else None
        self.post_message(RefreshEnded(name, summaries, error, view))

    def on_refresh_progress(self, m: RefreshProgress) -> None:
        if m.kek != self.running:
            return
        self.query_one("#refresh-bar", ProgressBar).update(total=max(m.total, 1), progress=m.done)
        self.query_one("#refresh-steps", Static).update(
            Text(f"{safe(m.who)}: {m.done:,} of {m.total:,} done")
        )

    def ended(self, m: RefreshEnded) -> None:
        self.running = None
        self.app.busy = ""  # type: ignore[attr-defined]
        self._cancel.clear()
        if m.view is not None:
            self.show_idle(m.view)
        lines = Text("\n".join(safe(s) for s in m.summaries))
        if m.error is not None:
            lines = Text(f"Stopped: {safe(m.error)}", style="bold red")
            self.notify(m.error, title="Refresh stopped", severity="error", markup=False)
        elif m.view is not None and m.view.job.state == "done":
            self.notify(
                f"Every DEK of KEK {m.kek} is under v{m.view.job.target_version}; the old "
                "version can be retired, then its holder keys destroyed.",
                title="Refresh finished",
                markup=False,
            )
        else:
            self.notify("Your part is done; the job waits for the other holders.",
                        title="Part applied", markup=False)  # fmt: skip
        steps = self.query_one("#refresh-steps", Static)
        steps.update(Group(step_text(m.view) if m.view is not None else Text(""), Text(""), lines))


# ---------------------------------------------------------------- the ceremony


class QuorumRotateDialog(KeyDialog):
    """Step 1 of a quorum KEK's rotation: what it does and who must be present."""

    FRAME_ID = "quorum-rotate"

    def __init__(self, kek: Any, manifest: Any) -> None:
        super().__init__()
        self.kek = kek
        self.manifest = manifest

    def heading(self) -> str:
        return f"Rotate quorum KEK {safe(self.kek.name)} (refresh)"

    def body(self) -> ComposeResult:
        k, man = self.kek, self.manifest
        versions = Text(f"v{k.current_version} -> v{k.current_version + 1}", style="bold")
        holders = f"{man.m} of {man.n}: " + ", ".join(h.name for h in man.holders)
        yield Static(
            pairs(("KEK", k.name), ("Versions", versions), ("Holders", holders)),
            id="qrotate-pairs",
        )
        yield Label("DEK census per version", classes="field-name")
        census = {v.version: v.dek_count for v in k.versions}
        yield Static(
            census_table(census, k.current_version, k.current_version + 1, "After the refresh")
        )
        yield Static(
            "Every holder takes part, one after another at this workstation: each types "
            "their passphrase to make their new holder key and sign the new manifest. "
            "Then the deltas are dealt (no key opens a DEK) and each present holder seals "
            "their refreshed shares. No process ever holds a DEK.",
            classes="muted note",
            markup=False,
        )

    def button_row(self) -> Horizontal:
        return self.buttons("Next: the holders", "qrotate-next")

    def on_mount(self) -> None:
        self.query_one("#qrotate-next").focus()

    def submit(self) -> None:
        self.dismiss(True)


class HolderUnlock(KeyDialog):
    """One holder, present: their passphrase unlocks them for this ceremony only."""

    FRAME_ID = "holder-unlock"

    def __init__(self, service: Service, name: str, doing: str) -> None:
        super().__init__()
        self.service = service
        self.holder = name
        self.doing = doing

    def heading(self) -> str:
        return f"Holder {safe(self.holder)}: your passphrase"

    def body(self) -> ComposeResult:
        yield Static(
            Text(f"{safe(self.holder)}, take the keyboard: {safe(self.doing)}. Your "
                 "passphrase opens your personal key for this ceremony only."),
        )  # fmt: skip

    def fields(self) -> ComposeResult:
        yield Label("Passphrase", classes="field-name")
        yield SecretInput(placeholder=f"{self.holder}'s passphrase", id="holder-passphrase")

    def button_row(self) -> Horizontal:
        return self.buttons("Unlock", "holder-ok")

    def on_mount(self) -> None:
        self.query_one("#holder-passphrase").focus()

    def refusal(self, message: str) -> str:
        return f"{message} Type the passphrase again (it was cleared)."

    def submit(self) -> None:
        field = self.query_one("#holder-passphrase", SecretInput)
        if not field.value:
            self.error("Type your passphrase.")
            return
        pw = take_secret(field)

        def unlock() -> Actor:
            try:
                return self.service.auth.unlock(self.holder, pw)
            finally:
                pw.wipe()

        self.run_step(unlock, working="Checking…", description="unlock a holder",
                      refocus="#holder-passphrase")  # fmt: skip
