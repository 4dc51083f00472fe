"""Break-glass: the recovery secret, its SLIP-39 paper shares and its recovery key.

A 256-bit **recovery secret** is split T-of-N (one group, 2 <= T <= N <= 16)
into SLIP-39 mnemonics with the reference ``shamir_mnemonic`` package, so the
paper shares also open with the reference ``shamir`` command. From the secret
(docs/custody.md, "Break-glass"):

- the recovery key pair: seed = HKDF-SHA256(secret, salt = home id,
  info = ``custodian/v2/recovery-kem``), e = SHAKE256(seed, 96 bytes),
  ML-KEM-768 from e[:64], X25519 from e[64:], encoded as the local backend's
  ``mlkem768-x25519`` suite, so :func:`custodian.backends.local.load_private`
  and ``load_public`` take it as it is;
- the **check value**, HMAC-SHA256 keyed by HKDF(secret, info =
  ``custodian/v2/recovery-check``) over lp(label, home id, set id). It is stored
  next to the set id, the holders and the time (never a share) and tells a
  recovery whether the shares and the SLIP-39 passphrase gave this home's
  secret. It adds no weakness (docs/custody.md, section 10): the recovery
  public key, announced in the log, is a deterministic function of the same
  secret and already confirms any guess of it, or of the SLIP-39 passphrase
  given T shares, at about the same cost (PBKDF2 dominates); HKDF's separate
  ``info`` keeps the check key independent of the KEM seed, and a 256-bit
  secret is not guessed.

:class:`Recovery` takes one typed share at a time, checks each as typed and
reconstructs at threshold; :func:`drill` does the same and changes nothing.
Errors are :class:`BreakGlassError`: one sentence, naming at most the one word
at fault, never the secret.

On wiping: our copies live in :class:`~custodian.secret.SecretBytes` and are
zeroed when done, but ``shamir_mnemonic``, ``hashlib`` and ``cryptography``
take and return immutable ``bytes`` and ``str`` (the mnemonics themselves, the
parsed share values, the HKDF output) that Python cannot zero; we drop them as
soon as we can and promise no more. Python is not constant-time either: the
check value is compared with :func:`hmac.compare_digest`, and that is all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from shamir_mnemonic import combine_mnemonics, generate_mnemonics
from shamir_mnemonic.share import Share

from custodian.approvals import stamp
from custodian.custody.quorum import lp
from custodian.custody.slip39 import (
    BreakGlassError,
    Progress,
    ShareCollector,
    ShareInfo,
    checked_passphrase,
    combine,
    complete,
    passphrase_bytes,
    share_info,
)
from custodian.secret import SecretBytes

__all__ = [
    "BreakGlassError",
    "DrillRecord",
    "Progress",
    "Recovery",
    "RecoverySecret",
    "ShareInfo",
    "ShareMnemonic",
    "ShareSet",
    "check_value",
    "combine",
    "complete",
    "drill",
    "recovery_fingerprint",
    "recovery_keypair",
    "recovery_public_key",
    "recovery_signing_key",
    "share_info",
    "split",
    "verify_check_value",
]

SUITE = "mlkem768-x25519"
KEM_INFO = b"custodian/v2/recovery-kem"
SIGN_INFO = b"custodian/v2/recovery-sign"
RECOVERY_ACTOR = "breakglass:recovery"  # ':' keeps it out of every person's name
CHECK_LABEL = b"custodian/v2/recovery-check"
KEY_LABEL = b"custodian/v2/recovery-key"
SECRET_BYTES = 32
SHARE_WORDS = 33  # a SLIP-39 share of a 256-bit secret
MAX_SHARES = 16  # SLIP-39's limit per group
MAX_SET_ID = (1 << 15) - 1  # the SLIP-39 identifier is 15 bits
DEFAULT_ITERATION_EXPONENT = 1  # PBKDF2 20,000 rounds a guess: the passphrase is a weak factor


class RecoverySecret(SecretBytes):
    """The 256-bit break-glass secret (redacted, wiped when done)."""

    __slots__ = ()

    def __init__(
        self, data: bytes | bytearray | memoryview, label: str = "recovery secret"
    ) -> None:
        super().__init__(data, label)
        if len(self) != SECRET_BYTES:
            n = len(self)
            self.wipe()
            raise BreakGlassError(f"a recovery secret is 32 bytes (256 bits), not {n}.")

    @classmethod
    def generate(cls) -> RecoverySecret:
        """A fresh secret from the operating system's random source."""
        return cls(os.urandom(SECRET_BYTES))


