"""People: roles, Ed25519 signing keys under a passphrase, and TOTP (RFC 6238).

A person's signing key is kept through ``keyring`` (service ``custodian``,
user ``sign:<person>:<key id>:<home id>``, see :class:`custodian.keystore.Keyring`) as a blob
encrypted under a key derived from their own passphrase, so nobody can sign
as someone else. A service identity (role operator only, for cron jobs) may
keep its key without a passphrase: the keyring is then its only protection.

Passphrase-protected key blob (base64 in the keyring)::

    magic "CSK1" | protection (1: 0 none, 1 scrypt) | log2 n (1) | r (1) | p (1)
    | salt (16) | nonce (12) | AES-256-GCM(raw Ed25519 private key, 32) + tag

with associated data ``b"custodian signing key v1\\0" + person + b"\\0" + key id``.
For protection 0 the salt and nonce are zero-filled and the key follows in
clear after them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class NewKey:
    key_id: str
    public_raw: bytes
    blob: str  # what goes into the keyring
    blob_protected: bool

    def __repr__(self) -> str:
        return f"NewKey({self.key_id!r}, [blob redacted])"


def _aad(person: str, kid: str) -> bytes:
    return b"custodian signing key v1\0" + person.encode() + b"\0" + kid.encode()


def _kdf(passphrase: SecretBytes, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=2**log_n, r=r, p=p).derive(bytes(passphrase.reveal()))


def new_signing_key(person: str, passphrase: SecretBytes | None) -> NewKey:
    """Generate an Ed25519 key and seal it under ``passphrase`` (None: service identity)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    priv = ed25519.Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    kid = key_id(pub)
    raw = SecretBytes(priv.private_bytes_raw(), "signing key")
    with raw:
        if passphrase is None:
            blob = KEY_MAGIC + bytes([0, 0, 0, 0]) + bytes(28) + bytes(raw.reveal())
        else:
            if len(passphrase) < MIN_PASSPHRASE:
                raise CustodianError(
                    f"a passphrase needs at least {MIN_PASSPHRASE} characters; nothing was saved."
                )
            salt, nonce = os.urandom(16), os.urandom(12)
            log_n, r, p = SCRYPT_LOG_N, 8, 1
            k = _kdf(passphrase, salt, log_n, r, p)
            ct = AESGCM(k).encrypt(nonce, bytes(raw.reveal()), _aad(person, kid))
            blob = KEY_MAGIC + bytes([1, log_n, r, p]) + salt + nonce + ct
    return NewKey(kid, pub, base64.b64encode(blob).decode(), passphrase is not None)


def open_signing_key(person: str, kid: str, blob_b64: str, passphrase: SecretBytes | None) -> Any:
    """The Ed25519 private key object from its keyring blob, or AuthError."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    blob = base64.b64decode(blob_b64)
    if blob[:4] != KEY_MAGIC or len(blob) < 4 + 4 + 28 + 32:
        raise AuthError(f"the signing key of {person} in the keyring is damaged.")
    prot, log_n, r, p = blob[4], blob[5], blob[6], blob[7]
    salt, nonce, body = blob[8:24], blob[24:36], blob[36:]
    if prot == 0:
        raw = SecretBytes(body, "signing key")
    else:
        if passphrase is None:
            raise AuthError(f"{person}'s signing key needs their passphrase.")
        k = _kdf(passphrase, salt, log_n, r, p)
        raw = SecretBytes(bytes(len(body) - 16), "signing key")
        try:
            AESGCM(k).decrypt_into(nonce, body, _aad(person, kid), raw.reveal())
        except InvalidTag:
            raw.wipe()
            raise AuthError(
                f"wrong passphrase for {person}; nothing was signed. Try again, or ask a "
                "custodian to replace the key if the passphrase is lost."
            ) from None
    with raw:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw.reveal()))
    if key_id(key.public_key().public_bytes_raw()) != kid:
        raise AuthError(f"the signing key of {person} does not match its recorded id.")
    return key


@dataclass
class Actor:
    """Someone whose signing key is unlocked: they can act and sign audit entries."""

    name: str
    roles: tuple[str, ...]
    key_id: str
    _key: Any

    def __repr__(self) -> str:
        return f"Actor({self.name!r}, roles={self.roles}, key_id={self.key_id!r})"

    def has(self, role: str) -> bool:
        return role in self.roles

    def sign(self, data: bytes) -> bytes:
        if self._key is None:
            raise AuthError(f"{self.name} has signed out.")
        sig: bytes = self._key.sign(data)
        return sig

    def forget(self) -> None:
        """Sign out: drop the unlocked key."""
        self._key = None


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
