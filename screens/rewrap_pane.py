"""The rewrap job pane of the Keys screen: runs one KEK's rewrap and shows how it goes.

:class:`RewrapPane` starts the job in a thread worker. The core calls
``progress`` and ``on_failure`` from that thread, which post small messages
back to the pane (progress messages replace each other in the queue); they
bubble on to the screen, which follows the census while the job runs.
``cancelled`` reads a flag that :meth:`RewrapPane.cancel` (or a sign-out) sets;
the core checks it between batches, so a cancel never leaves a half-done
batch, and the job resumes from its cursor with "Resume rewrap". When the job
is over the worker reads the keys once more (the job has let go of the
catalog) and posts :class:`RewrapEnded`; the screen shows that read, then
asks the pane to tell the outcome (:meth:`RewrapPane.ended`). Outside a run
the pane shows the highlighted KEK's unfinished job, if any
(:meth:`RewrapPane.show_idle`).
"""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.rotation import RewrapFailure, RewrapJob, RewrapReport
from custodian.service import Service
from screens.format import duration, safe
from screens.key_view import JOB_STYLE, JOB_WORDS, KeysRead, read_keys

REWRAP_GROUP = "rewrap"


@dataclass
class RewrapProgress(Message):
    """DEKs of the job done so far (whole job, earlier runs included)."""

    kek: str
    done: int
    total: int
    failed: int  # in this run
    rate: float  # DEKs per second in this run

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RewrapProgress)


@dataclass
class RewrapFailed(Message):
    kek: str
    failure: RewrapFailure


@dataclass
class RewrapEnded(Message):
    kek: str
    report: RewrapReport | None
    error: str | None
    keys: KeysRead | None = None  # read by the worker once the job let go of the catalog


