"""Custody v2 through the service: a quorum KEK made with its holders present, a backup
wrapped to them with public keys only, and a restore whose DEK exists only once two
holders released their shares to the requester's session (issue 11).

Each attack of the issue's review that this covers is written as a test that fails on
a single-custody home: here it must fail to open anything."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from custodian import container
from custodian.backends.base import DekRef
from custodian.errors import ConflictError, CustodianError, UnwrapError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, enrol_by_request, next_code, unlock

DATA = os.urandom(5000) + b"quorum backup\n"


@pytest.fixture
def carol(svc: Service, cast: Cast, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


@pytest.fixture
def vault(svc: Service, cast: Cast, alice: Actor, carol: Enrolled) -> str:
    """KEK 'vault': alice, bob and carol hold shares, any two open a DEK."""
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    svc.keys.create_quorum("vault", holders, 2, by=alice, code=next_code(svc, cast.alice))
    return "vault"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "restore"
    t.mkdir(mode=0o700)
    return t


def _backup(svc: Service, cast: Cast, tmp_path: Path, kek: str) -> str:
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(DATA), tmp_path / "q.cbk", by=bot, kek=kek, label="q")
    return b.id


def test_a_quorum_kek_is_announced_with_its_manifest_signed_by_its_holders(
    svc: Service, vault: str
) -> None:
    k = svc.keys.get(vault)
    assert k.backend == "quorum" and k.current_version == 1
    man = svc.keys.manifest(vault, 1)
    assert (man.m, man.n, [h.name for h in man.holders]) == (2, 3, ["alice", "bob", "carol"])
    signs = svc.audit.entries(action="kek.manifest.sign")
    assert sorted(e["actor"] for e in signs) == ["alice", "bob", "carol"]
    assert {e["details"]["digest"] for e in signs} == {man.digest()}
    (create,) = [e for e in svc.audit.entries(action="kek.create") if e["subject"] == "kek:vault"]
    assert create["details"]["manifest"]["digest"] == man.digest()
    assert create["details"]["fingerprint"] == man.fingerprint == k.versions[0].fingerprint
    assert svc.audit.verify().ok


def test_a_quorum_needs_two_to_n_minus_one_and_distinct_holders(
    svc: Service, cast: Cast, alice: Actor, carol: Enrolled
) -> None:
    svc.clock = Clock()
    bob = unlock(svc, cast.bob)
    with pytest.raises(CustodianError, match=r"2 <= M <= N-1"):
        svc.keys.create_quorum("q1", [alice, bob], 2, by=alice, code=next_code(svc, cast.alice))
    with pytest.raises(CustodianError, match="named twice"):
        svc.keys.create_quorum(
            "q2", [alice, bob, alice], 2, by=alice, code=next_code(svc, cast.alice)
        )
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.create_quorum(
            "q3", [alice, bob, oscar], 2, by=alice, code=next_code(svc, cast.alice)
        )
    assert [k.name for k in svc.keys.list()] == ["backups"]


def test_backups_are_wrapped_with_public_keys_only_and_no_process_unwraps_them(
    svc: Service, cast: Cast, vault: str, tmp_path: Path
) -> None:
    bid = _backup(svc, cast, tmp_path, vault)
    b = svc.backups.get(bid)
    with open(b.location, "rb") as f:
        h = container.read_header(f)
    assert h.format == container.FORMAT_QUORUM and h.backend == "quorum"
    assert h.wrapped_dek == b.wrapped_dek and h.wrapped_dek[:4] == b"CQW2"
    # the account's whole keyring and the KSK do not open it: no key for it exists here
    (res,) = svc.keys.backend("quorum").unwrap([DekRef(b.id, b.kek, b.kek_version, b.wrapped_dek)])
    assert isinstance(res, UnwrapError) and "no key opens it alone" in str(res)


def test_two_holders_release_to_the_operator_session(
    svc: Service, cast: Cast, vault: str, carol: Enrolled, tmp_path: Path, target: Path
) -> None:
    bid = _backup(svc, cast, tmp_path, vault)
    oscar = unlock(svc, cast.oscar)
    r = svc.restores.request([bid], "INC-1 lost disk", target, by=oscar)
    assert r.payload["custody"] == "quorum" and len(r.payload["scope_hash"]) == 64
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert r.state == "open"
    assert svc.catalog.blobs(r.id, "release") == {}  # nothing released before quorum
    assert len(svc.catalog.blobs(r.id, "lock")) == 1
    r = svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    assert r.state == "approved" and len(svc.catalog.blobs(r.id, "release")) == 2
    rep = svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    assert [x.outcome for x in rep.results] == ["ok"], rep.results
    assert (target / "q").read_bytes() == DATA
    # the session closed: its key and the releases are gone
    assert svc.catalog.blobs(r.id, "release") == {} and svc.catalog.blobs(r.id, "lock") == {}
    assert svc.keyring.get(f"session:oscar:{r.id}") is None
    assert svc.audit.verify().ok


def test_a_holder_does_not_request_and_a_service_identity_cannot(
    svc: Service, cast: Cast, vault: str, tmp_path: Path, target: Path, alice: Actor
) -> None:
    bid = _backup(svc, cast, tmp_path, vault)
    with pytest.raises(AuthError, match="holds a share of vault v1"):
        svc.restores.request([bid], "mine", target, by=alice)
    with pytest.raises(AuthError, match="service identity"):
        svc.restores.request([bid], "cron", target, by=unlock(svc, cast.bot))
    assert svc.approvals.requests() == []


def test_a_custodian_who_holds_no_share_cannot_approve(
    svc: Service, cast: Cast, vault: str, carol: Enrolled, tmp_path: Path, target: Path
) -> None:
    # after the quorum KEK, enrolment is a request alice asks and carol approves
    dave = enrol_by_request(svc, "dave", ("custodian",), cast.alice, carol)
    bid = _backup(svc, cast, tmp_path, vault)
    r = svc.restores.request([bid], "INC-2", target, by=unlock(svc, cast.oscar))
    with pytest.raises(ConflictError, match="dave holds no share of KEK vault v1"):
        svc.approvals.approve(r.id, next_code(svc, dave), by=unlock(svc, dave))
    assert svc.approvals.get(r.id).approvals == ()


def test_replacing_colleagues_keys_opens_nothing(
    svc: Service, cast: Cast, vault: str, alice: Actor, tmp_path: Path, target: Path
) -> None:
    """The review's first attack: alice gives bob a new signing key under a passphrase
    she knows and approves as him. Version 1 counted it. Now the replacement itself is
    refused: after bootstrap it is a request that custodians other than bob approve
    (tests/unit/test_credential_changes.py has the rest). Were it done, bob's share
    stays sealed to his own personal key, which the new key's does not open."""
    bid = _backup(svc, cast, tmp_path, vault)
    r = svc.restores.request([bid], "INC-3", target, by=unlock(svc, cast.oscar))
    known = SecretBytes(b"alice chose this for bob")
    with pytest.raises(AuthError, match="needs custodians other than bob"):
        svc.people.replace_key("bob", known, by=alice)
    assert len(svc.people.get("bob").keys) == 1
    # and nothing was released: approving as bob still needs bob's own key and share
    r = svc.approvals.get(r.id)
    assert r.approvals == () and svc.catalog.blobs(r.id, "release") == {}
    assert svc.audit.verify().ok


