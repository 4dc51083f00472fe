"""People: roles, Ed25519 signing keys under a passphrase, and TOTP (RFC 6238).

A person's signing key is kept through ``keyring`` (service ``custodian``,
user ``sign:<person>:<key id>:<home id>``, see :class:`custodian.keystore.Keyring`) as a blob
that only their own passphrase opens, so nobody can sign as someone else. A
service identity (role operator only, for cron jobs) may keep its key without
a passphrase: the keyring is then its only protection.

Version 2 blob (custody v2, docs/custody.md section 7)::

    magic "CSK2" | protection (1: 0 none, 2 personal key) | body

For protection 2 the body is an item under the person's **personal key**
(:mod:`custodian.custody.personal`, item name ``sign/<key id>``), whose own
blob (Argon2id under the passphrase, ``CPK2``) is the keyring entry
``personal:<person>``; for protection 0 the body is the raw 32-byte key.

Version 1 blob (read, and upgraded to version 2 at the next unlock)::

    magic "CSK1" | protection (1: 0 none, 1 scrypt) | log2 n (1) | r (1) | p (1)
    | salt (16) | nonce (12) | AES-256-GCM(raw Ed25519 private key, 32) + tag

with associated data ``b"custodian signing key v1\\0" + person + b"\\0" + key id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

from custodian.custody import personal
from custodian.errors import CustodianError
from custodian.secret import SecretBytes

ROLES = ("custodian", "operator", "auditor")
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
KEY_MAGIC = b"CSK1"
SCRYPT_LOG_N = 15  # 32 MiB, about 0.1 s here; tests may lower it for speed
MIN_PASSPHRASE = 8
TOTP_PERIOD = 30
TOTP_DIGITS = 6


class AuthError(CustodianError):
    """A sign-in or a check of who is acting failed."""

    exit_code = 7


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise CustodianError(
            f"{name!r} is not a valid person name: use 1 to 32 lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter."
        )
    return name


def check_roles(roles: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise CustodianError(
            f"roles must be one or more of {', '.join(ROLES)} (got {', '.join(roles) or 'none'})."
        )
    return tuple(sorted(set(roles)))


def key_id(public_raw: bytes) -> str:
    """A signing key's id: the first 128 bits of SHA-256 of its raw public key, hex."""
    return hashlib.sha256(b"custodian signing key v1\0" + public_raw).hexdigest()[:32]


# ---------------------------------------------------------------- signing keys

KEY_MAGIC_V2 = b"CSK2"
PROTECTION_NONE, PROTECTION_SCRYPT, PROTECTION_PERSONAL = 0, 1, 2


def kdf_params(demo: bool = False) -> personal.KdfParams:
    """The Argon2id parameters new personal keys get (tests lower ``KDF``; a demo home
    records cheap ones and says so)."""
    return personal.CHEAP_KDF if demo else KDF


KDF = personal.DEFAULT_KDF


@dataclass(frozen=True)
class NewKey:
    key_id: str
    public_raw: bytes
    blob: str  # what goes into the keyring as sign:<person>:<key id>
    blob_protected: bool
    personal_blob: str | None = None  # what goes into the keyring as personal:<person>

    def __repr__(self) -> str:
        return f"NewKey({self.key_id!r}, [blob redacted])"


@dataclass
class Unlocked:
    """A signing key opened from its blob, and the personal key that opened it."""

    key: Any
    personal: SecretBytes | None
    from_v1: bool  # a version 1 (scrypt) blob: the caller upgrades it


def _aad(person: str, kid: str) -> bytes:
    return b"custodian signing key v1\0" + person.encode() + b"\0" + kid.encode()


def _kdf(passphrase: SecretBytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=2**log_n, r=r, p=p).derive(bytes(passphrase.reveal()))


def _wrong(person: str) -> AuthError:
    return AuthError(
        f"wrong passphrase for {person}; nothing was signed. Try again, or ask a "
        "custodian to replace the key if the passphrase is lost."
    )


