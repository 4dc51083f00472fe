"""Quorum-wrapped DEKs: shares sealed to holders, releases to a session, refresh.

The byte layouts are specified in docs/custody.md; this module is that
specification in code, with no catalog, log or UI in it. Everything a share's
HPKE ``info`` binds is rebuilt by the opener from the **manifest** (signed
data), never read from the blob.

- :func:`wrap`: split a DEK M-of-N over GF(256) (fresh coefficients per DEK),
  seal ``x || share_i`` to holder i, keep a commitment per share.
- :func:`open_share` / :func:`combine`: a holder opens their own share; M
  shares checked against their commitments give the DEK back, and a bad share
  is named.
- :func:`seal_release` / :func:`open_release`: after quorum, an approver seals
  their share to the request's session key.
- :func:`deal_refresh` / :func:`apply_refresh`: rotation without
  reconstruction (a zero-constant polynomial per DEK, applied holder by holder).
- :func:`reshare` / :func:`combine_subshares`: a change of holders
  (redistribution), each of M old holders re-sharing its own share.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from custodian.custody import gf256
from custodian.errors import CustodianError
from custodian.secret import SecretBytes

SHARE_LABEL = b"custodian/v2/share"
COMMIT_LABEL = b"custodian/v2/commit"
RELEASE_LABEL = b"custodian/v2/release"
DELTA_LABEL = b"custodian/v2/delta"
SUBSHARE_LABEL = b"custodian/v2/subshare"
MANIFEST_LABEL = b"custodian/v2/manifest"
HOLDER_KEY_LABEL = b"custodian/v2/holder-key"
WRAP_MAGIC = b"CQW2"
DEK_BYTES = 32


class QuorumError(CustodianError):
    """A quorum wrap, share, release or manifest is malformed or does not check."""

    exit_code = 6


_U16 = struct.Struct(">H")


def lp(*fields: bytes) -> bytes:
    """Each field as a 2-byte big-endian length and its bytes (docs/custody.md, "lp")."""
    try:
        return b"".join([_U16.pack(len(f)) + f for f in fields])
    except struct.error:
        raise QuorumError("a field is longer than 65,535 bytes") from None


def unlp(blob: bytes) -> list[bytes]:
    """The fields of an ``lp`` encoding (ValueError if it does not parse exactly)."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 2 > len(blob):
            raise ValueError("cut short")
        (n,) = struct.unpack(">H", blob[pos : pos + 2])
        if pos + 2 + n > len(blob):
            raise ValueError("cut short")
        out.append(blob[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def manifest_fingerprint(encoded: bytes) -> str:
    """128 bits of SHA-256 over an encoded manifest, in groups of four hex digits."""
    h = hashlib.sha256(encoded).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def _u8(v: int) -> bytes:
    return struct.pack(">B", v)


def _u32(v: int) -> bytes:
    return struct.pack(">I", v)


@lru_cache(maxsize=4096)
def _uuid(backup_id: str) -> bytes:
    return uuid.UUID(backup_id).bytes


@lru_cache(maxsize=256)
def holder_fingerprint(suite: str, public_key: bytes) -> str:
    """SHA-256 over label, suite and public key: 128 bits in groups of four hex digits."""
    h = hashlib.sha256(lp(HOLDER_KEY_LABEL, suite.encode(), public_key)).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


# ---------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Holder:
    name: str
    x: int
    public_key: bytes

    def fingerprint(self, suite: str) -> str:
        return holder_fingerprint(suite, self.public_key)


@dataclass(frozen=True)
class Manifest:
    """Who holds which share of a KEK version: M holders sign its digest."""

    home_id: str
    kek: str
    version: int
    suite: str
    m: int
    holders: tuple[Holder, ...]
    recovery_fingerprint: str

    @property
    def n(self) -> int:
        return len(self.holders)

    def check(self) -> Manifest:
        xs = [h.x for h in self.holders]
        names = [h.name for h in self.holders]
        if not 2 <= self.m <= self.n - 1:
            raise QuorumError(
                f"a quorum of {self.m} of {self.n} is not allowed: it needs 2 <= M <= N-1, "
                "so that one holder alone opens nothing and losing one loses nothing."
            )
        if sorted(xs) != list(range(1, self.n + 1)) or xs != sorted(xs):
            raise QuorumError("share indices must be 1..N, each once, in order.")
        if len(set(names)) != len(names):
            raise QuorumError("one share per person: a holder appears twice.")
        if len({h.public_key for h in self.holders}) != self.n:
            raise QuorumError("two holders have the same public key.")
        return self

    def holder(self, name: str) -> Holder:
        for h in self.holders:
            if h.name == name:
                return h
        raise QuorumError(f"{name} holds no share of KEK {self.kek} v{self.version}.")

    def at(self, x: int) -> Holder:
        for h in self.holders:
            if h.x == x:
                return h
        raise QuorumError(f"no holder has share index {x} in KEK {self.kek} v{self.version}.")

    def encode(self) -> bytes:
        body = [
            MANIFEST_LABEL,
            self.home_id.encode(),
            self.kek.encode(),
            _u32(self.version),
            self.suite.encode(),
            _u8(self.m),
            _u8(self.n),
            self.recovery_fingerprint.encode(),
        ]
        body += [lp(_u8(h.x), h.name.encode(), h.public_key) for h in self.holders]
        return lp(*body)

    def digest(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        """The manifest as the signed entry that announces a version carries it (an
        auditor rebuilds the digest from it: docs/audit-format.md)."""
        import base64

        return {
            "m": self.m,
            "n": self.n,
            "digest": self.digest(),
            "recovery_fingerprint": self.recovery_fingerprint,
            "holders": [
                {
                    "name": h.name,
                    "x": h.x,
                    "fingerprint": h.fingerprint(self.suite),
                    "public_key": base64.b64encode(h.public_key).decode(),
                }
                for h in self.holders
            ],
        }

    @property
    def fingerprint(self) -> str:
        """The version's fingerprint (the catalog's and the log's): 128 bits of the digest."""
        return manifest_fingerprint(self.encode())

    @classmethod
    def decode(cls, blob: bytes) -> Manifest:
        """The inverse of :meth:`encode` (checked, so a damaged manifest is refused)."""
        try:
            f = unlp(blob)
            if f[0] != MANIFEST_LABEL or len(f) < 8:
                raise QuorumError("not a manifest.")
            m, n = f[5][0], f[6][0]
            holders = []
            for raw in f[8:]:
                x, name, pub = unlp(raw)
                holders.append(Holder(name.decode(), x[0], pub))
            man = cls(
                f[1].decode(),
                f[2].decode(),
                struct.unpack(">I", f[3])[0],
                f[4].decode(),
                m,
                tuple(holders),
                f[7].decode(),
            )
        except (IndexError, ValueError, struct.error, UnicodeDecodeError):
            raise QuorumError("a manifest is damaged; it was not used.") from None
        if man.n != n or man.encode() != blob:
            raise QuorumError("a manifest is damaged; it was not used.")
        return man.check()


# ---------------------------------------------------------------- the wrap


@dataclass(frozen=True)
class SealedShare:
    x: int
    holder: str
    commitment: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class QuorumWrap:
    """A DEK as M-of-N sealed shares: what the header and the catalog hold."""

    m: int
    n: int
    deal_id: bytes
    shares: tuple[SealedShare, ...]

    def encode(self) -> bytes:
        out = bytearray(
            WRAP_MAGIC + _u8(self.m) + _u8(self.n) + self.deal_id + _u8(len(self.shares))
        )
        for s in self.shares:
            name = s.holder.encode()
            out += _u8(s.x) + _u8(len(name)) + name + s.commitment
            out += struct.pack(">H", len(s.ciphertext)) + s.ciphertext
        return bytes(out)

    @classmethod
    def decode(cls, blob: bytes) -> QuorumWrap:
        try:
            if blob[:4] != WRAP_MAGIC:
                raise QuorumError("not a quorum wrap (bad magic).")
            m, n = blob[4], blob[5]
            deal_id = blob[6:22]
            count = blob[22]
            pos = 23
            shares = []
            for _ in range(count):
                x, ln = blob[pos], blob[pos + 1]
                pos += 2
                holder = blob[pos : pos + ln].decode("utf-8")
                pos += ln
                commitment = blob[pos : pos + 32]
                pos += 32
                (clen,) = struct.unpack(">H", blob[pos : pos + 2])
                pos += 2
                ct = blob[pos : pos + clen]
                pos += clen
                if len(ct) != clen or len(commitment) != 32:
                    raise QuorumError("a quorum wrap is cut short.")
                shares.append(SealedShare(x, holder, commitment, ct))
        except (IndexError, struct.error, UnicodeDecodeError):
            raise QuorumError("a quorum wrap is cut short or damaged.") from None
        if pos != len(blob):
            raise QuorumError("a quorum wrap has bytes after its last share.")
        xs = [s.x for s in shares]
        if len(deal_id) != 16 or count != n or xs != sorted(set(xs)) or 0 in xs:
            raise QuorumError("a quorum wrap's shares are not N distinct indices in order.")
        return cls(m, n, deal_id, tuple(shares))

    def check_against(self, manifest: Manifest) -> None:
        if (self.m, self.n) != (manifest.m, manifest.n):
            raise QuorumError(
                f"the wrap is {self.m}-of-{self.n} but the manifest of KEK {manifest.kek} "
                f"v{manifest.version} says {manifest.m}-of-{manifest.n}."
            )
        for s in self.shares:
            if manifest.at(s.x).name != s.holder:
                raise QuorumError(
                    f"share {s.x} names {s.holder}, but the manifest gives it to "
                    f"{manifest.at(s.x).name}."
                )

    def share(self, x: int) -> SealedShare:
        for s in self.shares:
            if s.x == x:
                return s
        raise QuorumError(f"the wrap has no share {x}.")


def share_info(manifest: Manifest, backup_id: str, deal_id: bytes, h: Holder) -> bytes:
    """HPKE info of holder h's share of one DEK, built from the manifest."""
    return lp(
        SHARE_LABEL,
        manifest.home_id.encode(),
        _uuid(backup_id),
        manifest.kek.encode(),
        _u32(manifest.version),
        manifest.suite.encode(),
        deal_id,
        _u8(manifest.m),
        _u8(manifest.n),
        _u8(h.x),
        h.name.encode(),
        h.fingerprint(manifest.suite).encode(),
    )


def commitment(info: bytes, x: int, share: bytes) -> bytes:
    """c_i = SHA-256(label || info_i || x || share_i)."""
    return hashlib.sha256(COMMIT_LABEL + info + _u8(x) + share).digest()


class _Keys:
    """Loaded HPKE public keys, per (suite, bytes): loading an ML-KEM key costs."""

    def __init__(self) -> None:
        self._pub: dict[tuple[str, bytes], Any] = {}

    def public(self, suite: str, raw: bytes) -> Any:
        from custodian.backends.local import load_public

        k = (suite, raw)
        if k not in self._pub:
            self._pub[k] = load_public(suite, raw)
        return self._pub[k]


_KEYS = _Keys()


def wrap(
    dek: SecretBytes, manifest: Manifest, backup_id: str, *, deal_id: bytes | None = None
) -> QuorumWrap:
    """Split ``dek`` M-of-N and seal each share to its holder (public keys only)."""
    from custodian.backends.local import suite

    hs = suite(manifest.suite)
    deal = deal_id if deal_id is not None else os.urandom(16)
    xs = [h.x for h in manifest.holders]
    shares = gf256.split(bytes(dek.reveal()), manifest.m, xs)
    out = []
    try:
        for h, sh in zip(manifest.holders, shares, strict=True):
            info = share_info(manifest, backup_id, deal, h)
            pt = _u8(h.x) + sh
            ct = hs.encrypt(pt, _KEYS.public(manifest.suite, h.public_key), info=info)
            out.append(SealedShare(h.x, h.name, commitment(info, h.x, sh), ct))
    finally:
        shares.clear()
    return QuorumWrap(manifest.m, manifest.n, deal, tuple(out))


@dataclass
class Share:
    """One holder's opened share of one DEK (secret)."""

    x: int
    value: SecretBytes

    def __repr__(self) -> str:
        return f"<Share x={self.x} [redacted]>"


def _open(hs: Any, ct: bytes, private_key: Any, info: bytes, what: str) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        pt: bytes = hs.decrypt(ct, private_key, info=info)
    except (InvalidTag, ValueError):
        raise QuorumError(f"{what} does not open (tampered, or bound to something else).") from None
    return pt


def open_share(
    qw: QuorumWrap, manifest: Manifest, backup_id: str, holder: str, private_key: Any
) -> Share:
    """Holder ``holder`` opens their own share and checks it against its commitment."""
    from custodian.backends.local import suite

    qw.check_against(manifest)
    h = manifest.holder(holder)
    s = qw.share(h.x)
    info = share_info(manifest, backup_id, qw.deal_id, h)
    pt = _open(suite(manifest.suite), s.ciphertext, private_key, info, f"{holder}'s share")
    if len(pt) != 1 + DEK_BYTES or pt[0] != h.x:
        raise QuorumError(f"{holder}'s share carries the wrong index; it was not made for them.")
    value = pt[1:]
    if not hmac.compare_digest(commitment(info, h.x, value), s.commitment):
        raise QuorumError(f"{holder}'s share does not match its commitment.")
    return Share(h.x, SecretBytes(value, "share"))


def combine(
    qw: QuorumWrap, manifest: Manifest, backup_id: str, shares: Sequence[Share]
) -> SecretBytes:
    """The DEK from M shares, each checked against its commitment first: a bad one is
    named (QuorumError), never combined."""
    distinct: dict[int, Share] = {}
    for sh in shares:
        distinct.setdefault(sh.x, sh)
    if len(distinct) < manifest.m:
        raise QuorumError(
            f"{len(distinct)} distinct share(s) of {manifest.m} needed; nothing was opened."
        )
    chosen = [distinct[x] for x in sorted(distinct)][: manifest.m]
    for sh in chosen:
        h = manifest.at(sh.x)
        info = share_info(manifest, backup_id, qw.deal_id, h)
        if not hmac.compare_digest(
            commitment(info, sh.x, bytes(sh.value.reveal())), qw.share(sh.x).commitment
        ):
            raise QuorumError(
                f"the share of {h.name} (index {sh.x}) does not match its commitment; "
                "it was not used and nothing was opened."
            )
    dek = gf256.combine([(sh.x, bytes(sh.value.reveal())) for sh in chosen])
    return SecretBytes(dek, "DEK")


# ---------------------------------------------------------------- releases


def release_info(
    *,
    home_id: str,
    request_id: str,
    scope_hash: bytes,
    backup_id: str,
    manifest: Manifest,
    deal_id: bytes,
    x: int,
    approver: str,
) -> bytes:
    """HPKE info of an approver's share released to a session key."""
    h = manifest.at(x)
    if h.name != approver:
        raise QuorumError(f"share {x} belongs to {h.name}, not to {approver}.")
    return lp(
        RELEASE_LABEL,
        home_id.encode(),
        request_id.encode(),
        scope_hash,
        _uuid(backup_id),
        manifest.kek.encode(),
        _u32(manifest.version),
        deal_id,
        _u8(x),
        approver.encode(),
        h.fingerprint(manifest.suite).encode(),
    )


def seal_release(share: Share, session_suite: str, session_public: bytes, info: bytes) -> bytes:
    from custodian.backends.local import suite

    hs = suite(session_suite)
    pt = _u8(share.x) + bytes(share.value.reveal())
    ct: bytes = hs.encrypt(pt, _KEYS.public(session_suite, session_public), info=info)
    return ct


def open_release(
    blob: bytes, session_suite: str, session_private: Any, info: bytes, x: int
) -> Share:
    from custodian.backends.local import suite

    pt = _open(suite(session_suite), blob, session_private, info, f"the released share {x}")
    if len(pt) != 1 + DEK_BYTES or pt[0] != x:
        raise QuorumError(f"the released share {x} carries the wrong index.")
    return Share(x, SecretBytes(pt[1:], "share"))


def release_hash(blob: bytes) -> str:
    """What the release entry lists for each sealed blob."""
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------- refresh (rotation)


def delta_info(
    old: Manifest, new: Manifest, backup_id: str, old_deal: bytes, new_deal: bytes, h: Holder
) -> bytes:
    return lp(
        DELTA_LABEL,
        new.home_id.encode(),
        _uuid(backup_id),
        new.kek.encode(),
        _u32(old.version),
        _u32(new.version),
        new.suite.encode(),
        old_deal,
        new_deal,
        _u8(new.m),
        _u8(new.n),
        _u8(h.x),
        h.name.encode(),
        h.fingerprint(new.suite).encode(),
    )


def _same_holders(old: Manifest, new: Manifest) -> None:
    if [(h.name, h.x) for h in old.holders] != [(h.name, h.x) for h in new.holders] or (
        old.m != new.m
    ):
        raise QuorumError(
            "a refresh keeps the holders, their indices and M; a change of holders is a "
            "redistribution."
        )


def deal_refresh(
    old: Manifest, new: Manifest, backup_id: str, old_deal: bytes
) -> tuple[bytes, dict[int, bytes]]:
    """A zero-constant polynomial Z for one DEK: delta_i = Z(x_i) sealed to holder i's
    new key. Returns (new deal id, {x: sealed delta}); Z is forgotten on return."""
    from custodian.backends.local import suite

    _same_holders(old, new)
    hs = suite(new.suite)
    new_deal = os.urandom(16)
    xs = [h.x for h in new.holders]
    deltas = gf256.zero_sharing(new.m, xs, DEK_BYTES)
    out: dict[int, bytes] = {}
    try:
        for h, d in zip(new.holders, deltas, strict=True):
            info = delta_info(old, new, backup_id, old_deal, new_deal, h)
            out[h.x] = hs.encrypt(_u8(h.x) + d, _KEYS.public(new.suite, h.public_key), info=info)
    finally:
        deltas.clear()
    return new_deal, out


def apply_refresh(
    old_share: Share,
    sealed_delta: bytes,
    old: Manifest,
    new: Manifest,
    backup_id: str,
    old_deal: bytes,
    new_deal: bytes,
    holder: str,
    new_private_key: Any,
) -> SealedShare:
    """Holder ``holder`` seals share XOR delta to their new key: their new sealed share."""
    from custodian.backends.local import suite

    _same_holders(old, new)
    h = new.holder(holder)
    if h.x != old_share.x:
        raise QuorumError(f"{holder}'s share index changed; this is not their share.")
    hs = suite(new.suite)
    dinfo = delta_info(old, new, backup_id, old_deal, new_deal, h)
    pt = _open(hs, sealed_delta, new_private_key, dinfo, f"the refresh delta for {holder}")
    if len(pt) != 1 + DEK_BYTES or pt[0] != h.x:
        raise QuorumError(f"the refresh delta for {holder} carries the wrong index.")
    value = gf256.xor(bytes(old_share.value.reveal()), pt[1:])
    info = share_info(new, backup_id, new_deal, h)
    ct = hs.encrypt(_u8(h.x) + value, _KEYS.public(new.suite, h.public_key), info=info)
    return SealedShare(h.x, h.name, commitment(info, h.x, value), ct)


# ---------------------------------------------------------------- redistribution


def subshare_info(
    old: Manifest,
    new: Manifest,
    backup_id: str,
    old_deal: bytes,
    new_deal: bytes,
    from_x: int,
    to: Holder,
) -> bytes:
    return lp(
        SUBSHARE_LABEL,
        new.home_id.encode(),
        _uuid(backup_id),
        new.kek.encode(),
        _u32(old.version),
        _u32(new.version),
        new.suite.encode(),
        old_deal,
        new_deal,
        _u8(new.m),
        _u8(new.n),
        _u8(from_x),
        old.at(from_x).name.encode(),
        _u8(to.x),
        to.name.encode(),
        to.fingerprint(new.suite).encode(),
    )


def reshare(
    share: Share, old: Manifest, new: Manifest, backup_id: str, old_deal: bytes, new_deal: bytes
) -> dict[int, bytes]:
    """Old holder (index share.x) splits their own share M'-of-N' to the new holders:
    {new x: sealed sub-share}. Never sends a Lagrange-weighted share: that, from M
    old holders, would be the DEK."""
    from custodian.backends.local import suite

    hs = suite(new.suite)
    xs = [h.x for h in new.holders]
    subs = gf256.split(bytes(share.value.reveal()), new.m, xs)
    out: dict[int, bytes] = {}
    try:
        for h, sub in zip(new.holders, subs, strict=True):
            info = subshare_info(old, new, backup_id, old_deal, new_deal, share.x, h)
            out[h.x] = hs.encrypt(
                _u8(share.x) + sub, _KEYS.public(new.suite, h.public_key), info=info
            )
    finally:
        subs.clear()
    return out


def combine_subshares(
    sealed: dict[int, bytes],
    old: Manifest,
    new: Manifest,
    backup_id: str,
    old_deal: bytes,
    new_deal: bytes,
    holder: str,
    new_private_key: Any,
) -> SealedShare:
    """New holder ``holder`` opens one sub-share from each of M old holders (keyed by
    the old index) and seals sum(lambda_i * sub_i) to their own key."""
    from custodian.backends.local import suite

    if len(sealed) != old.m:
        raise QuorumError(f"a redistribution needs sub-shares from exactly {old.m} old holders.")
    h = new.holder(holder)
    hs = suite(new.suite)
    from_xs = sorted(sealed)
    weights = gf256.lagrange_at_zero(from_xs)
    acc = bytes(DEK_BYTES)
    for w, fx in zip(weights, from_xs, strict=True):
        info = subshare_info(old, new, backup_id, old_deal, new_deal, fx, h)
        pt = _open(hs, sealed[fx], new_private_key, info, f"the sub-share from {old.at(fx).name}")
        if len(pt) != 1 + DEK_BYTES or pt[0] != fx:
            raise QuorumError(f"the sub-share from {old.at(fx).name} carries the wrong index.")
        acc = gf256.xor(acc, gf256.weighted(pt[1:], w))
    info = share_info(new, backup_id, new_deal, h)
    ct = hs.encrypt(_u8(h.x) + acc, _KEYS.public(new.suite, h.public_key), info=info)
    return SealedShare(h.x, h.name, commitment(info, h.x, acc), ct)
