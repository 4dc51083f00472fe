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
when the screen opens, before any rewrap of it can run. The rewrap job runs in
the pane of :mod:`screens.rewrap_pane` (its own thread worker); while it runs
the screen follows the census every ~2 s. How rows, notes and tables read is
in :mod:`screens.key_view`.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from custodian.approvals import Request
from custodian.catalog import Kek, KekVersion, Person
from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.rotation import RewrapFailure, RewrapJob
from custodian.service import Service
from screens.chrome import AppFooter, CursorTable, SessionBar
from screens.dashboard import Clock, utc_now
from screens.format import safe
from screens.key_dialogs import (
    CodeConfirm,
    DestroyRequestDialog,
    KekCreated,
    KekForm,
    KekSpec,
    RotatePreviewDialog,
    pairs,
    retire_body,
    rotate_body,
)
from screens.key_view import (
    KeysRead,
    current_version,
    custody_view,
    destroy_note,
    destruction_requests,
    fails_of,
    failures_view,
    history_table,
    kek_row,
    pending,
    read_keys,
    unfinished,
    version_row,
)
from screens.refresh_pane import HolderUnlock, QuorumRotateDialog, RefreshEnded, RefreshPane
from screens.rewrap_pane import RewrapEnded, RewrapPane, RewrapProgress
from screens.secure import ceremony_blocked

