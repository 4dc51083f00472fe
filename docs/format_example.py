"""Build the docs/format.md test vector from the specification alone, then check it.

The builder below uses only the `cryptography` package and the standard library,
never custodian's own code, following docs/format.md step by step. The checks
at the end open the result with custodian (`read_header`, `decrypt_stream`,
the local backend's HPKE suite) and try the tamper cases the format must refuse.

    .venv/bin/python docs/format_example.py
"""

from __future__ import annotations

import io
import struct
import uuid

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand


def sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


# ---------------------------------------------------------------- fixed inputs
DEK = sha256(b"custodian test DEK")
SALT = sha256(b"custodian test salt")
BACKUP_ID = uuid.UUID("6a1d3c2e-8b4f-4e1a-9c7d-2f5b8e0a1c3d")
BACKEND, KEK, VERSION = "local", "backups", 1
CHUNK = 1024
PLAINTEXT = b"custodian test vector\n" * 50  # 1100 bytes: chunk 0 full, chunk 1 76 bytes
KEK_SK = x25519.X25519PrivateKey.from_private_bytes(sha256(b"custodian test KEK"))
EPH_SK = x25519.X25519PrivateKey.from_private_bytes(sha256(b"custodian test ephemeral"))


# ---------------------------------------------------------------- DEK wrap (format.md, "DEK wrap")
def dek_context(backup_id: uuid.UUID, kek: str, version: int) -> bytes:
    ver = struct.pack(">I", version)
    return b"custodian/v1/dek\0" + backup_id.bytes + kek.encode("utf-8") + b"\0" + ver