class ShareMnemonic:
    """One paper share's words (secret: redacted, wiped when done).

    The ``str`` that :meth:`reveal` returns cannot be wiped: show it and drop it.
    """

    __slots__ = ("_text", "number", "set_id")

    def __init__(self, text: str, number: int, set_id: int) -> None:
        self._text = SecretBytes(text.encode("ascii"), "share")
        self.number = number  # 1-based, as printed on the cover sheet
        self.set_id = set_id

    def reveal(self) -> str:
        return self._text.reveal().decode("ascii")

    def words(self) -> list[str]:
        return self.reveal().split()

    def wipe(self) -> None:
        self._text.wipe()

    def __repr__(self) -> str:
        return f"<ShareMnemonic set {self.set_id} share {self.number} [redacted]>"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("a share cannot be pickled")


@dataclass(frozen=True)
class ShareSet:
    """What :func:`split` made. Store set id, check value, fingerprint and time, never shares."""

    set_id: int
    threshold: int
    count: int
    iteration_exponent: int
    check_value: str
    fingerprint: str  # of the recovery key: print it on each share's cover sheet
    shares: tuple[ShareMnemonic, ...]

    def wipe(self) -> None:
        for s in self.shares:
            s.wipe()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


@dataclass(frozen=True)
class DrillRecord:
    """What a drill's caller records: which set, when, whether it reconstructed."""

    set_id: int
    at: str
    ok: bool
    shares_checked: int = 0
    problem: str = ""


# ---------------------------------------------------------------- derivations


def _home(home_id: str) -> bytes:
    if not home_id:
        raise ValueError("the home id is empty")
    return home_id.encode()


def _set_id(set_id: int) -> bytes:
    if not 0 <= set_id <= MAX_SET_ID:
        raise ValueError(f"a SLIP-39 set id is 0..{MAX_SET_ID}")
    return set_id.to_bytes(2, "big")


def recovery_keypair(secret: RecoverySecret, home_id: str) -> tuple[SecretBytes, bytes]:
    """(private, public) in the local backend's ``mlkem768-x25519`` encoding.

    private = ML-KEM-768 seed (64) || X25519 private key (32);
    public = ML-KEM-768 public key (1184) || X25519 public key (32).
    """
    seed = HKDF(hashes.SHA256(), 32, salt=_home(home_id), info=KEM_INFO).derive(secret.reveal())
    e = hashlib.shake_256(seed).digest(96)
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(e[:64])
    x = x25519.X25519PrivateKey.from_private_bytes(e[64:])
    private = SecretBytes(m.private_bytes_raw() + x.private_bytes_raw(), "recovery private key")
    public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    return private, public


def recovery_signing_key(secret: RecoverySecret, home_id: str) -> ed25519.Ed25519PrivateKey:
    """The recovery identity's Ed25519 key: HKDF-SHA256(secret, salt = home id, info =
    ``custodian/v2/recovery-sign``) is its 32-byte private key. Its public half is
    announced with the set; only someone holding the set's threshold of shares signs
    with it (``breakglass.recover`` and the key replacements of the recovery)."""
    seed = HKDF(hashes.SHA256(), 32, salt=_home(home_id), info=SIGN_INFO).derive(secret.reveal())
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def recovery_public_key(secret: RecoverySecret, home_id: str) -> bytes:
    private, public = recovery_keypair(secret, home_id)
    private.wipe()
    return public


def recovery_fingerprint(public_key: bytes) -> str:
    """SHA-256 over lp(label, suite, public key): 128 bits in groups of four hex digits."""
    h = hashlib.sha256(lp(KEY_LABEL, SUITE.encode(), public_key)).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def check_value(secret: RecoverySecret, home_id: str, set_id: int) -> str:
    """HMAC-SHA256(HKDF-SHA256(secret, info=label), lp(label, home id, set id)), hex."""
    key = HKDF(hashes.SHA256(), 32, salt=None, info=CHECK_LABEL).derive(secret.reveal())
    return hmac.new(key, lp(CHECK_LABEL, _home(home_id), _set_id(set_id)), "sha256").hexdigest()


