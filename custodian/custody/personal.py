"""Personal keys: one passphrase unlock per person seals all of that person's keys.

A person's **personal key** is 32 random bytes. It is kept sealed under a key
derived from their passphrase with Argon2id, with the parameters recorded in
the blob (docs/custody.md, "Personal key blob"); changing the passphrase
re-seals the personal key only. Everything else the person holds (their
Ed25519 signing key, their holder key of each KEK version, the private half
of each restore session key they asked for) is an **item** sealed with
AES-256-GCM under the personal key, bound to home, person and item name.

Passphrases: :func:`generate_passphrase` offers 8 words of the SLIP-39 word
list (1,024 words, 80 bits; every word is unique in its first four letters,
so the same completion that helps typing share words helps here);
:func:`check_passphrase` accepts a chosen one only if it is long (5 words or
24 characters) and not on a small blocklist.

Python cannot wipe the immutable ``bytes`` that Argon2id and AES-GCM return;
our own copies live in :class:`~custodian.secret.SecretBytes` and are zeroed.
"""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass

from custodian.errors import CustodianError
from custodian.secret import SecretBytes

MAGIC = b"CPK2"
FORMAT = 2
KDF_ARGON2ID = 1
LABEL = b"custodian/v2/personal-key"
ITEM_LABEL = b"custodian/v2/personal-item"
HEADER = struct.Struct(
    ">4sBBIII16s12s"
)  # magic, format, kdf, memory KiB, iterations, lanes, salt, nonce
TAG = 16


class PersonalKeyError(CustodianError):
    """A personal key or one of its items did not open."""

    exit_code = 7


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters, recorded in each blob."""

    memory_kib: int
    iterations: int
    lanes: int

    @property
    def label(self) -> str:
        return (
            f"Argon2id {self.memory_kib // 1024} MiB, {self.iterations} passes, {self.lanes} lanes"
        )

    def meets_floor(self) -> bool:
        """At least the default (512 MiB, 2 passes) or the floor (256 MiB, 5 passes)."""
        mib = self.memory_kib // 1024
        return (mib >= 512 and self.iterations >= 2) or (mib >= 256 and self.iterations >= 5)


# About 0.55 s on two cores of this workstation class (docs/custody.md has the figures).
DEFAULT_KDF = KdfParams(memory_kib=512 * 1024, iterations=2, lanes=2)
FLOOR_KDF = KdfParams(memory_kib=256 * 1024, iterations=5, lanes=2)
# Demo homes and tests only; every screen that unlocks with them says so.
CHEAP_KDF = KdfParams(memory_kib=8 * 1024, iterations=1, lanes=1)


def _aad(home_id: str, person: str, header: bytes) -> bytes:
    return LABEL + b"\0" + home_id.encode() + b"\0" + person.encode() + b"\0" + header


def _derive(passphrase: SecretBytes, salt: bytes, p: KdfParams, ad: bytes) -> SecretBytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=p.iterations,
        lanes=p.lanes,
        memory_cost=p.memory_kib,
        ad=ad,
    )
    return SecretBytes(kdf.derive(bytes(passphrase.reveal())), "passphrase key")


def new_personal_key() -> SecretBytes:
    return SecretBytes.random(32, "personal key")


def seal_personal_key(
    key: SecretBytes,
    passphrase: SecretBytes,
    *,
    home_id: str,
    person: str,
    params: KdfParams = DEFAULT_KDF,
) -> bytes:
    """The blob that keeps ``key`` under ``passphrase``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(passphrase) == 0:
        raise PersonalKeyError("an empty passphrase protects nothing; choose one.")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = HEADER.pack(
        MAGIC, FORMAT, KDF_ARGON2ID, params.memory_kib, params.iterations, params.lanes, salt, nonce
    )
    ad = _aad(home_id, person, header)
    with _derive(passphrase, salt, params, ad) as k:
        ct = AESGCM(bytes(k.reveal())).encrypt(nonce, bytes(key.reveal()), ad)
    return header + ct


def blob_params(blob: bytes) -> KdfParams:
    """The KDF parameters a blob was made with (no passphrase needed)."""
    *_, mem, it, lanes, _salt, _nonce = _parse(blob)
    return KdfParams(mem, it, lanes)


def _parse(blob: bytes) -> tuple[bytes, int, int, int, int, int, bytes, bytes]:
    if len(blob) != HEADER.size + 32 + TAG or blob[:4] != MAGIC:
        raise PersonalKeyError("this is not a personal key blob (damaged or of another kind).")
    fields = HEADER.unpack(blob[: HEADER.size])
    _magic, fmt, kdf, mem, it, lanes, salt, nonce = fields
    if fmt != FORMAT or kdf != KDF_ARGON2ID:
        raise PersonalKeyError(f"personal key blob format {fmt}/kdf {kdf} is not known here.")
    # bounds, so a crafted blob cannot ask for terabytes or zero work
    if not (8 <= mem <= 4 * 1024 * 1024 and 1 <= it <= 64 and 1 <= lanes <= 16):
        raise PersonalKeyError("the personal key blob records KDF parameters out of range.")
    return _magic, fmt, kdf, mem, it, lanes, salt, nonce


