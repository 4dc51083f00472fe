"""Small, pure formatting helpers shared by the screens (no Textual imports).

Everything that turns catalog data into text for a person lives here, so the
screens agree on how a size, a time or an id looks, and untrusted text
(labels, paths, purposes) is made safe to put on a terminal in one place.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from rich.cells import cell_len, set_cell_size

ELLIPSIS = "…"


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'. A negative size means unknown (an imported container)."""
    if n < 0:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:,} B"  # pragma: no cover  (the loop always returns)


def short_id(backup_id: str) -> str:
    """The first 8 hex digits of a backup id: what a person types as a prefix."""
    return backup_id[:8]


def when(stamp: str) -> str:
    """'2026-01-01T00:00:00.000000Z' -> '2026-01-01 00:00' (UTC, minutes)."""
    return stamp[:16].replace("T", " ")


def when_seconds(stamp: str) -> str:
    """'2026-01-01T00:00:00.000000Z' -> '2026-01-01 00:00:00 UTC'."""
    return stamp[:19].replace("T", " ") + " UTC"


def parse_stamp(stamp: str) -> datetime | None:
    """The catalog's UTC timestamps as aware datetimes; None if unreadable."""
    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def safe(text: str) -> str:
    """Untrusted text made harmless on a terminal.

    Control characters (escape sequences, newlines, tabs, bidi overrides) are
    replaced by visible placeholders, so a label cannot move the cursor, change
    colours or spoof the line. Markup is never interpreted by the callers:
    they put the result in Text/Content objects or widgets with markup off.
    """
    return "".join(REPLACEMENT if _unsafe(ch) else ch for ch in text)


REPLACEMENT = "\ufffd"


def _unsafe(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # Cc: C0/C1 controls (ESC, newline, tab...). Cf: format characters such as
    # bidi overrides; the zero-width joiner stays so that emoji sequences render.
    return cat == "Cc" or (cat == "Cf" and ch != "\u200d")


def fit(text: str, width: int, *, align_right: bool = False) -> str:
    """Pad or cut ``text`` to exactly ``width`` terminal cells, marking a cut with '…'."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + ELLIPSIS
        return set_cell_size(text, width)
    pad = " " * (width - cell_len(text))
    return pad + text if align_right else text + pad


def duration(seconds: float) -> str:
    """About how long: 'under a second', 'about 40 s', 'about 12 min', 'about 1.5 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