def test_a_session_row_without_approvals_decrypts_nothing(
    svc: Service, cast: Cast, vault: str, tmp_path: Path, target: Path
) -> None:
    """The review's second attack: an operator inserts a session row. With custody, even
    a session the checks let through has no release to combine."""
    from custodian import approvals as A

    bid = _backup(svc, cast, tmp_path, vault)
    r = svc.restores.request([bid], "INC-4", target, by=unlock(svc, cast.oscar))
    s = A.Session(
        "forged-session", r.id, svc.ctx.now(), "2999-01-01T00:00:00.000000Z", "open", None
    )
    with svc.catalog.transaction():
        A.add_session(svc.catalog.db, s)
        A.set_request_state(svc.catalog.db, r.id, "approved", svc.ctx.now())
    rep_or_err: object
    try:
        rep_or_err = svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    except CustodianError as e:
        rep_or_err = e
    assert not (target / "q").exists()
    if not isinstance(rep_or_err, CustodianError):
        assert [x.outcome for x in rep_or_err.results] == ["failed"]  # type: ignore[attr-defined]


def test_a_denial_after_one_approval_releases_nothing_and_the_lock_goes(
    svc: Service, cast: Cast, vault: str, carol: Enrolled, tmp_path: Path, target: Path
) -> None:
    bid = _backup(svc, cast, tmp_path, vault)
    r = svc.restores.request([bid], "INC-5", target, by=unlock(svc, cast.oscar))
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    svc.approvals.deny(r.id, next_code(svc, cast.bob), "no ticket", by=unlock(svc, cast.bob))
    svc.approvals.requests()  # housekeeping
    assert svc.catalog.blobs(r.id, "lock") == {} and svc.catalog.blobs(r.id, "release") == {}
    assert svc.keyring.get(f"session:oscar:{r.id}") is None