def open_personal_key(
    blob: bytes, passphrase: SecretBytes, *, home_id: str, person: str
) -> SecretBytes:
    """The personal key, or PersonalKeyError for a wrong passphrase (or another
    person's, or another home's blob)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _m, _f, _k, mem, it, lanes, salt, nonce = _parse(blob)
    header = blob[: HEADER.size]
    ad = _aad(home_id, person, header)
    with _derive(passphrase, salt, KdfParams(mem, it, lanes), ad) as k:
        try:
            raw = AESGCM(bytes(k.reveal())).decrypt(nonce, blob[HEADER.size :], ad)
        except InvalidTag:
            raise PersonalKeyError(
                f"that passphrase does not open {person}'s personal key; nothing was done."
            ) from None
    return SecretBytes(raw, "personal key")


def _item_aad(home_id: str, person: str, name: str) -> bytes:
    return ITEM_LABEL + b"\0" + home_id.encode() + b"\0" + person.encode() + b"\0" + name.encode()


def seal_item(
    key: SecretBytes, data: SecretBytes, *, home_id: str, person: str, name: str
) -> bytes:
    """``nonce (12) | AES-256-GCM(data) + tag`` under the personal key, bound to its name."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    aad = _item_aad(home_id, person, name)
    return nonce + AESGCM(bytes(key.reveal())).encrypt(nonce, bytes(data.reveal()), aad)


def open_item(
    key: SecretBytes, blob: bytes, *, home_id: str, person: str, name: str
) -> SecretBytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aad = _item_aad(home_id, person, name)
    try:
        raw = AESGCM(bytes(key.reveal())).decrypt(blob[:12], blob[12:], aad)
    except (InvalidTag, ValueError):
        raise PersonalKeyError(
            f"{person}'s item {name!r} does not open under their personal key (damaged, "
            "moved from another name, or of another person); nothing was done."
        ) from None
    return SecretBytes(raw, name)


# ---------------------------------------------------------------- passphrases

GENERATED_WORDS = 8
MIN_WORDS = 5
MIN_CHARS = 24
BLOCKLIST = frozenset(
    {
        "correct horse battery staple",
        "the quick brown fox jumps over the lazy dog",
        "lorem ipsum dolor sit amet",
        "to be or not to be that is the question",
        "may the force be with you",
        "i am the walrus goo goo g joob",
        "password password password",
        "letmein letmein letmein letmein",
        "change me change me change me",
        "one two three four five six",
        "this is my passphrase",
        "this is a very long password",
        "qwertyuiopasdfghjklzxcvbnm",
        "abcdefghijklmnopqrstuvwxyz",
        "administrator administrator",
    }
)


def _words() -> list[str]:
    from shamir_mnemonic.wordlist import WORDLIST

    return list(WORDLIST)


def generate_passphrase(words: int = GENERATED_WORDS) -> SecretBytes:
    """``words`` words drawn uniformly from the 1,024 SLIP-39 words (10 bits each)."""
    wl = _words()
    return SecretBytes(" ".join(secrets.choice(wl) for _ in range(words)).encode(), "passphrase")


def _normal(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def check_passphrase(passphrase: SecretBytes, *, person: str = "") -> None:
    """Refuse a chosen passphrase that is short or well known (PersonalKeyError)."""
    if len(passphrase) == 0:
        raise PersonalKeyError("that passphrase is short: it is empty.")
    try:
        text = bytes(passphrase.reveal()).decode("utf-8")
    except UnicodeDecodeError:
        raise PersonalKeyError("a passphrase must be UTF-8 text.") from None
    norm = _normal(text)
    words = norm.split()
    if len(words) < MIN_WORDS and len(text) < MIN_CHARS:
        raise PersonalKeyError(
            f"that passphrase is short: use {MIN_WORDS} words or more, or "
            f"{MIN_CHARS} characters or more, or take the generated one."
        )
    distinct = set(norm.replace(" ", ""))
    if (
        norm in BLOCKLIST
        or norm.replace(" ", "") in {b.replace(" ", "") for b in BLOCKLIST}
        or len(distinct) < 6
        or (person and norm.replace(" ", "") in {person * k for k in range(1, 12)})
        or (len(words) >= 2 and len(set(words)) == 1)
    ):
        raise PersonalKeyError(
            "that passphrase is well known or repeats itself; choose another, or take "
            "the generated one."
        )
