"""Rotation of quorum KEKs without reconstruction (issue 11): refresh, then destroy; and
redistribution for a change of holders. Each attack of the issue is a test here:

- a delta for another DEK, or of another job, is refused (the info binding) and the
  DEK stays where it was, still opening through an approved restore;
- a step applied twice changes nothing;
- a holder cannot apply another holder's deltas;
- no process ever holds a whole DEK: the combine functions are patched to raise
  while whole jobs run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from custodian.custody import gf256
from custodian.custody import jobs as J
from custodian.custody import quorum as Q
from custodian.errors import ConflictError, CustodianError
from custodian.people import Actor
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock

DATA = [os.urandom(700) + f"backup {i}\n".encode() for i in range(6)]


@pytest.fixture
def carol(svc: Service, cast: Cast, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


@pytest.fixture
def dave(svc: Service, cast: Cast, alice: Actor) -> Enrolled:
    return enrol(svc, "dave", ("custodian",), alice)


@pytest.fixture
def vault(svc: Service, cast: Cast, alice: Actor, carol: Enrolled) -> list[str]:
    """KEK 'vault' (alice, bob, carol; 2 of 3) with six backups under v1."""
    svc.clock = Clock()
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    svc.keys.create_quorum("vault", holders, 2, by=alice, code=next_code(svc, cast.alice))
    bot = unlock(svc, cast.bot)
    out = []
    for i, data in enumerate(DATA):
        b = svc.backups.encrypt(
            io.BytesIO(data), svc.home.path / f"b{i}.cbk", by=bot, kek="vault", label=f"b{i}"
        )
        out.append(b.id)
    return out


def holders(svc: Service, cast: Cast, carol: Enrolled) -> list[Actor]:
    return [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol)]


def rotate(svc: Service, cast: Cast, carol: Enrolled) -> J.CustodyJob:
    hs = holders(svc, cast, carol)
    j: J.CustodyJob = svc.keys.rotate("vault", next_code(svc, cast.alice), by=hs[0], holders=hs)
    return j


def census(svc: Service) -> dict[int, int]:
    return {v.version: v.dek_count for v in svc.keys.get("vault").versions}


def restore_all(svc: Service, cast: Cast, carol: Enrolled, bids: list[str], tmp: Path) -> None:
    """Every DEK still opens through an approved restore session (oscar asks, the two
    holders of each DEK's version approve)."""
    target = tmp / f"restore-{os.urandom(4).hex()}"
    target.mkdir(mode=0o700)
    oscar = unlock(svc, cast.oscar)
    r = svc.restores.request(bids, "check every DEK", target, by=oscar)
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert r.state == "approved"
    rep = svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    assert [x.outcome for x in rep.results] == ["ok"] * len(bids), rep.results
    got = sorted(
        (target / f"b{i}").read_bytes() for i in range(len(DATA)) if (target / f"b{i}").exists()
    )
    assert got == sorted(DATA[: len(got)]) and len(got) == len(bids)


def test_rotation_refreshes_holder_by_holder_and_every_dek_still_opens(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str], tmp_path: Path
) -> None:
    before = {bid: svc.backups.get(bid).wrapped_dek for bid in vault}
    j = rotate(svc, cast, carol)
    assert j.kind == "refresh" and j.target_version == 2 and j.total == len(vault)
    assert svc.keys.get("vault").current_version == 2
    man1, man2 = svc.keys.manifest("vault", 1), svc.keys.manifest("vault", 2)
    assert [(h.name, h.x) for h in man1.holders] == [(h.name, h.x) for h in man2.holders]
    assert {h.public_key for h in man1.holders}.isdisjoint({h.public_key for h in man2.holders})
    signs = [
        e for e in svc.audit.entries(action="kek.manifest.sign") if e["subject"] == "kek:vault/v2"
    ]
    assert sorted(e["actor"] for e in signs) == ["alice", "bob", "carol"]
    hs = holders(svc, cast, carol)
    rep = svc.keys.refresh("vault", by=hs[0])  # deals, then alice seals hers
    assert rep.roles == ["deal", "target"] and rep.done == 2 * len(vault) and rep.moved == 0
    assert census(svc) == {1: 6, 2: 0}  # nothing moves until every holder sealed theirs
    restore_all(svc, cast, carol, vault, tmp_path)  # meanwhile v1 still opens
    assert svc.keys.refresh("vault", by=hs[1]).moved == 0
    rep = svc.keys.refresh("vault", by=hs[2])
    assert rep.moved == len(vault) and rep.finished
    assert census(svc) == {1: 0, 2: 6}
    for bid in vault:
        b = svc.backups.get(bid)
        qw, old = Q.QuorumWrap.decode(b.wrapped_dek), Q.QuorumWrap.decode(before[bid])
        assert b.kek_version == 2 and qw.deal_id != old.deal_id
        assert all(a.ciphertext != o.ciphertext for a, o in zip(qw.shares, old.shares, strict=True))
    restore_all(svc, cast, carol, vault, tmp_path)  # the new deal opens: v1 may go
    (view,) = svc.keys.custody_jobs("vault")
    assert view.job.state == "done" and view.census == {1: 0, 2: 6}
    assert svc.audit.verify().ok
    acts = [e["action"] for e in svc.audit.entries() if e["action"].startswith("kek.refresh")]
    assert acts.count("kek.refresh.done") == 1 and "kek.refresh.batch" in acts


