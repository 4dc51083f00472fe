"""Attack tests of the break-glass rules the ledger enforces (issue 11, docs/custody.md
section 10): a set is announced only after >= T of its holders signed its recovery key
and set id; the recovery identity signs the recovery and nothing else may; seals go to
the key the signed log announced, not to the catalog's copy. Each forgery is written
with the acting custodian's own key, as an insider with the account would."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from custodian import people as P
from custodian.custody import breakglass as BG
from custodian.people import Actor
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock


@pytest.fixture
def carol(svc: Service, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


def _set_details(svc: Service, secret: BG.RecoverySecret, set_id: int) -> dict[str, Any]:
    home = svc.config.home_id
    public = BG.recovery_public_key(secret, home)
    spub = BG.recovery_signing_key(secret, home).public_key().public_bytes_raw()
    return {
        "set_id": set_id,
        "threshold": 2,
        "count": 3,
        "holders": ["alice", "bob", "carol"],
        "fingerprint": BG.recovery_fingerprint(public),
        "public_key": base64.b64encode(public).decode(),
        "check_value": BG.check_value(secret, home, set_id),
        "signing_key_id": P.key_id(spub),
        "signing_public_key": base64.b64encode(spub).decode(),
        "blobs": {"bundle/ksk": "0" * 64},
        "bundle_sha256": "0" * 64,
        "revokes": None,
    }


def _sign(svc: Service, who: Actor, d: dict[str, Any], **over: Any) -> None:
    det = {"fingerprint": d["fingerprint"], "set_id": d["set_id"], **over}
    svc.ctx.record(who, "breakglass.sign", f"home:{svc.config.home_id}", details=det)


def _announce(
    svc: Service, who: Actor, d: dict[str, Any], action: str = "breakglass.split"
) -> None:
    svc.ctx.record(who, action, f"home:{svc.config.home_id}", details=d)


def test_a_split_that_no_other_holder_signed_does_not_verify(
    svc: Service, alice: Actor, carol: Enrolled
) -> None:
    # alice alone announces a recovery key she made: every later seal would go to her
    with BG.RecoverySecret.generate() as secret:
        d = _set_details(svc, secret, 4242)
    _sign(svc, alice, d)
    _announce(svc, alice, d)
    res = svc.audit.verify()
    assert not res.ok and "1 of its holders signed the recovery key" in res.reason


def test_signatures_over_another_key_or_set_do_not_count(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    bob = unlock(svc, cast.bob)
    with BG.RecoverySecret.generate() as secret:
        d = _set_details(svc, secret, 4242)
    _sign(svc, alice, d)
    _sign(svc, bob, d, fingerprint="0000 0000 0000 0000 0000 0000 0000 0000")  # another key
    _sign(svc, unlock(svc, carol), d, set_id=7)  # another set
    _announce(svc, alice, d)
    res = svc.audit.verify()
    assert not res.ok and "1 of its holders signed the recovery key" in res.reason


def test_a_properly_signed_split_verifies(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    with BG.RecoverySecret.generate() as secret:
        d = _set_details(svc, secret, 4242)
    _sign(svc, alice, d)
    _sign(svc, unlock(svc, cast.bob), d)
    _announce(svc, alice, d)
    assert svc.audit.verify().ok
    st = svc.ctx.log_state()
    assert st.breakglass is not None and st.breakglass.set_id == 4242


def test_the_recovery_is_signed_by_the_recovery_identity_only(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    with svc.custody.split(holders, by=alice, code=next_code(svc, cast.alice)) as ss:
        set_id = ss.set_id
    # a custodian (or the home key) claims a recovery, to re-key everyone's keys
    svc.ctx.record(
        alice, "breakglass.recover", f"home:{svc.config.home_id}", details={"set_id": set_id}
    )
    res = svc.audit.verify()
    assert not res.ok and "not by the recovery identity" in res.reason


def test_the_recovery_identity_replaces_no_key_before_a_recovery(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    with BG.RecoverySecret.generate() as secret:
        d = _set_details(svc, secret, 4242)
        signer = BG.recovery_signing_key(secret, svc.config.home_id)
    for h in holders[:2]:
        _sign(svc, h, d)
    _announce(svc, alice, d)
    assert svc.audit.verify().ok
    rec = Actor(BG.RECOVERY_ACTOR, (), d["signing_key_id"], signer)
    key, _ = P.new_signing_key("bob", None, home_id=svc.config.home_id)
    svc.ctx.record(
        rec,
        "person.key.replace",
        "person:bob",
        details={
            "key_id": key.key_id,
            "public_key": base64.b64encode(key.public_raw).decode(),
            "previous_key_id": svc.people.get("bob").key.key_id,  # type: ignore[union-attr]
            "protection": "none",
        },
    )
    res = svc.audit.verify()
    assert not res.ok and "replaced bob's key without holding the custodian role" in res.reason


def test_a_recovery_key_edited_in_the_catalog_redirects_no_seal(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    """The account swaps the catalog's recovery key for its own; the next quorum KEK's
    holder keys are still sealed to the announced key, and to no other."""
    from custodian.backends.local import load_private
    from custodian.custody import holders as H

    svc.clock = Clock()
    bob = unlock(svc, cast.bob)
    holders = [alice, bob, unlock(svc, carol)]
    with svc.custody.split(holders, by=alice, code=next_code(svc, cast.alice)) as ss:
        texts = [s.reveal() for s in ss.shares]
    with BG.RecoverySecret.generate() as evil:
        evil_priv, evil_pub = BG.recovery_keypair(evil, svc.config.home_id)
    raw = json.loads(svc.catalog.get_meta("breakglass") or "{}")
    raw["public_key"] = base64.b64encode(evil_pub).decode()
    raw["fingerprint"] = BG.recovery_fingerprint(evil_pub)
    with svc.catalog.transaction():
        svc.catalog.set_meta("breakglass", json.dumps(raw))
    svc.keys.create_quorum(
        "vault", holders, 2, by=alice, code=next_code(svc, cast.alice), suite="x25519"
    )
    names = [H.recovery_name(p, "vault", 1) for p in ("alice", "bob", "carol")]
    blobs = {n: svc.catalog.blob(n) for n in names}
    assert all(b is not None for b in blobs.values())
    with BG.Recovery(svc.config.home_id, ss.set_id, ss.check_value) as r:
        for t in texts[:2]:
            r.add(t)
        good, _ = BG.recovery_keypair(r.secret, svc.config.home_id)
    real = load_private("mlkem768-x25519", good)
    fake = load_private("mlkem768-x25519", evil_priv)
    for n, got in blobs.items():
        assert got is not None
        with H.open_from_recovery(got[0], real, home_id=svc.config.home_id, name=n):
            pass
        with pytest.raises(Exception, match="does not open"):
            H.open_from_recovery(got[0], fake, home_id=svc.config.home_id, name=n)
    # and every use of the set says the catalog was edited, nothing done
    st = svc.custody.status()
    assert "not the one the signed log announced" in st.problem
    (seal,) = svc.audit.entries(action="breakglass.seal")
    assert seal["details"]["fingerprint"] == ss.fingerprint
    assert svc.audit.verify().ok


def test_a_rekey_that_leaves_a_holder_key_behind_does_not_verify(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    """A modified client rekeys but drops bob's holder key: it would then open only with
    the revoked papers."""
    svc.clock = Clock()
    bob = unlock(svc, cast.bob)
    holders = [alice, bob, unlock(svc, carol)]
    with svc.custody.split(holders, by=alice, code=next_code(svc, cast.alice)) as ss:
        old_id = ss.set_id
    svc.keys.create_quorum("vault", holders, 2, by=alice, code=next_code(svc, cast.alice))
    st = svc.ctx.log_state().breakglass
    assert st is not None and "holder/vault/v1/bob" in st.blobs
    with BG.RecoverySecret.generate() as secret:
        d = _set_details(svc, secret, 4242)
    d["revokes"] = old_id
    d["blobs"] = {n: h for n, h in st.blobs.items() if not n.endswith("/bob")}
    for h in holders[:2]:
        _sign(svc, h, d)
    _announce(svc, alice, d, "breakglass.rekey")
    res = svc.audit.verify()
    assert not res.ok and "did not reseal everything" in res.reason
