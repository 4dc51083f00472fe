"""Credential changes under dual control (issue 11): after bootstrap (the home's first
quorum KEK) every change about a person is a request that M custodians other than its
subject approve, the subject completes it in person, and ``audit verify`` refuses a
log in which such a change lacks its approvals.

The attacks come first: each one succeeded on the code before this change (one
custodian replacing colleagues' keys and TOTP secrets, then approving as them; a
change signed by the home key or by one custodian alone that verify accepted)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from custodian import people as P
from custodian.errors import ConflictError, CustodianError
from custodian.ledger import change_scope
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock

NEW_PW = "bob brand new passphrase long enough"


@pytest.fixture
def carol(svc: Service, cast: Cast, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


@pytest.fixture
def quorum_home(svc: Service, cast: Cast, alice: Actor, carol: Enrolled) -> Service:
    """alice, bob and carol hold KEK 'vault' 2 of 3: the home's bootstrap is over."""
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    svc.keys.create_quorum("vault", holders, 2, by=alice, code=next_code(svc, cast.alice))
    assert not svc.people.changes.in_bootstrap()
    return svc


def _pw(text: str) -> SecretBytes:
    return SecretBytes(text.encode())


def _fresh_key() -> tuple[Any, dict[str, Any]]:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    priv = ed25519.Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    return priv, {"key_id": P.key_id(pub), "public_key": base64.b64encode(pub).decode()}


def _verify_fails(svc: Service, *words: str) -> str:
    v = svc.audit.verify()
    assert not v.ok, "verify accepted the forged change"
    for w in words:
        assert w in v.summary(), v.summary()
    return v.summary()


# ---------------------------------------------------------------- the attacks


def test_one_custodian_cannot_replace_colleagues_credentials_and_approve_as_them(
    quorum_home: Service, cast: Cast, carol: Enrolled, tmp_path: Path
) -> None:
    """The issue's finding: alice, with only the CLI's calls and her own passphrase,
    replaced bob's and carol's signing keys and TOTP secrets (the new secrets shown to
    her) and approved oscar's restore as them: 'approved (2 of 2)', decrypted."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    for victim in ("bob", "carol"):
        with pytest.raises(AuthError, match="needs custodians other than"):
            svc.people.replace_key(victim, _pw(f"{victim} stolen passphrase by alice"), by=alice)
        with pytest.raises(AuthError, match="needs custodians other than"):
            svc.people.begin_totp_replacement(victim, by=alice)
    # nothing changed: bob's and carol's keys are the ones they enrolled with
    assert len(svc.people.get("bob").keys) == 1 and len(svc.people.get("carol").keys) == 1
    assert svc.people.get("bob").totp_generation == 1
    # and the one mechanism does not let alice do it alone either: she asks, she cannot
    # approve her own request, bob cannot approve his own change, and nothing is done
    r = svc.people.changes.request("totp", "bob", by=alice, reason="bob lost his phone")
    assert r.quorum == 1  # alice counts as one of the two
    with pytest.raises(AuthError, match="cannot approve"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=alice)
    with pytest.raises(AuthError, match="about bob"):
        svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    assert svc.approvals.get(r.id).state == "open"
    # approved by carol, only bob completes it, signed in with his own key
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    with pytest.raises(AuthError, match="only bob"):
        svc.people.changes.begin(r.id, by=alice)
    assert svc.people.get("bob").totp_generation == 1
    assert svc.audit.verify().ok


def test_refusals_are_logged(quorum_home: Service, cast: Cast) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    with pytest.raises(AuthError):
        svc.people.disable("bob", by=alice, reason="gone")
    (e,) = [x for x in svc.audit.entries(action="person.disable") if x["outcome"] == "refused"]
    assert "after bootstrap" in e["details"]["reason"]
    assert svc.people.get("bob").active


def test_a_custodians_direct_change_after_bootstrap_fails_verify(
    quorum_home: Service, cast: Cast
) -> None:
    """A log edited to hold a change no quorum approved: alice's own signature on a new
    key for bob (accepted by verify before: custodians could replace keys)."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    _, new = _fresh_key()
    svc.ctx.record(alice, "person.key.replace", "person:bob", details={**new,
                   "previous_key_id": svc.people.get("bob").key.key_id,  # type: ignore[union-attr]
                   "protection": "passphrase"})  # fmt: skip
    _verify_fails(svc, "person.key.replace of bob after bootstrap", "without an approved")


