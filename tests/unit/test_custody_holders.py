"""Holder keys (custodian/custody/holders.py): sealed to the holder's personal key and
to the recovery key, checked against the announced public key when opened."""

from __future__ import annotations

import pytest

from custodian.backends.local import load_private
from custodian.custody import breakglass as BG
from custodian.custody import holders as H
from custodian.custody import personal
from custodian.custody.quorum import QuorumError
from custodian.secret import SecretBytes

HOME = "home-1"


@pytest.mark.parametrize("suite", ["mlkem768-x25519", "x25519", "p256"])
def test_a_holder_key_opens_from_the_personal_key_and_from_paper(suite: str) -> None:
    pk = personal.new_personal_key()
    secret = BG.RecoverySecret.generate()
    rpriv, rpub = BG.recovery_keypair(secret, HOME)
    new = H.new_holder_key(
        suite, home_id=HOME, person="alice", kek="backups", version=3, personal_key=pk,
        recovery_public=rpub,
    )  # fmt: skip
    assert new.recovery_blob is not None and "sealed" in repr(new)
    k = new.key
    assert k.fingerprint.count(" ") == 7
    a = H.open_holder_key(new.item, pk, k, home_id=HOME)
    with rpriv:
        b = H.holder_key_from_recovery(
            new.recovery_blob, load_private("mlkem768-x25519", rpriv), k, home_id=HOME
        )
    assert type(a) is type(b)


def test_the_blobs_are_bound_to_person_version_and_home() -> None:
    pk = personal.new_personal_key()
    secret = BG.RecoverySecret.generate()
    rpriv, rpub = BG.recovery_keypair(secret, HOME)
    new = H.new_holder_key(
        "x25519", home_id=HOME, person="alice", kek="backups", version=1, personal_key=pk,
        recovery_public=rpub,
    )  # fmt: skip
    assert new.recovery_blob is not None
    moved = H.HolderKey("backups", 2, "alice", "x25519", new.key.public_key)
    with pytest.raises(personal.PersonalKeyError, match="does not open"):
        H.open_holder_key(new.item, pk, moved, home_id=HOME)
    bob = H.HolderKey("backups", 1, "bob", "x25519", new.key.public_key)
    with pytest.raises(personal.PersonalKeyError):
        H.open_holder_key(new.item, pk, bob, home_id=HOME)
    rkey = load_private("mlkem768-x25519", rpriv)
    with pytest.raises(QuorumError, match="does not open"):
        H.holder_key_from_recovery(new.recovery_blob, rkey, bob, home_id=HOME)
    with pytest.raises(QuorumError, match="does not open"):
        H.holder_key_from_recovery(new.recovery_blob, rkey, new.key, home_id="home-2")
    other_priv, _ = BG.recovery_keypair(BG.RecoverySecret.generate(), HOME)
    with pytest.raises(QuorumError, match="does not open"):
        H.holder_key_from_recovery(
            new.recovery_blob, load_private("mlkem768-x25519", other_priv), new.key, home_id=HOME
        )


def test_a_holder_key_whose_public_half_was_swapped_is_refused() -> None:
    """A catalog edit that pairs alice's sealed private key with another public key
    (so that wraps go to a key of the attacker's) is caught when she opens it."""
    pk = personal.new_personal_key()
    new = H.new_holder_key(
        "x25519", home_id=HOME, person="alice", kek="backups", version=1, personal_key=pk,
        recovery_public=None,
    )  # fmt: skip
    assert new.recovery_blob is None
    other = H.new_holder_key(
        "x25519", home_id=HOME, person="alice", kek="backups", version=1, personal_key=pk,
        recovery_public=None,
    )  # fmt: skip
    with pytest.raises(QuorumError, match="does not match the public key"):
        H.open_holder_key(new.item, pk, other.key, home_id=HOME)


def test_seal_to_recovery_round_trip_and_digest() -> None:
    secret = BG.RecoverySecret.generate()
    rpriv, rpub = BG.recovery_keypair(secret, HOME)
    blob = H.seal_to_recovery(SecretBytes(b"the KSK" * 4), rpub, home_id=HOME, name="ksk")
    assert len(H.blob_digest(blob)) == 64
    with rpriv:
        got = H.open_from_recovery(
            blob, load_private("mlkem768-x25519", rpriv), home_id=HOME, name="ksk"
        )
    assert bytes(got.reveal()) == b"the KSK" * 4
