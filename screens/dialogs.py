"""The one base every ceremony dialog stands on: frame, error line, code field, service step.

A :class:`Dialog` is a typed :class:`~textual.screen.ModalScreen` that returns
through ``dismiss(value)``; escape or Cancel returns None. Its frame is always
the same: a title, a body that scrolls (:class:`~textual.containers.VerticalScroll`),
the fields that must stay in view (``fields()``: a code, a reason), an error
line, and a row of buttons, all four outside the scrolling part. A subclass
writes only its own part: ``heading()``, ``body()``, ``fields()``,
``button_row()`` (made with :meth:`Dialog.buttons`) and ``submit()``.

The frame fits the terminal it is in (CONVENTIONS.md, point 17): the body
gets the rows that the title, the fields, the error line and the buttons
leave (:meth:`Dialog.fit_body`, again whenever the terminal or the error line
changes size) and scrolls within them (PgUp/PgDn, the mouse wheel), so that
what is typed, what is refused and the buttons are always on screen. Below
:data:`SHORT_BELOW` rows (80x24, say), or when the body would have to scroll,
the frame drops its padding and its inputs, lists and buttons are drawn
compact (one row each, no border).

One step that changes something (a service call) runs with
:meth:`Dialog.run_step`: in a thread worker with a fixed description (Textual
would otherwise write the call's arguments, a TOTP code, into its worker log),
the OK button disabled and Enter and Cancel ignored until it answers. A
refusal (:class:`~custodian.errors.CustodianError`) shows on the error line,
the dialog stays open and the person may correct what they typed; anything
else closes the dialog with what the service returned.

A TOTP code is read once with :func:`take_code`, which clears its field before
the service sees the code, whatever the outcome. A secret a dialog holds (a
pending enrolment) is handed to :meth:`Dialog.discard_on_close` and discarded
when the dialog closes, done or not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, Protocol, TypeVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
)
from textual.worker import Worker, WorkerState

from custodian.errors import CustodianError

ResultT = TypeVar("ResultT")

CODE_MISSING = "Type the 6-digit code your authenticator shows now."
STEP_GROUP = "dialog-step"
SHORT_BELOW = 32  # terminal rows: below this the frame is drawn compact (class -short)
MAX_HEIGHT = 0.95  # of the terminal: .dialog's max-height in app.tcss (100% when short)


class CodeInput(Input):
    """Six digits, nothing else."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="6-digit code", restrict=r"[0-9]*", max_length=6, type="text", id=id
        )


class Tick(Checkbox):
    """A checkbox whose state is a glyph (✓ ticked, blank not), not colour alone."""

    def __init__(self, label: str, value: bool = False, *, id: str | None = None) -> None:
        super().__init__(label, value, id=id)
        self._glyph()

    def watch_value(self) -> None:
        self._glyph()
        super().watch_value()

    def _glyph(self) -> None:
        self.BUTTON_INNER = "✓" if self.value else " "


class Choice(RadioButton):
    """A radio button whose state is a glyph (● chosen, blank not), not colour alone."""

    def __init__(self, label: Text | str, value: bool = False, *, id: str | None = None) -> None:
        super().__init__(label, value, id=id)
        self._glyph()

    def watch_value(self) -> None:
        self._glyph()
        super().watch_value()

    def _glyph(self) -> None:
        self.BUTTON_INNER = "●" if self.value else " "


def take_code(field: Input) -> str:
    """Read a TOTP code once and clear its field: no code stays in a widget after a submit."""
    code, field.value = field.value, ""
    return code


class Discardable(Protocol):
    def discard(self) -> None: ...


