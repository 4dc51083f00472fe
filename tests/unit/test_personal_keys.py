"""Personal keys in the home (custody v2, docs/custody.md section 7): every person's
signing key is an item under a personal key that Argon2id derives from their
passphrase; version 1 (scrypt) blobs are upgraded at the next unlock."""

from __future__ import annotations

import base64
import os

import pytest

from custodian import people as P
from custodian.custody import personal
from custodian.people import AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, unlock


def _blobs(svc: Service, name: str) -> tuple[bytes, bytes | None]:
    kid = svc.people.get(name).key.key_id  # type: ignore[union-attr]
    sign = svc.keyring.get(f"sign:{name}:{kid}")
    pers = svc.keyring.get(f"personal:{name}:{kid}")
    assert sign is not None
    return base64.b64decode(sign), base64.b64decode(pers) if pers else None


def test_enrolment_makes_a_personal_key_under_argon2id(svc: Service, cast: Cast) -> None:
    sign, pers = _blobs(svc, "alice")
    assert sign[:5] == b"CSK2\x02" and pers is not None and pers[:4] == b"CPK2"
    assert personal.blob_params(pers) == P.KDF == personal.CHEAP_KDF  # tests' cheap setting
    alice = unlock(svc, cast.alice)
    assert len(alice.personal) == 32
    # the personal key opens the signing-key item; nothing else in the keyring does
    item = personal.open_item(
        alice.personal, sign[5:], home_id=svc.config.home_id, person="alice",
        name=f"sign/{alice.key_id}",
    )  # fmt: skip
    assert len(item) == 32
    alice.forget()
    with pytest.raises(AuthError, match="no open personal key"):
        _ = alice.personal


def test_service_identity_keeps_a_clear_key_and_no_personal_key(svc: Service, cast: Cast) -> None:
    sign, pers = _blobs(svc, "bot")
    assert sign[:5] == b"CSK2\x00" and pers is None
    bot = svc.auth.unlock("bot", None)
    with pytest.raises(AuthError, match="no open personal key"):
        _ = bot.personal


def test_wrong_passphrase_and_a_missing_personal_blob(svc: Service, cast: Cast) -> None:
    with pytest.raises(AuthError, match="wrong passphrase for alice"):
        svc.auth.unlock("alice", SecretBytes(b"not alice's passphrase"))
    kid = svc.people.get("bob").key.key_id  # type: ignore[union-attr]
    svc.keyring.set(f"personal:bob:{kid}", base64.b64encode(b"CPK2" + bytes(90)).decode())
    with pytest.raises(AuthError, match="is not known here"):
        unlock(svc, cast.bob)


def _v1_blob(person: str, kid: str, raw: bytes, passphrase: bytes) -> str:
    """A signing-key blob as version 1 wrote it (scrypt N=2^10 here, r=8, p=1)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt, nonce = os.urandom(16), os.urandom(12)
    k = Scrypt(salt=salt, length=32, n=2**10, r=8, p=1).derive(passphrase)
    aad = b"custodian signing key v1\0" + person.encode() + b"\0" + kid.encode()
    ct = AESGCM(k).encrypt(nonce, raw, aad)
    return base64.b64encode(b"CSK1" + bytes([1, 10, 8, 1]) + salt + nonce + ct).decode()


def test_a_version_1_blob_is_upgraded_at_the_next_unlock(svc: Service, cast: Cast) -> None:
    alice = unlock(svc, cast.alice)
    raw = alice._key.private_bytes_raw()
    kid = alice.key_id
    alice.forget()
    # the keyring as version 1 left it: a scrypt blob and no personal key
    svc.keyring.set(
        f"sign:alice:{kid}", _v1_blob("alice", kid, raw, cast.alice.passphrase.encode())
    )
    svc.keyring.delete(f"personal:alice:{kid}")
    assert _blobs(svc, "alice")[1] is None
    with pytest.raises(AuthError, match="wrong passphrase"):
        svc.auth.unlock("alice", SecretBytes(b"a wrong passphrase"))
    assert _blobs(svc, "alice")[0][:4] == b"CSK1"  # a failed unlock changes nothing
    n = svc.log.count()
    again = unlock(svc, cast.alice)
    assert len(again.personal) == 32
    sign, pers = _blobs(svc, "alice")
    assert sign[:5] == b"CSK2\x02" and pers is not None and personal.blob_params(pers) == P.KDF
    (entry,) = svc.audit.entries(action="person.key.protect")
    assert entry["seq"] == n + 1 and entry["actor"] == "alice"
    assert entry["details"]["key_id"] == kid and "Argon2id" in entry["details"]["kdf"]
    assert again._key.private_bytes_raw() == raw  # the same signing key, newly protected
    assert svc.audit.verify().ok
    third = unlock(svc, cast.alice)  # no second upgrade
    assert len(svc.audit.entries(action="person.key.protect")) == 1
    third.forget()


def test_chosen_passphrases_are_long_and_a_generated_one_always_is(
    svc: Service, cast: Cast
) -> None:
    from custodian.errors import CustodianError
    from tests.conftest import enrol

    alice = unlock(svc, cast.alice)
    for weak, why in [
        ("dana-passphrase", "is short"),  # the old rule (8 characters) took this
        ("correct horse battery staple!!", "well known"),
        ("dana dana dana dana dana dana", "well known"),
    ]:
        with pytest.raises(CustodianError, match=why):
            enrol(svc, "dana", ("auditor",), alice, passphrase=weak)
    generated = bytes(personal.generate_passphrase().reveal()).decode()
    dana = enrol(svc, "dana", ("auditor",), alice, passphrase=generated)
    assert unlock(svc, dana).name == "dana"
    with pytest.raises(CustodianError, match="is short"):
        svc.people.replace_key("dana", SecretBytes(b"too short"), by=alice)
