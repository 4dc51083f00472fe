"""Build the docs/custody.md test vector from the specification alone, then check it.

The builder uses only the `cryptography` package, the standard library and the
X25519 HPKE sealing of docs/format_example.py (RFC 9180 base mode with a fixed
ephemeral key), never custodian's own custody code: its own GF(256) tables, its
own `lp` encoding, its own info and commitment bytes. The checks at the end
open the result with custodian (`QuorumWrap.decode`, `open_share`, `combine`,
the release functions) and refuse the tampered variants.

    .venv/bin/python docs/custody_example.py
"""

from __future__ import annotations

import struct
import sys
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import x25519

sys.path.insert(0, str(Path(__file__).resolve().parent))
from format_example import hpke_seal_x25519, sha256

# ---------------------------------------------------------------- GF(256), by log tables
EXP, LOG = [0] * 510, [0] * 256
_v = 1
for _i in range(255):
    EXP[_i] = EXP[_i + 255] = _v
    LOG[_v] = _i
    _v ^= (_v << 1) ^ (0x11B if _v & 0x80 else 0)  # times 3 (a generator), reduced
    _v &= 0xFF


def gmul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


# ---------------------------------------------------------------- fixed inputs
HOME_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
BACKUP_ID = uuid.UUID("6a1d3c2e-8b4f-4e1a-9c7d-2f5b8e0a1c3d")
KEK, VERSION, SUITE, M = "backups", 1, "x25519", 2
DEK = sha256(b"custodian test DEK")
COEFF = sha256(b"custodian test coefficient")  # a_1 of f(x) = DEK + a_1 x, byte by byte
DEAL_ID = sha256(b"custodian test deal")[:16]
RECOVERY_FP = "0000 1111 2222 3333 4444 5555 6666 7777"
HOLDERS = [("alice", 1), ("bob", 2), ("carol", 3)]
SK = {
    n: x25519.X25519PrivateKey.from_private_bytes(sha256(b"holder " + n.encode()))
    for n, _ in HOLDERS
}
EPH = {
    n: x25519.X25519PrivateKey.from_private_bytes(sha256(b"eph " + n.encode())) for n, _ in HOLDERS
}
SESSION_SK = x25519.X25519PrivateKey.from_private_bytes(sha256(b"custodian test session"))
REQUEST_ID = "9b8a7c6d5e4f"
SCOPE_HASH = sha256(b"custodian test scope")