class RewrapPane(Vertical):
    """The job: a title, a progress bar, the numbers, the latest failures."""

    def __init__(
        self,
        service: Service,
        *,
        batch_size: int | None,
        workers: int | None,
        id: str = "keys-rewrap",
    ) -> None:
        super().__init__(id=id, classes="box")
        self.service = service
        self.batch_size = batch_size
        self.rewrap_workers = workers
        self.border_title = "Rewrap job"
        self.display = False
        self.running: str | None = None  # the KEK whose job runs here (one at a time)
        self.expected = 0.0  # the rotation preview's estimate (DEKs/s), shown beside the real
        self.last: RewrapProgress | None = None  # the newest progress of the last run
        self._cancel = threading.Event()
        self._run_failures: list[RewrapFailure] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="rewrap-title")
        yield ProgressBar(id="rewrap-bar", show_eta=False)
        yield Static("", id="rewrap-stats")
        yield Static("", id="rewrap-failures", classes="bad")

    def on_mount(self) -> None:
        self.watch(self.app, "who", self._signed_in_or_out, init=False)

    # ------------------------------------------------------------------ the run

    def start(
        self, name: str, actor: Actor, *, expected: float = 0.0, title: str | None = None
    ) -> None:
        self.running = name
        self.expected = expected
        # Each batch's audit entry is signed with the actor's key: no sign-out (or quit)
        # while the job runs, as for a restore session (CustodianApp.busy).
        self.app.busy = (  # type: ignore[attr-defined]
            f"the rewrap of KEK {name} is running (c on Keys, F7, stops it after its batch)"
        )
        self._cancel.clear()
        self._run_failures = []
        self.last = None
        self.display = True
        self.border_title = f"Rewrap job of {safe(name)}"
        self.border_subtitle = "c cancel  ·  w resumes later"
        self.query_one("#rewrap-title", Static).update(
            Text(title or f"Rewrapping every DEK of KEK {safe(name)} to its current version…")
        )
        self.query_one("#rewrap-stats", Static).update(Text("Starting…", style="dim"))
        self._failure_lines(Text(""))
        bar = self.query_one("#rewrap-bar", ProgressBar)
        bar.update(total=None, progress=0)
        self._rewrap(name, actor)

    # a fixed description: the arguments (the actor) stay out of Textual's worker log
    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group=REWRAP_GROUP,
        description="rewrap a KEK",
    )
    def _rewrap(self, name: str, actor: Actor) -> RewrapReport | None:
        worker = get_current_worker()
        cancel = self._cancel
        started: list[float] = []
        first_done = [0]
        failed = [0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if not started:
                started.append(now)
                first_done[0] = done
            elapsed = now - started[0]
            rate = (done - first_done[0]) / elapsed if elapsed > 0 else 0.0
            self.post_message(RewrapProgress(name, done, total, failed[0], rate))

        def on_failure(f: RewrapFailure) -> None:
            failed[0] += 1
            self.post_message(RewrapFailed(name, f))

        def cancelled() -> bool:
            return cancel.is_set() or worker.is_cancelled

        report: RewrapReport | None = None
        error: str | None = None
        try:
            report = self.service.keys.rewrap(
                name,
                by=actor,
                workers=self.rewrap_workers,
                batch_size=self.batch_size,
                progress=progress,
                cancelled=cancelled,
                on_failure=on_failure,
            )
        except CustodianError as e:
            error = str(e)
        keys: KeysRead | None = None
        with suppress(CustodianError):  # the screen then reads the keys itself
            keys = read_keys(self.service)
        self.post_message(RewrapEnded(name, report, error, keys))
        return report

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if w.group == REWRAP_GROUP and event.state == WorkerState.ERROR and self.running:
            self.post_message(
                RewrapEnded(self.running, None, f"the rewrap stopped unexpectedly: {w.error}")
            )

    def on_rewrap_progress(self, m: RewrapProgress) -> None:
        if m.kek != self.running:
            return
        self.last = m
        self.query_one("#rewrap-bar", ProgressBar).update(total=max(m.total, 1), progress=m.done)
        self._show_stats(m)

    def _show_stats(self, m: RewrapProgress, note: str = "") -> None:
        left = m.total - m.done
        stats = Text()
        stats.append(f"{m.done:,}", style="bold")
        stats.append(f" of {m.total:,} done  ·  ")
        stats.append(f"{m.failed:,} failed", style="bold red" if m.failed else "")
        stats.append(f"  ·  {left:,} left")
        if m.rate > 0:
            stats.append(f"  ·  {m.rate:,.0f} DEKs/s")
            if self.expected > 0:  # what the preview said, against what the batches measure
                stats.append(f" (estimated {self.expected:,.0f})", style="dim")
            if left > 0:
                stats.append(f"  ·  ETA {duration(left / m.rate)}")
        if self._cancel.is_set():
            stats.append("  ·  cancelling after this batch…", style="yellow")
        if note:
            stats.append("\n" + note)
        self.query_one("#rewrap-stats", Static).update(stats)

    def on_rewrap_failed(self, m: RewrapFailed) -> None:
        self._run_failures.append(m.failure)
        shown = self._run_failures[-4:]
        text = Text()
        for f in shown:
            text.append(f"failed {safe(f.backup)} (v{f.from_version}): ", style="bold red")
            text.append(safe(f.reason) + "\n")
        if len(self._run_failures) > len(shown):
            text.append(f"… {len(self._run_failures):,} failures so far", style="dim")
        self._failure_lines(text)

    def _failure_lines(self, text: Text) -> None:
        lines = self.query_one("#rewrap-failures", Static)
        lines.update(text)
        lines.display = bool(text)

    def cancel(self) -> None:
        if self.running is None:
            return
        self._cancel.set()
        if self.last is not None:
            self._show_stats(self.last)
        else:
            self.query_one("#rewrap-stats", Static).update(
                Text("Cancelling after the batch in flight…", style="yellow")
            )

    def _signed_in_or_out(self, who: str) -> None:
        if not who and self.running is not None:
            self._cancel.set()  # the signing key is gone: stop after this batch

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """The job is over (the screen then shows the keys, and :meth:`ended` the outcome)."""
        self.running = None
        self.app.busy = ""  # type: ignore[attr-defined]
        self._cancel.clear()

    def ended(self, name: str, report: RewrapReport | None, error: str | None) -> None:
        bar = self.query_one("#rewrap-bar", ProgressBar)
        title = self.query_one("#rewrap-title", Static)
        self.border_subtitle = ""
        if error is not None:
            title.update(Text(f"The rewrap of KEK {safe(name)} stopped: {error}", style="bold red"))
            note = (
                "Every committed batch is kept; the job resumes from there (w)."
                if "signed out" not in error
                else "Sign in again and resume (w): every committed batch is kept."
            )
            if self.last is not None:
                self._show_stats(self.last, note)
            else:
                self.query_one("#rewrap-stats", Static).update(Text(note))
            self.notify(error, title="Rewrap stopped", severity="error", markup=False)
            return
        assert report is not None
        if not report.job:
            bar.update(total=1, progress=1)
            title.update(Text(f"Nothing to rewrap: every DEK of KEK {safe(name)} is current."))
            self.query_one("#rewrap-stats", Static).update("")
            self.notify(f"Nothing to rewrap for KEK {name}.", markup=False, timeout=3)
            return
        done = report.total - report.remaining
        bar.update(total=max(report.total, 1), progress=done if report.cancelled else report.total)
        rate = f"{report.rate:,.0f} DEKs/s" if report.rate else "-"
        line = (
            f"{report.rewrapped:,} rewrapped, {len(report.failed):,} failed in this run "
            f"({report.seconds:.1f} s, {rate}, {report.workers} worker(s)); "
            f"{report.remaining:,} left under older versions."
        )
        self.query_one("#rewrap-stats", Static).update(Text(line))
        if report.failed:  # listed in full under the rotation history from now on
            self._failure_lines(
                Text(
                    f"{len(report.failed):,} DEK(s) failed in this run; their reasons are "
                    "listed under the rotation history.",
                    style="red",
                )
            )
        if report.cancelled:
            title.update(
                Text(
                    f"Rewrap of KEK {safe(name)} to v{report.target_version} paused "
                    f"{'after sign-out' if not getattr(self.app, 'who', '') else 'on request'}: "
                    "press w to resume from where it stopped.",
                    style="bold yellow",
                )
            )
            self.notify(
                f"Rewrap of KEK {name} paused with {report.remaining:,} DEK(s) left; w resumes it.",
                title="Rewrap cancelled",
                severity="warning",
                markup=False,
            )
            return
        if report.remaining:
            title.update(
                Text(
                    f"Rewrap of KEK {safe(name)} to v{report.target_version} finished with "
                    f"{report.remaining:,} DEK(s) left under older versions: see the failures "
                    "below.",
                    style="bold red",
                )
            )
            self.notify(
                f"{report.remaining:,} DEK(s) of KEK {name} could not be rewrapped; their "
                "reasons are listed under the rotation history.",
                title="Rewrap finished with failures",
                severity="error",
                markup=False,
            )
            return
        title.update(
            Text(
                f"Rewrap of KEK {safe(name)} to v{report.target_version} finished: every DEK "
                "is under the current version; older versions can be retired (t).",
                style="bold green",
            )
        )
        self.notify(
            f"Every DEK of KEK {name} is under v{report.target_version}. "
            f"{report.rewrapped:,} rewrapped in {report.seconds:.1f} s.",
            title="Rewrap finished",
            markup=False,
        )

    # ------------------------------------------------------------------ outside a run

    def show_idle(self, job: RewrapJob | None, state: str = "paused") -> None:
        """Outside a run: say so when the highlighted KEK has an unfinished ``job``, as it
        stands (``state``: paused, interrupted, not started, or running elsewhere)."""
        if self.running is not None:
            return
        if self.display and self.last is not None:
            return  # the result of the last run stays until F5
        if job is None:
            self.display = False
            return
        self.display = True
        self.border_title = f"Rewrap job of {safe(job.kek)}"
        self.border_subtitle = ""
        words = JOB_WORDS.get(state, JOB_WORDS["paused"])
        self.query_one("#rewrap-title", Static).update(
            Text(
                words.format(id=job.id[:8], v=job.target_version),
                style=JOB_STYLE.get(state, "bold yellow"),
            )
        )
        bar = self.query_one("#rewrap-bar", ProgressBar)
        bar.update(total=max(job.total, 1), progress=job.done)
        self.query_one("#rewrap-stats", Static).update(
            Text(
                f"{job.done:,} of {job.total:,} done  ·  {job.failed:,} failed  ·  "
                f"{job.runs} run(s)"
            )
        )
        self._failure_lines(Text(""))
