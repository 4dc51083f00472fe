"""The audit log's own rules (issue 12): who may announce, replace, disable and enable
which key; the home identity is not a person; a segment whose last line has no line end;
checkpoint fields of the wrong type; which files are segments.

Every forged announcement here is signed by a real key whose owner chose to sign it (a
custodian going rogue, or someone holding their key): signatures hold, the rules do not.
custodian's verify and the independent example verifier (docs/audit_verify_example.py)
must both refuse it, at the same entry, with the same words.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from custodian import people as P
from custodian.audit import verify
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _new_pub() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()


def _announce(pub: bytes, **extra: Any) -> dict[str, Any]:
    return {"key_id": P.key_id(pub), "public_key": base64.b64encode(pub).decode(), **extra}


def _enrol_details(pub: bytes, roles: list[str], kind: str = "person") -> dict[str, Any]:
    return _announce(pub, roles=roles, kind=kind, protection="passphrase", totp=True)


def _sign(svc: Service, by: Actor, action: str, subject: str, details: dict[str, Any]) -> int:
    e = svc.log.append(
        actor=by.name,
        key_id=by.key_id,
        sign=by.sign,
        action=action,
        subject=subject,
        details=details,
    )
    return int(e["seq"])


def _example(svc: Service, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, str(DOCS / "audit_verify_example.py"), str(svc.home.audit), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode in (0, 8), r.stderr
    return r.stdout.strip().splitlines()[-1]


Forgery = Callable[[Service, Cast, Actor], tuple[int, str]]


def _unknown_replaced(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.key.replace", "person:mallory", _announce(_new_pub()))
    return seq, "a key was announced for mallory, who was never enrolled"


def _enrolled_as_home(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    d = _enrol_details(_new_pub(), ["custodian"])
    seq = _sign(svc, alice, "person.enrol", "person:home", d)
    return seq, "'home' is the home's own identity: no person is enrolled under that name"


def _someone_elses_key(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    bob = svc.people.get("bob").key
    assert bob is not None
    d = _enrol_details(bytes(bob.public_key), ["operator"])
    seq = _sign(svc, alice, "person.enrol", "person:mallory", d)
    return seq, f"the key {bob.key_id[:12]}… announced for mallory already belongs to bob"


def _someone_elses_key_on_replace(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    bob = svc.people.get("bob").key
    assert bob is not None
    seq = _sign(svc, alice, "person.key.replace", "person:oscar", _announce(bytes(bob.public_key)))
    return seq, f"the key {bob.key_id[:12]}… announced for oscar already belongs to bob"


def _the_home_key_for_a_person(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    home_key = next(p for p in svc.people.list(include_home=True) if p.name == "home").key
    assert home_key is not None
    seq = _sign(
        svc, alice, "person.key.replace", "person:alice", _announce(bytes(home_key.public_key))
    )
    return seq, (
        f"the key {home_key.key_id[:12]}… announced for alice already belongs to the home identity"
    )


def _own_old_key_again(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    old = svc.people.get("oscar").key
    assert old is not None
    svc.people.replace_key("oscar", SecretBytes(b"oscar second passphrase long enough"), by=alice)
    seq = _sign(svc, alice, "person.key.replace", "person:oscar", _announce(bytes(old.public_key)))
    return seq, f"oscar's key {old.key_id[:12]}… was announced before (keys are never reused)"


def _home_key_replaced(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.key.replace", "person:home", _announce(_new_pub()))
    return seq, "the home identity is not a person: its key is never replaced"


def _home_disabled(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.disable", "person:home", {"reason": ""})
    return seq, "the home identity is not a person: it is never disabled or enabled"


def _unknown_disabled(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.disable", "person:nobody", {"reason": ""})
    return seq, "the state of nobody was changed, who was never enrolled"


def _enabled_while_active(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.enable", "person:bob", {})
    return seq, "bob is not disabled"


def _disabled_twice(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    first = svc.people.disable("oscar", by=alice)
    assert first.state == "disabled"
    seq = _sign(svc, alice, "person.disable", "person:oscar", {"reason": "again"})
    return seq, "oscar was already disabled"


def _last_custodian_disabled(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    svc.people.disable("bob", by=alice)
    seq = _sign(svc, alice, "person.disable", "person:alice", {"reason": "bye"})
    return seq, "disabling alice leaves the home with no active custodian"


def _bad_roles(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    seq = _sign(svc, alice, "person.enrol", "person:eve", _enrol_details(_new_pub(), ["root"]))
    return seq, "eve's roles are not one or more of custodian, operator, auditor"


def _service_custodian(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    d = _enrol_details(_new_pub(), ["custodian"], kind="service")
    seq = _sign(svc, alice, "person.enrol", "person:cron", d)
    return seq, "cron is a service identity, which holds the operator role only"


def _bad_name(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    d = _enrol_details(_new_pub(), ["auditor"])
    seq = _sign(svc, alice, "person.enrol", "person:Eve Smith", d)
    return seq, "'Eve Smith' is not a valid person name"


def _second_home_init(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    home = svc.ctx.home_actor()
    pub = next(p for p in svc.people.list(include_home=True) if p.name == "home").key
    assert pub is not None
    d = {
        "home_id": svc.config.home_id,
        "key_id": home.key_id,
        "public_key": base64.b64encode(bytes(pub.public_key)).decode(),
        "keyring": "home-file",
        "policy": {"approval_quorum": 2},
    }
    seq = _sign(svc, home, "home.init", f"home:{svc.config.home_id}", d)
    return seq, "home.init appears only as entry 1"


def _wrong_previous_key(svc: Service, cast: Cast, alice: Actor) -> tuple[int, str]:
    d = _announce(_new_pub(), previous_key_id="f" * 32)
    seq = _sign(svc, alice, "person.key.replace", "person:bob", d)
    return seq, "previous_key_id is not bob's current key"


FORGERIES: dict[str, Forgery] = {
    "key for a name never enrolled": _unknown_replaced,
    "a person enrolled as home": _enrolled_as_home,
    "another person's key at enrolment": _someone_elses_key,
    "another person's key at replacement": _someone_elses_key_on_replace,
    "the home's key for a person": _the_home_key_for_a_person,
    "a person's own earlier key again": _own_old_key_again,
    "the home's key replaced": _home_key_replaced,
    "the home disabled": _home_disabled,
    "a name never enrolled disabled": _unknown_disabled,
    "an active person enabled": _enabled_while_active,
    "disabled twice": _disabled_twice,
    "the last custodian disabled": _last_custodian_disabled,
    "roles that do not exist": _bad_roles,
    "a service identity as custodian": _service_custodian,
    "a name that is not a name": _bad_name,
    "a second home.init": _second_home_init,
    "a replacement naming another previous key": _wrong_previous_key,
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_every_forged_announcement_is_refused_by_both_verifiers(
    svc: Service, cast: Cast, alice: Actor, case: str
) -> None:
    assert svc.audit.verify().ok
    seq, reason = FORGERIES[case](svc, cast, alice)
    ours = svc.audit.verify()
    assert not ours.ok and ours.first_bad == seq, ours.summary()
    assert ours.reason == reason, ours.reason
    assert _example(svc) == ours.summary()


def test_the_service_refuses_the_home_identity_as_a_person(svc: Service, alice: Actor) -> None:
    for attempt in (
        lambda: svc.people.replace_key("home", SecretBytes(b"a new home passphrase"), by=alice),
        lambda: svc.people.disable("home", by=alice, reason="test"),
        lambda: svc.people.begin_totp_replacement("home", by=alice),
    ):
        with pytest.raises(AuthError, match="home's own identity, not a person"):
            attempt()
    # the home key still signs, and the log verifies after its next entry
    svc.approvals.expire_due()
    svc.ctx.record(svc.ctx.home_actor(), "home.note", "home", details={})
    res = svc.audit.verify()
    assert res.ok, res.summary()
    refused = svc.audit.entries(outcome="refused")[-3:]
    assert [e["action"] for e in refused] == [
        "person.key.replace",
        "person.disable",
        "person.totp.replace",
    ]


# ---------------------------------------------------------------- the writer


def test_a_segment_whose_last_line_has_no_line_end_is_repaired_not_joined(
    svc: Service, alice: Actor
) -> None:
    seg = sorted(svc.home.audit.glob("segment-*.jsonl"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data.rstrip(b"\n"))  # an editor that drops the final newline
    before = data.count(b"\n")
    svc.audit.checkpoint(by=alice)  # appends one entry
    after = seg.read_bytes()
    assert after.count(b"\n") == before + 1
    assert all(json.loads(line)["seq"] for line in after.splitlines())
    res = svc.audit.verify()
    assert res.ok, res.summary()
    assert _example(svc) == res.summary()


def test_a_torn_last_line_still_refuses_new_entries(svc: Service, alice: Actor) -> None:
    seg = sorted(svc.home.audit.glob("segment-*.jsonl"))[-1]
    seg.write_bytes(seg.read_bytes()[:-40])
    with pytest.raises(Exception, match="damaged, so nothing can be chained"):
        svc.audit.checkpoint(by=alice)


# ---------------------------------------------------------------- checkpoints


def _checkpoint(svc: Service, alice: Actor) -> dict[str, Any]:
    return svc.audit.checkpoint(by=alice)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", True),
        ("seq", "3"),
        ("seq", 3.0),
        ("seq", None),
        ("format", "1"),
        ("format", True),
        ("head", 5),
        ("home_id", None),
        ("time", 0),
        ("actor", ["alice"]),
        ("key_id", 7),
        ("sig", {"a": 1}),
    ],
)
def test_checkpoint_fields_are_type_checked(
    svc: Service, alice: Actor, field: str, value: Any
) -> None:
    cp = _checkpoint(svc, alice)
    cp[field] = value
    res = svc.audit.verify(checkpoint=cp)
    assert not res.ok and res.first_bad is None
    assert res.reason.startswith(f"the checkpoint's {field} is a JSON "), res.reason
    assert "not a custodian audit checkpoint" in res.reason
    assert _example(svc, "--checkpoint", _write(svc, cp)) == res.summary()


def _write(svc: Service, cp: dict[str, Any]) -> str:
    path = svc.home.path.parent / "cp.json"
    path.write_text(json.dumps(cp))
    return str(path)


@pytest.mark.parametrize(("field", "value"), [("seq", 0), ("format", 2), ("seq", -1)])
def test_checkpoint_values_signed_but_impossible_are_refused(
    svc: Service, alice: Actor, field: str, value: int
) -> None:
    from custodian.audit import sign_checkpoint

    cp = _checkpoint(svc, alice)
    body = {k: v for k, v in cp.items() if k != "sig"}
    body[field] = value
    cp = sign_checkpoint(body, alice.sign)
    res = svc.audit.verify(checkpoint=cp)
    assert not res.ok
    assert ("format 1" if field == "format" else "1 or more") in res.reason, res.reason
    assert _example(svc, "--checkpoint", _write(svc, cp)) == res.summary()


def test_a_checkpoint_of_another_home_is_refused(svc: Service, alice: Actor) -> None:
    from custodian.audit import checkpoint_body, sign_checkpoint

    seq, head = svc.log.head()
    cp = sign_checkpoint(
        checkpoint_body("another-home", seq, head, alice.name, alice.key_id), alice.sign
    )
    res = svc.audit.verify(checkpoint=cp)
    assert not res.ok and "another home" in res.reason


# ---------------------------------------------------------------- which files are segments


def test_files_that_are_not_segments_are_ignored(svc: Service, alice: Actor) -> None:
    audit = svc.home.audit
    seg = sorted(audit.glob("segment-*.jsonl"))[0]
    copy = seg.read_bytes()
    for name in (
        "segment-000001.jsonl.bak",
        "segment-000001 (copy).jsonl",
        "segment-1.jsonl",
        "segment-00001.jsonl",
        "notes.txt",
        ".segment-000001.jsonl.swp",
    ):
        (audit / name).write_bytes(copy)
        (audit / name).chmod(0o600)
    assert [p.name for p in svc.log.segments()] == [seg.name]
    res = svc.audit.verify()
    assert res.ok, res.summary()
    assert _example(svc) == res.summary()
    svc.audit.checkpoint(by=alice)  # the writer appends to the real segment
    assert svc.audit.verify().ok


def test_segments_are_read_in_numeric_order(svc: Service, alice: Actor) -> None:
    audit = svc.home.audit
    seg = svc.log.segments()[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:3]))
    rest = audit / "segment-000002.jsonl"
    rest.write_bytes(b"".join(lines[3:]))
    rest.chmod(0o600)
    res = verify(svc.log)
    assert res.ok and res.entries == len(lines), res.summary()
    assert _example(svc) == res.summary()