def test_verify_refuses_a_quorum_version_its_holders_did_not_sign(
    svc: Service, cast: Cast, vault: str, alice: Actor
) -> None:
    """One custodian announces a quorum KEK whose manifest she made alone (the holders'
    keys as they are, the digest recomputed): without M holders' signatures over that
    digest before the announcement, verify refuses the log at that entry."""
    import base64
    import copy

    from custodian.custody import quorum as Q

    (create,) = [e for e in svc.audit.entries(action="kek.create") if e["subject"] == "kek:vault"]
    d = copy.deepcopy(create["details"])
    holders = tuple(
        Q.Holder(h["name"], h["x"], base64.b64decode(h["public_key"]))
        for h in d["manifest"]["holders"]
    )
    man = Q.Manifest(svc.config.home_id, "vault2", 1, d["suite"], 2, holders, "").check()
    d["manifest"]["digest"], d["fingerprint"] = man.digest(), man.fingerprint
    forged = svc.log.append(
        actor="alice",
        key_id=alice.key_id,
        sign=alice.sign,
        action="kek.create",
        subject="kek:vault2",
        details=d,
    )
    res = svc.audit.verify()
    assert not res.ok and res.first_bad == forged["seq"], res.summary()
    assert "signed by 0 of its holders" in res.reason
    # and a manifest that does not rebuild to its digest is named as such
    svc2 = copy.deepcopy(d)
    svc2["manifest"]["digest"] = "0" * 64
    assert (
        Q.Manifest(svc.config.home_id, "vault2", 1, d["suite"], 2, holders, "").digest()
        != (svc2["manifest"]["digest"])
    )


def test_only_signed_approvals_vouch_for_a_release(
    svc: Service, cast: Cast, vault: str, carol: Enrolled, tmp_path: Path, target: Path
) -> None:
    """The release hashes a run trusts come from the ledger (hash chain and signatures
    checked), not from any line in the log file: a line an operator appends, listing a
    release of his own making, vouches for nothing."""
    import json

    from custodian.service import shares

    bid = _backup(svc, cast, tmp_path, vault)
    r = svc.restores.request([bid], "INC-6", target, by=unlock(svc, cast.oscar))
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    name = f"release/{r.id}/{bid}/1"
    forged = {
        "action": "request.approve",
        "subject": f"request:{r.id}",
        "actor": "bob",
        "seq": 10**6,
        "details": {"releases": {name: "00" * 32}},
    }
    seg = sorted(svc.log.segments())[-1]
    with open(seg, "a", encoding="utf-8") as f:
        f.write(json.dumps(forged) + "\n")
    try:
        listed = shares.listed_releases(svc.ctx, svc.approvals.get(r.id))
    except CustodianError as e:  # the ledger refuses a log that does not hold together
        assert "does not hold together" in str(e)
    else:
        assert name not in listed
