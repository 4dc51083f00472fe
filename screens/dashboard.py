"""The dashboard: the state of one home at a glance.

Everything comes from one ``Service.status()`` call: the home, its keyring,
its backends and their health, every KEK with its versions (state, age,
fingerprint, DEK census) and the policy in force. F5 reads it again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.markup import escape
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static

from custodian.backends.base import Health
from custodian.catalog import Kek
from custodian.errors import CustodianError
from custodian.service import Service, Status
from custodian.service.backends import CHECKING
from screens.chrome import AppFooter, SessionBar
from screens.format import parse_stamp, safe, when

Clock = Callable[[], datetime]
NARROW_BELOW = 100  # columns
# custodian.demo.KDF_NOTE, shorter: a demo home's personal keys use cheap parameters
DEMO_KDF = "passphrases use cheap KDF parameters (Argon2id 8 MiB, 1 pass; 512 MiB on a real home)"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _health_word(h: Health) -> str:
    if h.detail == CHECKING:
        return "… checking"
    if h.ok:
        return "● healthy"
    first = h.checks[0] if h.checks else None
    return "✗ unreachable" if first is None or not first.ok else "✗ problem"


def _health_class(h: Health) -> str:
    return "checking" if h.detail == CHECKING else ("ok" if h.ok else "bad")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _value(text: str, *, id: str | None = None, classes: str = "") -> Static:
    """A value cell: plain text, never markup (paths and purposes are untrusted)."""
    return Static(Text(safe(text)), id=id, classes=f"value {classes}".strip())


def _pairs(*rows: tuple[str, str]) -> Table:
    """Name and value rows as one renderable (one widget, not two per row)."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", width=17, no_wrap=True)
    t.add_column(overflow="fold")
    for name, value in rows:
        t.add_row(name, Text(safe(value)))
    return t


STATE_STYLE = {"active": "green", "retired": "yellow", "destroyed": "dim strike"}


def rotation_due(
    created_at: str, rotation_days: int, now: datetime
) -> tuple[datetime | None, bool]:
    """When a KEK whose current version was made at ``created_at`` is due to rotate, and
    whether that is past (``now`` at or after it). (None, False) for an unreadable stamp."""
    created = parse_stamp(created_at)
    if created is None:
        return None, False
    due = created + timedelta(days=rotation_days)
    return due, now >= due


def _versions(kek: Kek) -> Table:
    """The versions of a KEK, newest first, with their census."""
    t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold dim")
    t.add_column("Version", min_width=11, no_wrap=True)
    t.add_column("State", min_width=9, no_wrap=True)
    t.add_column("Created (UTC)", no_wrap=True)
    t.add_column("Fingerprint", no_wrap=True)
    t.add_column("DEKs", justify="right", min_width=8, no_wrap=True)
    for v in reversed(kek.versions):
        current = v.version == kek.current_version
        t.add_row(
            Text(
                f"v{v.version}" + (" current" if current else ""),
                style="bold cyan" if current else "cyan",
            ),
            Text(v.state, style=STATE_STYLE.get(v.state, "")),
            Text(when(v.created_at), style="dim"),
            Text(safe(v.fingerprint)),
            Text(f"{v.dek_count:,}"),
        )
    return t