def test_no_step_of_a_refresh_or_redistribution_combines_shares(
    svc: Service, cast: Cast, carol: Enrolled, dave: Enrolled, vault: list[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    def never(*a: object, **k: object) -> bytes:
        raise AssertionError("a DEK was reconstructed")

    with monkeypatch.context() as mp:
        mp.setattr(Q, "combine", never)
        mp.setattr(gf256, "combine", never)
        rotate(svc, cast, carol)
        for h in holders(svc, cast, carol):
            svc.keys.refresh("vault", by=h, workers=1)
        assert census(svc) == {
            1: 0,
            2: 6,
        }
        hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, dave)]
        svc.keys.redistribute(
            "vault", hs, 2, ["bob", "carol"], next_code(svc, cast.alice), by=hs[0]
        )
        for who in (unlock(svc, cast.bob), unlock(svc, carol), *hs):
            svc.keys.refresh("vault", by=who, workers=1)
        assert census(svc) == {1: 0, 2: 0, 3: 6}
    assert svc.audit.verify().ok
    man3 = svc.keys.manifest("vault", 3)
    assert [h.name for h in man3.holders] == ["alice", "bob", "dave"]
    # dave holds a share now; carol does not: bob and dave approve
    target = tmp_path / "r3"
    target.mkdir(mode=0o700)
    oscar = unlock(svc, cast.oscar)
    r = svc.restores.request(vault, "after redistribution", target, by=oscar)
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    r = svc.approvals.approve(r.id, next_code(svc, dave), by=unlock(svc, dave))
    rep = svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    assert [x.outcome for x in rep.results] == ["ok"] * 6


def test_a_step_run_twice_changes_nothing(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str]
) -> None:
    rotate(svc, cast, carol)
    alice = unlock(svc, cast.alice)
    svc.keys.refresh("vault", by=alice)
    parts = svc.catalog.db.execute("SELECT count(*) FROM custody_parts").fetchone()[0]
    again = svc.keys.refresh("vault", by=alice)
    assert again.done == 0 and again.moved == 0
    assert svc.catalog.db.execute("SELECT count(*) FROM custody_parts").fetchone()[0] == parts
    # the same batch committed twice (a kill after the commit, before the answer) is a no-op
    j = J.running_job(svc.catalog.db, "vault")
    assert j is not None
    st = J.step(svc.catalog.db, j, "target", "alice")
    assert st.done == len(vault)


def test_a_holder_cannot_apply_another_holders_deltas(
    svc: Service, cast: Cast, carol: Enrolled, dave: Enrolled, vault: list[str], tmp_path: Path
) -> None:
    rotate(svc, cast, carol)
    svc.keys.refresh("vault", by=unlock(svc, cast.alice))  # deals, seals alice's
    # dave holds nothing: refused, and logged
    with pytest.raises(ConflictError, match="has no part"):
        svc.keys.refresh("vault", by=unlock(svc, dave))
    assert svc.audit.entries(action="kek.refresh.run")[-1]["outcome"] == "refused"
    # bob's deltas handed to carol (the catalog edited): carol's key and info refuse them
    db = svc.catalog.db
    j = J.running_job(db, "vault")
    assert j is not None
    with svc.catalog.transaction():
        db.execute("DELETE FROM custody_parts WHERE job=? AND target=2", (j.id,))
        db.execute("UPDATE custody_parts SET target=2 WHERE job=? AND target=1", (j.id,))
    rep = svc.keys.refresh("vault", by=unlock(svc, carol))
    assert rep.done == 0 and len(rep.failed) == len(vault)
    assert all("does not open" in why or "no refresh delta" in why for _, why in rep.failed)
    assert census(svc) == {1: 6, 2: 0}  # nothing lost: every DEK still under v1
    restore_all(svc, cast, carol, vault, tmp_path)


