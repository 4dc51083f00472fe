"""Restore requests under custody v2: session keys, scope hashes, locks and releases.

The flow (docs/custody.md, "Requests and releases"):

1. The requester makes a **session key** pair (:func:`new_session_key`); its
   public half and fingerprint go into the signed request, its private half is
   sealed to the requester's personal key and destroyed when the session closes.
2. The **scope hash** (:func:`scope_hash`) is SHA-256 over the request's signed
   fields. Every approval is a signed, TOTP-confirmed decision over it.
3. **No share is released before quorum.** An approver who is not the last
   one opens their shares of the scoped DEKs, seals each to the session key
   (:func:`custodian.custody.quorum.seal_release`), and **locks** the set
   (:func:`lock`): the blobs are encrypted under a fresh key L that is sealed
   only to the other custodians who may still approve. The requester cannot
   open a locked set, and the custodians who can open it cannot open what is
   inside (it is sealed to the session key).
4. The approval that reaches quorum lifts every lock of the request
   (:func:`unlock`), seals its own shares, and the **release** entry lists the
   SHA-256 of every blob now sealed to the session key. The runner opens only
   blobs whose hash the signed log lists, and combines them under the
   commitments, so a forged or swapped share is named, never combined.

Nothing here reads the catalog or the log: callers pass the signed data in.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from custodian.custody.quorum import QuorumError, lp
from custodian.secret import SecretBytes

SCOPE_LABEL = b"custodian/v2/scope"
LOCK_LABEL = b"custodian/v2/lock"
LOCK_KEY_LABEL = b"custodian/v2/lock-key"
SESSION_KEY_LABEL = b"custodian/v2/session-key"


@dataclass(frozen=True)
class SessionKey:
    suite: str
    public_key: bytes
    private: SecretBytes  # sealed to the requester's personal key; never stored in clear

    @property
    def fingerprint(self) -> str:
        return session_fingerprint(self.suite, self.public_key)

    def __repr__(self) -> str:
        return f"<SessionKey {self.suite} {self.fingerprint} [private half redacted]>"


def session_fingerprint(suite: str, public_key: bytes) -> str:
    h = hashlib.sha256(lp(SESSION_KEY_LABEL, suite.encode(), public_key)).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def new_session_key(suite: str) -> SessionKey:
    from custodian.backends.local import generate

    priv, pub = generate(suite)
    return SessionKey(suite, pub, priv)


@dataclass(frozen=True)
class Scope:
    """What the requester signed: the approvals are over its hash."""

    home_id: str
    request_id: str
    requester: str
    session_fingerprint: str
    backups: tuple[str, ...]
    target: str
    expires_at: str
    quorum: int

    def encode(self) -> bytes:
        ids = sorted(uuid.UUID(b).bytes for b in self.backups)
        return lp(
            SCOPE_LABEL,
            self.home_id.encode(),
            self.request_id.encode(),
            self.requester.encode(),
            self.session_fingerprint.encode(),
            struct.pack(">I", len(ids)),
            *ids,
            self.target.encode(),
            self.expires_at.encode(),
            struct.pack(">B", self.quorum),
        )


def scope_hash(scope: Scope) -> bytes:
    return hashlib.sha256(scope.encode()).digest()


# ---------------------------------------------------------------- locks


@dataclass(frozen=True)
class Lock:
    """One early approver's releases, encrypted under L; L sealed to each recipient."""

    request_id: str
    approver: str
    nonce: bytes
    sealed: bytes  # AES-256-GCM(L, encoded {backup id: release blob})
    keys: Mapping[str, bytes]  # recipient name -> HPKE(L)

    def encode(self) -> bytes:
        keys = [lp(n.encode(), self.keys[n]) for n in sorted(self.keys)]
        return lp(
            LOCK_LABEL, self.request_id.encode(), self.approver.encode(), self.nonce, self.sealed,
            *keys,
        )  # fmt: skip

    @classmethod
    def decode(cls, blob: bytes) -> Lock:
        from custodian.custody.quorum import unlp

        try:
            f = unlp(blob)
            if f[0] != LOCK_LABEL:
                raise ValueError("label")
            keys = {}
            for raw in f[5:]:
                name, k = unlp(raw)
                keys[name.decode()] = k
            return cls(f[1].decode(), f[2].decode(), f[3], f[4], keys)
        except (IndexError, ValueError, UnicodeDecodeError):
            raise QuorumError("a lock is damaged; nothing was released.") from None

    def digest(self) -> str:
        """What the approver's signed entry lists for this lock."""
        h = hashlib.sha256(lp(LOCK_LABEL, self.nonce, self.sealed))
        for name in sorted(self.keys):
            h.update(lp(name.encode(), self.keys[name]))
        return h.hexdigest()


