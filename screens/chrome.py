"""Pieces every screen shares: the line that says who is signed in, the tables' cursor."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Static
from textual.widgets._data_table import RowRenderables
from textual.widgets._footer import FooterKey

CURSOR_GLYPH = "▶"
NAVIGATION_KEYS = ("f2", "f3", "f4", "f6", "f7", "f8", "f9")


class SessionBar(Static):
    """One line under the header: who is signed in, and how to sign in or out.

    It follows the app's ``who`` reactive, which holds a display string only
    (a name and roles), never anything secret.
    """

    DEFAULT_CSS = """
    SessionBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    SessionBar.signed-in {
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "who", self._show, init=True)

    def _show(self, who: str) -> None:
        self.set_class(bool(who), "signed-in")
        if who:
            self.update(Text.assemble(("● ", "green"), f"Signed in: {who}", "   F9 sign out"))
        else:
            self.update(Text("Not signed in. F9 signs in; viewing needs no sign-in."))


class CursorTable(DataTable[Any]):
    """A row table that reads the same at 80 columns as at 130.

    Its cursor row carries a glyph (▶) in the row-label gutter, so that where the
    cursor is does not show by colour alone (a monochrome terminal, a screenshot in
    grey, a reader who does not see the colour). Every row gets a one-cell label;
    :meth:`_get_row_renderables` (Textual 8.2.8, pinned) draws the glyph for the
    cursor's row, whose cells Textual renders apart from the others' (its cache keys
    carry the cursor), so nothing stale stays drawn.

    Every cell is one line, cut with an ellipsis (…) when its column is narrower than
    it; ``flex`` names the column that takes the width the others leave (a subject, a
    purpose), so that the table fits its width and what is cut says so.
    """

    FLEX_MIN = 8

    def __init__(
        self,
        *args: Any,
        flex: str | None = None,
        hide_below: dict[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flex = flex
        # column -> the table width below which it is left out (what a narrow terminal
        # can do without: the backend beside the KEK's name, a second time stamp)
        self.hide_below = hide_below or {}
        self._hidden: dict[str, tuple[bool, int]] = {}  # column -> its width before

    def add_column(
        self, label: Any, *, width: int | None = None, key: str | None = None, default: Any = None
    ) -> Any:
        """A column whose title, too, ends in '…' when the column is narrower."""
        title = Text(label, no_wrap=True, overflow="ellipsis") if isinstance(label, str) else label
        return super().add_column(title, width=width, key=key, default=default)

    def add_row(
        self, *cells: Any, height: int | None = 1, key: str | None = None, label: Any = None
    ) -> Any:
        for c in cells:
            if isinstance(c, Text):
                c.no_wrap, c.overflow = True, "ellipsis"
        cut = tuple(
            Text(c, no_wrap=True, overflow="ellipsis") if isinstance(c, str) else c for c in cells
        )
        row = super().add_row(*cut, height=height, key=key, label=label or Text(" "))
        if (self.flex is not None or self.hide_below) and self.row_count == 1:
            self.call_after_refresh(self.fit_flex)
        return row

    def on_resize(self) -> None:
        self.fit_flex()

    def fit_flex(self) -> None:
        """Leave out what a narrow table does without, and give the ``flex`` column what
        the other columns and the gutter leave."""
        if self.size.width <= 0:
            return
        for key, below in self.hide_below.items():
            hidden = self.columns.get(key)  # type: ignore[call-overload]
            if hidden is None:
                continue
            hide = self.size.width < below
            if hide == (key in self._hidden):
                continue
            if hide:
                self._hidden[key] = (hidden.auto_width, hidden.width)
                hidden.auto_width, hidden.width = False, 0
            else:
                hidden.auto_width, hidden.width = self._hidden.pop(key)
            self._changed_widths()
        if self.flex is None or self.flex not in self.columns or self.flex in self._hidden:
            return
        col = self.columns[self.flex]  # type: ignore[index]
        others = sum(c.get_render_width(self) for k, c in self.columns.items() if k != self.flex)
        gutter = self._row_label_column_width
        room = self.size.width - others - gutter - 2 * self.cell_padding - 1
        width = max(self.FLEX_MIN, room)
        if col.auto_width or col.width != width:
            col.auto_width = False
            col.width = width
            self._changed_widths()

    def _changed_widths(self) -> None:
        """Columns changed width: draw every cell again (Textual caches drawn cells)."""
        self._clear_caches()
        self._require_update_dimensions = True
        self.refresh()

    def _get_row_renderables(self, row_index: int) -> RowRenderables:
        r = super()._get_row_renderables(row_index)
        if row_index < 0 or self.cursor_type != "row" or not self.show_cursor:
            return r
        glyph = CURSOR_GLYPH if row_index == self.cursor_row else " "
        return RowRenderables(Text(glyph, style="bold"), r.cells)


class AppFooter(Footer):
    """The footer every screen shows: the app's keys first (F2 to F9, the ones a newcomer
    needs on every screen), then the screen's own; below :data:`PALETTE_BELOW` columns
    the command palette's key (ctrl+p, which still works) makes room for them.

    Textual's Footer lists the focused widget's keys first and the app's last, so at
    80 columns F7 to F9 fell off the end. Same widgets as Footer (Textual 8.2.8, pinned).
    """

    PALETTE_BELOW = 100

    def __init__(self) -> None:
        super().__init__(compact=True)

    def on_resize(self, event: events.Resize) -> None:
        wide = event.size.width >= self.PALETTE_BELOW
        if wide != self.show_command_palette:
            self.show_command_palette = wide

    def _place(self, a: Any) -> tuple[int, int]:
        """F2 to F9 first, in order (whoever binds them: F6 on Restores is its other pane),
        then the app's other keys (quit), then the screen's; stable within each."""
        key = a.binding.key
        if key in NAVIGATION_KEYS:
            return (0, NAVIGATION_KEYS.index(key))
        return (1, 0) if a.node is self.app else (2, 0)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        app_first = sorted((a for a in active.values() if a.binding.show), key=self._place)
        seen: set[str] = set()
        for _node, binding, enabled, tooltip in app_first:
            if binding.action in seen:  # one key per action, as Footer shows them
                continue
            seen.add(binding.action)
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = active.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, tooltip = found
                yield FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    classes="-command-palette",
                    disabled=not enabled,
                    tooltip=binding.tooltip or binding.description,
                )
