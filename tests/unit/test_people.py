"""People, signing keys, TOTP and sign-in: known answers and every refusal."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from custodian import people as P
from custodian.errors import ConflictError, CustodianError
from custodian.people import AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, enrol, unlock

RFC6238_SHA1 = [  # RFC 6238 appendix B, SHA-1 column, 8 digits
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("t", "code"), RFC6238_SHA1)
def test_rfc6238_known_answers(t: int, code: str) -> None:
    secret = SecretBytes(b"12345678901234567890")
    assert P.hotp(secret, t // 30, digits=8) == code


def test_window_is_one_step_either_side() -> None:
    secret = P.new_totp_secret()
    now = 1_700_000_000.0
    step = P.current_step(now)
    for off in (-1, 0, 1):
        assert P.match_step(secret, P.hotp(secret, step + off), now) == step + off
    for off in (-2, 2):
        assert P.match_step(secret, P.hotp(secret, step + off), now) is None
    assert P.match_step(secret, "12345", now) is None
    assert P.match_step(secret, "abcdef", now) is None


def test_codes_from_oathtool_are_accepted(svc: Service, cast: Cast) -> None:
    assert shutil.which("oathtool"), "make test installs oathtool"
    assert cast.bob.totp is not None
    b32 = base64.b32encode(bytes(cast.bob.totp.reveal())).decode()
    # enrolment used the current step, so ask oathtool for the next one
    at = f"@{int(time.time()) + 30}"
    code = subprocess.run(
        ["oathtool", "--totp", "-b", "-N", at, b32],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()
    actor = svc.auth.sign_in("bob", SecretBytes(b"bob test passphrase long enough"), code)
    assert actor.name == "bob"


def test_sign_in_then_replay_is_refused(svc: Service, cast: Cast) -> None:
    # enrolment burned the current step for bob already; use the next step's code
    code = cast.bob.code(+1)
    svc.auth.sign_in("bob", SecretBytes(b"bob test passphrase long enough"), code)
    with pytest.raises(AuthError, match="already used"):
        svc.auth.sign_in("bob", SecretBytes(b"bob test passphrase long enough"), code)
    refused = svc.audit.entries(outcome="refused")
    assert refused[-1]["details"]["reason"] == "TOTP code replayed"
    assert code not in str(refused[-1])


def test_stale_code_and_wrong_passphrase_are_refused(svc: Service, cast: Cast) -> None:
    with pytest.raises(AuthError, match="not valid now"):
        svc.auth.sign_in("bob", SecretBytes(b"bob test passphrase long enough"), cast.bob.code(-2))
    with pytest.raises(AuthError, match="wrong passphrase"):
        svc.auth.sign_in("bob", SecretBytes(b"bob-wrong"), cast.bob.code(+1))
    reasons = [e["details"]["reason"] for e in svc.audit.entries(outcome="refused")]
    assert reasons[-2:] == ["TOTP code did not match", "wrong passphrase"]


def test_unknown_name_is_logged_as_an_hmac(svc: Service) -> None:
    with pytest.raises(AuthError, match="nobody named"):
        svc.auth.unlock("my-password-typed-in-the-name-box", SecretBytes(b"x" * 8))
    e = svc.audit.entries(outcome="refused")[-1]
    assert "my-password" not in str(e)
    assert e["subject"].startswith("person:hmac-sha256:")


def test_enrolment_needs_the_code_back(svc: Service, alice: object) -> None:
    pending = svc.people.begin_enrolment(
        "carol",
        ("auditor",),
        passphrase=SecretBytes(b"carol passphrase long enough here"),
        by=alice,
    )  # type: ignore[arg-type]
    assert "redacted" in repr(pending) and pending.secret_b32() not in repr(pending)
    assert pending.secret_b32() in pending.uri("home")
    assert len(pending.qr("home")) > 10
    with pytest.raises(AuthError, match="nothing was enrolled"):
        svc.people.complete_enrolment(pending, "000000", by=alice)  # type: ignore[arg-type]
    assert "carol" not in {p.name for p in svc.people.list()}


def test_enrolment_rules(svc: Service, cast: Cast) -> None:
    a = unlock(svc, cast.alice)
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        enrol(svc, "mallory", ("custodian",), oscar)
    with pytest.raises(AuthError, match="has custodians"):
        enrol(svc, "mallory", ("custodian",), None)
    with pytest.raises(ConflictError):
        enrol(svc, "bob", ("custodian",), a)
    with pytest.raises(CustodianError, match="operator role only"):
        enrol(svc, "cron2", ("custodian",), a, service=True)
    with pytest.raises(CustodianError, match="passphrase is short"):
        enrol(svc, "short", ("auditor",), a, passphrase="short")
    with pytest.raises(CustodianError, match="not a valid person name"):
        enrol(svc, "Bad Name", ("auditor",), a)


def test_roles_are_enforced(svc: Service, cast: Cast, tmp_path: Path) -> None:
    audrey = unlock(svc, cast.audrey)
    with pytest.raises(AuthError, match="operator role"):
        svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=audrey)
    assert not (tmp_path / "x.cbk").exists()
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.add_version("backups", by=oscar)
    assert svc.keys.get("backups").current_version == 1


def test_disabled_person_cannot_act_and_old_entries_verify(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    a = unlock(svc, cast.alice)
    oscar = unlock(svc, cast.oscar)
    svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=oscar)
    svc.people.disable("oscar", by=a, reason="left the team")
    with pytest.raises(AuthError, match="disabled"):
        unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="not an active person"):  # an actor unlocked before
        svc.backups.encrypt(io.BytesIO(b"y"), tmp_path / "y.cbk", by=oscar)
    assert svc.audit.verify().ok


def test_last_custodian_cannot_be_disabled(svc: Service, cast: Cast) -> None:
    a = unlock(svc, cast.alice)
    svc.people.disable("bob", by=a)
    with pytest.raises(CustodianError, match="last active custodian"):
        svc.people.disable("alice", by=a)


def test_replaced_key_keeps_old_entries_verifiable(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    a = unlock(svc, cast.alice)
    oscar = unlock(svc, cast.oscar)
    svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=oscar)
    svc.people.replace_key("oscar", SecretBytes(b"oscar new passphrase long enough"), by=a)
    with pytest.raises(AuthError, match="replaced"):
        svc.backups.encrypt(io.BytesIO(b"y"), tmp_path / "y.cbk", by=oscar)
    with pytest.raises(AuthError, match="wrong passphrase"):
        unlock(svc, cast.oscar)
    new = svc.auth.unlock("oscar", SecretBytes(b"oscar new passphrase long enough"))
    svc.backups.encrypt(io.BytesIO(b"z"), tmp_path / "z.cbk", by=new)
    res = svc.audit.verify()
    assert res.ok, res.summary()
    assert len(svc.people.get("oscar").keys) == 2


def test_replace_totp(svc: Service, cast: Cast) -> None:
    bob = unlock(svc, cast.bob)
    pending = svc.people.begin_totp_replacement("bob", by=bob)
    assert pending.totp is not None
    new = SecretBytes(bytes(pending.totp.reveal()))
    with pytest.raises(AuthError, match="old TOTP secret stays"):
        svc.people.complete_totp_replacement(pending, cast.bob.code(+1), by=bob)
    svc.people.complete_totp_replacement(pending, P.hotp(new, P.current_step()), by=bob)
    with pytest.raises(AuthError):
        svc.auth.sign_in("bob", SecretBytes(b"bob test passphrase long enough"), cast.bob.code(+1))
    svc.auth.sign_in(
        "bob", SecretBytes(b"bob test passphrase long enough"), P.hotp(new, P.current_step() + 1)
    )


def test_sign_out_forgets_the_key(svc: Service, cast: Cast) -> None:
    actor = svc.auth.sign_in(
        "alice", SecretBytes(b"alice test passphrase long enough"), cast.alice.code(+1)
    )
    svc.auth.sign_out(actor)
    with pytest.raises(AuthError, match="signed out"):
        actor.sign(b"x")
    assert "key" not in repr(actor).replace("key_id", "")


def test_demo_codes_refused_off_demo(svc: Service) -> None:
    with pytest.raises(AuthError, match="demo home"):
        svc.people.demo_codes()
