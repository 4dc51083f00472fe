"""SLIP-39 shares read as a person types them, with errors that help and leak nothing.

The break-glass ceremony (:mod:`.breakglass`) takes paper shares one at a time.
This module checks each as typed, on top of ``shamir_mnemonic``'s public
pieces (``Share.from_mnemonic``, ``RecoveryState``, ``rs1024``, the word list):
every word in the SLIP-39 list (a unique four-letter prefix is enough, as on a
Trezor; :func:`complete` offers the words for a prefix), the length, the RS1024
checksum (pointing at the one mistyped or the two swapped words when the
checksum allows it), the share's encoding, and then, against the shares
already given, the same set (identifier, flags, iteration exponent,
thresholds), not revoked, not twice.

Messages name at most one share word, the one at fault, and never the
library's own messages, which quote a share's first words.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from shamir_mnemonic import MnemonicError, rs1024
from shamir_mnemonic.recovery import RecoveryState
from shamir_mnemonic.share import Share
from shamir_mnemonic.wordlist import WORD_INDEX_MAP, WORDLIST

from custodian.errors import CustodianError
from custodian.secret import SecretBytes

WORDS: tuple[str, ...] = tuple(WORDLIST)
_CUSTOM = {False: b"shamir", True: b"shamir_extendable"}  # RS1024 customization strings
_GEN = (  # the RS1024 generator (SLIP-39), for locating a single wrong word
    0xE0E040,
    0x1C1C080,
    0x3838100,
    0x7070200,
    0xE0E0009,
    0x1C0C2412,
    0x38086C24,
    0x3090FC48,
    0x21B1F890,
    0x3F3F120,
)


class BreakGlassError(CustodianError):
    """A share, a share set or a recovery did not check; nothing was recovered."""

    exit_code = 4


@dataclass(frozen=True)
class Progress:
    """How far a recovery is: ``str`` gives "1 of 2". ``need`` is 0 before the first share."""

    have: int
    need: int
    set_id: int

    @property
    def done(self) -> bool:
        return self.need > 0 and self.have >= self.need

    def __str__(self) -> str:
        return f"{self.have} of {self.need}"


@dataclass(frozen=True)
class ShareInfo:
    """What a share says about itself (nothing secret)."""

    set_id: int
    number: int  # 1-based member index
    threshold: int  # shares of its group needed
    groups: int
    group_threshold: int
    iteration_exponent: int
    extendable: bool


def checked_passphrase(passphrase: bytes | SecretBytes) -> SecretBytes:
    """A copy of a SLIP-39 passphrase, refused unless printable ASCII (SLIP-39's rule)."""
    raw = passphrase.reveal() if isinstance(passphrase, SecretBytes) else passphrase
    if not all(32 <= c <= 126 for c in raw):
        raise BreakGlassError(
            "a SLIP-39 passphrase may hold only printable ASCII (letters, digits, "
            "punctuation, spaces); type it again without other characters."
        )
    return SecretBytes(raw, "SLIP-39 passphrase")


def passphrase_bytes(pw: SecretBytes) -> bytes:
    """The bytes ``shamir_mnemonic`` takes (an empty passphrase reads as wiped otherwise)."""
    return bytes(pw.reveal()) if len(pw) else b""


def complete(prefix: str) -> list[str]:
    """SLIP-39 words that start with ``prefix`` (four letters name one word)."""
    p = prefix.strip().lower()
    return [w for w in WORDS if w.startswith(p)] if p else []


def _suggest(word: str) -> str | None:
    if len(word) >= 4 and len(hits := complete(word[:4])) == 1:
        return hits[0]
    close = difflib.get_close_matches(word, WORDS, n=1, cutoff=0.75)
    return close[0] if close else None


def _run_together(word: str) -> bool:
    """Whether ``word`` is a SLIP-39 word (or unique prefix) followed by another."""
    return any(
        word[:i] in WORD_INDEX_MAP or len(complete(word[:i])) == 1
        for i in range(4, len(word) - 3)
        if word[i:] in WORD_INDEX_MAP or len(complete(word[i:])) == 1
    )


def _word_index(n: int, word: str) -> int:
    if (i := WORD_INDEX_MAP.get(word)) is not None:
        return int(i)
    if len(word) >= 4 and len(hits := complete(word)) == 1:  # a unique prefix, as on a Trezor
        return int(WORD_INDEX_MAP[hits[0]])
    if _run_together(word) or len(word) > 10:  # a quote would show several share words
        raise BreakGlassError(
            f"word {n} ({len(word)} letters) is not a SLIP-39 word; two or more words "
            "may have run together, so put a space between each."
        )
    guess = _suggest(word)
    tail = f"; did you mean '{guess}'?" if guess else "; check it against the paper share."
    raise BreakGlassError(f"word {n} '{word}' is not a SLIP-39 word{tail}")


def _extendable(idx: Sequence[int]) -> bool:
    return bool(((idx[0] << 10 | idx[1]) >> 4) & 1)


def _checksum_ok(idx: Sequence[int]) -> bool:
    return bool(rs1024.verify_checksum(idx, _CUSTOM[_extendable(idx)]))


def _step(chk: int, v: int) -> int:
    b = chk >> 20
    chk = (chk & 0xFFFFF) << 10 ^ v
    for i in range(10):
        if (b >> i) & 1:
            chk ^= _GEN[i]
    return chk


def _single_fixes(idx: list[int]) -> set[tuple[int, int]]:
    """(position, word index) changes of one word after which the checksum holds.

    RS1024 is linear, so changing word p by XOR d moves the checksum state by
    a linear image of d: solve for d per position (about 33 x 1023 XORs).
    """
    fixes = set()
    for custom in _CUSTOM.values():
        chk = 1
        for v in [*custom, *idx]:
            chk = _step(chk, v)
        residue = chk ^ 1
        basis = [1 << j for j in range(10)]  # images of each bit of the last word
        for pos in range(len(idx) - 1, -1, -1):
            img = gray = 0
            for d in range(1, 1024):
                g = d ^ (d >> 1)
                img ^= basis[(g ^ gray).bit_length() - 1]
                gray = g
                if img == residue:
                    cand = list(idx)
                    cand[pos] ^= g
                    if _checksum_ok(cand):
                        fixes.add((pos, cand[pos]))
            basis = [_step(b, 0) for b in basis]  # one more word after the next position
    return fixes


def _checksum_error(idx: list[int]) -> BreakGlassError:
    fixes = _single_fixes(idx)
    if len(fixes) == 1:
        ((pos, new),) = fixes
        return BreakGlassError(
            f"the share's checksum does not hold: word {pos + 1} '{WORDS[idx[pos]]}' looks "
            f"mistyped and the checksum holds with '{WORDS[new]}' there; check that word."
        )
    for pos in range(len(idx) - 1):
        if idx[pos] != idx[pos + 1]:
            cand = list(idx)
            cand[pos], cand[pos + 1] = cand[pos + 1], cand[pos]
            if _checksum_ok(cand):
                return BreakGlassError(
                    f"the share's checksum does not hold: words {pos + 1} and {pos + 2} "
                    "look swapped; check their order on the paper."
                )
    return BreakGlassError(
        "the share's checksum does not hold: a word is wrong or missing, or two are "
        "swapped; check each word against the paper share."
    )


def _parse(text: str, words: int | None = None) -> Share:
    """Words, length, RS1024 checksum and encoding of one share, with person-facing errors."""
    typed = text.lower().split()
    if not typed:
        raise BreakGlassError("the share is empty; type its words separated by spaces.")
    idx = [_word_index(n, w) for n, w in enumerate(typed, 1)]
    n = len(idx)
    if words is not None and n != words:
        raise BreakGlassError(
            f"this share has {n} words, but a break-glass share has {words}; a word is "
            "missing or extra, so check the paper line by line."
        )
    if n < 20 or (10 * (n - 7)) % 16 > 8:
        raise BreakGlassError(
            f"{n} words is not the length of a SLIP-39 share (20 for a 128-bit secret, "
            "33 for 256 bits); a word is missing or extra."
        )
    if not _checksum_ok(idx):
        raise _checksum_error(idx)
    try:
        share: Share = Share.from_mnemonic(" ".join(WORDS[i] for i in idx))
    except MnemonicError as e:  # its messages quote the share's first words: not passed on
        what = "padding" if "padding" in str(e) else "group threshold exceeds its group count"
        raise BreakGlassError(
            f"the share's words pass the checksum but do not decode ({what}): it is "
            "damaged or forged, so use another share."
        ) from None
    return share


def share_info(text: str) -> ShareInfo:
    """What one share says about itself, after checking its words and checksum."""
    s = _parse(text)
    return ShareInfo(
        set_id=s.identifier,
        number=s.index + 1,
        threshold=s.member_threshold,
        groups=s.group_count,
        group_threshold=s.group_threshold,
        iteration_exponent=s.iteration_exponent,
        extendable=s.extendable,
    )


# ---------------------------------------------------------------- collecting shares

_PARAMS = (
    ("extendable", "extendable flag"),
    ("iteration_exponent", "iteration exponent"),
    ("group_threshold", "group threshold"),
    ("group_count", "group count"),
)


class ShareCollector:
    """SLIP-39 shares collected one at a time over ``RecoveryState``, checked as they come."""

    def __init__(
        self,
        *,
        set_id: int | None = None,
        revoked: Collection[int] = (),
        one_group: bool = False,
        words: int | None = None,
    ) -> None:
        self._set_id = set_id
        self._revoked = frozenset(revoked)
        self._one_group = one_group
        self._words = words
        self._state = RecoveryState()
        self._first: Share | None = None

    def reset(self) -> None:
        self._state = RecoveryState()
        self._first = None

    @property
    def set_id(self) -> int | None:
        return int(self._first.identifier) if self._first else self._set_id

    def progress(self) -> Progress:
        """Shares of the (only) group and its threshold."""
        have, need = self._state.group_status(0) if self._first else (0, 0)
        return Progress(have, max(need, 0), self.set_id if self.set_id is not None else -1)

    def complete(self) -> bool:
        return bool(self._state.is_complete())

    def add(self, text: str) -> None:
        share = _parse(text, self._words)
        self._admit(share)
        self._state.add_share(share)
        self._first = self._first or share

    def _admit(self, s: Share) -> None:
        sid = s.identifier
        now = self.set_id
        use = f"; use a share of set {now}." if now is not None else "."
        if sid in self._revoked:
            raise BreakGlassError(f"this share is from set {sid}, which was revoked{use}")
        if now is not None and sid != now:
            which = "the current set" if self._first is None else "the earlier shares' set"
            raise BreakGlassError(f"this share is from set {sid}, not {which} {now}{use}")
        if self._one_group and s.group_count != 1:
            raise BreakGlassError(
                f"this share is from a SLIP-39 set of {s.group_count} groups, but a break-glass "
                "set is one group; recover it with the reference command, shamir recover."
            )
        if s.group_index >= s.group_count:
            raise BreakGlassError(
                f"this share of set {sid} names group {s.group_index + 1} of "
                f"{s.group_count}: it is damaged or forged, so use another share."
            )
        if self._one_group and s.member_threshold < 2:
            raise BreakGlassError(
                "this share opens its set alone (threshold 1), so it is not a break-glass "
                "share; use a share of a set that needs at least 2."
            )
        first = self._first
        if first is None:
            return
        for field, label in _PARAMS:
            if getattr(s, field) != getattr(first, field):
                raise BreakGlassError(
                    f"this share of set {sid} has another {label} than the earlier shares: "
                    "it is damaged or forged, so put it aside and use another share."
                )
        group = self._state.groups.get(s.group_index)
        for other in group or ():
            if s.member_threshold != other.member_threshold:
                raise BreakGlassError(
                    f"this share of set {sid} says {s.member_threshold} shares are needed "
                    f"where the earlier ones say {other.member_threshold}: it is damaged or "
                    "forged, so use another share."
                )
            if other.index == s.index:
                if other == s:
                    raise BreakGlassError(
                        f"share {s.index + 1} of set {sid} was already entered; "
                        "type another holder's share."
                    )
                raise BreakGlassError(
                    f"a different share {s.index + 1} of set {sid} was already entered: "
                    "one of the two is damaged or forged, so start again without one of them."
                )

    def combine(self, passphrase: bytes) -> bytes:
        if not self.complete():
            raise self.short()
        set_id = self.set_id
        try:
            secret: bytes = self._state.recover(passphrase)
        except (MnemonicError, ValueError):
            self.reset()
            raise BreakGlassError(
                f"the shares of set {set_id} do not fit together (their SLIP-39 digest "
                "does not match): one was altered or is from another set with the same id, "
                "so nothing was recovered; start again with other shares."
            ) from None
        return secret

    def short(self) -> BreakGlassError:
        """The refusal for too few shares, saying how many more."""
        p = self.progress()
        if self._first is None:
            return BreakGlassError("no share was given yet; type the first share.")
        params = self._state.parameters
        if params is not None and params.group_count > 1:
            return BreakGlassError(
                f"set {p.set_id} needs {params.group_threshold} complete groups and "
                f"{self._state.groups_complete()} are complete; add the missing shares."
            )
        missing = p.need - p.have
        return BreakGlassError(
            f"set {p.set_id} needs {p.need} shares and {p.have} "
            f"{'was' if p.have == 1 else 'were'} given; "
            f"{'one more is' if missing == 1 else f'{missing} more are'} needed."
        )


def combine(mnemonics: Iterable[str], passphrase: bytes | SecretBytes = b"") -> SecretBytes:
    """Any SLIP-39 set (any secret length, groups), checked share by share; no check value.

    For known-answer tests and foreign sets; a break-glass recovery uses :class:`Recovery`.
    """
    shares = ShareCollector()
    for text in mnemonics:
        shares.add(text)
    with checked_passphrase(passphrase) as pw:
        return SecretBytes(shares.combine(passphrase_bytes(pw)), "SLIP-39 master secret")