def hpke_seal_x25519(pk_r: bytes, sk_e: x25519.X25519PrivateKey, info: bytes, pt: bytes) -> bytes:
    """RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, empty aad."""

    def extract(sid: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return hmac_sha256(salt or bytes(32), b"HPKE-v1" + sid + label + ikm)

    def expand(sid: bytes, prk: bytes, label: bytes, ctx: bytes, n: int) -> bytes:
        info = struct.pack(">H", n) + b"HPKE-v1" + sid + label + ctx
        return HKDFExpand(hashes.SHA256(), n, info).derive(prk)

    enc = sk_e.public_key().public_bytes_raw()
    dh = sk_e.exchange(x25519.X25519PublicKey.from_public_bytes(pk_r))
    kem = b"KEM" + struct.pack(">H", 0x0020)
    shared = expand(kem, extract(kem, b"", b"eae_prk", dh), b"shared_secret", enc + pk_r, 32)
    sid = b"HPKE" + struct.pack(">HHH", 0x0020, 0x0001, 0x0002)
    ctx = b"\0" + extract(sid, b"", b"psk_id_hash", b"") + extract(sid, b"", b"info_hash", info)
    secret = extract(sid, shared, b"secret", b"")
    key, nonce = expand(sid, secret, b"key", ctx, 32), expand(sid, secret, b"base_nonce", ctx, 12)
    return enc + AESGCM(key).encrypt(nonce, pt, b"")


# ---------------------------------------------------------------- container (format.md)
def derive(purpose: bytes) -> bytes:
    info = b"custodian/v1/" + purpose + b"\0" + BACKUP_ID.bytes
    return HKDF(hashes.SHA256(), 32, SALT, info).derive(DEK)


def build(plaintext: bytes, wrapped: bytes) -> tuple[bytes, bytes]:
    b, k = BACKEND.encode("ascii"), KEK.encode("utf-8")
    body = (
        b"CUSTODBK" + bytes([1, 0]) + BACKUP_ID.bytes + SALT + struct.pack(">I", CHUNK)
        + bytes([len(b)]) + b + bytes([len(k)]) + k
        + struct.pack(">II", VERSION, len(wrapped)) + wrapped
    )  # fmt: skip
    mac = hmac_sha256(derive(b"header"), body)
    aead = AESGCM(derive(b"payload"))
    chunks = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    out = [body, mac]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        out.append(aead.encrypt(i.to_bytes(11, "big") + bytes([last]), chunk, mac))
    return body, b"".join(out)


def t1(container: bytes, header_size: int) -> str:
    """The container digest t1 (format.md section 6): SHA-256 over a label, the header,
    the last 16 bytes (the tag) of every sealed chunk in order, and the size."""
    parts = [b"custodian container digest t1\0", container[:header_size]]
    pos = header_size
    while pos < len(container):
        n = min(CHUNK + 16, len(container) - pos)
        parts.append(container[pos + n - 16 : pos + n])
        pos += n
    parts.append(struct.pack(">Q", len(container)))
    return "t1:" + sha256(b"".join(parts)).hex()


def main() -> None:
    pk = KEK_SK.public_key().public_bytes_raw()
    wrapped = hpke_seal_x25519(pk, EPH_SK, dek_context(BACKUP_ID, KEK, VERSION), DEK)
    body, container = build(PLAINTEXT, wrapped)
    vector = {
        "DEK": DEK.hex(),
        "salt": SALT.hex(),
        "backup id": BACKUP_ID.bytes.hex() + f" ({BACKUP_ID})",
        "plaintext": f"{PLAINTEXT[:22].hex()} x 50 ({len(PLAINTEXT)} bytes)",
        "plaintext SHA-256": sha256(PLAINTEXT).hex(),
        "KEK private key (X25519)": KEK_SK.private_bytes_raw().hex(),
        "KEK public key": pk.hex(),
        "ephemeral private key": EPH_SK.private_bytes_raw().hex(),
        "wrapped DEK": wrapped.hex(),
        "header key": derive(b"header").hex(),
        "payload key": derive(b"payload").hex(),
        "header body": body.hex(),
        "header MAC": container[len(body) : len(body) + 32].hex(),
        "container size": str(len(container)),
        "container SHA-256": sha256(container).hex(),
        "container digest t1": t1(container, len(body) + 32),
    }
    for name, value in vector.items():
        print(f"{name}: {value}")
    check(container, wrapped)


def check(container: bytes, wrapped: bytes) -> None:
    from custodian.backends import base, local
    from custodian.container import decrypt_stream, file_digest, read_header
    from custodian.errors import ContainerError
    from custodian.secret import SecretBytes

    assert base.dek_context(str(BACKUP_ID), KEK, VERSION) == dek_context(BACKUP_ID, KEK, VERSION)
    opened = local.suite("x25519").decrypt(wrapped, KEK_SK, info=dek_context(BACKUP_ID, KEK, 1))
    assert opened == DEK

    def open_(data: bytes) -> bytes:
        src, dst = io.BytesIO(data), io.BytesIO()
        header = read_header(src)
        w = decrypt_stream(src, dst, SecretBytes(DEK), header)  # t1, the default digest
        assert w.sha256 == t1(data, header.size) and w.container_size == len(data)
        assert file_digest(io.BytesIO(data), header, "tags") == w.sha256
        src.seek(header.size)
        w = decrypt_stream(src, io.BytesIO(), SecretBytes(DEK), header, digest="sha256")
        assert w.sha256 == sha256(data).hex() == file_digest(io.BytesIO(data), header, "sha256")
        return dst.getvalue()

    def refused(data: bytes, expect: str) -> None:
        try:
            open_(data)
        except ContainerError as e:
            assert expect in str(e), str(e)
        else:
            raise AssertionError(f"accepted: {expect}")

    assert open_(container) == PLAINTEXT
    for size in (0, 1, CHUNK - 1, CHUNK, 2 * CHUNK, 2 * CHUNK + 1):  # empty, full-size last chunk
        assert open_(build(PLAINTEXT[:1] * size, wrapped)[1]) == PLAINTEXT[:1] * size
    _, two = build(b"x" * 2 * CHUNK, wrapped)  # two full chunks
    hdr = len(two) - 2 * (CHUNK + 16)
    refused(two[: hdr + CHUNK + 16], "truncated: it ends after chunk 0")
    refused(two[:hdr], "truncated: it ends before its last chunk")
    refused(two[:-1], "failed authentication")
    refused(two + b"\0", "chunk 1 of the container failed authentication")  # trailing data
    refused(container + b"\0", "chunk 1 of the container failed authentication")
    c0, c1 = two[hdr : hdr + CHUNK + 16], two[hdr + CHUNK + 16 :]
    refused(two[:hdr] + c1 + c0, "chunk 0 of the container failed authentication")  # reordered
    refused(container[:8] + b"\3" + container[9:], "uses container format 3")
    refused(container[:8] + b"\2" + container[9:], "format 2 is for quorum KEKs")
    refused(container[:9] + b"\1" + container[10:], "unknown header flags")
    refused(container[:30] + b"\0" + container[31:], "header of the container does not")
    # two full chunks not marked last, then an empty last one: only a DEK holder can make
    # it, no writer does (section 4), and it would be a second encoding of the same bytes
    aead = AESGCM(derive(b"payload"))
    mac = two[hdr - 32 : hdr]
    alt = [aead.encrypt(i.to_bytes(11, "big") + b"\0", b"x" * CHUNK, mac) for i in (0, 1)]
    alt.append(aead.encrypt((2).to_bytes(11, "big") + b"\1", b"", mac))
    refused(two[:hdr] + b"".join(alt), "empty final chunk (chunk 2) after full chunks")
    print("custodian reads the vector and refuses every tampered variant: OK")


if __name__ == "__main__":
    main()
