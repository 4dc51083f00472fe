"""The custodian Textual app.

The app takes a :class:`custodian.service.Service` in its constructor and hands
it to each screen; screens call only Service methods, never the catalog, the
sealed store or the keyring. Each top-level screen is a Textual *mode*, so the
backups screen keeps its filter, order and cursor while you look at the
dashboard. The navigation keys are F-keys (and ctrl+q), which work even while
a text box has focus: F2 dashboard, F3 backups, F4 people, F6 restores
(approvals and sessions), F7 keys, F8 audit log, F9 sign in or out, F10
break-glass (not in the footer: the palette, ctrl+p, lists it).
Screen-level keys are F5 (reload) and ctrl+letters.

Who is signed in lives here: ``actor`` holds the unlocked signing key, and
``who`` a display string that every screen's :class:`~screens.chrome.SessionBar`
follows. Signing out (F9, or 15 idle minutes) closes any ceremony dialog,
records the sign-out, and drops the key.

While a restore session runs in its thread (``busy`` says which), the app
refuses sign-in, sign-out and quit: the run signs an audit entry for every
backup with the signed-in person's key, and signing out would drop that key
halfway. Idle sign-out waits for the run to end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from typing import ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen

from custodian.errors import CustodianError
from custodian.people import Actor
from custodian.service import Service
from screens.dashboard import Clock, DashboardScreen, utc_now

IDLE_SIGN_OUT = 15 * 60  # seconds without a key or click before the session ends


class CustodianApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "custodian"
    DEFAULT_MODE: ClassVar[str] = "dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "switch_mode('dashboard')", "Dashboard"),
        Binding("f3", "switch_mode('backups')", "Backups"),
        Binding("f4", "switch_mode('people')", "People"),
        Binding("f6", "switch_mode('restores')", "Restores"),
        Binding("f7", "switch_mode('keys')", "Keys"),
        Binding("f8", "switch_mode('audit')", "Audit"),
        Binding("f9", "sign_in_out", "Sign in/out"),
        Binding("f10", "switch_mode('breakglass')", "Break-glass", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    who: reactive[str] = reactive("")

    def __init__(
        self, service: Service, *, clock: Clock = utc_now, idle_sign_out: float = IDLE_SIGN_OUT
    ) -> None:
        super().__init__()
        self.service = service
        self.clock = clock
        self.actor: Actor | None = None
        self.busy = ""  # what long action runs now (a restore session), or ""
        self.idle_sign_out = idle_sign_out
        self._last_input = time.monotonic()
        # Only the dashboard is imported up front: the first frame comes sooner.
        self.add_mode("dashboard", lambda: DashboardScreen(self.service, clock=self.clock))
        self.add_mode("backups", self._backups)
        self.add_mode("people", self._people)
        self.add_mode("audit", self._audit)
        self.add_mode("keys", self._keys)
        self.add_mode("restores", self._restores)
        self.add_mode("breakglass", self._breakglass)

    def _backups(self) -> Screen[None]:
        from screens.backups import BackupsScreen

        return BackupsScreen(self.service)

    def _people(self) -> Screen[None]:
        from screens.people import PeopleScreen

        return PeopleScreen(self.service)

    def _audit(self) -> Screen[None]:
        from screens.audit import AuditScreen

        return AuditScreen(self.service)

    def _keys(self) -> Screen[None]:
        from screens.keys import KeysScreen

        return KeysScreen(self.service, clock=self.clock)

    def _restores(self) -> Screen[None]:
        from screens.restores import RestoresScreen

        return RestoresScreen(self.service)

    def _breakglass(self) -> Screen[None]:
        from screens.breakglass import BreakGlassScreen

        return BreakGlassScreen(self.service)

    def on_mount(self) -> None:
        self.set_interval(min(30.0, max(self.idle_sign_out / 4, 0.05)), self._check_idle)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette (ctrl+p) offers the current screen's ceremonies and keys first (the
        ones its footer may have no room for at 80 columns), then the screens, then
        Textual's own. The screenshot command writes what is on screen to a file: not
        for a key custody tool. Theme, quit, keys and maximize stay."""
        yield from self._screen_commands(screen)
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.action.startswith("switch_mode"):
                yield SystemCommand(
                    f"Go to {binding.description}",
                    f"{self.get_key_display(binding)}: the {binding.description} screen",
                    partial(self.run_action, binding.action),
                )
        for command in super().get_system_commands(screen):
            if command.title != "Screenshot":
                yield command

    def _screen_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The screen's own keys that may run now (its check_action says so)."""
        seen: set[str] = set()
        for binding in getattr(screen, "BINDINGS", []):
            if not isinstance(binding, Binding) or binding.action in seen:
                continue
            if binding.action in ("reload", "refresh", "escape", "stop", "cancel_verify"):
                continue  # F5 and Esc: not worth a line in the palette
            if screen.check_action(binding.action, ()) is False:
                continue
            seen.add(binding.action)
            where = screen.sub_title or type(screen).__name__
            yield SystemCommand(
                binding.tooltip or binding.description,
                f"{self.get_key_display(binding)} on {where}",
                partial(screen.run_action, binding.action),
            )

    def _fatal_error(self) -> None:
        """Textual's own crash report, without the local variables it would print: a
        frame of a ceremony holds a TOTP code or a passphrase (Textual 8.2.8, pinned)."""
        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(
            Segments(self.console.render(traceback, self.console.options))
        )
        self._close_messages_no_wait()

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self.notify(
            "Screenshots are turned off in custodian: they would write the screen to a file.",
            severity="warning",
        )

    # ------------------------------------------------------------ who is signed in

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def _check_idle(self) -> None:
        if self.busy:  # a restore running is activity; the idle time counts from its end
            self._last_input = time.monotonic()
            return
        if self.actor is not None and time.monotonic() - self._last_input > self.idle_sign_out:
            self.sign_out(reason="after 15 idle minutes")

    def _refuse_while_busy(self, doing: str) -> bool:
        if not self.busy:
            return False
        self.notify(
            f"Not now: {self.busy}. Wait for it, or stop it, then {doing}.",
            severity="warning",
            markup=False,
        )
        return True

    def action_sign_in_out(self) -> None:
        if self._refuse_while_busy("sign in or out"):
            return
        if self.actor is not None:
            self.sign_out()
        else:
            self.sign_in()

    @work(exclusive=True, group="signin")
    async def sign_in(self) -> Actor | None:
        from screens.secure import ceremony_blocked

        blocked = ceremony_blocked(self)
        if blocked:
            self.notify(blocked, title="Sign-in refused", severity="error", markup=False)
            return None
        from screens.signin import SignInScreen

        actor = await self.push_screen_wait(SignInScreen(self.service))
        if actor is not None:
            self.actor = actor
            self.who = f"{actor.name} ({', '.join(actor.roles)})"
            self.notify(f"Signed in as {actor.name}.", timeout=3, markup=False)
        return actor

    def sign_out(self, *, reason: str = "") -> None:
        """End the session: close ceremony dialogs, record it, drop the key."""
        if self._refuse_while_busy("sign out"):
            return
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()  # each ceremony discards its secrets when it unmounts
        actor, self.actor, self.who = self.actor, None, ""
        if actor is None:
            return
        try:
            self.service.auth.sign_out(actor)
        except CustodianError as e:
            self.notify(str(e), title="Sign-out not recorded", severity="warning", markup=False)
        self.notify(
            f"{actor.name} signed out{' ' + reason if reason else ''}; the signing key is "
            "dropped from memory.",
            timeout=4,
            markup=False,
        )

    def acting(self, role: str | None, doing: str) -> Actor | None:
        """The signed-in actor if they hold ``role``; otherwise say why not and return None."""
        actor = self.actor
        if actor is None:
            self.notify(f"Sign in (F9) to {doing}.", severity="warning", markup=False)
            return None
        if role is not None and not actor.has(role):
            self.notify(
                f"Only a {role} may {doing}; {actor.name} is {', '.join(actor.roles)}.",
                severity="warning",
                markup=False,
            )
            return None
        return actor

    async def action_quit(self) -> None:
        if self._refuse_while_busy("quit"):
            return
        self.sign_out()
        self.exit()


def run(service: Service) -> None:
    CustodianApp(service).run()
