"""Secret types, and the local backend's HPKE suites and context binding."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custodian.backends.base import DekRef, dek_context
from custodian.backends.local import KEMS
from custodian.errors import UnwrapError
from custodian.secret import SecretBytes, new_dek
from custodian.service import Service
from tests.conftest import enrol, unlock


def test_secret_bytes_never_prints_and_wipes() -> None:
    s = SecretBytes(b"\x01\x02topsecret", "DEK")
    assert "topsecret" not in repr(s) and "topsecret" not in str(s) and "redacted" in str(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    buf = s.reveal()
    s.wipe()
    assert buf == bytearray(len(buf))  # the very buffer handed out was zeroed
    assert s.wiped
    with pytest.raises(ValueError):
        s.reveal()


def test_new_dek_is_256_bits_and_fresh() -> None:
    a, b = new_dek(), new_dek()
    assert len(a) == 32 and a != b


@pytest.mark.parametrize("suite", sorted(KEMS))
def test_each_suite_wraps_with_public_key_and_binds_context(tmp_path: Path, suite: str) -> None:
    svc = Service.init(tmp_path / suite, keyring_backend="home-file", suite=suite)
    alice = unlock(svc, enrol(svc, "alice", ("custodian",), None))
    be = svc.keys.backend("local")
    bid, other = str(uuid.uuid4()), str(uuid.uuid4())
    dek = new_dek()
    (w,) = be.wrap("backups", 1, [(bid, dek)])
    if suite == "mlkem768-x25519":
        assert len(w) == 1168
    (got,) = be.unwrap([DekRef(bid, "backups", 1, w)])
    assert isinstance(got, SecretBytes) and got == dek
    (bad,) = be.unwrap([DekRef(other, "backups", 1, w)])
    assert isinstance(bad, UnwrapError)
    svc.keys.add_version("backups", by=alice)
    (re,) = be.rewrap([DekRef(bid, "backups", 1, w)], 2)
    assert isinstance(re, bytes)
    (got2,) = be.unwrap([DekRef(bid, "backups", 2, re)])
    assert got2 == dek
    svc.close()


def test_one_bad_item_does_not_fail_the_batch(svc: Service) -> None:
    be = svc.keys.backend("local")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    deks = [new_dek() for _ in ids]
    wrapped = be.wrap("backups", 1, list(zip(ids, deks, strict=True)))
    refs = [DekRef(i, "backups", 1, w) for i, w in zip(ids, wrapped, strict=True)]
    refs[1] = DekRef(ids[1], "backups", 1, wrapped[1][:-1] + bytes([wrapped[1][-1] ^ 1]))
    out = be.unwrap(refs)
    assert out[0] == deks[0] and out[2] == deks[2]
    assert isinstance(out[1], UnwrapError)


@settings(max_examples=30, deadline=None)
@given(
    kek=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    v1=st.integers(1, 2**32 - 1),
    v2=st.integers(1, 2**32 - 1),
)
def test_context_is_injective_over_name_and_version(kek: str, v1: int, v2: int) -> None:
    bid = str(uuid.UUID(int=7))
    assert (dek_context(bid, kek, v1) == dek_context(bid, kek, v2)) == (v1 == v2)
    assert dek_context(bid, kek, v1) != dek_context(bid, kek + "x", v1)