class DashboardScreen(Screen[None]):
    """Home, keyring, backends, KEKs with their versions and census, policy."""

    TITLE = "custodian"
    SUB_TITLE = "Dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f5", "refresh", "Refresh"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, service: Service, *, clock: Clock = utc_now) -> None:
        super().__init__()
        self.service = service
        self.clock = clock
        self.status: Status | None = None
        self.error: str | None = None
        self._shown = False
        self._read()

    def _read(self) -> bool:
        try:
            self.status = self.service.status(servers=False)  # servers: _check_servers
        except CustodianError as e:
            self.error = str(e)
            return False
        self.error = None
        return True

    def on_mount(self) -> None:
        self._check_servers()

    @work(thread=True, exclusive=True, group="backend-health", exit_on_error=False)
    def _check_servers(self) -> None:
        """Each server backend's health (bounded by its timeout), off the UI thread."""
        st = self.status
        if st is None:
            return
        for h in st.backends:
            if h.detail == CHECKING:
                new = self.service.backends.check(h.backend)
                self.app.call_from_thread(self._show_health, new)

    def _show_health(self, h: Health) -> None:
        key = re.sub(r"[^A-Za-z0-9_-]", "_", h.backend)
        try:
            word = self.query_one(f"#backend-health-{key}", Static)
            detail = self.query_one(f"#backend-detail-{key}", Static)
        except NoMatches:
            return
        word.update(Text(_health_word(h)))
        word.set_classes("backend-health " + _health_class(h))
        bad = next((c for c in h.checks if not c.ok), None)
        text = h.detail if bad is None else f"{bad.name}: {bad.detail}"
        if h.ok and h.checks:
            text = f"{h.checks[0].detail}; all {len(h.checks)} checks pass"
        detail.update(Text(safe(text)))

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield SessionBar()
        with VerticalScroll(id="dash"):
            if self.status is None:
                yield Static(
                    Text(
                        "The home could not be read: "
                        + (self.error or "unknown error")
                        + "\nNothing was changed. Fix the cause and press F5."
                    ),
                    id="dash-error",
                )
            else:
                yield from self._compose_status(self.status)
        yield AppFooter()

    def _compose_status(self, st: Status) -> Iterator[Widget]:
        with Horizontal(id="dash-top"):
            home = Vertical(id="dash-home", classes="box")
            home.border_title = "Home"
            with home:
                if st.demo:
                    wait = st.policy.retirement_wait_days
                    yield Static(
                        Text(
                            "DEMO HOME: sample data; its root key is kept in a file inside it; "
                            f"{DEMO_KDF}; "
                            + (
                                "a retired KEK version may be destroyed at once (no waiting "
                                "period; 7 days on a new home)."
                                if wait == 0
                                else f"a retired KEK version waits {_plural(wait, 'day')} "
                                "before it may be destroyed."
                            )
                        ),
                        id="dash-demo",
                    )
                yield Static(
                    _pairs(
                        ("Path", str(st.home)),
                        ("Home id", st.home_id),
                        ("Keyring", st.keyring),
                        ("Backups", f"{st.backup_count:,}"),
                        *self._breakglass_line(),
                    ),
                    id="dash-home-pairs",
                )
            policy = Vertical(id="dash-policy", classes="box")
            policy.border_title = "Policy"
            p = st.policy
            with policy:
                yield Static(
                    _pairs(
                        ("Approval quorum", _plural(p.approval_quorum, "custodian")),
                        ("Session lifetime", _plural(p.session_minutes, "minute")),
                        ("Request lifetime", _plural(p.request_hours, "hour")),
                        ("Rotation period", _plural(p.rotation_days, "day")),
                        ("Retirement wait", _plural(p.retirement_wait_days, "day")),
                    ),
                    id="dash-policy-pairs",
                )

        backends = Vertical(id="dash-backends", classes="box")
        backends.border_title = "Backends"
        with backends:
            for h in st.backends:
                key = re.sub(r"[^A-Za-z0-9_-]", "_", h.backend)
                with Horizontal(classes="backend"):
                    yield Static(Text(safe(h.backend)), classes="backend-name")
                    yield Static(
                        Text(_health_word(h)),
                        classes="backend-health " + _health_class(h),
                        id=f"backend-health-{key}",
                    )
                    yield _value(h.detail, classes="backend-detail", id=f"backend-detail-{key}")
            if not st.backends:
                yield Static(Text("No backend is configured."), classes="muted")

        if not st.keks:
            yield Static(Text("This home has no KEK yet."), classes="box muted")
        for kek in st.keks:
            yield from self._compose_kek(kek, st)

    def _breakglass_line(self) -> list[tuple[str, str]]:
        """The last good drill of the break-glass set (F10), once a set exists."""
        try:
            s = self.service.custody.current()
        except (CustodianError, ValueError, KeyError):
            return [("Break-glass", "the set's record cannot be read (F10)")]
        if s is None:
            return []
        drill = when(s.last_drill)[:16] if s.last_drill else "never"
        return [("Last good drill", f"{drill} (set {s.set_id}, {s.threshold} of {s.count})")]

    def _compose_kek(self, kek: Kek, st: Status) -> Iterator[Widget]:
        box = Vertical(classes="box kek", id="kek-" + re.sub(r"[^A-Za-z0-9_-]", "_", kek.name))
        box.border_title = f"KEK {escape(kek.name)}"
        box.border_subtitle = escape(f"{_plural(kek.dek_count, 'DEK')}")
        with box:
            summary = (
                f"backend {kek.backend}  ·  suite {kek.suite}  ·  current version "
                f"v{kek.current_version}"
            )
            if kek.purpose:
                summary += f"  ·  {kek.purpose}"
            yield _value(summary, classes="kek-summary")
            yield from self._rotation_lines(kek, st)
            yield Static(_versions(kek), classes="versions")

    def _rotation_lines(self, kek: Kek, st: Status) -> Iterator[Widget]:
        current = next((v for v in kek.versions if v.version == kek.current_version), None)
        if current is None:
            return
        last = (
            f"Last rotated {when(current.created_at)[:10]} (v{current.version})"
            if kek.current_version > 1
            else f"Never rotated (v1 made {when(current.created_at)[:10]})"
        )
        due, overdue = rotation_due(current.created_at, st.policy.rotation_days, self.clock())
        if due is not None and overdue:
            yield Static(
                Text(
                    f"{last}. Rotation OVERDUE since {due:%Y-%m-%d}: v{current.version} is "
                    f"older than {st.policy.rotation_days} days. Rotate it on Keys (F7)."
                ),
                classes="rotation overdue",
            )
        elif due is not None:
            yield Static(
                Text(
                    f"{last}. Next rotation due {due:%Y-%m-%d} "
                    f"(every {_plural(st.policy.rotation_days, 'day')})."
                ),
                classes="rotation",
            )
        waiting = sum(v.dek_count for v in kek.versions if v.version != kek.current_version)
        if waiting:
            yield Static(
                Text(
                    f"{_plural(waiting, 'DEK')} under older versions await rewrap "
                    f"to v{kek.current_version}."
                ),
                classes="rewrap warn",
            )

    def on_resize(self, event: events.Resize) -> None:
        # below 100 columns the policy goes under the home: side by side, both wrap
        self.set_class(event.size.width < NARROW_BELOW, "-narrow")

    # ------------------------------------------------------------------ actions

    async def on_screen_resume(self) -> None:
        # Back from another screen, where a KEK may have been made or rotated: read
        # again, quietly. The first showing has just read it.
        if self._shown and self._read():
            await self.recompose()
        self._shown = True

    async def action_refresh(self) -> None:
        if not self._read():
            self.notify(
                self.error or "unknown error",
                title="Refresh failed; showing the last good state",
                severity="error",
                markup=False,
            )
            return
        await self.recompose()
        self._check_servers()
        st = self.status
        assert st is not None
        versions = sum(len(k.versions) for k in st.keks)
        self.notify(
            f"{_plural(st.backup_count, 'backup')}, {_plural(versions, 'KEK version')}.",
            title="Dashboard refreshed",
            timeout=3,
            markup=False,
        )