def lp(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def pub(name: str) -> bytes:
    return SK[name].public_key().public_bytes_raw()


def fingerprint(public_key: bytes) -> str:
    h = sha256(lp(b"custodian/v2/holder-key", SUITE.encode(), public_key)).hex()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def share_info(name: str, x: int) -> bytes:
    return lp(
        b"custodian/v2/share", HOME_ID.encode(), BACKUP_ID.bytes, KEK.encode(),
        struct.pack(">I", VERSION), SUITE.encode(), DEAL_ID, bytes([M]), bytes([len(HOLDERS)]),
        bytes([x]), name.encode(), fingerprint(pub(name)).encode(),
    )  # fmt: skip


def share(x: int) -> bytes:
    return bytes(d ^ gmul(a, x) for d, a in zip(DEK, COEFF, strict=True))


def commitment(info: bytes, x: int, s: bytes) -> bytes:
    return sha256(b"custodian/v2/commit" + info + bytes([x]) + s)


def manifest() -> bytes:
    body = [
        b"custodian/v2/manifest", HOME_ID.encode(), KEK.encode(), struct.pack(">I", VERSION),
        SUITE.encode(), bytes([M]), bytes([len(HOLDERS)]), RECOVERY_FP.encode(),
    ]  # fmt: skip
    body += [lp(bytes([x]), n.encode(), pub(n)) for n, x in HOLDERS]
    return lp(*body)


def wrap() -> bytes:
    out = b"CQW2" + bytes([M, len(HOLDERS)]) + DEAL_ID + bytes([len(HOLDERS)])
    for name, x in HOLDERS:
        info = share_info(name, x)
        ct = hpke_seal_x25519(pub(name), EPH[name], info, bytes([x]) + share(x))
        out += bytes([x, len(name)]) + name.encode() + commitment(info, x, share(x))
        out += struct.pack(">H", len(ct)) + ct
    return out


def release_info(name: str, x: int) -> bytes:
    return lp(
        b"custodian/v2/release", HOME_ID.encode(), REQUEST_ID.encode(), SCOPE_HASH,
        BACKUP_ID.bytes, KEK.encode(), struct.pack(">I", VERSION), DEAL_ID, bytes([x]),
        name.encode(), fingerprint(pub(name)).encode(),
    )  # fmt: skip


def release(name: str, x: int) -> bytes:
    session_pub = SESSION_SK.public_key().public_bytes_raw()
    return hpke_seal_x25519(session_pub, EPH[name], release_info(name, x), bytes([x]) + share(x))


def main() -> None:
    w = wrap()
    vector = {
        "DEK": DEK.hex(),
        "coefficient a1": COEFF.hex(),
        "deal id": DEAL_ID.hex(),
        "share 1 (alice)": share(1).hex(),
        "share 2 (bob)": share(2).hex(),
        "share 3 (carol)": share(3).hex(),
        "alice holder-key fingerprint": fingerprint(pub("alice")),
        "manifest SHA-256": sha256(manifest()).hex(),
        "share info 1 SHA-256": sha256(share_info("alice", 1)).hex(),
        "commitment 1": commitment(share_info("alice", 1), 1, share(1)).hex(),
        "quorum wrap size": str(len(w)),
        "quorum wrap SHA-256": sha256(w).hex(),
        "release 2 (bob) SHA-256": sha256(release("bob", 2)).hex(),
    }
    for k, v in vector.items():
        print(f"{k}: {v}")
    check(w)


def check(w: bytes) -> None:
    from custodian.custody import quorum as Q
    from custodian.secret import SecretBytes

    holders = tuple(Q.Holder(n, x, pub(n)) for n, x in HOLDERS)
    man = Q.Manifest(HOME_ID, KEK, VERSION, SUITE, M, holders, RECOVERY_FP).check()
    assert man.encode() == manifest()
    qw = Q.QuorumWrap.decode(w)
    assert qw.encode() == w
    opened = {n: Q.open_share(qw, man, str(BACKUP_ID), n, SK[n]) for n, _ in HOLDERS}
    for n, x in HOLDERS:
        assert bytes(opened[n].value.reveal()) == share(x)
    for a, b in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
        assert bytes(Q.combine(qw, man, str(BACKUP_ID), [opened[a], opened[b]]).reveal()) == DEK
    info = Q.release_info(
        home_id=HOME_ID, request_id=REQUEST_ID, scope_hash=SCOPE_HASH,
        backup_id=str(BACKUP_ID), manifest=man, deal_id=DEAL_ID, x=2, approver="bob",
    )  # fmt: skip
    assert info == release_info("bob", 2)
    got = Q.open_release(release("bob", 2), SUITE, SESSION_SK, info, 2)
    assert bytes(got.value.reveal()) == share(2)

    def refused(fn: object, expect: str) -> None:
        try:
            fn()  # type: ignore[operator]
        except Q.QuorumError as e:
            assert expect in str(e), str(e)
        else:
            raise AssertionError(f"accepted: {expect}")

    other = str(uuid.UUID(int=BACKUP_ID.int ^ 1))
    refused(lambda: Q.open_share(qw, man, other, "bob", SK["bob"]), "does not open")
    flipped = bytearray(w)
    flipped[-1] ^= 1
    damaged = Q.QuorumWrap.decode(bytes(flipped))
    refused(
        lambda: Q.open_share(damaged, man, str(BACKUP_ID), "carol", SK["carol"]), "does not open"
    )
    bad = Q.Share(2, SecretBytes(bytes(32)))
    refused(lambda: Q.combine(qw, man, str(BACKUP_ID), [opened["alice"], bad]), "bob (index 2)")
    refused(lambda: Q.QuorumWrap.decode(w[:-1]), "cut short")
    print("custodian opens the vector and refuses every tampered variant: OK")


if __name__ == "__main__":
    main()