CENSUS_EVERY = 2.0  # seconds between census reads while a rewrap runs
NARROW = 100  # columns: below this the tables leave out the backend, current and created
READ_GROUP = "keys-read"


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
        Binding("a", "apply", "Apply my part", tooltip="Apply your part of the quorum refresh"),
        Binding("t", "retire", "Retire", show=False, tooltip="Retire the highlighted version"),
        Binding(
            "m",
            "migrate",
            "Migrate",
            show=False,
            tooltip="Migrate the highlighted KEK to another backend (quorum: holders present)",
        ),
        Binding(
            "x",
            "destroy",
            "Destroy",
            show=False,
            tooltip="Request the destruction of the highlighted (retired) version",
        ),
        Binding("f5", "reload", "Reload", show=False),
    ]

    def __init__(
        self,
        service: Service,
        *,
        clock: Clock = utc_now,
        batch_size: int | None = None,  # None: the core's choice (smaller for small jobs)
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.clock = clock
        self.keks: list[Kek] = []
        self.jobs: list[RewrapJob] = []
        self.states: dict[str, str] = {}  # job id -> running, paused, interrupted, ...
        self.failures: list[RewrapFailure] = []
        self.destroy_requests: list[Request] = []
        self.selected_name: str | None = None
        self._versions_of: str | None = None  # the KEK whose versions the table holds
        self.rewrap = RewrapPane(service, batch_size=batch_size, workers=workers)
        self.refresh_pane = RefreshPane(service, workers=workers)
        self.custody: list[Any] = []  # quorum jobs (quorum_jobs.JobView)
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
            keks.border_subtitle = "m migrate to another backend"
            with keks:
                yield CursorTable(
                    id="keks-table",
                    cursor_type="row",
                    zebra_stripes=True,
                    flex="purpose",
                    # the purpose is in the dashboard and the ceremonies' dialogs
                    hide_below={"backend": NARROW, "current": NARROW, "purpose": 90},
                )
            versions = Vertical(id="keys-versions", classes="box")
            versions.border_title = "Versions"
            with versions:
                yield CursorTable(
                    id="versions-table",
                    cursor_type="row",
                    flex="fingerprint",
                    hide_below={"created": NARROW},
                )
                yield Static("", id="versions-note")
            yield self.rewrap
            yield self.refresh_pane
            history = Vertical(id="keys-history", classes="box")
            history.border_title = "Rotation history"
            with history:
                yield Static("", id="history")
                yield Static("", id="failures")
        yield AppFooter()

    def on_mount(self) -> None:
        keks = self.query_one("#keks-table", DataTable)
        for title, key in (
            ("KEK", "kek"),
            ("Backend", "backend"),
            ("Suite", "suite"),
            ("Current", "current"),
            ("DEKs", "deks"),
            ("Last rotated", "last"),
            ("Next due", "due"),
            ("Purpose", "purpose"),
        ):
            keks.add_column(title, key=key)
        versions = self.query_one("#versions-table", DataTable)
        for title, key in (
            ("Version", "version"),
            ("State", "state"),
            ("Created (UTC)", "created"),
            ("Fingerprint", "fingerprint"),
            ("DEKs", "deks"),
            ("Retired / destroyed", "end"),
        ):
            versions.add_column(title, key=key)
        # the first read, here on the UI thread: the lists are there for the first frame
        # (and the first key), and no rewrap of this screen can run before it opens
        try:
            self._shown(read_keys(self.service), 0)
        except CustodianError as e:
            self._read_failed(str(e))
        self.query_one("#keks-table").focus()

    @property
    def rewrapping(self) -> str | None:
        """The KEK whose rewrap job runs now, if any."""
        return self.rewrap.running

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
        self.keks, self.jobs, self.states = keys.keks, keys.jobs, keys.states
        self.failures, self.destroy_requests = keys.failures, keys.destroy_requests
        self.custody = keys.custody
        select = None
        if self._want is not None and seq >= self._want[0]:
            select, self._want = self._want[1], None
        names = [k.name for k in self.keks]
        want = select or self.selected_name
        self.selected_name = want if want in names else (names[0] if names else None)
        table = self.query_one("#keks-table", DataTable)
        table.clear()
        for k in self.keks:
            table.add_row(
                *kek_row(k, self.service.config.policy.rotation_days, self.clock()), key=k.name
            )
        if self.selected_name is not None:
            table.move_cursor(row=names.index(self.selected_name))
        self._show_selected()
        self.refresh_bindings()

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
            self.rewrap.show_idle(None)
            self.refresh_pane.show_idle(None)
            return
        box.border_title = f"Versions of {safe(k.name)}"
        box.border_subtitle = "t retire  ·  x request destruction"
        note = self.query_one("#versions-note", Static)
        asked = destruction_requests(self.destroy_requests, k)
        note.update(destroy_note(asked))
        note.display = bool(asked)
        versions = [v.version for v in reversed(k.versions)]
        for v in reversed(k.versions):
            flagged = bool(destruction_requests(asked, k, v.version))
            vtable.add_row(*version_row(k, v, asked=flagged), key=str(v.version))
        # the same version stays highlighted (a rotation adds a row above it)
        if keep in versions:
            vtable.move_cursor(row=versions.index(keep))
        jobs = [j for j in self.jobs if j.kek == k.name]
        hbox.border_title = f"Rotation history of {safe(k.name)}"
        history.update(history_table(jobs, self.states))
        failures.update(failures_view(self.failures, jobs))
        failures.display = bool(fails_of(self.failures, jobs))
        job = unfinished(self.jobs, k)
        self.rewrap.show_idle(job, self.states.get(job.id, "paused") if job else "")
        me = getattr(getattr(self.app, "actor", None), "name", "")
        self.refresh_pane.show_idle(custody_view(self.custody, k), me)

    @work(exclusive=True, group="keys-f5")
    async def action_reload(self) -> None:
        if self.rewrapping is None:
            self.rewrap.last = None  # the last run's result goes, or shows what is unfinished
        await self.refreshed()
        self.notify("Keys reloaded.", timeout=2)

    # ------------------------------------------------------------------ bindings

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_rewrap":
            return self.rewrapping is not None or self.refresh_pane.running is not None
        if action == "apply":
            k = self.selected
            view = custody_view(self.custody, k) if k is not None else None
            return (
                view is not None
                and view.job.state == "running"
                and self.refresh_pane.running is None
                and self.rewrapping is None
            )
        if action in ("resume", "rewrap"):
            if self.rewrapping is not None or self.selected is None:
                return False
            job = unfinished(self.jobs, self.selected)
            left = job is not None
            if job is not None and self.states.get(job.id) == "running":
                return False  # another process runs it: its census is followed, not resumed
            if action == "resume":
                return left
            return not left and pending(self.selected) > 0
        return True

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
        try:
            people = await asyncio.to_thread(self.service.people.list)
        except CustodianError as e:
            self.notify(str(e), title="Could not read people", severity="error", markup=False)
            return
        custodians = sum(
            1 for p in people if p.active and p.kind == "person" and p.has("custodian")
        )
        spec = await self.app.push_screen_wait(
            KekForm(self.service, existing=[k.name for k in self.keks], custodians=custodians)
        )
        if not isinstance(spec, KekSpec):
            return
        if spec.custody == "quorum":
            await self._create_quorum(spec, actor, people)
            return

        from screens.backend_dialogs import BackendChoice, BackendStep

        choice: BackendChoice | None = None
        if self.service.backends.kind(spec.backend) not in ("local", "quorum"):
            got = await self.app.push_screen_wait(BackendStep(self.service, spec.backend))
            if not isinstance(got, BackendChoice):
                return
            choice = got

        def create(code: str) -> Kek:
            svc = self.service
            if choice is None:
                return svc.keys.create(
                    spec.name,
                    by=actor,
                    backend=spec.backend,
                    suite=spec.suite,
                    purpose=spec.purpose,
                    code=code,
                )
            if choice.options is not None:
                svc.backends.configure(spec.backend, choice.options, by=actor)
            if choice.wrap is not None:
                svc.backends.set_wrap_credential(spec.backend, choice.wrap, by=actor)
            with svc.backends.custody(spec.backend, choice.custody):
                return svc.keys.create(
                    spec.name,
                    by=actor,
                    backend=spec.backend,
                    suite=spec.suite,
                    purpose=spec.purpose,
                    code=code,
                )

        rows = [("Name", spec.name), ("Backend", spec.backend)]
        if choice is not None:
            rows.append(("Health", "every check passed"))
        else:
            rows.append(("Suite", spec.suite))
        body = pairs(*rows, ("Purpose", spec.purpose or "-"))
        try:
            kek = await self.app.push_screen_wait(
                CodeConfirm(
                    f"Generate KEK {safe(spec.name)}", body, create, ok="Generate", who=actor.name
                )
            )
        finally:
            if choice is not None:
                choice.discard()
        if not isinstance(kek, Kek):
            return
        await self.refreshed(select=kek.name)
        # the dialog says it all; a toast at the same time would cover its button (80x24)
        await self.app.push_screen_wait(KekCreated(kek))
        self.notify(
            f"KEK {kek.name} v1 generated ({kek.suite}); "
            f"fingerprint {kek.versions[0].fingerprint}.",
            title="KEK generated",
            markup=False,
        )

    async def _create_quorum(self, spec: KekSpec, actor: Actor, people: list[Person]) -> None:
        """The quorum ceremony (screens.quorum): holders and M, each holder unlocks in
        turn, each confirms the manifest, the signed-in custodian confirms with a code."""
        from screens.quorum import HolderChoice, HoldersForm, create_quorum_kek

        choice = await self.app.push_screen_wait(HoldersForm(people, kek=spec.name))
        if not isinstance(choice, HolderChoice):
            return
        kek = await create_quorum_kek(
            self.app,
            self.service,
            by=actor,
            name=spec.name,
            choice=choice,
            suite=spec.suite,
            purpose=spec.purpose,
        )
        if kek is None:
            return
        await self.refreshed(select=kek.name)
        self.notify(
            f"Quorum KEK {kek.name} v1 created ({choice.m} of {len(choice.holders)}: "
            f"{', '.join(choice.holders)}); manifest fingerprint {kek.versions[0].fingerprint}.",
            title="KEK generated",
            markup=False,
        )

    # ------------------------------------------------------------------ rotation

    @work(exclusive=True, group="ceremony")
    async def action_rotate(self) -> None:
        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("rotate a KEK")
        if actor is None:
            return
        if k.backend == "quorum":
            await self._rotate_quorum(k, actor)
            return
        try:
            preview = await asyncio.to_thread(self.service.keys.rotate_preview, k.name)
        except CustodianError as e:
            self.notify(str(e), title="No rotation", severity="error", markup=False)
            return
        if await self.app.push_screen_wait(RotatePreviewDialog(preview)) is not True:
            return

        def rotate(code: str) -> RewrapJob:
            return self.service.keys.rotate(k.name, code, by=actor)

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
        new = current_version(self.selected) if self.selected else None
        fp = new.fingerprint if new else ""
        self.notify(
            f"KEK {k.name} v{job.target_version} wraps every new DEK from now on "
            f"(fingerprint {fp}); rewrapping {job.total:,} DEK(s).",
            title="KEK rotated",
            markup=False,
        )
        self.start_rewrap(k.name, actor, expected=preview.estimated_rate)

    def action_resume(self) -> None:
        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("resume a rewrap")
        if actor is not None:
            self.start_rewrap(k.name, actor)

    def action_rewrap(self) -> None:
        self.action_resume()

    def start_rewrap(
        self, name: str, actor: Actor, *, expected: float = 0.0, title: str | None = None
    ) -> None:
        self._census_read = time.monotonic()
        self.rewrap.start(name, actor, expected=expected, title=title)
        self.refresh_bindings()

    # ------------------------------------------------------------------ migration

    @work(exclusive=True, group="ceremony")
    async def action_migrate(self) -> None:
        """Migrate the highlighted KEK (:mod:`screens.migrate_dialogs`): where to and who
        holds, each holder's passphrase in turn, the custodian's code; then the job runs
        in the rewrap pane while the versions table follows the census."""
        from screens.migrate_dialogs import HolderPassphrase, MigrateForm, migrate_body

        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("migrate a KEK")
        if actor is None:
            return
        try:  # what would be refused whatever is chosen (a quorum KEK) is said now
            refusal = await asyncio.to_thread(
                self.service.migrations.refusal, k.name, "quorum", by=actor
            )
            census = await asyncio.to_thread(self.service.migrations.census, k.name)
        except CustodianError as e:
            refusal, census = str(e), ()
        if refusal and "already on the quorum" not in refusal:
            self.notify(refusal, title="Migration refused", severity="error", markup=False)
            return
        spec = await self.app.push_screen_wait(MigrateForm(self.service, k, census))
        if spec is None:
            return
        holders: list[Actor] = []
        others = [n for n in spec.holders if n != actor.name]
        for name in spec.holders:
            if name == actor.name:
                holders.append(actor)
                continue
            got = await self.app.push_screen_wait(
                HolderPassphrase(self.service, name, others.index(name) + 1, len(others))
            )
            if not isinstance(got, Actor):
                return  # cancelled: nothing was done (unlocking changes nothing)
            holders.append(got)

        def migrate(code: str) -> RewrapJob:
            if spec.to == "quorum":
                return self.service.migrations.to_quorum(
                    k.name, holders, spec.m, by=actor, code=code
                )
            return self.service.migrations.to_backend(k.name, spec.to, by=actor, code=code)

        job = await self.app.push_screen_wait(
            CodeConfirm(
                f"Confirm the migration of KEK {safe(k.name)} to {safe(spec.to)}",
                migrate_body(k, spec, census),
                migrate,
                ok="Migrate",
                variant="warning",
                who=actor.name,
            )
        )
        holders.clear()
        if not isinstance(job, RewrapJob):
            return
        await self.refreshed(select=k.name)
        self.notify(
            f"KEK {k.name} v{job.target_version} is on {spec.to} and wraps every new DEK from "
            f"now on; moving {job.total:,} DEK(s) to it.",
            title="KEK migrating",
            markup=False,
        )
        self.start_rewrap(
            k.name,
            actor,
            title=f"Migrating every DEK of KEK {safe(k.name)} to {safe(spec.to)} "
            f"(v{job.target_version})…",
        )

    def on_rewrap_progress(self, m: RewrapProgress) -> None:
        if m.kek != self.rewrapping:
            return
        now = time.monotonic()
        # the census and the job's row follow, read in a thread: the job holds the catalog
        if now - self._census_read >= CENSUS_EVERY and not self._reading():
            self._census_read = now
            self.reload()

    def action_cancel_rewrap(self) -> None:
        self.rewrap.cancel()
        self.refresh_pane.cancel()

    # ------------------------------------------------------------------ quorum KEKs

    def action_apply(self) -> None:
        """The signed-in holder applies their part of the highlighted KEK's job."""
        k = self._need_kek()
        if k is None or self._not_while_rewrapping():
            return
        actor = self._actor("apply your part of a refresh")
        if actor is not None:
            self.refresh_pane.start(k.name, [actor], keep=actor)
            self.refresh_bindings()

    async def _rotate_quorum(self, k: Kek, actor: Actor) -> None:
        try:
            man = await asyncio.to_thread(self.service.keys.manifest, k.name, k.current_version)
        except CustodianError as e:
            self.notify(str(e), title="No rotation", severity="error", markup=False)
            return
        if await self.app.push_screen_wait(QuorumRotateDialog(k, man)) is not True:
            return
        present: list[Actor] = []
        for h in man.holders:
            if h.name == actor.name:
                present.append(actor)
                continue
            got = await self.app.push_screen_wait(
                HolderUnlock(self.service, h.name, f"make your new holder key of {k.name}")
            )
            if not isinstance(got, Actor):
                for a in present:
                    if a is not actor:
                        a.forget()
                self.notify("Rotation cancelled; nothing was changed.", markup=False)
                return
            present.append(got)

        def rotate(code: str) -> object:
            return self.service.keys.rotate(k.name, code, by=actor, holders=present)

        body = pairs(
            ("KEK", k.name),
            ("New version", Text(f"v{k.current_version + 1} (refresh)", style="bold")),
            ("Holders present", ", ".join(a.name for a in present)),
        )
        job = await self.app.push_screen_wait(
            CodeConfirm(f"Confirm the rotation of KEK {safe(k.name)}", body, rotate,
                        ok="Rotate", variant="warning", who=actor.name)
        )  # fmt: skip
        if job is None:
            for a in present:
                if a is not actor:
                    a.forget()
            return
        await self.refreshed(select=k.name)
        self.notify(
            f"KEK {k.name} v{k.current_version + 1} wraps every new DEK from now on; each "
            "holder present now seals their refreshed shares.",
            title="KEK rotated",
            markup=False,
        )
        self.refresh_pane.start(k.name, present, keep=actor)
        self.refresh_bindings()

    def on_refresh_ended(self, m: RefreshEnded) -> None:
        self.refresh_pane.ended(m)
        self.reload()
        self.refresh_bindings()

    def on_rewrap_ended(self, m: RewrapEnded) -> None:
        if self.rewrapping != m.kek:
            return
        self.rewrap.finish()
        if m.keys is not None:  # read by the job's worker: shown before the outcome, at once
            self._read_seq += 1
            self._shown(m.keys, self._read_seq)
        else:
            self.reload()
            self.refresh_bindings()
        self.rewrap.ended(m.kek, m.report, m.error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == READ_GROUP and event.state == WorkerState.ERROR:
            self._read_failed(f"the keys could not be read: {event.worker.error}")

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
            return self.service.keys.retire(k.name, v.version, code, by=actor)

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
        wait = self.service.config.policy.retirement_wait_days
        after = "from now on" if wait == 0 else f"after {wait} day{'s' if wait != 1 else ''}"
        self.notify(
            f"KEK {k.name} v{v.version} is retired; it unwraps nothing from now on. Its key "
            f"material can be destroyed {after}: x asks for it.",
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
        # what the request would refuse (the waiting period, the DEKs, too few other
        # custodians) is said now, before a reason is typed
        try:
            refusal = await asyncio.to_thread(
                self.service.keys.destroy_refusal, k.name, v.version, by=actor
            )
        except CustodianError as e:
            refusal = str(e)
        if refusal:
            self.notify(
                refusal[:1].upper() + refusal[1:],
                title="Destruction refused",
                severity="error",
                markup=False,
            )
            return
        policy = self.service.config.policy
        r = await self.app.push_screen_wait(
            DestroyRequestDialog(
                self.service,
                k,
                v,
                by=actor,
                quorum=policy.approval_quorum,
                wait_days=policy.retirement_wait_days,
            )
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