def verify_check_value(secret: RecoverySecret, home_id: str, set_id: int, expected: str) -> bool:
    """Whether ``secret`` is the one ``expected`` was made from (constant-time compare)."""
    want = check_value(secret, home_id, set_id).encode()
    return hmac.compare_digest(want, expected.strip().lower().encode("ascii", "replace"))


# ---------------------------------------------------------------- split


def _windows(n: int, t: int) -> list[list[int]]:
    """Subsets of t of range(n) that together use every index: ceil(n / t) of them."""
    out = []
    for start in range(0, n, t):
        w = list(range(start, min(start + t, n)))
        w += [i for i in range(n) if i not in w][: t - len(w)]
        out.append(w)
    return out


def split(
    secret: RecoverySecret,
    home_id: str,
    *,
    threshold: int = 2,
    count: int = 3,
    passphrase: bytes | SecretBytes = b"",
    iteration_exponent: int = DEFAULT_ITERATION_EXPONENT,
    avoid_set_ids: Collection[int] = (),
) -> ShareSet:
    """Split ``secret`` into ``count`` SLIP-39 shares, any ``threshold`` of which recover it.

    One group, extendable (SLIP-39's current default). ``avoid_set_ids`` (this
    home's earlier and revoked sets) are never reused as the new set's id: the
    id is 15 random bits, so two sets of one home could otherwise share it.
    Every share is checked to recombine (ceil(N/T) recoveries) before return.
    """
    _home(home_id)
    if threshold < 2:
        raise BreakGlassError(
            f"a break-glass threshold of {threshold} is too low: one share alone must "
            "open nothing, so choose at least 2."
        )
    if count > MAX_SHARES:
        raise BreakGlassError(
            f"SLIP-39 allows at most {MAX_SHARES} shares in a set, not {count}; choose fewer."
        )
    if threshold > count:
        raise BreakGlassError(
            f"a threshold of {threshold} cannot exceed the {count} shares made; "
            "choose more shares or a lower threshold."
        )
    if not 0 <= iteration_exponent <= 15:
        raise BreakGlassError("the SLIP-39 iteration exponent is 0..15.")
    avoid = set(avoid_set_ids)
    with checked_passphrase(passphrase) as pw:
        for _ in range(64):
            mnemonics: list[str] = generate_mnemonics(
                1,
                [(threshold, count)],
                bytes(secret.reveal()),
                passphrase_bytes(pw),
                extendable=True,
                iteration_exponent=iteration_exponent,
            )[0]
            set_id = int(Share.from_mnemonic(mnemonics[0]).identifier)
            if set_id not in avoid:
                break
        else:
            raise BreakGlassError("no unused set id was found in 64 tries; try again.")
        for w in _windows(count, threshold):
            back = combine_mnemonics([mnemonics[i] for i in w], passphrase_bytes(pw))
            if not hmac.compare_digest(back, secret.reveal()):
                raise BreakGlassError("the new share set did not recombine; nothing was kept.")
    shares = tuple(
        ShareMnemonic(text, int(Share.from_mnemonic(text).index) + 1, set_id) for text in mnemonics
    )
    del mnemonics
    return ShareSet(
        set_id=set_id,
        threshold=threshold,
        count=count,
        iteration_exponent=iteration_exponent,
        check_value=check_value(secret, home_id, set_id),
        fingerprint=recovery_fingerprint(recovery_public_key(secret, home_id)),
        shares=shares,
    )


# ---------------------------------------------------------------- the ceremony