class Dialog(ModalScreen[ResultT]):
    """A ceremony step: the frame, the error line, escape to cancel, one service step."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        # the body scrolls from the keyboard too, whatever has the focus
        Binding("pageup", "scroll_body(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_body(1)", "Scroll down", show=False, priority=True),
    ]

    FRAME_ID: ClassVar[str | None] = None  # the id of the frame (the ``.dialog`` box)
    # Enter in the field with this id moves on to that one instead of submitting
    ENTER_MOVES: ClassVar[dict[str, str]] = {}
    WIDE: ClassVar[bool] = False  # 100 columns instead of 72 (both at most 95%)
    ERROR_LINE: ClassVar[bool] = True
    ERROR_ID: ClassVar[str | None] = None

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stepping = False
        self._refocus: str | None = None
        self._held: list[Discardable] = []
        self._result: tuple[Any] | None = None  # an answer kept while another screen is on top

    # ------------------------------------------------------------ the frame

    def heading(self) -> str:  # pragma: no cover  (every framed dialog defines it)
        raise NotImplementedError

    def body(self) -> ComposeResult:  # pragma: no cover
        raise NotImplementedError

    def button_row(self) -> Horizontal:  # pragma: no cover
        raise NotImplementedError

    def fields(self) -> ComposeResult:
        """What stays in view under the scrolling body (a code field, a reason)."""
        yield from ()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" if self.WIDE else "dialog", id=self.FRAME_ID):
            yield Label(self.heading(), classes="dialog-title", markup=False)
            with VerticalScroll(classes="dialog-body", can_focus=False):
                yield from self.body()
            fixed = list(self.fields())
            if fixed:
                with Vertical(classes="dialog-fields"):
                    yield from fixed
            if self.ERROR_LINE:
                yield Static("", classes="error", id=self.ERROR_ID, markup=False)
            yield self.button_row()

    # ------------------------------------------------------------ fitting the terminal

    def on_resize(self, event: events.Resize) -> None:
        self._shape(event.size.height)

    def on_mount(self) -> None:
        self._shape(self.app.size.height)

    def _shape(self, rows: int) -> None:
        self._compact(0 < rows < SHORT_BELOW)
        self.call_after_refresh(self.fit_body)

    def _compact(self, short: bool) -> None:
        self.set_class(short, "-short")
        for w in self.query("Input, Button, OptionList, RadioSet"):
            if isinstance(w, Input | Button | OptionList | RadioSet):
                w.compact = short

    def fit_body(self) -> None:
        """Give the body the rows the rest of the frame leaves; it scrolls within them."""
        if not self.is_attached:
            return
        frames = self.query(".dialog")
        bodies = self.query(".dialog-body")
        if not frames or not bodies:
            return
        frame, body = frames.first(), bodies.first()
        limit = self.size.height if self.has_class("-short") else int(self.size.height * MAX_HEIGHT)
        used = frame.styles.gutter.height  # border and padding
        below = 0  # the bottom margin of the widget above (margins collapse between siblings)
        shown = [c for c in frame.children if c.display]
        for c in shown:
            m = c.styles.margin
            used += max(below, m.top)
            below = m.bottom
            if c is not body:
                used += c.outer_size.height
        used += below
        rows = max(3, limit - used)
        if body.styles.max_height is None or body.styles.max_height.value != rows:
            body.styles.max_height = rows
        if not self.has_class("-short") and body.virtual_size.height > rows:
            # the body would scroll: draw the frame compact first (a QR code at 120x36)
            self._compact(True)
            self.call_after_refresh(self.fit_body)

    def action_scroll_body(self, direction: int) -> None:
        body = self.query_one(".dialog-body", VerticalScroll)
        if direction < 0:
            body.scroll_page_up()
        else:
            body.scroll_page_down()

    def buttons(
        self,
        ok: str,
        ok_id: str,
        *,
        variant: str = "primary",
        cancel: str | None = "Cancel",
        cancel_id: str = "dialog-cancel",
    ) -> Horizontal:
        """The button row: OK (named "ok") and, unless ``cancel`` is None, Cancel."""
        row = [Button(ok, variant=variant, id=ok_id, name="ok")]  # type: ignore[arg-type]
        if cancel is not None:
            row.append(Button(cancel, id=cancel_id, name="cancel"))
        return Horizontal(*row, classes="dialog-buttons")

    @property
    def ok_button(self) -> Button:
        return next(b for b in self.query(Button) if b.name == "ok")

    # ------------------------------------------------------------ the error line

    def error_text(self, message: str) -> Text:
        return Text(message)

    def error(self, message: str) -> None:
        self.query_one(".error", Static).update(self.error_text(message))
        self.call_after_refresh(self.fit_body)  # a longer refusal takes rows from the body

    def code_ok(self, code: str) -> bool:
        """True for six digits; otherwise the error line says what to type."""
        if len(code) == 6:
            return True
        self.error(CODE_MISSING)
        return False

    # ------------------------------------------------------------ keys and buttons

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.name == "cancel":
            self.action_cancel()
        else:
            self.ok()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        move = self.ENTER_MOVES.get(event.input.id or "")
        if move:
            self.query_one(move).focus()
        else:
            self.ok()

    def ok(self) -> None:
        if not self._stepping:
            self.submit()

    def submit(self) -> None:  # pragma: no cover  (every dialog defines it)
        raise NotImplementedError

    def action_cancel(self) -> None:
        if not self._stepping:  # a call in flight cannot be taken back: wait for its answer
            self.dismiss(None)

    # ------------------------------------------------------------ one service step

    def run_step(
        self,
        call: Callable[[], object],
        *,
        working: str,
        description: str,
        refocus: str | None = None,
    ) -> None:
        """Run ``call`` in a thread; close with what it returns, or show its refusal.

        ``working`` stands on the error line meanwhile; ``description`` names the
        worker (fixed text: never the arguments); ``refocus`` is the field that
        takes the focus again after a refusal.
        """
        self._stepping = True
        self._refocus = refocus
        self.error(working)
        self.ok_button.disabled = True
        self.run_worker(
            partial(self._step, call),
            thread=True,
            exclusive=True,
            group=STEP_GROUP,
            description=description,
            exit_on_error=False,
        )

    def _step(self, call: Callable[[], object]) -> None:  # in the worker's thread
        try:
            result = call()
        except CustodianError as e:
            self.app.call_from_thread(self._refused, str(e))
            return
        self.app.call_from_thread(self._finish, result)

    def refusal(self, message: str) -> str:
        """What the error line says of the service's refusal ``message`` (a dialog adds
        what was cleared and must be typed again)."""
        return message

    def _refused(self, message: str) -> None:
        self._stepping = False
        if not self.is_attached:  # closed meanwhile (signing out closes every dialog)
            return
        self.error(self.refusal(message))
        self.ok_button.disabled = False
        if self._refocus:
            self.query_one(self._refocus).focus()

    def _finish(self, result: object) -> None:
        if not self.is_attached:
            self._stepping = False
            discard = getattr(result, "discard", None)  # a secret nobody will take now
            if callable(discard):
                discard()
            return
        if self.is_active:
            self.dismiss(result)  # type: ignore[arg-type]
        else:  # another mode or the command palette is in front: close on coming back
            self._result = (result,)

    def on_screen_resume(self) -> None:
        if self._result is not None:
            (result,), self._result = self._result, None
            self.dismiss(result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == STEP_GROUP and event.state == WorkerState.ERROR:
            self._refused(
                f"This step stopped on an unexpected error: {event.worker.error}. Check the "
                "audit log (F8) for what was recorded before trying again."
            )

    # ------------------------------------------------------------ secrets held

    def discard_on_close(self, secret: Discardable) -> None:
        """``secret.discard()`` runs when this dialog closes, done or not."""
        self._held.append(secret)

    def on_unmount(self) -> None:
        for secret in self._held:
            secret.discard()