@pytest.mark.parametrize("action", ["person.totp.replace", "person.disable", "person.enable"])
def test_a_custodians_direct_totp_or_state_change_after_bootstrap_fails_verify(
    quorum_home: Service, cast: Cast, action: str
) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    svc.ctx.record(alice, action, "person:bob", details={"generation": 2, "reason": "x"})
    _verify_fails(svc, f"{action} of bob after bootstrap")


def test_the_home_key_has_no_authority_over_keys_after_bootstrap(
    quorum_home: Service, cast: Cast
) -> None:
    """The home's own key (the KSK holder's) signs a new TOTP generation for bob: a
    direct change accepted by verify before (no rule covered person.totp.replace)."""
    svc = quorum_home
    with pytest.raises(AuthError, match="needs one of them"):
        svc.people.begin_enrolment("mallory", ["custodian"], passphrase=_pw(NEW_PW), by=None)
    home = svc.ctx.home_actor()
    svc.ctx.record(home, "person.totp.replace", "person:bob", details={"generation": 2})
    _verify_fails(svc, "person.totp.replace of bob after bootstrap")


def test_the_home_key_cannot_enrol_after_bootstrap_even_through_a_request(
    quorum_home: Service,
) -> None:
    svc = quorum_home
    home = svc.ctx.home_actor()
    payload = {
        "change": "enrol",
        "person": "mallory",
        "roles": ["custodian"],
        "person_kind": "person",
    }
    payload["scope"] = change_scope(payload)
    svc.ctx.record(home, "person.change.request", "request:forged", details={
        "kind": "person.change", **payload, "quorum": 2, "expires_at": "2999"})  # fmt: skip
    _verify_fails(svc, "home asked to enrol mallory without holding the custodian role")


