"""A virtual table of backups: it never holds more than a few pages of rows.

A catalog may hold hundreds of thousands of backups, so loading them all into
a ``DataTable`` is out of the question. ``BackupTable`` is a Line API widget
(a :class:`~textual.scroll_view.ScrollView`): its virtual height is the number
of matching rows, and ``render_line`` asks the service for the page that holds
the line it draws (``Service.backups(limit=, offset=)``), keeping a small LRU
cache of pages. Filtering and sorting are done in SQL; a new query drops the
cache. Line 0 is the column header and stays put while the rows scroll.

Labels and locations are untrusted: they are cleaned of control characters
and drawn as plain segments, never parsed as markup.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from custodian.catalog import Backup
from custodian.errors import CustodianError
from custodian.service import Service
from screens.chrome import CURSOR_GLYPH
from screens.format import fit, human_size, safe, short_id, when

PAGE_SIZE = 100
MAX_PAGES = 16
GAP = 2
PAD = 1
MIN_LABEL = 12


@dataclass(frozen=True)
class Column:
    key: str  # the catalog's sort key for this column
    title: str
    width: int  # 0: takes the room the others leave
    right: bool = False
    descending_first: bool = False  # direction when the column is first chosen


COLUMNS: tuple[Column, ...] = (
    Column("id", "ID", 8),
    Column("label", "Label", 0),
    Column("created_at", "Created (UTC)", 16, descending_first=True),
    Column("size", "Size", 10, right=True, descending_first=True),
    Column("kek_version", "KEK", 18),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
SORT_NAMES = {
    "id": "id",
    "label": "label",
    "created_at": "created",
    "size": "size",
    "kek_version": "KEK version",
}


@dataclass(frozen=True)
class BackupQuery:
    """What the table shows: a filter and an order, handed as-is to the service."""

    text: str = ""
    kek: str | None = None
    version: int | None = None
    order: str = "created_at"
    descending: bool = True

    def describe_order(self) -> str:
        name = SORT_NAMES.get(self.order, self.order)
        if self.order == "created_at":
            return f"{name}, {'newest' if self.descending else 'oldest'} first"
        if self.order == "size":
            return f"{name}, {'largest' if self.descending else 'smallest'} first"
        return f"{name}, {'descending' if self.descending else 'ascending'}"


class BackupTable(ScrollView, can_focus=True):
    """Backups matching a :class:`BackupQuery`, fetched one page at a time."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "open", "Details"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "backup-table--header",
        "backup-table--header-sorted",
        "backup-table--cursor",
        "backup-table--muted",
        "backup-table--old-version",
        "backup-table--empty",
    }

    DEFAULT_CSS = """
    BackupTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        &:focus {
            background-tint: $foreground 3%;
            & > .backup-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .backup-table--header {
            background: $panel;
            color: $foreground;
            text-style: bold;
        }
        & > .backup-table--header-sorted {
            background: $panel;
            color: $accent;
            text-style: bold;
        }
        & > .backup-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .backup-table--muted {
            color: $text-muted;
        }
        & > .backup-table--old-version {
            color: $text-warning;
        }
        & > .backup-table--empty {
            color: $text-muted;
            text-style: italic;
        }
    }
    """

    class Opened(Message):
        """The person asked for the details of a backup (enter, or a click on the cursor row)."""

        def __init__(self, table: BackupTable, backup: Backup) -> None:
            super().__init__()
            self.table = table
            self.backup = backup

        @property
        def control(self) -> BackupTable:
            return self.table

    class HeaderClicked(Message):
        """A column header was clicked; the screen decides the new order."""

        def __init__(self, table: BackupTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> BackupTable:
            return self.table

    class Failed(Message):
        """A page could not be read; ``message`` is written for a person."""

        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def __init__(
        self,
        service: Service,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._service = service
        self.query_: BackupQuery = BackupQuery()
        self.total = 0
        self.cursor = 0
        self.current_versions: dict[str, int] = {}
        self._pages: OrderedDict[int, list[Backup]] = OrderedDict()
        self._failed = False
        self.fetches = 0  # pages read from the service since the last load (for tests)

    # ------------------------------------------------------------------ data

    def load(self, query: BackupQuery, *, current_versions: dict[str, int] | None = None) -> int:
        """Show ``query`` from its first row; returns the number of matching backups."""
        self.query_ = query
        if current_versions is not None:
            self.current_versions = current_versions
        self._pages.clear()
        self._failed = False
        self.fetches = 0
        try:
            self.total = self._service.backups.count(
                text=query.text, kek=query.kek, version=query.version
            )
        except (CustodianError, sqlite3.Error) as e:
            self.total = 0
            self._fail(e)
        self.cursor = 0
        self.virtual_size = Size(0, self.total + 1)
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()
        return self.total

    def row(self, index: int) -> Backup | None:
        """The backup at ``index`` in the current order, reading its page if needed."""
        if not 0 <= index < self.total:
            return None
        page_no, pos = divmod(index, PAGE_SIZE)
        page = self._pages.get(page_no)
        if page is None:
            if self._failed:
                return None
            q = self.query_
            try:
                page = self._service.backups.list(
                    text=q.text,
                    kek=q.kek,
                    version=q.version,
                    order=q.order,
                    descending=q.descending,
                    limit=PAGE_SIZE,
                    offset=page_no * PAGE_SIZE,
                )
            except (CustodianError, sqlite3.Error) as e:
                self._fail(e)
                return None
            self.fetches += 1
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        return page[pos] if pos < len(page) else None

    @property
    def selected(self) -> Backup | None:
        return self.row(self.cursor)

    def _fail(self, error: Exception) -> None:
        self._failed = True
        text = (
            str(error)
            if isinstance(error, CustodianError)
            else f"the catalog could not be read ({error}); nothing was changed. Try F5 again."
        )
        self.post_message(self.Failed(text))

    # ------------------------------------------------------------------ layout

    @property
    def rows_visible(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _widths(self) -> list[int]:
        width = self.scrollable_content_region.width
        fixed = sum(c.width for c in COLUMNS) + GAP * (len(COLUMNS) - 1) + 2 * PAD
        flex = max(MIN_LABEL, width - fixed)
        return [c.width or flex for c in COLUMNS]

    def column_at(self, x: int) -> Column | None:
        left = PAD
        for col, w in zip(COLUMNS, self._widths(), strict=True):
            if left - 1 <= x < left + w + 1:
                return col
            left += w + GAP
        return None

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._header(width, base)
        index = int(self.scroll_offset.y) + y - 1
        if self.total == 0:
            if y == 2:
                style = base + self.get_component_rich_style("backup-table--empty", partial=True)
                return Strip([Segment(fit("   " + self.empty_message, width), style)], width)
            return Strip.blank(width, base)
        b = self.row(index)
        if b is None:
            return Strip.blank(width, base)
        return self._row_strip(b, index == self.cursor, width, base)

    @property
    def empty_message(self) -> str:
        q = self.query_
        if self._failed:
            return "The catalog could not be read; see the message above."
        if q.text or q.version is not None or q.kek is not None:
            return "No backups match this filter. Press Esc in the filter box to clear it."
        return "No backups yet. 'custodian backup encrypt' adds one."

    def _header(self, width: int, base: Style) -> Strip:
        plain = self.get_component_rich_style("backup-table--header")
        sorted_ = self.get_component_rich_style("backup-table--header-sorted")
        q = self.query_
        segs = [Segment(" " * PAD, plain)]
        for i, (col, w) in enumerate(zip(COLUMNS, self._widths(), strict=True)):
            title = col.title
            style = plain
            if col.key == q.order:
                title += " ▼" if q.descending else " ▲"
                style = sorted_
            segs.append(Segment(fit(title, w, align_right=col.right), style))
            if i < len(COLUMNS) - 1:
                segs.append(Segment(" " * GAP, plain))
        return Strip(segs).adjust_cell_length(width, plain)

    def _row_strip(self, b: Backup, is_cursor: bool, width: int, base: Style) -> Strip:
        muted = self.get_component_rich_style("backup-table--muted", partial=True)
        old = self.get_component_rich_style("backup-table--old-version", partial=True)
        row_style = base
        if is_cursor:
            row_style = self.get_component_rich_style("backup-table--cursor")
            muted = old = Style()
        current = self.current_versions.get(b.kek)
        kek_text = f"{b.kek} v{b.kek_version}"
        if current is not None and b.kek_version < current:
            kek_text += " (old)"
        cells: list[tuple[str, Style]] = [
            (short_id(b.id), muted),
            (safe(b.label), Style()),
            (when(b.created_at), muted),
            (human_size(b.size), Style()),
            (
                safe(kek_text),
                old if current is not None and b.kek_version < current else Style(),
            ),
        ]
        # the cursor's row carries a glyph too, not colour alone (screens.chrome.CursorTable)
        lead = (CURSOR_GLYPH + " " * (PAD - 1)) if is_cursor and PAD else " " * PAD
        segs = [Segment(lead, row_style + Style(bold=True) if is_cursor else row_style)]
        for i, (col, w, (text, extra)) in enumerate(
            zip(COLUMNS, self._widths(), cells, strict=True)
        ):
            segs.append(Segment(fit(text, w, align_right=col.right), row_style + extra))
            if i < len(COLUMNS) - 1:
                segs.append(Segment(" " * GAP, row_style))
        return Strip(segs).adjust_cell_length(width, row_style)

    # ------------------------------------------------------------------ cursor

    def move_cursor(self, index: int) -> None:
        if self.total == 0:
            return
        index = max(0, min(self.total - 1, index))
        old, self.cursor = self.cursor, index
        top = int(self.scroll_offset.y)
        visible = self.rows_visible
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + visible:
            self.scroll_to(y=index - visible + 1, animate=False, immediate=True)
        self.refresh_line(old - int(self.scroll_offset.y) + 1)
        self.refresh_line(index - int(self.scroll_offset.y) + 1)

    def refresh_line(self, y: int) -> None:
        # Our lines are in viewport coordinates (line 0 is the header), so the
        # ScrollView version, which subtracts the scroll offset, does not apply.
        if 0 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - self.rows_visible)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + self.rows_visible)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(self.total - 1)

    def action_open(self) -> None:
        b = self.selected
        if b is not None:
            self.post_message(self.Opened(self, b))

    # ------------------------------------------------------------------ mouse

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            col = self.column_at(offset.x)
            if col is not None:
                self.post_message(self.HeaderClicked(self, col.key))
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if not 0 <= index < self.total:
            return
        if index == self.cursor or event.chain >= 2:
            self.move_cursor(index)
            self.action_open()
        else:
            self.move_cursor(index)


MARK_WIDTH = 2  # the mark and one space, drawn before the first column


class MarkingBackupTable(BackupTable):
    """The backup table with marks, for choosing backups: space or enter marks the cursor's row.

    The marks are kept by backup id (with the backup as first read, so the
    screen can list what is marked without another query) and survive new
    filters and orders: what is marked is shown with a ``●`` wherever it is.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark/unmark"),
        Binding("enter", "toggle_mark", "Mark/unmark", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = BackupTable.COMPONENT_CLASSES | {"backup-table--mark"}

    DEFAULT_CSS = """
    MarkingBackupTable > .backup-table--mark {
        color: $text-accent;
        text-style: bold;
    }
    """

    class MarksChanged(Message):
        """The set of marked backups changed; ``count`` is how many are marked now."""

        def __init__(self, table: MarkingBackupTable, count: int) -> None:
            super().__init__()
            self.table = table
            self.count = count

        @property
        def control(self) -> MarkingBackupTable:
            return self.table

    def __init__(
        self,
        service: Service,
        *,
        marked: dict[str, Backup] | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(service, name=name, id=id, classes=classes)
        # the caller's dict itself, so the marks outlive this widget (a screen comes and goes)
        self.marked: dict[str, Backup] = marked if marked is not None else {}

    def action_open(self) -> None:  # a click on the cursor row marks too
        self.action_toggle_mark()

    def action_toggle_mark(self) -> None:
        b = self.selected
        if b is None:
            return
        if b.id in self.marked:
            del self.marked[b.id]
        else:
            self.marked[b.id] = b
        self.refresh_line(self.cursor - int(self.scroll_offset.y) + 1)
        self.post_message(self.MarksChanged(self, len(self.marked)))

    def clear_marks(self) -> None:
        self.marked.clear()
        self.refresh()
        self.post_message(self.MarksChanged(self, 0))

    def _widths(self) -> list[int]:
        widths = super()._widths()
        label = next(i for i, c in enumerate(COLUMNS) if c.width == 0)
        widths[label] = max(MIN_LABEL, widths[label] - MARK_WIDTH)
        return widths

    def column_at(self, x: int) -> Column | None:
        return super().column_at(x - MARK_WIDTH)

    def _header(self, width: int, base: Style) -> Strip:
        plain = self.get_component_rich_style("backup-table--header")
        inner = super()._header(width - MARK_WIDTH, base)
        return Strip([Segment(" " * MARK_WIDTH, plain), *inner]).adjust_cell_length(width, plain)

    def _row_strip(self, b: Backup, is_cursor: bool, width: int, base: Style) -> Strip:
        row_style = self.get_component_rich_style("backup-table--cursor") if is_cursor else base
        inner = super()._row_strip(b, is_cursor, width - MARK_WIDTH, base)
        marked = b.id in self.marked
        mark_style = row_style + (
            Style(bold=True)
            if is_cursor
            else self.get_component_rich_style("backup-table--mark", partial=True)
        )
        segs = [Segment("●" if marked else " ", mark_style), Segment(" ", row_style), *inner]
        return Strip(segs).adjust_cell_length(width, row_style)