def seal_signing_key(
    person: str,
    raw: SecretBytes,
    passphrase: SecretBytes | None,
    *,
    home_id: str,
    kdf: personal.KdfParams | None = None,
    personal_key: SecretBytes | None = None,
) -> tuple[str, str | None, SecretBytes | None]:
    """(keyring blob, personal key blob or None, the personal key) for a raw key.

    A new personal key is made under ``passphrase`` unless ``personal_key`` (already
    open) is given, in which case no personal blob is returned."""
    if passphrase is None and personal_key is None:
        blob = KEY_MAGIC_V2 + bytes([PROTECTION_NONE]) + bytes(raw.reveal())
        return base64.b64encode(blob).decode(), None, None
    pblob: str | None = None
    if personal_key is None:
        assert passphrase is not None
        if len(passphrase) < MIN_PASSPHRASE:
            raise CustodianError(
                f"a passphrase needs at least {MIN_PASSPHRASE} characters; nothing was saved."
            )
        personal_key = personal.new_personal_key()
        pblob = base64.b64encode(
            personal.seal_personal_key(
                personal_key, passphrase, home_id=home_id, person=person, params=kdf or KDF
            )
        ).decode()
    kid = key_id(_public_of(raw))
    item = personal.seal_item(personal_key, raw, home_id=home_id, person=person, name=f"sign/{kid}")
    blob = KEY_MAGIC_V2 + bytes([PROTECTION_PERSONAL]) + item
    return base64.b64encode(blob).decode(), pblob, personal_key


def _public_of(raw: SecretBytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw.reveal()))
        .public_key()
        .public_bytes_raw()
    )


def new_signing_key(
    person: str,
    passphrase: SecretBytes | None,
    *,
    home_id: str,
    kdf: personal.KdfParams | None = None,
) -> tuple[NewKey, SecretBytes | None]:
    """Generate an Ed25519 key and seal it under a new personal key that ``passphrase``
    opens (None: a service identity, kept in clear in the keyring). Returns the key
    and the personal key (the caller wipes it)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    priv = ed25519.Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    kid = key_id(pub)
    with SecretBytes(priv.private_bytes_raw(), "signing key") as raw:
        blob, pblob, pk = seal_signing_key(person, raw, passphrase, home_id=home_id, kdf=kdf)
    return NewKey(kid, pub, blob, passphrase is not None, pblob), pk


def _v1_open(person: str, kid: str, blob: bytes, passphrase: SecretBytes | None) -> SecretBytes:
    """The raw key of a version 1 blob (scrypt, or none)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    prot, log_n, r, p = blob[4], blob[5], blob[6], blob[7]
    salt, nonce, body = blob[8:24], blob[24:36], blob[36:]
    if prot == PROTECTION_NONE:
        return SecretBytes(body, "signing key")
    if passphrase is None:
        raise AuthError(f"{person}'s signing key needs their passphrase.")
    k = _kdf(passphrase, salt, log_n, r, p)
    raw = SecretBytes(bytes(len(body) - 16), "signing key")
    try:
        AESGCM(k).decrypt_into(nonce, body, _aad(person, kid), raw.reveal())
    except InvalidTag:
        raw.wipe()
        raise _wrong(person) from None
    return raw


def open_signing_key(
    person: str,
    kid: str,
    blob_b64: str,
    passphrase: SecretBytes | None,
    *,
    home_id: str = "",
    personal_blob: str | None = None,
) -> Unlocked:
    """The Ed25519 private key from its keyring blob (version 2, or version 1 to be
    upgraded), or AuthError."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    blob = base64.b64decode(blob_b64)
    pk: SecretBytes | None = None
    from_v1 = False
    if blob[:4] == KEY_MAGIC and len(blob) >= 4 + 4 + 28 + 32:
        from_v1 = blob[4] == PROTECTION_SCRYPT
        raw = _v1_open(person, kid, blob, passphrase)
    elif blob[:4] == KEY_MAGIC_V2 and len(blob) >= 5 + 32:
        if blob[4] == PROTECTION_NONE:
            raw = SecretBytes(blob[5:], "signing key")
        elif blob[4] == PROTECTION_PERSONAL:
            if passphrase is None:
                raise AuthError(f"{person}'s signing key needs their passphrase.")
            if personal_blob is None:
                raise AuthError(
                    f"{person}'s personal key is not in this keyring; use the workstation "
                    "where they enrolled, or have their key replaced."
                )
            try:
                pk = personal.open_personal_key(
                    base64.b64decode(personal_blob), passphrase, home_id=home_id, person=person
                )
            except personal.PersonalKeyError as e:
                if "does not open" in str(e):
                    raise _wrong(person) from None
                raise AuthError(f"{e}") from None
            try:
                raw = personal.open_item(
                    pk, blob[5:], home_id=home_id, person=person, name=f"sign/{kid}"
                )
            except personal.PersonalKeyError:
                pk.wipe()
                raise AuthError(f"the signing key of {person} in the keyring is damaged.") from None
        else:
            raise AuthError(f"the signing key of {person} in the keyring is damaged.")
    else:
        raise AuthError(f"the signing key of {person} in the keyring is damaged.")
    with raw:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw.reveal()))
    if key_id(key.public_key().public_bytes_raw()) != kid:
        if pk is not None:
            pk.wipe()
        raise AuthError(f"the signing key of {person} does not match its recorded id.")
    return Unlocked(key, pk, from_v1)


def private_raw(key: Any) -> SecretBytes:
    """An Ed25519 private key object's raw bytes, for re-sealing it."""
    return SecretBytes(key.private_bytes_raw(), "signing key")