def test_a_delta_for_another_dek_or_another_job_is_refused(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str], tmp_path: Path
) -> None:
    rotate(svc, cast, carol)
    alice, bob, c = holders(svc, cast, carol)
    svc.keys.refresh("vault", by=alice)
    db = svc.catalog.db
    j = J.running_job(db, "vault")
    assert j is not None
    rows = [
        r for (r,) in db.execute("SELECT row FROM custody_deals WHERE job=? ORDER BY row", (j.id,))
    ]
    # swap bob's deltas of the first two DEKs
    (a,) = db.execute(
        "SELECT blob FROM custody_parts WHERE job=? AND row=? AND target=1", (j.id, rows[0])
    ).fetchone()
    (b,) = db.execute(
        "SELECT blob FROM custody_parts WHERE job=? AND row=? AND target=1", (j.id, rows[1])
    ).fetchone()
    with svc.catalog.transaction():
        db.execute(
            "UPDATE custody_parts SET blob=? WHERE job=? AND row=? AND target=1", (b, j.id, rows[0])
        )
        db.execute(
            "UPDATE custody_parts SET blob=? WHERE job=? AND row=? AND target=1", (a, j.id, rows[1])
        )
    rep = svc.keys.refresh("vault", by=bob)
    assert sorted(b for b, _ in rep.failed) == sorted(svc.catalog.db.execute(
        "SELECT backup FROM custody_deals WHERE job=? AND row IN (?,?)", (j.id, rows[0], rows[1])
    ).fetchall()[i][0] for i in range(2))  # fmt: skip
    assert all("refresh delta for bob does not open" in why for _, why in rep.failed)
    # a delta of an earlier job, replayed into a new one: refused the same way
    keep = dict(
        db.execute(
            "SELECT row, blob FROM custody_parts WHERE job=? AND target=2", (j.id,)
        ).fetchall()
    )
    j2 = rotate(svc, cast, carol)  # supersedes: a new job, to v3
    svc.keys.refresh("vault", by=alice)
    with svc.catalog.transaction():
        for row, blob in keep.items():
            db.execute(
                "UPDATE custody_parts SET blob=? WHERE job=? AND row=? AND target=2",
                (blob, j2.id, row),
            )
    rep = svc.keys.refresh("vault", by=c)
    assert rep.failed and all("does not open" in why for _, why in rep.failed)
    assert census(svc) == {1: 6, 2: 0, 3: 0}
    restore_all(svc, cast, carol, vault, tmp_path)
    assert svc.audit.verify().ok


def test_rotation_needs_every_holder_and_a_quorum_kek_is_not_rewrapped(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str]
) -> None:
    alice, bob = unlock(svc, cast.alice), unlock(svc, cast.bob)
    with pytest.raises(ConflictError, match="carol not present"):
        svc.keys.rotate("vault", next_code(svc, cast.alice), by=alice, holders=[alice, bob])
    assert svc.keys.get("vault").current_version == 1
    with pytest.raises(ConflictError, match="no process rewraps"):
        svc.keys.rewrap("vault", by=alice)
    with pytest.raises(CustodianError, match="no refresh or redistribution"):
        svc.keys.refresh("vault", by=alice)


def test_disabling_a_holder_says_which_redistribution_follows(
    svc: Service, cast: Cast, carol: Enrolled, dave: Enrolled, vault: list[str]
) -> None:
    (need,) = svc.keys.holder_disabled("carol")
    assert need.kek == "vault" and not need.can_start  # 2 left: 2 of 2 is not allowed
    assert "--holders alice,bob,NEW" in need.command
    hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol), unlock(svc, dave)]
    svc.keys.redistribute("vault", hs, 2, ["alice", "bob"], next_code(svc, cast.alice), by=hs[0])
    (need,) = svc.keys.holder_disabled("carol")
    assert need.can_start and need.holders == ("alice", "bob", "dave")
    assert need.running_job is not None  # carol has a part in the running job
    assert svc.keys.holder_disabled("oscar") == []


def test_old_holder_keys_are_destroyed_after_the_census_is_zero(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str]
) -> None:
    rotate(svc, cast, carol)
    for h in holders(svc, cast, carol):
        svc.keys.refresh("vault", by=h)
    alice = unlock(svc, cast.alice)
    svc.keys.retire("vault", 1, next_code(svc, cast.alice), by=alice)
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(86400 * (svc.config.policy.retirement_wait_days + 1))
    r = svc.keys.request_destroy("vault", 1, "refreshed to v2", by=alice)
    assert svc.keyring.get("holder:bob:vault:v1") is not None
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert svc.keys.get("vault").versions[0].state == "destroyed"
    for who in ("alice", "bob", "carol"):
        assert svc.keyring.get(f"holder:{who}:vault:v1") is None
        assert svc.keyring.get(f"holder:{who}:vault:v2") is not None
    # an erasure cut short (the process ended after the approving commit) is swept
    svc.keyring.set("holder:bob:vault:v1", "bGVmdCBvdmVy")
    svc.approvals.requests()
    assert svc.keyring.get("holder:bob:vault:v1") is None
    assert svc.audit.verify().ok


def test_verify_refuses_a_part_recorded_in_another_holders_name(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str]
) -> None:
    j = rotate(svc, cast, carol)
    svc.keys.refresh("vault", by=unlock(svc, cast.alice))
    assert svc.audit.verify().ok
    svc.ctx.record(
        unlock(svc, cast.alice),
        "kek.refresh.batch",
        "kek:vault",
        details={"job": j.id, "step": "target:bob", "sealed": 6, "moved": 0, "failed": []},
    )
    res = svc.audit.verify()
    assert not res.ok and "alice recorded bob's part" in res.summary()