def _lock_aad(home_id: str, request_id: str, scope: bytes, approver: str) -> bytes:
    return lp(LOCK_LABEL, home_id.encode(), request_id.encode(), scope, approver.encode())


def _key_info(
    home_id: str, request_id: str, scope: bytes, approver: str, recipient: str, fp: str
) -> bytes:
    return lp(
        LOCK_KEY_LABEL,
        home_id.encode(),
        request_id.encode(),
        scope,
        approver.encode(),
        recipient.encode(),
        fp.encode(),
    )


def _encode_blobs(blobs: Mapping[str, bytes]) -> bytes:
    parts = []
    for bid in sorted(blobs):
        parts.append(lp(uuid.UUID(bid).bytes, blobs[bid]))
    return struct.pack(">I", len(parts)) + b"".join(parts)


def _decode_blobs(raw: bytes) -> dict[str, bytes]:
    (count,) = struct.unpack(">I", raw[:4])
    pos, out = 4, {}
    for _ in range(count):
        (n1,) = struct.unpack(">H", raw[pos : pos + 2])
        bid = str(uuid.UUID(bytes=raw[pos + 2 : pos + 2 + n1]))
        pos += 2 + n1
        (n2,) = struct.unpack(">H", raw[pos : pos + 2])
        out[bid] = raw[pos + 2 : pos + 2 + n2]
        pos += 2 + n2
    if pos != len(raw):
        raise QuorumError("a lock holds bytes after its last release.")
    return out


def lock(
    blobs: Mapping[str, bytes],
    *,
    home_id: str,
    request_id: str,
    scope: bytes,
    approver: str,
    recipients: Sequence[tuple[str, str, bytes, str]],
) -> Lock:
    """Lock ``blobs`` ({backup id: release blob sealed to the session key}) so that only
    one of ``recipients`` (name, suite, public key, fingerprint: the custodians who
    may still approve) can lift it. The requester is never a recipient."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from custodian.backends.local import load_public, suite

    if not recipients:
        raise QuorumError("a lock needs at least one custodian who can lift it.")
    with SecretBytes.random(32, "lock key") as key:
        nonce = os.urandom(12)
        aad = _lock_aad(home_id, request_id, scope, approver)
        sealed = AESGCM(bytes(key.reveal())).encrypt(nonce, _encode_blobs(blobs), aad)
        keys = {}
        for name, s, pub, fp in recipients:
            if name == approver:
                raise QuorumError("an approver does not lock their own share to themselves.")
            info = _key_info(home_id, request_id, scope, approver, name, fp)
            keys[name] = suite(s).encrypt(bytes(key.reveal()), load_public(s, pub), info=info)
    return Lock(request_id, approver, nonce, sealed, keys)


def unlock(
    lk: Lock,
    *,
    home_id: str,
    scope: bytes,
    recipient: str,
    suite_name: str,
    private_key: Any,
    fingerprint: str,
) -> dict[str, bytes]:
    """The release blobs inside ``lk``, for ``recipient`` (an approver reaching quorum)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from custodian.backends.local import suite

    sealed_key = lk.keys.get(recipient)
    if sealed_key is None:
        raise QuorumError(f"{lk.approver}'s lock was not made for {recipient}.")
    info = _key_info(home_id, lk.request_id, scope, lk.approver, recipient, fingerprint)
    try:
        key = suite(suite_name).decrypt(sealed_key, private_key, info=info)
        raw = AESGCM(key).decrypt(
            lk.nonce, lk.sealed, _lock_aad(home_id, lk.request_id, scope, lk.approver)
        )
    except (InvalidTag, ValueError):
        raise QuorumError(
            f"{lk.approver}'s lock does not open for {recipient} under this request and "
            "scope (tampered, or from another request); nothing was released."
        ) from None
    return _decode_blobs(raw)
