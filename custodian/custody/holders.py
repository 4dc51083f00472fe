"""Holder keys: one HPKE key pair per custodian and KEK version (docs/custody.md §3).

The private half is kept twice, and nowhere in clear:

- as an item under the holder's personal key (name ``holder/<kek>/v<version>``),
  which only their passphrase opens;
- sealed to the home's **recovery key** (break-glass), so that the paper shares
  at threshold open every holder key on a new machine with no keyring. Whoever
  seals a blob to the recovery key signs (name, SHA-256 of the blob) in the
  audit log, and recovery installs only blobs the log vouches for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from custodian.custody import personal
from custodian.custody.quorum import QuorumError, holder_fingerprint, lp
from custodian.secret import SecretBytes

RECOVERY_SEAL_LABEL = b"custodian/v2/recovery-seal"
RECOVERY_SUITE = "mlkem768-x25519"


def item_name(kek: str, version: int) -> str:
    return f"holder/{kek}/v{version}"


def recovery_name(person: str, kek: str, version: int) -> str:
    return f"holder/{kek}/v{version}/{person}"


def _recovery_info(home_id: str, name: str) -> bytes:
    return lp(RECOVERY_SEAL_LABEL, home_id.encode(), name.encode())


def seal_to_recovery(
    data: SecretBytes, recovery_public: bytes, *, home_id: str, name: str
) -> bytes:
    """HPKE-seal ``data`` to the recovery key, bound to the home and the blob's name."""
    from custodian.backends.local import load_public, suite

    return bytes(
        suite(RECOVERY_SUITE).encrypt(
            bytes(data.reveal()),
            load_public(RECOVERY_SUITE, recovery_public),
            info=_recovery_info(home_id, name),
        )
    )


def open_from_recovery(
    blob: bytes, recovery_private: Any, *, home_id: str, name: str
) -> SecretBytes:
    from cryptography.exceptions import InvalidTag

    from custodian.backends.local import suite

    try:
        raw = suite(RECOVERY_SUITE).decrypt(
            blob, recovery_private, info=_recovery_info(home_id, name)
        )
    except (InvalidTag, ValueError):
        raise QuorumError(
            f"the recovery blob {name!r} does not open under this recovery key (damaged, "
            "moved, or sealed to another key); it was not installed."
        ) from None
    return SecretBytes(raw, name)


def blob_digest(blob: bytes) -> str:
    """What the sealer's signed entry lists for a blob sealed to the recovery key."""
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class HolderKey:
    kek: str
    version: int
    person: str
    suite: str
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        return holder_fingerprint(self.suite, self.public_key)


@dataclass(frozen=True)
class NewHolderKey:
    key: HolderKey
    item: bytes  # under the holder's personal key
    recovery_blob: bytes | None  # sealed to the recovery key (None before break-glass exists)

    def __repr__(self) -> str:
        return f"NewHolderKey({self.key.person}, {self.key.kek} v{self.key.version}, [sealed])"


def new_holder_key(
    suite: str,
    *,
    home_id: str,
    person: str,
    kek: str,
    version: int,
    personal_key: SecretBytes,
    recovery_public: bytes | None,
) -> NewHolderKey:
    """A fresh holder key pair; the private half comes back sealed twice, never in clear."""
    from custodian.backends.local import generate

    priv, pub = generate(suite)
    with priv:
        item = personal.seal_item(
            personal_key, priv, home_id=home_id, person=person, name=item_name(kek, version)
        )
        rblob = (
            seal_to_recovery(
                priv, recovery_public, home_id=home_id, name=recovery_name(person, kek, version)
            )
            if recovery_public is not None
            else None
        )
    return NewHolderKey(HolderKey(kek, version, person, suite, pub), item, rblob)


def open_holder_key(item: bytes, personal_key: SecretBytes, key: HolderKey, *, home_id: str) -> Any:
    """The holder's private key object, from the item under their personal key; checked
    against the public key the manifest names."""
    with personal.open_item(
        personal_key, item, home_id=home_id, person=key.person, name=item_name(key.kek, key.version)
    ) as raw:
        return _checked(raw, key)


def holder_key_from_recovery(
    blob: bytes, recovery_private: Any, key: HolderKey, *, home_id: str
) -> Any:
    name = recovery_name(key.person, key.kek, key.version)
    with open_from_recovery(blob, recovery_private, home_id=home_id, name=name) as raw:
        return _checked(raw, key)


def public_of(suite: str, raw: SecretBytes) -> bytes:
    """The public key (local backend encoding) of a private key in its sealed encoding."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

    b = bytes(raw.reveal())
    if suite == "mlkem768-x25519":
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(b[:64]).public_key().public_bytes_raw()
        return (
            m + x25519.X25519PrivateKey.from_private_bytes(b[64:]).public_key().public_bytes_raw()
        )
    if suite == "x25519":
        return x25519.X25519PrivateKey.from_private_bytes(b).public_key().public_bytes_raw()
    if suite == "p256":
        return (
            ec.derive_private_key(int.from_bytes(b, "big"), ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
    raise QuorumError(f"unknown suite {suite!r}")


def _checked(raw: SecretBytes, key: HolderKey) -> Any:
    """The private key object; one whose public half is not the one announced is refused."""
    from custodian.backends.local import load_private

    if public_of(key.suite, raw) != key.public_key:
        raise QuorumError(
            f"{key.person}'s holder key of {key.kek} v{key.version} does not match the public "
            "key the manifest names; it was not used."
        )
    return load_private(key.suite, raw)
