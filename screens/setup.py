"""The first set-up of a home, as a guided ceremony (docs/custodian-guide.md, "First set-up").

``custodian`` opens it on a directory that holds no home yet, and on a home whose
set-up is not finished (``svc.setup.progress()`` says which step is next: the home's
own state, so a set-up cut short carries on where it stopped). The steps, the
same as the commands the guide lists:

1. **The home** (:class:`HomeForm`; ``custodian init``): where it lives
   (its directory's name labels the entries in authenticator apps), the name of
   its first KEK, and the keyring that keeps its root key.
2. **The custodians, in person, one after another** (``custodian people enrol``):
   a name and a passphrase, typed twice (:class:`CustodianForm`) or generated and
   shown once, then typed back (:class:`GeneratedPassphrase`); the authenticator's
   QR code and a first code (:class:`screens.people.TotpStep`). Every dialog
   closes before the next person's opens: nothing of one person is on screen for
   the next. The first custodian is enrolled by the home's own key; the next ones
   by a custodian already enrolled, who unlocks once (:class:`EnrollerUnlock`).
3. **The first quorum KEK** with them as holders (``custodian kek create --custody
   quorum``): :mod:`screens.quorum`'s ceremony, each holder unlocking in turn.
4. **The break-glass set** (``custodian breakglass split``): :class:`BreakGlassForm`,
   then each holder's share, one at a time (:mod:`screens.setup_shares`).
5. **A summary**, then the usual screens.

Enrolment comes before the quorum KEK on purpose: once a home has one, every
change of who holds what is itself an approval request (the bootstrap rule).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Static

from custodian.catalog import Person
from custodian.custody.breakglass import ShareSet
from custodian.errors import CustodianError
from custodian.home import Home
from custodian.people import Actor
from custodian.service import PendingEnrolment, Service
from custodian.service.setup import MIN_CUSTODIANS, SetupProgress
from screens.format import safe
from screens.key_dialogs import CodeConfirm, fingerprint_text, pairs
from screens.people import TotpStep
from screens.quorum import (
    HolderChoice,
    HoldersForm,
    create_quorum_kek,
    unlock_holders,
)
from screens.secure import ceremony_blocked
from screens.setup_dialogs import (
    BreakGlassForm,
    CustodianForm,
    EnrollerUnlock,
    Generate,
    GeneratedPassphrase,
    HomeForm,
)
from screens.setup_shares import hand_out_shares

STEPS = (
    ("home", "Create the home"),
    ("custodians", "Enrol the custodians, in person"),
    ("kek", "Create the first quorum KEK"),
    ("breakglass", "Split the break-glass set"),
    ("done", "Summary"),
)
ORDER = [s for s, _ in STEPS]


# ---------------------------------------------------------------- the coordinator


class SetupScreen(Screen[None]):
    """Where the set-up stands, and the button for its next step."""

    TITLE = "custodian"
    SUB_TITLE = "First set-up"

    DEFAULT_CSS = """
    SetupScreen #setup {
        padding: 0 1;
    }
    SetupScreen #setup-buttons {
        height: auto;
        margin-top: 1;
    }
    SetupScreen #setup-buttons Button {
        width: auto;
        margin-right: 2;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.progress: SetupProgress | None = None
        self.last = ""  # what the last step did (said under the steps)

    @property
    def setup_app(self) -> SetupApp:
        app = self.app
        assert isinstance(app, SetupApp)
        return app

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="setup"):
            steps = Static("", id="setup-steps", classes="box")
            steps.border_title = "First set-up"
            yield steps
            now = Static("", id="setup-now", classes="box")
            yield now
            with Horizontal(id="setup-buttons"):
                yield Button("", variant="primary", id="setup-go")
                yield Button("Enrol another custodian", id="setup-more")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def step(self) -> str:
        svc = self.setup_app.service
        if svc is None:
            return "home"
        self.progress = svc.setup.progress()
        return self.progress.step

    def show(self) -> None:
        step = self.step()
        here = ORDER.index(step)
        lines = Text()
        for i, (key, title) in enumerate(STEPS):
            mark = "✓" if i < here else ("●" if i == here else "○")
            style = "bold" if i == here else ("" if i < here else "dim")
            lines.append(f" {mark} {i + 1}. {title}", style=style)
            detail = self._detail(key)
            if detail:
                lines.append(f"  {detail}", style="dim")
            lines.append("\n")
        lines.rstrip()
        self.query_one("#setup-steps", Static).update(lines)
        now = self.query_one("#setup-now", Static)
        now.border_title = STEPS[here][1]
        now.update(self._now(step))
        go = self.query_one("#setup-go", Button)
        more = self.query_one("#setup-more", Button)
        go.label = {
            "home": "Create the home",
            "custodians": "Enrol a custodian",
            "kek": "Create the quorum KEK",
            "breakglass": "Split the break-glass set",
            "done": "Open custodian",
        }[step]
        more.display = step == "kek"
        go.focus()

    def _detail(self, key: str) -> str:
        app, p = self.setup_app, self.progress
        if key == "home" and app.service is not None:
            return safe(str(app.service.home.path))
        if p is None:
            return ""
        if key == "custodians" and p.custodians:
            return safe(", ".join(p.custodians))
        if key == "kek" and p.quorum_keks:
            return safe(", ".join(p.quorum_keks))
        if key == "breakglass" and p.breakglass:
            return "made"
        return ""

    def _now(self, step: str) -> Text | Group:
        last = Text(self.last + "\n", style="bold") if self.last else Text("")
        p = self.progress
        if step == "home":
            body = (
                "Welcome. This ceremony sets up a new home with its custodians present, at "
                "this workstation: the home, then each custodian in turn, then the first "
                "quorum KEK with them as its holders, then the paper break-glass shares. "
                "Each step is recorded as it is done; if you leave (ctrl+q), the next start "
                "carries on from where you stopped."
            )
        elif step in ("custodians", "kek"):
            n = len(p.custodians) if p else 0
            need = max(0, MIN_CUSTODIANS - n)
            body = (
                f"{n} custodian{'s' if n != 1 else ''} enrolled. Each comes to the keyboard "
                "in turn, chooses a passphrase and sets up their authenticator. "
                + (
                    f"A quorum needs at least {MIN_CUSTODIANS}: {need} more."
                    if need
                    else "Enrol everyone who will hold a share now: once the quorum KEK "
                    "exists, every new enrolment is an approval request."
                )
            )
        elif step == "breakglass":
            body = (
                "The quorum KEK exists. Last, the break-glass set: paper shares that recover "
                "the home when the keyring or the passphrases are lost. Have paper ready."
            )
        else:
            return Group(last, self._summary()) if self.last else self._summary()
        return Text.assemble(last, Text(body))

    def _summary(self) -> Any:
        svc = self.setup_app.service
        assert svc is not None
        p = svc.setup.progress()
        rows: list[tuple[str, str | Text]] = [("Home", str(svc.home.path))]
        rows.append(("Custodians", ", ".join(p.custodians)))
        for name in p.quorum_keks:
            try:
                man = svc.keys.manifest(name, 1)
                k = svc.keys.get(name)
                rows.append((f"KEK {name}", f"quorum, {man.m} of {man.n}"))
                rows.append(("  manifest", fingerprint_text(k.versions[0].fingerprint)))
            except CustodianError as e:
                rows.append((f"KEK {name}", str(e)))
        bg = svc.custody.current()
        if bg is not None:
            rows.append(("Break-glass", f"set {bg.set_id}, {bg.threshold} of {bg.count} "
                         f"({', '.join(bg.holders)})"))  # fmt: skip
            rows.append(("  recovery key", fingerprint_text(bg.fingerprint)))
        return Group(
            pairs(*rows),
            Text(""),
            Text(
                "Next: enrol operators and auditors on the People screen (F4); now that the "
                "quorum KEK exists, each enrolment is a request the custodians approve. "
                "Print the recovery key's fingerprint on each share's cover sheet. If a "
                "share was not handed out, split a new set ('custodian breakglass split').",
                style="dim",
            ),
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "setup-more":
            self.run_step("custodians")
        else:
            self.run_step(self.step())

    def say(self, text: str) -> None:
        self.last = text
        self.show()

    @work(exclusive=True, group="setup")
    async def run_step(self, step: str) -> None:
        blocked = ceremony_blocked(self.app)
        if blocked and step != "done":
            self.notify(blocked, title="Refused", severity="error", markup=False)
            return
        app = self.setup_app
        try:
            if step == "home":
                await self._home()
            elif step == "custodians":
                await self._enrol()
            elif step == "kek":
                await self._kek()
            elif step == "breakglass":
                await self._breakglass()
            else:
                app.exit(app.service)
                return
        except CustodianError as e:
            self.notify(str(e), title="Not done", severity="error", markup=False)
        self.show()

    async def _home(self) -> None:
        app = self.setup_app
        svc = await app.push_screen_wait(HomeForm(app.home))
        if isinstance(svc, Service):
            app.service = svc
            app.made_here = True
            self.say(f"The home is made at {safe(str(svc.home.path))}.")

    async def _enroller(self, doing: str) -> Actor | None:
        app, p = self.setup_app, self.progress
        assert app.service is not None and p is not None
        if app.enroller is not None:
            return app.enroller
        got = await app.push_screen_wait(EnrollerUnlock(app.service, p.custodians, doing))
        if isinstance(got, Actor):
            app.enroller = got
            app.unlocked[got.name] = got
            return got
        return None

    async def _enrol(self) -> None:
        app, p = self.setup_app, self.progress
        svc = app.service
        assert svc is not None and p is not None
        by: Actor | None = None
        if p.custodians:
            by = await self._enroller("the next custodians' enrolment")
            if by is None:
                return
        got = await app.push_screen_wait(CustodianForm(svc, by, len(p.custodians) + 1))
        if isinstance(got, Generate):
            got = await app.push_screen_wait(GeneratedPassphrase(svc, got.name, by))
        if not isinstance(got, PendingEnrolment):
            return
        person = await app.push_screen_wait(TotpStep(svc, got, by))
        if isinstance(person, Person):
            self.say(
                f"{person.name} is enrolled as a custodian. Nothing of theirs is left on "
                "screen: hand over to the next custodian."
            )

    async def _kek(self) -> None:
        app, p = self.setup_app, self.progress
        svc = app.service
        assert svc is not None and p is not None
        name = svc.config.default_kek
        if any(k.name.lower() == name.lower() for k in svc.keys.list()):
            name = f"{name}-quorum"
        people = await asyncio.to_thread(svc.people.list)
        choice = await app.push_screen_wait(HoldersForm(people, kek=name, ticked=p.custodians))
        if not isinstance(choice, HolderChoice):
            return
        kek = await create_quorum_kek(
            app,
            svc,
            by=app.enroller,
            name=name,
            choice=choice,
            purpose="default KEK for backups",
            unlocked=app.unlocked,
        )
        if kek is not None:
            app.kek_confirmer = app.enroller.name if app.enroller else choice.holders[0]
            self.say(
                f"Quorum KEK {kek.name} is made: {choice.m} of {len(choice.holders)} holders "
                "open a backup."
            )

    async def _breakglass(self) -> None:
        app, p = self.setup_app, self.progress
        svc = app.service
        assert svc is not None and p is not None
        got = await app.push_screen_wait(BreakGlassForm(p.custodians))
        if not isinstance(got, tuple):
            return
        names, threshold = got
        holders = await unlock_holders(
            app, svc, names, app.unlocked, purpose="so that you vouch for the recovery key"
        )
        if holders is None:
            return
        # a holder other than the one who confirmed the KEK, whose last code is older
        acting = next((h for h in holders if h.name != app.kek_confirmer), holders[0])

        def split(code: str) -> ShareSet:
            return svc.custody.split(holders, by=acting, code=code, threshold=threshold)

        body = Group(
            pairs(
                ("Holders", ", ".join(names)),
                ("Recover with", f"any {threshold} of {len(names)} shares"),
            ),
            Text(""),
            Text(
                f"{acting.name} confirms with a code. The set is recorded, then each holder "
                "sees their own share, one at a time.",
                style="dim",
            ),
        )
        shares = await app.push_screen_wait(
            CodeConfirm("Split the break-glass set", body, split, ok="Split", who=acting.name)
        )
        if not isinstance(shares, ShareSet):
            return
        try:
            await hand_out_shares(app, shares, names)
        finally:
            shares.wipe()
        self.say(
            f"Break-glass set {shares.set_id} is made: any {threshold} of {len(names)} shares "
            "recover the home. Every share has left the screen."
        )


class SetupApp(App[Service | None]):
    """The first set-up, on its own: returns the home's Service when it is done, None
    when left before the end (the next start carries on)."""

    CSS_PATH = "app.tcss"
    TITLE = "custodian"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Leave (carries on next time)", priority=True),
    ]

    def __init__(self, home: Home, service: Service | None = None) -> None:
        super().__init__()
        self.home = home
        self.service = service
        self.made_here = False  # the ceremony made the service (and closes it if left)
        self.enroller: Actor | None = None
        self.unlocked: dict[str, Actor] = {}  # people unlocked during this set-up
        self.kek_confirmer = ""

    def on_mount(self) -> None:
        self.push_screen(SetupScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title != "Screenshot":  # it writes the screen to a file
                yield command

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self.notify("Screenshots are turned off in custodian.", severity="warning")

    def _fatal_error(self) -> None:
        """Textual's crash report without local variables (a frame holds a passphrase)."""
        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(
            Segments(self.console.render(traceback, self.console.options))
        )
        self._close_messages_no_wait()

    def forget(self) -> None:
        """Drop every key unlocked during the set-up."""
        for actor in self.unlocked.values():
            actor.forget()
        self.unlocked.clear()
        self.enroller = None

    async def on_unmount(self, event: events.Unmount) -> None:
        self.forget()


def run_setup(target: Service | Home) -> Service | None:
    """Run the set-up on ``target``; its Service when finished, or None when left."""
    app = SetupApp(target) if isinstance(target, Home) else SetupApp(target.home, target)
    result = app.run()
    app.forget()
    if result is None and app.made_here and app.service is not None:
        path = app.service.home.path
        app.service.close()
        print(
            f"custodian: the set-up of {path} stopped; run 'custodian --home {path}' to carry on."
        )
        return None
    if result is None:
        return None
    return result
