"""The policy and the catalog are checked against the signed log (issue 12).

The attacks: someone who can write the home's files (the same OS account, or a restore
of an altered copy) edits ``custodian.toml`` or ``catalog.db`` instead of going through
custodian: a looser policy, the demo flag switched on, a role given by a row edit, a
disabled custodian set active, a KEK version's public key swapped for their own, a
decision added to a request, a catalog that is empty or another program's. Each is
refused before the decision that would read it, with a message naming the difference;
``custodian audit reconcile`` lists them all.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from custodian import approvals as A
from custodian.backends.local import fingerprint
from custodian.config import POLICY_LIMITS, Policy
from custodian.errors import CatalogError, ConfigError, ConflictError, CustodianError
from custodian.ledger import NAME_RE, ROLES
from custodian.people import NAME_RE as PEOPLE_NAME_RE
from custodian.people import ROLES as PEOPLE_ROLES
from custodian.people import Actor
from custodian.service import Service
from custodian.service.reconcile import MismatchError, kek_fingerprint
from tests.conftest import Cast, Clock, enrol, next_code, unlock


def test_the_ledger_s_copies_of_constants_agree() -> None:
    assert ROLES == PEOPLE_ROLES and NAME_RE.pattern == PEOPLE_NAME_RE.pattern
    pub = bytes(range(32))
    assert kek_fingerprint("x25519", pub) == fingerprint("x25519", pub)


def _edit_config(home: Path, key: str, value: str) -> None:
    cfg = home / "custodian.toml"
    lines = cfg.read_text().splitlines()
    out = [f"{key} = {value}" if ln.split(" = ")[0] == key else ln for ln in lines]
    assert out != lines, key
    cfg.write_text("\n".join(out) + "\n")


# ---------------------------------------------------------------- the configuration


def _legal_other(name: str) -> int:
    _, high, _, _ = POLICY_LIMITS[name]
    v = int(getattr(Policy(), name))
    return v + 1 if v < high else v - 1


@pytest.mark.parametrize("name", list(POLICY_LIMITS))
def test_every_policy_setting_edited_in_the_file_is_refused_at_open(
    svc: Service, home: Path, name: str
) -> None:
    svc.close()
    other = _legal_other(name)
    if name == "auth_lockout_after" and other <= Policy().auth_backoff_after:
        other = Policy().auth_lockout_after + 1
    _edit_config(home, name, str(other))
    with pytest.raises(MismatchError, match=rf"sets policy\.{name} = {other}, but the signed"):
        Service.open(home)
    _edit_config(home, name, str(getattr(Policy(), name)))
    Service.open(home).close()  # put back: opens again


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1e11", "whole number"),
        ("5256000", "outside 1 to 1,440 minutes"),  # ten years
        ('"60"', "whole number"),
        ("true", "whole number"),
        ("-1", "outside"),
        ("0", "outside"),
        ("60.5", "whole number"),
    ],
)
def test_bad_policy_values_are_refused_with_one_line(
    svc: Service, home: Path, value: str, says: str
) -> None:
    svc.close()
    _edit_config(home, "session_minutes", value)
    with pytest.raises(ConfigError, match=says) as e:
        Service.open(home)
    assert "\n" not in str(e.value) and "policy.session_minutes" in str(e.value)


def test_demo_is_fixed_when_the_home_is_made(svc: Service, home: Path) -> None:
    svc.close()
    _edit_config(home, "demo", "true")
    with pytest.raises(MismatchError, match=r"sets demo = true, .*fixed when the home was made"):
        Service.open(home)
    # and even with the file's flag in memory, the codes come only from a demo log
    _edit_config(home, "demo", "false")
    s = Service.open(home)
    try:
        s.ctx.config = replace(s.config, demo=True)
        with pytest.raises(CustodianError, match="demo"):
            s.people.demo_codes()
    finally:
        s.close()


def test_a_demo_home_keeps_its_codes(tmp_path: Path) -> None:
    s = Service.init(tmp_path / "demo", keyring_backend="home-file", demo=True)
    try:
        enrol(s, "alice", ("custodian",), None)
        assert [n for n, _, _ in s.people.demo_codes()] == ["alice"]
        assert s.ctx.log_state().demo
    finally:
        s.close()


def test_tightening_is_direct_and_audited(svc: Service, cast: Cast, alice: Actor) -> None:
    svc.clock = Clock()
    pol = svc.policy.set("session_minutes", 30, by=alice, code=next_code(svc, cast.alice))
    assert isinstance(pol, Policy) and pol.session_minutes == 30
    assert "session_minutes = 30" in svc.home.config.read_text()
    e = svc.audit.entries(action="policy.set")[-1]
    assert e["details"]["setting"] == "session_minutes" and e["details"]["to"] == 30
    shown = {s.name: s for s in svc.policy.show()}
    assert shown["session_minutes"].value == 30 and shown["session_minutes"].set_at == e["seq"]
    svc.close()
    Service.open(svc.home.path).close()  # the file follows the log
    with pytest.raises(ConflictError, match="already 30"):
        Service.open(svc.home.path).policy.set("session_minutes", 30, by=alice)


def test_loosening_needs_the_quorum(svc: Service, cast: Cast, alice: Actor) -> None:
    svc.clock = Clock()
    carol = enrol(svc, "carol", ("custodian",), alice)
    with pytest.raises(CustodianError, match="give a reason"):
        svc.policy.set("retirement_wait_days", 0, by=alice)
    r = svc.policy.set("retirement_wait_days", 0, by=alice, reason="test keys, no waiting")
    assert isinstance(r, A.Request) and r.kind == "policy.change"
    assert svc.ctx.policy.retirement_wait_days == 7  # not yet
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    assert svc.ctx.policy.retirement_wait_days == 7
    done = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert done.state == "done" and svc.ctx.policy.retirement_wait_days == 0
    assert "retirement_wait_days = 0" in svc.home.config.read_text()
    assert svc.audit.verify().ok


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("session_minutes", "5256000", "outside"),
        ("session_minutes", "1e11", "whole number"),
        ("approval_quorum", "1", "outside"),
        ("approval_quorum", "3", "needs 3 active custodians"),
        ("nonsense", "1", "not a policy setting"),
        ("auth_lockout_after", "5", "must be more than"),
    ],
)
def test_policy_set_refuses_bad_values_in_one_line(
    svc: Service, alice: Actor, name: str, value: str, says: str
) -> None:
    with pytest.raises(CustodianError, match=says) as e:
        svc.policy.set(name, value, by=alice, code="000000", reason="x")
    assert "\n" not in str(e.value)


def test_a_forged_policy_entry_without_a_quorum_is_refused(
    svc: Service, home: Path, alice: Actor
) -> None:
    """Someone writes the looser value into the file and signs a policy.set for it."""
    svc.log.append(
        actor=alice.name,
        key_id=alice.key_id,
        sign=alice.sign,
        action="policy.set",
        subject="policy",
        details={"setting": "session_minutes", "from": 60, "to": 600},
    )
    res = svc.audit.verify()
    assert not res.ok and "loosened from 60 to 600 without a quorum" in res.reason
    with pytest.raises(CustodianError, match="does not hold together"):
        svc.backups.encrypt(io.BytesIO(b"x"), home.parent / "x.cbk", by=unlock_bot(svc))


def unlock_bot(svc: Service) -> Actor:
    return svc.auth.unlock("bot", None)


# ---------------------------------------------------------------- the catalog


def test_a_role_given_by_a_row_edit_does_not_count(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    svc.clock = Clock()
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=unlock_bot(svc))
    (tmp_path / "out").mkdir()
    r = svc.restores.request([b.id], "drill", tmp_path / "out", by=unlock(svc, cast.oscar))
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    # audrey the auditor becomes a custodian in the catalog, and approves
    svc.catalog.db.execute("UPDATE people SET roles='auditor,custodian' WHERE name='audrey'")
    audrey = unlock(svc, cast.audrey)
    with pytest.raises(MismatchError, match=r"person:audrey: roles: catalog auditor,custodian"):
        svc.approvals.approve(r.id, next_code(svc, cast.audrey), by=audrey)
    assert svc.approvals.get(r.id).state == "open"
    assert svc.approvals.get(r.id).approvals == ("alice",)


def test_a_disabled_custodian_set_active_cannot_act(svc: Service, cast: Cast) -> None:
    a = unlock(svc, cast.alice)
    svc.people.disable("bob", by=a, reason="left")
    svc.catalog.db.execute("UPDATE people SET state='active', disabled_at=NULL WHERE name='bob'")
    bob = unlock(svc, cast.bob)  # the catalog lets the key open
    with pytest.raises(
        MismatchError, match=r"person:bob: state: catalog active, signed log disabled"
    ):
        svc.keys.add_version("backups", by=bob)
    assert svc.keys.get("backups").current_version == 1
    assert svc.audit.verify().ok  # nothing signed by bob after his disablement


def test_a_swapped_signing_key_cannot_act(svc: Service, cast: Cast) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from custodian import people as P

    # the attacker's own key, put in the catalog as audrey's

    fake = ed25519.Ed25519PrivateKey.generate()
    pub = fake.public_key().public_bytes_raw()
    svc.catalog.db.execute(
        "UPDATE signing_keys SET key_id=?, public_key=? WHERE person='audrey'",
        (P.key_id(pub), pub),
    )
    forged = Actor("audrey", ("auditor",), P.key_id(pub), fake)
    with pytest.raises(MismatchError, match="person:audrey: current signing key"):
        svc.audit.checkpoint(by=forged)
    assert svc.audit.verify().ok


def test_a_swapped_kek_public_key_wraps_nothing(svc: Service, tmp_path: Path) -> None:
    from custodian.backends.local import generate

    _, pub = generate("x25519")  # the attacker keeps the private half
    svc.catalog.db.execute(
        "UPDATE kek_versions SET public_key=? WHERE kek='backups' AND version=1", (pub,)
    )
    with pytest.raises(MismatchError, match="kek:backups/v1: public key"):
        svc.backups.encrypt(io.BytesIO(b"secret"), tmp_path / "x.cbk", by=unlock_bot(svc))
    assert not (tmp_path / "x.cbk").exists()
    # and with the fingerprint changed to match, the log's fingerprint still differs
    svc.catalog.db.execute(
        "UPDATE kek_versions SET fingerprint=? WHERE kek='backups' AND version=1",
        (fingerprint("x25519", pub),),
    )
    with pytest.raises(MismatchError, match="kek:backups/v1: fingerprint"):
        svc.backups.encrypt(io.BytesIO(b"secret"), tmp_path / "x.cbk", by=unlock_bot(svc))
    assert svc.backups.total() == 0


def test_a_decision_added_to_the_catalog_does_not_count(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    svc.clock = Clock()
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=unlock_bot(svc))
    (tmp_path / "out").mkdir()
    r = svc.restores.request([b.id], "drill", tmp_path / "out", by=unlock(svc, cast.oscar))
    A.add_decision(svc.catalog.db, r.id, A.Decision("bob", "approve", A.stamp(time.time()), 1))
    with pytest.raises(MismatchError, match="decisions: catalog bob approve, signed log none"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    assert svc.approvals.get(r.id).session is None


def test_custodians_removed_from_the_catalog_do_not_reopen_bootstrap(
    svc: Service, cast: Cast
) -> None:
    svc.catalog.db.execute("UPDATE people SET state='disabled' WHERE name IN ('alice', 'bob')")
    with pytest.raises(CustodianError, match="has custodians"):
        enrol(svc, "mallory", ("custodian",), None)
    assert "mallory" not in {p.name for p in svc.people.list()}


def test_a_session_added_to_the_catalog_unwraps_nothing(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    svc.clock = Clock()
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=unlock_bot(svc))
    (tmp_path / "out").mkdir()
    r = svc.restores.request([b.id], "drill", tmp_path / "out", by=unlock(svc, cast.oscar))
    sid = A.new_id()
    db = svc.catalog.db
    exp = A.stamp(svc.clock() + 3600)
    A.add_session(db, A.Session(sid, r.id, A.stamp(svc.clock()), exp, "open", None))
    db.execute("UPDATE requests SET state='approved' WHERE id=?", (r.id,))
    with pytest.raises(MismatchError, match="session: catalog"):
        svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- reconcile


def test_reconcile_lists_every_difference(svc: Service, cast: Cast, tmp_path: Path) -> None:
    svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=unlock_bot(svc))
    res, diffs = svc.audit.reconcile()
    assert res.ok and diffs == []
    db = svc.catalog.db
    db.execute("UPDATE people SET roles='custodian,operator' WHERE name='oscar'")
    db.execute("UPDATE people SET state='disabled' WHERE name='audrey'")
    db.execute("UPDATE kek_versions SET fingerprint='0000' WHERE kek='backups'")
    db.execute("UPDATE backups SET label='renamed'")
    db.execute("DELETE FROM totp WHERE person='bob'")  # not recorded in the log: not a difference
    _, diffs = svc.audit.reconcile()
    said = [str(d) for d in diffs]
    assert any(s.startswith("person:oscar: roles: catalog custodian,operator") for s in said)
    assert any(s.startswith("person:audrey: state: catalog disabled") for s in said)
    assert any(s.startswith("kek:backups/v1: fingerprint: catalog 0000") for s in said)
    assert any(".: label: catalog renamed" in s or ": label: catalog renamed" in s for s in said)
    assert len(diffs) == 4, said


# ---------------------------------------------------------------- the catalog file itself


def _catalog_bytes(home: Path) -> bytes:
    return (home / "catalog.db").read_bytes()


def test_an_empty_catalog_file_is_refused_not_rebuilt(svc: Service, home: Path) -> None:
    svc.close()
    (home / "catalog.db").write_bytes(b"")
    for side in ("catalog.db-wal", "catalog.db-shm"):
        (home / side).unlink(missing_ok=True)
    with pytest.raises(CatalogError, match=r"empty \(0 bytes\)"):
        Service.open(home)
    assert _catalog_bytes(home) == b""


def test_a_foreign_sqlite_file_is_refused(svc: Service, home: Path, tmp_path: Path) -> None:
    svc.close()
    for side in ("catalog.db-wal", "catalog.db-shm"):
        (home / side).unlink(missing_ok=True)
    (home / "catalog.db").unlink()
    db = sqlite3.connect(home / "catalog.db")
    db.execute("CREATE TABLE notes(text)")
    db.commit()
    db.close()
    (home / "catalog.db").chmod(0o600)
    before = _catalog_bytes(home)
    with pytest.raises(CatalogError, match="not a custodian catalog"):
        Service.open(home)
    assert _catalog_bytes(home) == before


def test_another_home_s_catalog_is_refused(svc: Service, home: Path, tmp_path: Path) -> None:
    other = Service.init(tmp_path / "other", keyring_backend="home-file")
    other.close()
    svc.close()
    for side in ("catalog.db-wal", "catalog.db-shm"):
        (home / side).unlink(missing_ok=True)
    shutil.copy(tmp_path / "other" / "catalog.db", home / "catalog.db")
    with pytest.raises(MismatchError, match="belongs to home"):
        Service.open(home)