@dataclass
class Actor:
    """Someone whose signing key is unlocked: they can act and sign audit entries."""

    name: str
    roles: tuple[str, ...]
    key_id: str
    _key: Any
    # The personal key that opened the signing key (custody v2): it opens the person's
    # other items (holder keys, session keys). None for a service identity.
    _personal: SecretBytes | None = None

    def __repr__(self) -> str:
        return f"Actor({self.name!r}, roles={self.roles}, key_id={self.key_id!r})"

    @property
    def personal(self) -> SecretBytes:
        """The person's open personal key, while they are signed in."""
        if self._personal is None or self._personal.wiped:
            raise AuthError(f"{self.name} has no open personal key; sign in again.")
        return self._personal

    def has(self, role: str) -> bool:
        return role in self.roles

    def sign(self, data: bytes) -> bytes:
        if self._key is None:
            raise AuthError(f"{self.name} has signed out.")
        sig: bytes = self._key.sign(data)
        return sig

    def forget(self) -> None:
        """Sign out: drop the unlocked key and wipe the personal key."""
        self._key = None
        if self._personal is not None:
            self._personal.wipe()
            self._personal = None


# ---------------------------------------------------------------- TOTP


def new_totp_secret() -> SecretBytes:
    """160 random bits, as RFC 4226 recommends."""
    return SecretBytes.random(20, "TOTP secret")


def totp_b32(secret: SecretBytes) -> str:
    return base64.b32encode(bytes(secret.reveal())).decode().rstrip("=")


def hotp(secret: SecretBytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226 HOTP with HMAC-SHA1 (what authenticator apps use)."""
    mac = hmac.new(bytes(secret.reveal()), struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off : off + 4])[0] & 0x7FFFFFFF) % (10**digits)
    return f"{code:0{digits}d}"


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_PERIOD)


def match_step(secret: SecretBytes, code: str, now: float | None = None) -> int | None:
    """The time step (current, or one either side) whose code is ``code``; else None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    step = current_step(now)
    found = None
    for s in (step - 1, step, step + 1):  # check all three: no timing hint which matched
        if hmac.compare_digest(hotp(secret, s), code):
            found = s
    return found


def provisioning_uri(secret: SecretBytes, person: str, home_label: str) -> str:
    import pyotp

    uri: str = pyotp.TOTP(
        totp_b32(secret), digits=TOTP_DIGITS, interval=TOTP_PERIOD
    ).provisioning_uri(name=person, issuer_name=f"custodian {home_label}")
    return uri


def qr_lines(text: str) -> list[str]:
    """A QR code of ``text`` drawn with half blocks, two modules per character cell."""
    import segno

    rows = [list(r) for r in segno.make(text, error="m").matrix]
    quiet = 4  # the quiet zone ISO/IEC 18004 asks for
    width = len(rows[0]) + 2 * quiet
    rows = (
        [[0] * width] * quiet
        + [[0] * quiet + r + [0] * quiet for r in rows]
        + [[0] * width] * (quiet + 1)
    )
    out = []
    for y in range(0, len(rows) - 1, 2):
        top, bot = rows[y], rows[y + 1]
        # dark modules drawn as spaces on a light background read best in terminals,
        # so draw the light modules: full block where both are light, and so on.
        line = ""
        for t, b in zip(top, bot, strict=True):
            line += {(0, 0): "█", (0, 1): "▀", (1, 0): "▄", (1, 1): " "}[
                (int(bool(t)), int(bool(b)))
            ]
        out.append(line)
    return out
