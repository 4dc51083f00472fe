"""Break-glass in a home (svc.custody): split with the custodians present, a drill that
changes nothing but its date, and the root key installed again from two shares on a
copy of the home whose keyring is gone (issue 11)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from custodian.errors import CustodianError, MismatchError
from custodian.keystore import KeyringError
from custodian.people import Actor
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock


@pytest.fixture
def carol(svc: Service, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


def _split(svc: Service, cast: Cast, carol: Enrolled, alice: Actor) -> list[str]:
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    with svc.custody.split(holders, by=alice, code=next_code(svc, cast.alice)) as ss:
        assert (ss.threshold, ss.count) == (2, 3)
        return [s.reveal() for s in ss.shares]


def test_split_announces_the_recovery_key_and_stores_no_share(
    svc: Service, cast: Cast, carol: Enrolled, alice: Actor
) -> None:
    texts = _split(svc, cast, carol, alice)
    s = svc.custody.current()
    assert s is not None and s.holders == ("alice", "bob", "carol") and s.last_drill is None
    (e,) = svc.audit.entries(action="breakglass.split")
    assert e["details"]["fingerprint"] == s.fingerprint and e["details"]["set_id"] == s.set_id
    assert sorted(x["actor"] for x in svc.audit.entries(action="breakglass.sign")) == [
        "alice",
        "bob",
        "carol",
    ]
    # no share and no secret anywhere in the home
    blob = b"".join(p.read_bytes() for p in svc.home.path.rglob("*") if p.is_file())
    for t in texts:
        assert t.encode() not in blob
    assert svc.audit.verify().ok


def test_a_drill_changes_nothing_but_its_date(
    svc: Service, cast: Cast, carol: Enrolled, alice: Actor
) -> None:
    texts = _split(svc, cast, carol, alice)
    before = {p.name for p in svc.home.path.rglob("*")}
    rec = svc.custody.drill(texts[1:], by=alice)
    assert rec.ok and rec.shares_checked == 2
    s = svc.custody.current()
    assert s is not None and s.last_drill == rec.at
    assert {p.name for p in svc.home.path.rglob("*")} >= before
    bad = svc.custody.drill([texts[0]], by=alice)
    assert not bad.ok and svc.custody.current().last_drill == rec.at  # type: ignore[union-attr]


def test_the_root_key_comes_back_from_two_shares_on_a_copy_without_keyring(
    svc: Service, cast: Cast, carol: Enrolled, alice: Actor, tmp_path: Path
) -> None:
    bot = unlock(svc, cast.bot)
    svc.backups.encrypt(io.BytesIO(b"v1 data"), tmp_path / "a.cbk", by=bot)
    texts = _split(svc, cast, carol, alice)
    svc.keys.add_version("backups", by=alice)
    svc.backups.encrypt(io.BytesIO(b"v2 data"), tmp_path / "b.cbk", by=bot)
    svc.close()
    copy = tmp_path / "copy"
    shutil.copytree(svc.home.path, copy)
    shutil.rmtree(copy / "keyring", ignore_errors=True)
    for f in copy.glob("keyring*"):
        f.unlink()
    with Service.open(copy) as other:
        with pytest.raises(KeyringError):
            other.ctx.load_ksk()
        with pytest.raises(CustodianError):
            other.custody.recover([texts[0]])  # one share short
        with other.custody.recover([texts[2], texts[0]]) as rec:
            note = rec.note
        assert "installed again" in note and "new break-glass set" in note
        # the sealed store opens again: every local KEK version's private key unseals
        be = other.keys.backend("local")
        for v in (1, 2):
            assert be._private_key("backups", v) is not None  # type: ignore[attr-defined]
        assert other.audit.entries(action="breakglass.recover")
        assert other.audit.verify().ok


def test_recovery_refuses_a_catalog_set_the_log_did_not_announce(
    svc: Service, cast: Cast, carol: Enrolled, alice: Actor
) -> None:
    texts = _split(svc, cast, carol, alice)
    import json

    raw = json.loads(svc.catalog.get_meta("breakglass") or "{}")
    raw["fingerprint"] = "0000 0000 0000 0000 0000 0000 0000 0000"
    with svc.catalog.transaction():
        svc.catalog.set_meta("breakglass", json.dumps(raw))
    with pytest.raises(MismatchError, match="not the one the signed log announced"):
        svc.custody.recover(texts[:2])