def test_a_completion_before_its_quorum_fails_verify(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """alice asks for a new key for bob and writes its completion herself, with a key
    she made, before anyone approved: the entry names the request, but verify finds it
    open (and the service refuses: only an approved change completes)."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("key", "bob", by=alice, reason="suspected compromise")
    with pytest.raises(ConflictError, match="only an approved change"):
        svc.people.changes.begin(r.id, passphrase=_pw(NEW_PW))
    priv, new = _fresh_key()
    forged = Actor("bob", ("custodian",), new["key_id"], priv)
    svc.ctx.record(forged, "person.key.replace", "person:bob", details={
        **new, "request": r.id, "scope": r.payload["scope"], "protection": "passphrase",
        "previous_key_id": None})  # fmt: skip
    line = _verify_fails(svc, "completes request", "while it is open")
    assert _example_verifier(svc) == (8, line)  # the independent verifier agrees


def test_a_completion_with_another_key_than_approved_fails_verify(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """bob's lost-key request names his new key; whoever completes it with another key
    (theirs) is refused by verify, even after the quorum approved."""
    svc = quorum_home
    r = svc.people.changes.request_own_key("bob", _pw(NEW_PW), reason="forgot passphrase")
    for who in (cast.alice, carol):
        svc.approvals.approve(r.id, next_code(svc, who), by=unlock(svc, who))
    priv, new = _fresh_key()
    forged = Actor("bob", ("custodian",), new["key_id"], priv)
    svc.ctx.record(forged, "person.key.replace", "person:bob", details={
        **new, "request": r.id, "scope": r.payload["scope"], "protection": "passphrase",
        "previous_key_id": None})  # fmt: skip
    _verify_fails(svc, "announces another key than request")


def test_an_approval_by_the_subject_fails_verify(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """The catalog refuses bob deciding his own change; a log in which he did is refused."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("disable", "bob", by=alice, reason="left the company")
    bob = unlock(svc, cast.bob)
    d = {"kind": "person.change", "step": 1, "approvals": 1, "quorum": 1, "state": "open"}
    svc.ctx.record(bob, "request.approve", f"request:{r.id}", details=d)
    _verify_fails(svc, "a change about themselves")


def test_a_change_applied_other_than_requested_fails_verify(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """A quorum approval whose entry disables someone else than the request named."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("disable", "bob", by=alice, reason="left the company")
    svc.ctx.record(unlock(svc, carol), "request.approve", f"request:{r.id}", details={
        "kind": "person.change", "step": 1, "approvals": 1, "quorum": 1, "state": "done",
        "person_change": {"change": "disable", "person": "alice",
                          "scope": r.payload["scope"]}})  # fmt: skip
    _verify_fails(svc, "other than it asked")


# ---------------------------------------------------------------- the flows


def test_bootstrap_lasts_until_the_first_quorum_kek(svc: Service, cast: Cast) -> None:
    """The default test home (a single-custody KEK) is in bootstrap: direct changes work
    and a request is refused with the direct command to use."""
    alice = unlock(svc, cast.alice)
    assert svc.people.changes.in_bootstrap()
    with pytest.raises(ConflictError, match="bootstrap"):
        svc.people.changes.request("disable", "bob", by=alice, reason="x")
    svc.people.replace_key("oscar", _pw("oscar new passphrase long enough"), by=alice)
    assert svc.audit.verify().ok


def test_a_lost_key_is_requested_by_its_subject_with_the_new_key(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    svc = quorum_home
    old = svc.people.get("bob").key
    r = svc.people.changes.request_own_key("bob", _pw(NEW_PW), reason="forgot passphrase")
    assert r.requester == "bob" and r.quorum == 2 and r.payload["key_id"] != old.key_id  # type: ignore[union-attr]
    (req,) = [e for e in svc.audit.entries(action="person.change.request")]
    assert req["key_id"] == r.payload["key_id"]  # signed by the new key it names
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    assert svc.approvals.get(r.id).state == "open"  # 1 of 2: bob does not count
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert svc.approvals.get(r.id).state == "approved"
    with pytest.raises(AuthError, match="wrong passphrase"):
        svc.people.changes.begin(r.id, passphrase=_pw("not the passphrase bob chose now"))
    c = svc.people.changes.begin(r.id, passphrase=_pw(NEW_PW))
    p = svc.people.changes.complete(c)
    assert p.key is not None and p.key.key_id == r.payload["key_id"]
    assert svc.approvals.get(r.id).state == "done"
    bob = svc.auth.unlock("bob", _pw(NEW_PW))
    assert bob.key_id == p.key.key_id
    with pytest.raises(AuthError):
        svc.auth.unlock("bob", _pw(cast.bob.passphrase))
    assert svc.audit.verify().ok
    with pytest.raises(ConflictError, match="is done"):
        svc.people.changes.begin(r.id, passphrase=_pw(NEW_PW))


def test_a_new_totp_is_shown_to_its_owner_at_completion(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("totp", "bob", by=alice, reason="bob lost his phone")
    assert "totp" not in str(r.payload).lower().replace("'change': 'totp'", "")
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    bob = unlock(svc, cast.bob)
    c = svc.people.changes.begin(r.id, by=bob)
    assert c.totp is not None and "redacted" in repr(c)
    with pytest.raises(AuthError, match="does not match"):
        svc.people.changes.complete(
            c, "000000" if P.hotp(c.totp, P.current_step(svc.clock())) != "000000" else "111111"
        )
    secret = SecretBytes(bytes(c.totp.reveal()))
    svc.people.changes.complete(c, P.hotp(secret, P.current_step(svc.clock())))
    assert svc.people.get("bob").totp_generation == 2
    # no secret in the log
    assert P.totp_b32(secret) not in (svc.home.audit / "segment-000001.jsonl").read_text()
    bob2 = Enrolled("bob", cast.bob.passphrase, secret)
    r2 = svc.people.changes.request("disable", "carol", by=alice, reason="test")
    svc.approvals.approve(r2.id, next_code(svc, bob2), by=unlock(svc, bob2))  # new code works
    assert not svc.people.get("carol").active
    assert svc.audit.verify().ok


def test_enrolment_after_bootstrap(quorum_home: Service, cast: Cast, carol: Enrolled) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request(
        "enrol", "dave", by=alice, reason="new hire", roles=["custodian"]
    )
    assert r.quorum == 1
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    c = svc.people.changes.begin(r.id, passphrase=_pw("dave test passphrase long enough"))
    assert c.totp is not None
    code = P.hotp(c.totp, P.current_step(svc.clock()))
    # alice, who asked, cannot witness it (she did not approve): carol, who did, watches
    with pytest.raises(AuthError, match="in front of one of the custodians who approved"):
        svc.people.changes.complete(c, code, witness=alice, witness_code=next_code(svc, cast.alice))
    with pytest.raises(AuthError, match="in front of one of the custodians who approved"):
        svc.people.changes.complete(c, code)
    p = svc.people.changes.complete(
        c, code, witness=unlock(svc, carol), witness_code=next_code(svc, carol)
    )
    assert p.name == "dave" and p.roles == ("custodian",) and p.active
    (e,) = [x for x in svc.audit.entries(action="person.enrol") if x["subject"] == "person:dave"]
    assert e["actor"] == "dave" and e["key_id"] == p.key.key_id  # type: ignore[union-attr]
    assert e["details"]["request"] == r.id
    assert svc.audit.verify().ok, svc.audit.verify().summary()
    svc.auth.unlock("dave", _pw("dave test passphrase long enough"))


def test_disable_and_roles_apply_at_quorum(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("roles", "oscar", by=alice, reason="also audits",
                                   roles=["auditor", "operator"])  # fmt: skip
    assert svc.people.get("oscar").roles == ("operator",)
    done = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert done.state == "done" and svc.people.get("oscar").roles == ("auditor", "operator")
    seen: list[tuple[str, list[str], str]] = []
    svc.people.changes.watch_holders(lambda ev, keks, who: seen.append((ev, keks, who)))
    r = svc.people.changes.request("disable", "bob", by=alice, reason="left")
    done = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert done.state == "done" and not svc.people.get("bob").active
    assert seen == [("disabled", ["vault"], "bob")]
    (e,) = [
        x for x in svc.audit.entries(action="request.approve") if x["subject"] == f"request:{r.id}"
    ]
    assert e["details"]["holder_of"] == ["vault"]
    assert svc.audit.verify().ok


def test_a_holder_key_replacement_gives_no_share(
    quorum_home: Service, cast: Cast, carol: Enrolled, tmp_path: Path
) -> None:
    """bob's new holder key is announced and kept under his personal key, but no
    manifest names it: a backup wraps to the manifest's keys, and restoring still
    needs two holders' approvals."""
    svc = quorum_home
    man = svc.keys.manifest("vault", 1)
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("holder", "bob", by=alice, reason="laptop stolen")
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    bob = unlock(svc, cast.bob)
    c = svc.people.changes.begin(r.id, by=bob)
    svc.people.changes.complete(c)
    st = svc.ctx.log_state()
    fp = st.next_holder_keys[("vault", 1, "bob")]
    assert fp not in {h.fingerprint for h in svc.keys.manifest("vault", 1).holders}
    assert svc.keys.manifest("vault", 1).digest() == man.digest()
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(b"x" * 100), tmp_path / "h.cbk", by=bot, kek="vault")
    assert b.kek == "vault"
    assert svc.audit.verify().ok


def test_too_few_other_custodians_refuses_the_request(quorum_home: Service, cast: Cast) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("disable", "oscar", by=alice, reason="left")
    assert r.quorum == 1
    with pytest.raises(CustodianError, match="reason"):
        svc.people.changes.request("disable", "oscar", by=alice, reason="  ")


def test_whoever_asked_for_a_colleagues_new_key_cannot_complete_it_as_them(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """alice asks for a new key for bob, carol approves (believing bob will complete it
    at the workstation), and alice completes it herself with a passphrase she chose:
    refused without bob's current TOTP code (bob, who lost his authenticator too, asks
    himself with the new key made in front of the approvers)."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("key", "bob", by=alice, reason="bob forgot it")
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    with pytest.raises(AuthError, match="needs bob's current TOTP code"):
        svc.people.changes.begin(r.id, passphrase=_pw("alice chose this for bob herself"))
    with pytest.raises(AuthError, match="not valid now"):
        svc.people.changes.begin(
            r.id, passphrase=_pw("alice chose this for bob herself"), code="000000"
        )
    assert len(svc.people.get("bob").keys) == 1
    c = svc.people.changes.begin(r.id, passphrase=_pw(NEW_PW), code=next_code(svc, cast.bob))
    p = svc.people.changes.complete(c)
    assert len(p.keys) == 2
    assert svc.audit.verify().ok


def test_a_disable_that_would_leave_fewer_custodians_than_the_quorum_is_refused(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("disable", "carol", by=alice, reason="left")
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    with pytest.raises(ConflictError, match="fewer than the quorum"):
        svc.people.changes.request("disable", "bob", by=alice, reason="left too")
    with pytest.raises(ConflictError, match="fewer than the quorum"):
        svc.people.changes.request("roles", "bob", by=alice, reason="x", roles=["operator"])


def _example_verifier(svc: Service) -> tuple[int, str]:
    import subprocess
    import sys

    docs = Path(__file__).resolve().parents[2] / "docs"
    r = subprocess.run(
        [sys.executable, str(docs / "audit_verify_example.py"), str(svc.home.audit), "--strict"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return r.returncode, r.stdout.strip().splitlines()[-1]


def test_the_example_verifier_follows_every_change_and_refuses_the_same_forgery(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """docs/audit_verify_example.py implements section 14: a log with a lost key, an
    enrolment, a TOTP change, new roles and a disable verifies with both, with the same
    summary; a direct change after bootstrap is refused by both with the same words."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request_own_key("bob", _pw(NEW_PW), reason="forgot passphrase")
    for who in (cast.alice, carol):
        svc.approvals.approve(r.id, next_code(svc, who), by=unlock(svc, who))
    svc.people.changes.complete(svc.people.changes.begin(r.id, passphrase=_pw(NEW_PW)))
    r = svc.people.changes.request("enrol", "dave", by=alice, reason="new", roles=["custodian"])
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    c = svc.people.changes.begin(r.id, passphrase=_pw("dave test passphrase long enough"))
    assert c.totp is not None
    first = P.hotp(c.totp, P.current_step(svc.clock()))
    w = unlock(svc, carol)
    svc.people.changes.complete(c, first, witness=w, witness_code=next_code(svc, carol))
    r = svc.people.changes.request("roles", "oscar", by=alice, reason="x",
                                   roles=["auditor", "operator"])  # fmt: skip
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    r = svc.people.changes.request("disable", "audrey", by=alice, reason="left")
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    ours = svc.audit.verify()
    assert ours.ok, ours.summary()
    code, line = _example_verifier(svc)
    assert code == 0 and line == ours.summary()
    svc.ctx.record(alice, "person.disable", "person:oscar", details={"reason": "direct"})
    code, line = _example_verifier(svc)
    assert code == 8 and line == svc.audit.verify().summary()
    assert "person.disable of oscar after bootstrap" in line


def test_a_denied_lost_key_request_leaves_no_key_behind_and_enable_needs_a_quorum(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    svc = quorum_home
    r = svc.people.changes.request_own_key("bob", _pw(NEW_PW), reason="forgot passphrase")
    kid = r.payload["key_id"]
    assert svc.ctx.keyring.get(f"sign:bob:{kid}") is not None  # no authority: not in catalog
    svc.approvals.deny(r.id, next_code(svc, carol), "not bob", by=unlock(svc, carol))
    svc.approvals.requests()  # any read sweeps what an ended request left
    assert svc.ctx.keyring.get(f"sign:bob:{kid}") is None
    assert svc.ctx.keyring.get(f"personal:bob:{kid}") is None
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("disable", "oscar", by=alice, reason="leave")
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert not svc.people.get("oscar").active
    r = svc.people.changes.request("enable", "oscar", by=alice, reason="back")
    assert svc.people.get("oscar").active is False
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert svc.people.get("oscar").active
    unlock(svc, cast.oscar)
    assert svc.audit.verify().ok
    code, line = _example_verifier(svc)
    assert code == 0, line


def test_an_enrolment_completed_by_its_requester_alone_fails_verify(
    quorum_home: Service, cast: Cast, carol: Enrolled
) -> None:
    """The sybil: alice asks to enrol dave, carol approves, and alice completes it herself
    with a key she made, no approver watching. The service refuses (no witness); a log
    written that way is refused by both verifiers."""
    svc = quorum_home
    alice = unlock(svc, cast.alice)
    r = svc.people.changes.request("enrol", "dave", by=alice, reason="new", roles=["custodian"])
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    priv, new = _fresh_key()
    dave = Actor("dave", ("custodian",), new["key_id"], priv)
    svc.ctx.record(dave, "person.enrol", "person:dave", details={
        **new, "request": r.id, "scope": r.payload["scope"], "roles": ["custodian"],
        "kind": "person", "protection": "passphrase", "totp": True})  # fmt: skip
    line = _verify_fails(svc, "without an approver witnessing its new key")
    assert _example_verifier(svc) == (8, line)


def test_a_migration_to_quorum_ends_bootstrap_too(svc: Service, cast: Cast, alice: Actor) -> None:
    """The first quorum KEK ends bootstrap whether it is made or migrated to: otherwise a
    home whose only KEK was migrated would leave the home key its authority."""
    carol = enrol(svc, "carol", ("custodian",), alice)
    svc.clock = Clock()
    hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol)]
    assert svc.people.changes.in_bootstrap()
    svc.migrations.to_quorum("backups", hs, 2, by=hs[0], code=next_code(svc, cast.alice))
    assert not svc.people.changes.in_bootstrap()
    with pytest.raises(AuthError, match=r"needs custodians other than|request"):
        svc.people.replace_key("oscar", _pw("oscar new passphrase long enough"), by=hs[0])
    assert svc.audit.verify().ok
