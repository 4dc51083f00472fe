"""The backup container: round trips, and every way a container can be bad."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from custodian import container, safefile
from custodian.errors import ContainerError
from custodian.secret import SecretBytes, new_dek

CHUNK = 1024


def _encrypt(
    data: bytes, dek: SecretBytes, bid: uuid.UUID | None = None
) -> tuple[bytes, uuid.UUID]:
    bid = bid or uuid.uuid4()
    out = io.BytesIO()
    container.encrypt_stream(
        io.BytesIO(data),
        out,
        dek,
        backup_id=bid,
        backend="local",
        kek="k",
        kek_version=1,
        wrapped_dek=b"w" * 40,
        chunk_size=CHUNK,
    )
    return out.getvalue(), bid


def _decrypt(blob: bytes, dek: SecretBytes) -> bytes:
    f = io.BytesIO(blob)
    header = container.read_header(f)
    out = io.BytesIO()
    container.decrypt_stream(f, out, dek, header)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    dek = new_dek()
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    blob, _ = _encrypt(data, dek)
    assert _decrypt(blob, dek) == data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=4 * CHUNK + 50), where=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_flipped_bit_is_refused(data: bytes, where: int, bit: int) -> None:
    dek = new_dek()
    blob, _ = _encrypt(data, dek)
    bad = bytearray(blob)
    bad[where % len(bad)] ^= 1 << bit
    with pytest.raises(ContainerError):
        _decrypt(bytes(bad), dek)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=4 * CHUNK + 50), cut=st.integers(min_value=1))
def test_any_truncation_is_refused(data: bytes, cut: int) -> None:
    dek = new_dek()
    blob, _ = _encrypt(data, dek)
    keep = len(blob) - 1 - (cut % len(blob))
    with pytest.raises(ContainerError):
        _decrypt(blob[:keep], dek)


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    header = container.read_header(io.BytesIO(blob))
    body = blob[header.size :]
    n = CHUNK + container.TAG_SIZE
    return blob[: header.size], [body[i : i + n] for i in range(0, len(body), n)]


def test_truncation_at_a_chunk_boundary_is_named() -> None:
    dek = new_dek()
    blob, _ = _encrypt(b"x" * (3 * CHUNK + 10), dek)
    head, chunks = _chunks(blob)
    with pytest.raises(ContainerError, match="truncated"):
        _decrypt(head + b"".join(chunks[:2]), dek)


def test_reordered_chunks_are_refused() -> None:
    dek = new_dek()
    blob, _ = _encrypt(bytes(range(256)) * 20, dek)
    head, chunks = _chunks(blob)
    chunks[0], chunks[1] = chunks[1], chunks[0]
    with pytest.raises(ContainerError, match="chunk 0"):
        _decrypt(head + b"".join(chunks), dek)


def test_chunk_from_another_container_is_refused() -> None:
    dek = new_dek()
    a, _ = _encrypt(b"a" * 3 * CHUNK, dek)
    b, _ = _encrypt(b"a" * 3 * CHUNK, dek)  # same DEK, same plaintext: still refused
    ha, ca = _chunks(a)
    _, cb = _chunks(b)
    ca[1] = cb[1]
    with pytest.raises(ContainerError, match="chunk 1"):
        _decrypt(ha + b"".join(ca), dek)


def test_header_from_another_backup_is_refused() -> None:
    dek = new_dek()
    a, _ = _encrypt(b"a" * 100, dek)
    b, _ = _encrypt(b"a" * 100, new_dek())
    _ha, ca = _chunks(a)
    hb, _ = _chunks(b)
    with pytest.raises(ContainerError, match="header"):
        _decrypt(hb + b"".join(ca), dek)


def test_wrong_key_is_refused() -> None:
    blob, _ = _encrypt(b"secret data", new_dek())
    with pytest.raises(ContainerError, match="header"):
        _decrypt(blob, new_dek())


def test_not_a_container() -> None:
    with pytest.raises(ContainerError, match="not a custodian backup container"):
        container.read_header(io.BytesIO(b"PK\x03\x04 this is a zip file"))
    with pytest.raises(ContainerError, match="not a custodian backup container"):
        container.read_header(io.BytesIO(b""))


def test_unknown_format_version() -> None:
    blob, _ = _encrypt(b"x", new_dek())
    bad = bytearray(blob)
    bad[8] = 2
    with pytest.raises(ContainerError, match="format 2"):
        container.read_header(io.BytesIO(bytes(bad)))


def test_write_new_file_refuses_to_overwrite_and_leaves_nothing(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    dst.write_bytes(b"keep me")
    with pytest.raises(Exception, match="already exists"):
        safefile.write_new_file(dst, False, lambda f: f.write(b"new"))
    assert dst.read_bytes() == b"keep me"

    def boom(f: object) -> None:
        raise ContainerError("bad chunk")

    with pytest.raises(ContainerError):
        safefile.write_new_file(tmp_path / "other", False, boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------ the container digest (format.md 6)


def _written(data: bytes, dek: SecretBytes, digest: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    w = container.encrypt_stream(
        io.BytesIO(data),
        out,
        dek,
        backup_id=uuid.uuid4(),
        backend="local",
        kek="k",
        kek_version=1,
        wrapped_dek=b"w" * 40,
        chunk_size=CHUNK,
        digest=digest,
    )
    return out.getvalue(), w.sha256


def _file_digest(blob: bytes, kind: str) -> str:
    f = io.BytesIO(blob)
    return container.file_digest(f, container.read_header(f), kind)


def _decrypt_digest(blob: bytes, dek: SecretBytes, kind: str) -> str:
    f = io.BytesIO(blob)
    header = container.read_header(f)
    return container.decrypt_stream(f, io.BytesIO(), dek, header, digest=kind).sha256


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_both_digests_agree_from_encrypt_decrypt_and_the_file(size: int) -> None:
    import hashlib

    dek = new_dek()
    data = bytes(range(256)) * (size // 256 + 1)
    blob, t1 = _written(data[:size], dek, container.DIGEST_TAGS)
    assert t1.startswith("t1:") and len(t1) == 3 + 64
    assert container.digest_kind(t1) == container.DIGEST_TAGS
    assert _file_digest(blob, container.DIGEST_TAGS) == t1
    assert _decrypt_digest(blob, dek, container.DIGEST_TAGS) == t1
    blob2, full = _written(data[:size], dek, container.DIGEST_SHA256)
    assert full == hashlib.sha256(blob2).hexdigest()  # what sha256sum prints
    assert container.digest_kind(full) == container.DIGEST_SHA256
    assert _file_digest(blob2, container.DIGEST_SHA256) == full
    assert _decrypt_digest(blob2, dek, container.DIGEST_SHA256) == full


def test_t1_covers_header_tags_and_size_and_the_body_through_its_tags() -> None:
    """t1 reads no body byte: a flipped body bit keeps t1 (decryption refuses it, as
    the tags guard the body under the DEK); a flipped header or tag byte, or a cut,
    changes it."""
    dek = new_dek()
    blob, t1 = _written(b"x" * (2 * CHUNK + 100), dek, container.DIGEST_TAGS)
    hsize = container.read_header(io.BytesIO(blob)).size
    body = bytearray(blob)
    body[hsize + 10] ^= 1
    assert _file_digest(bytes(body), container.DIGEST_TAGS) == t1
    with pytest.raises(ContainerError, match="failed authentication"):
        _decrypt(bytes(body), dek)
    # the salt, the header MAC, a middle chunk's tag, the last tag
    for where in (30, hsize - 1, hsize + CHUNK + 16 - 1, len(blob) - 1):
        changed = bytearray(blob)
        changed[where] ^= 1
        assert _file_digest(bytes(changed), container.DIGEST_TAGS) != t1, where
    cut = blob[: len(blob) - (100 + 16)]  # the last chunk dropped: a whole chunk boundary
    assert _file_digest(cut, container.DIGEST_TAGS) != t1
    with pytest.raises(ContainerError, match="truncated"):
        _file_digest(blob[: hsize + 10], container.DIGEST_TAGS)
    with pytest.raises(ContainerError, match="truncated"):
        _file_digest(blob[: hsize + CHUNK + 16 + 5], container.DIGEST_TAGS)


# ------------------------------------------------------------ one plaintext, one encoding


def _with_empty_last_chunk(data: bytes, dek: SecretBytes) -> tuple[bytes, bytes]:
    """What a DEK holder can make and a writer never does: the full chunks of ``data``
    (a multiple of C) not marked last, then an empty chunk marked last. Returns it
    and the container a writer makes of the same plaintext."""
    assert data and len(data) % CHUNK == 0
    blob, _ = _encrypt(data, dek)
    h = container.read_header(io.BytesIO(blob))
    aead = AESGCM(container._derive(dek, h.salt, h.backup_id, b"payload"))
    n = len(data) // CHUNK
    chunks = [
        aead.encrypt(container._nonce(i, False), data[i * CHUNK : (i + 1) * CHUNK], h.mac)
        for i in range(n)
    ]
    chunks.append(aead.encrypt(container._nonce(n, True), b"", h.mac))
    return blob[: h.size] + b"".join(chunks), blob


@pytest.mark.parametrize("chunks", [1, 3])
def test_an_empty_final_chunk_after_full_chunks_is_refused(chunks: int) -> None:
    """Section 4: the last chunk is empty only when the whole payload is. Accepting an
    empty last chunk after full ones gave one plaintext two encodings and two digests."""
    dek = new_dek()
    data = bytes(range(256)) * (chunks * CHUNK // 256)
    mutant, canonical = _with_empty_last_chunk(data, dek)
    assert _decrypt(canonical, dek) == data
    assert len(mutant) == len(canonical) + 16
    with pytest.raises(ContainerError, match="empty final chunk") as ei:
        _decrypt(mutant, dek)
    assert ei.value.exit_code == 6 and "No plaintext was written" in str(ei.value)
    for kind in (container.DIGEST_TAGS, container.DIGEST_SHA256):
        with pytest.raises(ContainerError, match="empty final chunk"):
            _file_digest(mutant, kind)  # what backup import reads
    # the empty payload is one empty chunk, marked last, and stays valid
    empty, _ = _encrypt(b"", dek)
    assert _decrypt(empty, dek) == b""
    assert _file_digest(empty, container.DIGEST_TAGS).startswith("t1:")
