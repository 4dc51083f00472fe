"""Keys (F7): the KEK lifecycle. Generate, rotate and rewrap, retire, request destruction.

The screen lists every KEK with its rotation dates, the versions of the
highlighted KEK (state, fingerprint, DEK census, retirement and destruction),
its rotation history (rewrap jobs) and the DEKs that failed to rewrap, with
their reasons.

Ceremonies are chains of dialogs (:mod:`screens.key_dialogs`) awaited in order
by an async worker of this screen; only a signed-in custodian may start one,
and none runs while Textual may be recording. No service call runs on the UI
thread, where a rewrap holding the catalog lock would stall the screen for up
to a batch: each dialog's step runs in its own thread worker, and the screen
reads the keys in one (:meth:`KeysScreen.reload`; a ceremony awaits that read
with :meth:`KeysScreen.refreshed` before it goes on), except the first read
when the screen opens, before any rewrap of it can run. The rewrap job runs in a thread
worker: the core calls ``progress`` and ``on_failure`` from that thread, which
posts small messages back (progress messages replace each other in the queue),
and ``cancelled`` reads a flag that the Cancel key sets; the core checks it
between batches, so a cancel never leaves a half-done batch, and the job
resumes from its cursor with "Resume rewrap".
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static
from textual.worker import (
    Worker,
    WorkerCancelled,
    WorkerFailed,
    WorkerState,
    get_current_worker,
)

from custodian.approvals import Request
from custodian.catalog import Kek, KekVersion
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.rotation import DEFAULT_BATCH, RewrapFailure, RewrapJob, RewrapReport
from custodian.service import Service
from screens.chrome import SessionBar
from screens.dashboard import STATE_STYLE, Clock, rotation_due, utc_now
from screens.format import fit, safe, when
from screens.key_dialogs import (
    CodeConfirm,
    DestroyRequestDialog,
    KekCreated,
    KekForm,
    KekSpec,
    RotatePreviewDialog,
    duration,
    pairs,
    retire_body,
    rotate_body,
)
from screens.secure import ceremony_blocked

JOB_STYLE = {"running": "bold yellow", "done": "green", "superseded": "dim"}
MAX_FAILURES_SHOWN = 12
PURPOSE_WIDTH = 32
CENSUS_EVERY = 2.0  # seconds between census reads while a rewrap runs
READ_GROUP = "keys-read"


def fails_of(failures: list[RewrapFailure], jobs: list[RewrapJob]) -> list[RewrapFailure]:
    ids = {j.id for j in jobs}
    return [f for f in failures if f.job in ids]


@dataclass(frozen=True)
class KeysRead:
    """Everything the screen shows, read in one go."""

    keks: list[Kek]
    jobs: list[RewrapJob]
    failures: list[RewrapFailure]
    destroy_requests: list[Request]


def read_keys(service: Service) -> KeysRead:
    """The service calls behind the screen (in a worker's thread but for the first)."""
    return KeysRead(
        service.keks(),
        service.rewrap_jobs(),
        service.rewrap_failures(),
        [r for r in service.requests("open") if r.kind == "kek.destroy"],
    )


# ---------------------------------------------------------------- messages from the worker


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


# ---------------------------------------------------------------- the screen


class KeysScreen(Screen[None]):
    """KEKs, versions, rotation history; the lifecycle ceremonies."""

    TITLE = "custodian"
    SUB_TITLE = "Keys"

    DEFAULT_CSS = """
    KeysScreen #keys {
        padding: 0 1;
    }
    KeysScreen #keks-table {
        height: auto;
        max-height: 8;
    }
    KeysScreen #versions-table {
        height: auto;
        max-height: 10;
    }
    KeysScreen #keys-rewrap {
        border: round $warning 60%;
    }
    KeysScreen #rewrap-bar {
        margin: 1 0 0 0;
    }
    KeysScreen #rewrap-failures {
        height: auto;
    }
    KeysScreen #failures {
        margin-top: 1;
        height: auto;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        # short names, and retire/destroy named on the versions box instead of in the
        # footer: the footer also holds every global F-key at 130 columns
        Binding("n", "create", "New", tooltip="Generate a new KEK"),
        Binding("r", "rotate", "Rotate", tooltip="Rotate the highlighted KEK"),
        # one key, two names: "resume" while a job is unfinished, "rewrap" for DEKs left
        # under older versions without one (imports, an earlier job's failures)
        Binding("w", "resume", "Resume", tooltip="Resume the unfinished rewrap job"),
        Binding("w", "rewrap", "Rewrap", tooltip="Rewrap DEKs left under older versions"),
        Binding("c", "cancel_rewrap", "Cancel", tooltip="Cancel the rewrap after this batch"),
        Binding("t", "retire", "Retire", show=False),
        Binding("x", "destroy", "Destroy", show=False),
        Binding("f5", "reload", "Reload", show=False),
    ]

    def __init__(
        self,
        service: Service,
        *,
        clock: Clock = utc_now,
        batch_size: int = DEFAULT_BATCH,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.clock = clock
        self.batch_size = batch_size
        self.rewrap_workers = workers
        self.keks: list[Kek] = []
        self.jobs: list[RewrapJob] = []
        self.failures: list[RewrapFailure] = []
        self.destroy_requests: list[Request] = []
        self.selected_name: str | None = None
        self._versions_of: str | None = None  # the KEK whose versions the table holds
        # the rewrap job this screen runs (at most one at a time)
        self.rewrapping: str | None = None
        self._cancel = threading.Event()
        self._run_failures: list[RewrapFailure] = []
        self._last: RewrapProgress | None = None
        self._census_read = 0.0
        self._resumed = False
        self._read_seq = 0  # reads started
        self._shown_seq = 0  # the newest read shown
        self._want: tuple[int, str] | None = None  # (read, KEK) to highlight when it shows

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with VerticalScroll(id="keys"):
            keks = Vertical(id="keys-keks", classes="box")
            keks.border_title = "KEKs"
            with keks:
                yield DataTable(id="keks-table", cursor_type="row", zebra_stripes=True)
            versions = Vertical(id="keys-versions", classes="box")
            versions.border_title = "Versions"
            with versions:
                yield DataTable(id="versions-table", cursor_type="row")
                yield Static("", id="versions-note")
            job = Vertical(id="keys-rewrap", classes="box")
            job.border_title = "Rewrap job"
            with job:
                yield Static("", id="rewrap-title")
                yield ProgressBar(id="rewrap-bar", show_eta=False)
                yield Static("", id="rewrap-stats")
                yield Static("", id="rewrap-failures", classes="bad")
            history = Vertical(id="keys-history", classes="box")
            history.border_title = "Rotation history"
            with history:
                yield Static("", id="history")
                yield Static("", id="failures")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        keks = self.query_one("#keks-table", DataTable)
        keks.add_columns("KEK", "Backend", "Suite", "Current", "DEKs", "Last rotation", "Next due")
        keks.add_column("Purpose", width=PURPOSE_WIDTH)
        self.query_one("#versions-table", DataTable).add_columns(
            "", "Version", "State", "Created (UTC)", "Fingerprint", "DEKs", "Retired / destroyed"
        )
        self.query_one("#keys-rewrap").display = False
        self.watch(self.app, "who", self._signed_in_or_out, init=False)
        # the first read, here on the UI thread: the lists are there for the first frame
        # (and the first key), and no rewrap of this screen can run before it opens
        try:
            self._shown(read_keys(self.service), 0)
        except CustodianError as e:
            self._read_failed(str(e))
        self.query_one("#keks-table").focus()

    def on_screen_resume(self) -> None:
        if self._resumed:  # not the first time: something may have changed elsewhere
            self.reload()
        self._resumed = True

    # ------------------------------------------------------------------ reading

    def reload(self, select: str | None = None) -> Worker[None]:
        """Read the keys again in a thread worker; the screen follows when they come.

        ``select`` is the KEK to highlight then (a new one, say)."""
        self._read_seq += 1
        if select is not None:
            self._want = (self._read_seq, select)
        return self._read(self._read_seq)

    async def refreshed(self, select: str | None = None) -> None:
        """:meth:`reload`, and wait until the screen shows what it read."""
        with suppress(WorkerCancelled, WorkerFailed):  # a failed read said so itself
            await self.reload(select).wait()

    def _reading(self) -> bool:
        return any(w.group == READ_GROUP and not w.is_finished for w in self.workers)

    @work(thread=True, exit_on_error=False, group=READ_GROUP, description="read the keys")
    def _read(self, seq: int) -> None:
        try:
            keys = read_keys(self.service)
        except CustodianError as e:
            self.app.call_from_thread(self._read_failed, str(e))
            return
        self.app.call_from_thread(self._shown, keys, seq)

    def _read_failed(self, message: str) -> None:
        self.notify(message, title="Could not read the keys", severity="error", markup=False)

    def _shown(self, keys: KeysRead, seq: int) -> None:
        if seq < self._shown_seq:  # an older read answered after a newer one: keep the newer
            return
        self._shown_seq = seq
        self.keks, self.jobs = keys.keks, keys.jobs
        self.failures, self.destroy_requests = keys.failures, keys.destroy_requests
        select = None
        if self._want is not None and seq >= self._want[0]:
            select, self._want = self._want[1], None
        names = [k.name for k in self.keks]
        want = select or self.selected_name
        self.selected_name = want if want in names else (names[0] if names else None)
        table = self.query_one("#keks-table", DataTable)
        table.clear()
        for k in self.keks:
            table.add_row(*self._kek_row(k), key=k.name)
        if self.selected_name is not None:
            table.move_cursor(row=names.index(self.selected_name))
        self._show_selected()
        self.refresh_bindings()

    def _kek_row(self, k: Kek) -> list[Text]:
        current = self._current(k)
        last = Text("-")
        due_text = Text("-")
        if current is not None:
            if k.current_version > 1:
                last = Text(f"{when(current.created_at)[:10]} (v{current.version})")
            else:
                last = Text("never", style="dim")
            due, overdue = rotation_due(
                current.created_at, self.service.config.policy.rotation_days, self.clock()
            )
            if due is not None:
                due_text = (
                    Text(f"{due:%Y-%m-%d} overdue", style="bold red")
                    if overdue
                    else Text(f"{due:%Y-%m-%d}")
                )
        return [
            Text(safe(k.name), style="bold"),
            Text(safe(k.backend)),
            Text(safe(k.suite)),
            Text(f"v{k.current_version}", style="cyan"),
            Text(f"{k.dek_count:,}", justify="right"),
            last,
            due_text,
            Text(fit(safe(k.purpose), PURPOSE_WIDTH).rstrip() or "-", style="dim"),
        ]

    @staticmethod
    def _current(k: Kek) -> KekVersion | None:
        return next((v for v in k.versions if v.version == k.current_version), None)

    @property
    def selected(self) -> Kek | None:
        return next((k for k in self.keks if k.name == self.selected_name), None)

    @property
    def selected_version(self) -> KekVersion | None:
        k = self.selected
        if k is None:
            return None
        table = self.query_one("#versions-table", DataTable)
        if table.row_count == 0 or not 0 <= table.cursor_row < table.row_count:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((v for v in k.versions if str(v.version) == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "keks-table":
            return
        # Where the cursor is now, not where the event says: refilling the table posts
        # highlights of rows the cursor only passed through.
        row = event.data_table.cursor_row
        name = self.keks[row].name if 0 <= row < len(self.keks) else None
        if name is not None and name != self.selected_name:
            self.selected_name = name
            self._show_selected()
            self.refresh_bindings()

    def _show_selected(self) -> None:
        k = self.selected
        vtable = self.query_one("#versions-table", DataTable)
        shown = self._versions_of
        keep = self.selected_version.version if shown == self.selected_name and shown else None
        vtable.clear()
        self._versions_of = self.selected_name
        box = self.query_one("#keys-versions")
        history = self.query_one("#history", Static)
        failures = self.query_one("#failures", Static)
        hbox = self.query_one("#keys-history")
        if k is None:
            box.border_title = "Versions"
            self.query_one("#versions-note").display = False
            history.update(Text("This home has no KEK yet. Press n to generate one.", style="dim"))
            failures.update("")
            failures.display = False
            self._show_rewrap_panel()
            return
        box.border_title = f"Versions of {safe(k.name)}"
        box.border_subtitle = "t retire  ·  x request destruction"
        note = self.query_one("#versions-note", Static)
        note.update(self._destroy_note(k))
        note.display = bool(self._asked(k))
        versions = [v.version for v in reversed(k.versions)]
        for v in reversed(k.versions):
            vtable.add_row(*self._version_row(k, v), key=str(v.version))
        # the same version stays highlighted (a rotation adds a row above it)
        if keep in versions:
            vtable.move_cursor(row=versions.index(keep))
        jobs = [j for j in self.jobs if j.kek == k.name]
        hbox.border_title = f"Rotation history of {safe(k.name)}"
        history.update(self._history(jobs))
        failures.update(self._failures(jobs))
        failures.display = bool(fails_of(self.failures, jobs))
        self._show_rewrap_panel()

    def _version_row(self, k: Kek, v: KekVersion) -> list[Text]:
        current = v.version == k.current_version
        end = Text("")
        if v.destroyed_at:
            end = Text(f"destroyed {when(v.destroyed_at)}", style="dim")
        elif v.retired_at:
            end = Text(f"retired {when(v.retired_at)}", style="yellow")
        if self._asked(k, v.version):
            end.append(" ⚑", style="bold")  # explained in the note under the table
        return [
            Text("▸", style="bold cyan") if current else Text(""),
            Text(f"v{v.version}" + (" current" if current else ""), style="cyan"),
            Text(v.state, style=STATE_STYLE.get(v.state, "")),
            Text(when(v.created_at), style="dim"),
            Text(safe(v.fingerprint)),
            Text(f"{v.dek_count:,}", justify="right", style="bold" if v.dek_count else "dim"),
            end,
        ]

    def _asked(self, k: Kek, version: int | None = None) -> list[Request]:
        """Open requests to destroy a version of ``k`` (of ``version`` only, if given)."""
        return [
            r
            for r in self.destroy_requests
            if r.payload.get("kek") == k.name
            and (version is None or r.payload.get("version") == version)
        ]

    def _destroy_note(self, k: Kek) -> Text:
        out = Text()
        for r in self._asked(k):
            if out:
                out.append("\n")
            out.append("⚑ ", style="bold")
            out.append(
                f"Destruction of v{r.payload.get('version')} requested by {safe(r.requester)} "
                f"(request {r.id[:8]}, until {when(r.expires_at)} UTC): "
                f"{len(r.approvals)} of {r.quorum} approvals"
            )
            if r.approvals:
                out.append(f" ({', '.join(safe(a) for a in r.approvals)})")
            out.append(". Other custodians decide it on Restores (F6).", style="dim")
        return out

    def _history(self, jobs: list[RewrapJob]) -> Table | Text:
        if not jobs:
            return Text("No rotation yet: press r to rotate this KEK.", style="dim")
        t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold dim", expand=False)
        t.add_column("Job", no_wrap=True)
        t.add_column("Target", no_wrap=True)
        t.add_column("State", no_wrap=True)
        t.add_column("Done", justify="right", no_wrap=True)
        t.add_column("Failed", justify="right", no_wrap=True)
        t.add_column("Runs", justify="right", no_wrap=True)
        t.add_column("By", no_wrap=True)
        t.add_column("Started (UTC)", no_wrap=True)
        t.add_column("Finished (UTC)", no_wrap=True)
        for j in reversed(jobs):
            t.add_row(
                Text(j.id[:8]),
                Text(f"v{j.target_version}", style="cyan"),
                Text(j.state, style=JOB_STYLE.get(j.state, "")),
                Text(f"{j.rewrapped:,} of {j.total:,}"),
                Text(f"{j.failed:,}", style="bold red" if j.failed else "dim"),
                Text(str(j.runs)),
                Text(safe(j.started_by)),
                Text(when(j.created_at), style="dim"),
                Text(when(j.finished_at) if j.finished_at else "-", style="dim"),
            )
        return t

    def _failures(self, jobs: list[RewrapJob]) -> Group | Text:
        ids = {j.id: j for j in jobs}
        if not fails_of(self.failures, jobs):
            return Text("")
        # the newest job with failures: what still fails now (earlier jobs' failures
        # were retried by the later job, whose list is the one that counts)
        latest = next(j for j in reversed(jobs) if fails_of(self.failures, [j]))
        fails = fails_of(self.failures, [latest])
        earlier = [j for j in jobs if j.id != latest.id and j.failed]
        t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold dim")
        t.add_column("Job", no_wrap=True)
        t.add_column("Backup", no_wrap=True)
        t.add_column("From", no_wrap=True)
        t.add_column("Reason", overflow="fold", ratio=1)
        for f in fails[:MAX_FAILURES_SHOWN]:
            t.add_row(
                Text(f.job[:8]),
                Text(safe(f.backup), style="red"),
                Text(f"v{f.from_version}", style="cyan"),
                Text(safe(f.reason)),
            )
        parts: list[Text | Table] = [
            Text(
                f"DEKs that failed to rewrap in job {latest.id[:8]} ({len(fails):,})",
                style="bold red",
            ),
            t,
        ]
        if len(fails) > MAX_FAILURES_SHOWN:
            parts.append(
                Text(
                    f"… and {len(fails) - MAX_FAILURES_SHOWN:,} more: custodian kek jobs "
                    f"{safe(ids[fails[0].job].kek)}",
                    style="dim",
                )
            )
        if earlier:
            parts.append(
                Text(
                    "Earlier jobs: "
                    + ", ".join(f"{j.id[:8]} {j.failed:,} failed" for j in earlier)
                    + f" (custodian kek jobs {safe(latest.kek)} lists them).",
                    style="dim",
                )
            )
        parts.append(
            Text(
                "A failed DEK stays under its old version, which cannot be retired until the "
                "DEK is rewrapped (w retries) or its backup is dealt with.",
                style="dim",
            )
        )
        return Group(*parts)

    @work(exclusive=True, group="keys-f5")
    async def action_reload(self) -> None:
        if self.rewrapping is None:
            self._last = None  # the last run's result panel goes, or shows what is unfinished
        await self.refreshed()
        self.notify("Keys reloaded.", timeout=2)

    # ------------------------------------------------------------------ bindings

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_rewrap":
            return self.rewrapping is not None
        if action in ("resume", "rewrap"):
            if self.rewrapping is not None or self.selected is None:
                return False
            unfinished = self._unfinished(self.selected) is not None
            if action == "resume":
                return unfinished
            return not unfinished and self._pending(self.selected) > 0
        return True

    def _unfinished(self, k: Kek) -> RewrapJob | None:
        running = [j for j in self.jobs if j.kek == k.name and j.state == "running"]
        return running[-1] if running else None

    @staticmethod
    def _pending(k: Kek) -> int:
        """DEKs of ``k`` under older versions."""
        return sum(v.dek_count for v in k.versions if v.version != k.current_version)

    # ------------------------------------------------------------------ guards

    def _actor(self, doing: str) -> Actor | None:
        blocked = ceremony_blocked(self.app)
        if blocked:
            self.notify(blocked, title="Refused", severity="error", markup=False)
            return None
        acting = getattr(self.app, "acting", None)
        return acting("custodian", doing) if acting else None

    def _not_while_rewrapping(self) -> bool:
        if self.rewrapping is not None:
            self.notify(
                f"The rewrap of KEK {self.rewrapping} is running; wait for it to finish or "
                "cancel it (c) first.",
                severity="warning",
                markup=False,
            )
            return True
        return False

    def _need_kek(self) -> Kek | None:
        k = self.selected
        if k is None:
            self.notify("This home has no KEK yet; press n to generate one.", severity="warning")
        return k

    # ------------------------------------------------------------------ generation

    @work(exclusive=True, group="ceremony")
    async def action_create(self) -> None:
        actor = self._actor("generate a KEK")
        if actor is None:
            return
        spec = await self.app.push_screen_wait(
            KekForm(self.service, existing=[k.name for k in self.keks])
        )
        if not isinstance(spec, KekSpec):
            return

        def create(code: str) -> Kek:
            return self.service.create_kek(
                spec.name,
                by=actor,
                backend=spec.backend,
                suite=spec.suite,
                purpose=spec.purpose,
                code=code,
            )

        body = pairs(
            ("Name", spec.name),
            ("Backend", spec.backend),
            ("Suite", spec.suite),
            ("Purpose", spec.purpose or "-"),
        )
        kek = await self.app.push_screen_wait(
            CodeConfirm(
                f"Generate KEK {safe(spec.name)}", body, create, ok="Generate", who=actor.name
            )
        )
        if not isinstance(kek, Kek):
            return
        await self.refreshed(select=kek.name)
        self.notify(
            f"KEK {kek.name} v1 generated ({kek.suite}); "
            f"fingerprint {kek.versions[0].fingerprint}.",
            title="KEK generated",
            markup=False,
        )
        await self.app.push_screen_wait(KekCreated(kek))

    # ------------------------------------------------------------------ rotation

    @work(exclusive=True, group="ceremony")
    async def action_rotate(self) -> None:
        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("rotate a KEK")
        if actor is None:
            return
        try:
            preview = await asyncio.to_thread(self.service.rotate_preview, k.name)
        except CustodianError as e:
            self.notify(str(e), title="No rotation", severity="error", markup=False)
            return
        if await self.app.push_screen_wait(RotatePreviewDialog(preview)) is not True:
            return

        def rotate(code: str) -> RewrapJob:
            return self.service.rotate(k.name, code, by=actor)

        job = await self.app.push_screen_wait(
            CodeConfirm(
                f"Confirm the rotation of KEK {safe(k.name)}",
                rotate_body(preview),
                rotate,
                ok="Rotate",
                variant="warning",
                who=actor.name,
            )
        )
        if not isinstance(job, RewrapJob):
            return
        await self.refreshed(select=k.name)
        new = self.selected
        fp = self._current(new).fingerprint if new and self._current(new) else ""
        self.notify(
            f"KEK {k.name} v{job.target_version} wraps every new DEK from now on "
            f"(fingerprint {fp}); rewrapping {job.total:,} DEK(s).",
            title="KEK rotated",
            markup=False,
        )
        self.start_rewrap(k.name, actor)

    def action_resume(self) -> None:
        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("resume a rewrap")
        if actor is not None:
            self.start_rewrap(k.name, actor)

    def action_rewrap(self) -> None:
        self.action_resume()

    def start_rewrap(self, name: str, actor: Actor) -> None:
        self.rewrapping = name
        # Each batch's audit entry is signed with the actor's key: no sign-out (or quit)
        # while the job runs, as for a restore session (CustodianApp.busy).
        self.app.busy = (  # type: ignore[attr-defined]
            f"the rewrap of KEK {name} is running (c on Keys, F7, stops it after its batch)"
        )
        self._cancel.clear()
        self._run_failures = []
        self._last = None
        self._census_read = time.monotonic()
        panel = self.query_one("#keys-rewrap")
        panel.display = True
        panel.border_title = f"Rewrap job of {safe(name)}"
        panel.border_subtitle = "c cancel  ·  w resumes later"
        self.query_one("#rewrap-title", Static).update(
            Text(f"Rewrapping every DEK of KEK {safe(name)} to its current version…")
        )
        self.query_one("#rewrap-stats", Static).update(Text("Starting…", style="dim"))
        self._failure_lines(Text(""))
        bar = self.query_one("#rewrap-bar", ProgressBar)
        bar.update(total=None, progress=0)
        self.refresh_bindings()
        self._rewrap(name, actor)

    # a fixed description: the arguments (the actor) stay out of Textual's worker log
    @work(
        thread=True, exclusive=True, exit_on_error=False, group="rewrap", description="rewrap a KEK"
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
            report = self.service.rewrap(
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

    def on_rewrap_progress(self, m: RewrapProgress) -> None:
        if m.kek != self.rewrapping:
            return
        self._last = m
        self.query_one("#rewrap-bar", ProgressBar).update(total=max(m.total, 1), progress=m.done)
        self._show_stats(m)
        now = time.monotonic()
        # the census and the job's row follow, read in a thread: the job holds the catalog
        if now - self._census_read >= CENSUS_EVERY and not self._reading():
            self._census_read = now
            self.reload()

    def _show_stats(self, m: RewrapProgress, note: str = "") -> None:
        left = m.total - m.done
        stats = Text()
        stats.append(f"{m.done:,}", style="bold")
        stats.append(f" of {m.total:,} done  ·  ")
        stats.append(f"{m.failed:,} failed", style="bold red" if m.failed else "")
        stats.append(f"  ·  {left:,} left")
        if m.rate > 0:
            stats.append(f"  ·  {m.rate:,.0f} DEKs/s")
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

    def action_cancel_rewrap(self) -> None:
        if self.rewrapping is None:
            return
        self._cancel.set()
        if self._last is not None:
            self._show_stats(self._last)
        else:
            self.query_one("#rewrap-stats", Static).update(
                Text("Cancelling after the batch in flight…", style="yellow")
            )

    def _signed_in_or_out(self, who: str) -> None:
        if not who and self.rewrapping is not None:
            self._cancel.set()  # the signing key is gone: stop after this batch

    def on_rewrap_ended(self, m: RewrapEnded) -> None:
        self._ended(m.kek, m.report, m.error, m.keys)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if w.group == "rewrap" and event.state == WorkerState.ERROR and self.rewrapping:
            self._ended(self.rewrapping, None, f"the rewrap stopped unexpectedly: {w.error}")
        elif w.group == READ_GROUP and event.state == WorkerState.ERROR:
            self._read_failed(f"the keys could not be read: {w.error}")

    def _ended(
        self,
        name: str,
        report: RewrapReport | None,
        error: str | None,
        keys: KeysRead | None = None,
    ) -> None:
        if self.rewrapping != name:
            return
        self.rewrapping = None
        self.app.busy = ""  # type: ignore[attr-defined]
        self._cancel.clear()
        if keys is not None:
            self._read_seq += 1
            self._shown(keys, self._read_seq)
        else:
            self.reload()
        bar = self.query_one("#rewrap-bar", ProgressBar)
        title = self.query_one("#rewrap-title", Static)
        panel = self.query_one("#keys-rewrap")
        panel.border_subtitle = ""
        if error is not None:
            title.update(Text(f"The rewrap of KEK {safe(name)} stopped: {error}", style="bold red"))
            note = (
                "Every committed batch is kept; the job resumes from there (w)."
                if "signed out" not in error
                else "Sign in again and resume (w): every committed batch is kept."
            )
            if self._last is not None:
                self._show_stats(self._last, note)
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

    def _show_rewrap_panel(self) -> None:
        """Outside a run: say so when the highlighted KEK has an unfinished job."""
        if self.rewrapping is not None:
            return
        panel = self.query_one("#keys-rewrap")
        k = self.selected
        j = self._unfinished(k) if k is not None else None
        if panel.display and self._last is not None:
            return  # the result of the last run stays until F5
        if j is None:
            panel.display = False
            return
        panel.display = True
        panel.border_title = f"Rewrap job of {safe(j.kek)}"
        panel.border_subtitle = ""
        self.query_one("#rewrap-title", Static).update(
            Text(
                f"Unfinished rewrap job {j.id[:8]} to v{j.target_version}: press w to resume "
                "it from where it stopped.",
                style="bold yellow",
            )
        )
        self.query_one("#rewrap-bar", ProgressBar).update(total=max(j.total, 1), progress=j.done)
        self.query_one("#rewrap-stats", Static).update(
            Text(f"{j.done:,} of {j.total:,} done  ·  {j.failed:,} failed  ·  {j.runs} run(s)")
        )
        self._failure_lines(Text(""))

    # ------------------------------------------------------------------ retire and destroy

    def _need_version(self) -> tuple[Kek, KekVersion] | None:
        k = self._need_kek()
        if k is None:
            return None
        v = self.selected_version
        if v is None:
            self.notify("Choose a version in the versions table first.", severity="warning")
            return None
        return k, v

    @work(exclusive=True, group="ceremony")
    async def action_retire(self) -> None:
        chosen = self._need_version()
        if chosen is None or self._not_while_rewrapping():
            return
        actor = self._actor("retire a KEK version")
        if actor is None:
            return
        await self.refreshed()  # the census as it is now
        k = next((x for x in self.keks if x.name == chosen[0].name), None)
        v = next((x for x in k.versions if x.version == chosen[1].version), None) if k else None
        if k is None or v is None:
            return
        refusal = None
        if v.state != "active":
            refusal = f"KEK {k.name} v{v.version} is already {v.state}; nothing was done."
        elif v.version == k.current_version:
            refusal = (
                f"v{v.version} is the current version of KEK {k.name} and wraps every new DEK; "
                "rotate first (r), then retire it once its census is zero. Nothing was done."
            )
        elif v.dek_count > 0:
            refusal = (
                f"KEK {k.name} v{v.version} still wraps {v.dek_count:,} DEK(s); retiring it "
                "would make them unreadable. Rewrap them first (w) and deal with any "
                "failures until the census is zero. Nothing was done."
            )
        if refusal:
            self.notify(refusal, title="Retirement refused", severity="error", markup=False)
            return

        def retire(code: str) -> KekVersion:
            return self.service.retire_version(k.name, v.version, code, by=actor)

        done = await self.app.push_screen_wait(
            CodeConfirm(
                f"Retire KEK {safe(k.name)} v{v.version}",
                retire_body(
                    k,
                    v,
                    self.service.config.policy.retirement_wait_days,
                    self.service.config.policy.approval_quorum,
                ),
                retire,
                ok="Retire",
                variant="warning",
                who=actor.name,
            )
        )
        if not isinstance(done, KekVersion):
            return
        await self.refreshed()
        self.notify(
            f"KEK {k.name} v{v.version} is retired; it unwraps nothing from now on. Its key "
            f"material can be destroyed after "
            f"{self.service.config.policy.retirement_wait_days} day(s) (x).",
            title="Version retired",
            markup=False,
        )

    @work(exclusive=True, group="ceremony")
    async def action_destroy(self) -> None:
        chosen = self._need_version()
        if chosen is None:
            return
        k, v = chosen
        actor = self._actor("request the destruction of a KEK version")
        if actor is None:
            return
        if v.state != "retired":
            self.notify(
                f"KEK {k.name} v{v.version} is {v.state}; only a retired version can be "
                "destroyed" + (" (retire it first: t)." if v.state == "active" else "."),
                title="Destruction refused",
                severity="error",
                markup=False,
            )
            return
        quorum = self.service.config.policy.approval_quorum
        r = await self.app.push_screen_wait(
            DestroyRequestDialog(self.service, k, v, by=actor, quorum=quorum)
        )
        if not isinstance(r, Request):
            return
        await self.refreshed()
        self.notify(
            f"Request {r.id[:8]} asks to destroy KEK {k.name} v{v.version}. {r.quorum} other "
            f"custodians must approve it, each with a fresh code: Restores inbox (F6) or "
            f"'custodian approve {r.id[:8]}'.",
            title="Destruction requested",
            timeout=12,
            markup=False,
        )