class Recovery:
    """A break-glass recovery fed one typed share at a time.

    Each share is checked as typed (words, checksum, same set, not revoked, not
    twice); at threshold the secret is reconstructed with the SLIP-39
    passphrase and accepted only if it gives the stored check value (and, if
    given, the announced recovery-key fingerprint). A wrong passphrase keeps
    the shares: :meth:`retry` with another. The secret belongs to this object:
    :meth:`wipe` (or leaving a ``with`` block) zeroes it and the passphrase.
    """

    complete = staticmethod(complete)

    def __init__(
        self,
        home_id: str,
        set_id: int,
        check_value: str,
        *,
        revoked: Collection[int] = (),
        passphrase: bytes | SecretBytes = b"",
        fingerprint: str | None = None,
    ) -> None:
        _home(home_id), _set_id(set_id)
        if set_id in revoked:
            raise BreakGlassError(
                f"set {set_id} is recorded as both current and revoked; check the audit log."
            )
        self._home = home_id
        self._check = check_value
        self._fingerprint = fingerprint
        self._passphrase = checked_passphrase(passphrase)
        self._shares = ShareCollector(
            set_id=set_id, revoked=revoked, one_group=True, words=SHARE_WORDS
        )
        self._secret: RecoverySecret | None = None
        self._closed = False

    @property
    def progress(self) -> Progress:
        return self._shares.progress()

    @property
    def secret(self) -> RecoverySecret:
        """The checked recovery secret (only once :attr:`progress` is done and it checked)."""
        if not self._shares.complete():
            raise self._shares.short()
        if self._secret is None:
            raise BreakGlassError(
                f"the shares of set {self.progress.set_id} gave no checked secret; "
                "try the SLIP-39 passphrase again."
            )
        return self._secret

    def add(self, text: str) -> Progress:
        """Check one typed share and add it; at threshold, reconstruct and check."""
        if self._closed:
            raise BreakGlassError("this recovery was wiped; start a new one.")
        if self._shares.complete():
            done = self._secret is not None
            todo = "nothing more is needed" if done else "try the passphrase again"
            raise BreakGlassError(
                f"set {self.progress.set_id} already has the {self.progress.need} shares it "
                f"needs; {todo}."
            )
        self._shares.add(text)
        if self._shares.complete():
            self._finish()
        return self.progress

    def retry(self, passphrase: bytes | SecretBytes) -> Progress:
        """Reconstruct again with another SLIP-39 passphrase, keeping the typed shares."""
        if self._closed or self._secret is not None:
            raise BreakGlassError("this recovery is over; there is nothing to retry.")
        if not self._shares.complete():
            raise self._shares.short()
        new = checked_passphrase(passphrase)
        self._passphrase.wipe()
        self._passphrase = new
        self._finish()
        return self.progress

    def _finish(self) -> None:
        set_id = self.progress.set_id
        secret = RecoverySecret(self._shares.combine(passphrase_bytes(self._passphrase)))
        if not verify_check_value(secret, self._home, set_id, self._check):
            secret.wipe()
            raise BreakGlassError(
                f"the shares of set {set_id} combine, but not to this home's recovery secret: "
                "the SLIP-39 passphrase is wrong (or the set was made for another home), so "
                "nothing was recovered; enter the passphrase again."
            )
        if self._fingerprint is not None:
            got = recovery_fingerprint(recovery_public_key(secret, self._home))
            if not hmac.compare_digest(got.encode(), self._fingerprint.strip().encode()):
                secret.wipe()
                raise BreakGlassError(
                    f"the secret of set {set_id} passes its check value but derives recovery "
                    f"key {got}, not the announced {self._fingerprint}: the stored record was "
                    "altered, so install nothing and report it."
                )
        self._secret = secret

    def wipe(self) -> None:
        self._closed = True
        if self._secret is not None:
            self._secret.wipe()
        self._secret = None
        self._passphrase.wipe()
        self._shares.reset()  # the parsed shares are immutable bytes: dropped, not zeroed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


def drill(
    shares: Sequence[str],
    *,
    home_id: str,
    set_id: int,
    check_value: str,
    revoked: Collection[int] = (),
    passphrase: bytes | SecretBytes = b"",
    fingerprint: str | None = None,
    now: float | None = None,
) -> DrillRecord:
    """Check that ``shares`` reconstruct the set's secret; change nothing, return the record.

    Every share given is used in at least one reconstruction that must pass
    the check value (ceil(n/T) of them), so a drill vouches for each paper.
    """
    at = stamp(time.time() if now is None else now)
    checked: set[int] = set()
    try:
        if not shares:
            raise BreakGlassError("no share was given; a drill needs the threshold of shares.")
        for window in _windows(len(shares), share_info(shares[0]).threshold):
            with Recovery(
                home_id,
                set_id,
                check_value,
                revoked=revoked,
                passphrase=passphrase,
                fingerprint=fingerprint,
            ) as r:
                for i in window:
                    r.add(shares[i])
                r.secret  # noqa: B018 -- raises unless the window reconstructed and checked
            checked.update(window)
    except BreakGlassError as e:
        return DrillRecord(set_id, at, False, len(checked), e.message)
    return DrillRecord(set_id, at, True, len(checked))
