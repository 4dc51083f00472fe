"""Untrusted text on a terminal, and the rules for backup labels.

Labels, reasons, names from the catalog or the audit log, and error messages
that quote them can hold anything: an ANSI escape sequence that rewrites the
screen, a newline that forges a row of ``backup list``, a bidi override that
shows a name backwards. :func:`printable` makes such text safe to print: every
character Python does not call printable (C0 and C1 controls, DEL, the bidi
controls and other format characters, line and paragraph separators, lone
surrogates from undecodable bytes) becomes a visible escape (``\\x1b``,
``\\n``, ``\\u202e``), as ``repr`` would write it, without the quotes.
Backslashes are left as they are, so ``\\x1b`` typed literally and an escaped
ESC look alike; neither runs.

New labels are checked at ``backup encrypt`` and ``backup import``
(:func:`check_label`): one line of printable text, at most
:data:`MAX_LABEL` characters.
"""

from __future__ import annotations

from custodian.errors import InputError

MAX_LABEL = 200

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    n = ord(ch)
    if n <= 0xFF:
        return f"\\x{n:02x}"
    if n <= 0xFFFF:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def printable(s: object) -> str:
    """``s`` as text that cannot drive a terminal: non-printable characters escaped."""
    text = s if isinstance(s, str) else str(s)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def check_label(label: str) -> str:
    """``label`` if it is an acceptable new backup label, else InputError (exit 2)."""
    if len(label) > MAX_LABEL:
        raise InputError(
            f"the label is {len(label):,} characters long; a label has at most {MAX_LABEL}. "
            "Nothing was done: give a shorter --label."
        )
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in label):
        raise InputError(
            "the label is not valid UTF-8 text (it holds undecodable bytes); nothing was "
            "done. Give a --label in UTF-8."
        )
    if not label.isprintable():
        raise InputError(
            f"the label '{printable(label)}' holds control or formatting characters "
            "(a newline, an escape, a bidi override...); nothing was done. Give a "
            "--label of plain, printable text."
        )
    return label


def default_label(name: str) -> str:
    """The label a backup gets from a file name when none is given: made printable, capped."""
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return printable(name)[:MAX_LABEL] or "unnamed"
