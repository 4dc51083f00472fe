"""Dual control: restore requests, TOTP-confirmed approvals, sessions, restore runs.

Every refusal is checked three ways: a clear message, an audit entry that
records it, and a log that still verifies.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from custodian import people as P
from custodian.approvals import Session
from custodian.catalog import Backup
from custodian.errors import ConfigError, ConflictError, CustodianError, NotFoundError
from custodian.people import AuthError
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, approved_session, next_code, unlock


@pytest.fixture
def clock(svc: Service) -> Clock:
    c = Clock()
    svc.clock = c
    return c


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "restore-here"
    t.mkdir(mode=0o700)
    return t


def _enc(svc: Service, tmp: Path, data: bytes, label: str) -> Backup:
    (tmp / "store").mkdir(exist_ok=True)
    return svc.backups.encrypt(
        io.BytesIO(data),
        tmp / "store" / f"{os.urandom(6).hex()}.cbk",
        by=svc.auth.unlock("bot", None),
        label=label,
    )


def _last(svc: Service, action: str | None = None) -> dict[str, Any]:
    rows = svc.audit.entries(action=action) if action else svc.audit.entries()
    return rows[-1]


def _refused(svc: Service, action: str, reason: str) -> dict[str, Any]:
    """The newest refused entry of ``action``; its reason contains ``reason``; log verifies."""
    rows = [e for e in svc.audit.entries(action=action, outcome="refused")]
    assert rows, f"no refused {action} entry"
    e = rows[-1]
    assert reason in e["details"]["reason"], e
    assert svc.audit.verify().ok
    return e


def _no_secrets(svc: Service, cast: Cast, codes: list[str]) -> None:
    log = "".join(p.read_text() for p in sorted((svc.home.path / "audit").glob("*.jsonl")))
    for who in (cast.alice, cast.bob, cast.oscar):
        assert who.passphrase not in log
    for code in codes:
        assert f'"{code}"' not in log


def _request(svc: Service, cast: Cast, ids: list[str], target: Path, who: Enrolled | None = None):  # type: ignore[no-untyped-def]
    return svc.restores.request(
        ids, "ticket 42: restore test", target, by=unlock(svc, who or cast.oscar)
    )


# ---------------------------------------------------------------- the happy path


def test_request_two_approvals_run_restores_identical_files(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    data = {"db": os.urandom(300_000), "files": b"etc tarball" * 1000}
    bs = [_enc(svc, tmp_path, v, k) for k, v in data.items()]
    r = svc.restores.request(
        [b.id[:8] for b in bs], "quarterly restore test", target, by=unlock(svc, cast.oscar)
    )
    assert (r.state, r.requester, r.kind, r.quorum) == ("open", "oscar", "restore", 2)
    assert r.backups == tuple(b.id for b in bs)
    assert r.payload["files"] == {bs[0].id: "db", bs[1].id: "files"}
    assert r.target == str(target.resolve())
    assert [x.id for x in svc.approvals.inbox("alice")] == [r.id] and svc.approvals.inbox(
        "oscar"
    ) == []

    codes = [next_code(svc, cast.alice)]
    r = svc.approvals.approve(r.id[:8], codes[-1], by=unlock(svc, cast.alice))
    assert (r.state, r.approvals, r.session) == ("open", ("alice",), None)
    assert svc.approvals.inbox("alice") == []
    codes.append(next_code(svc, cast.bob))
    r = svc.approvals.approve(r.id, codes[-1], by=unlock(svc, cast.bob))
    assert r.state == "approved" and r.session is not None and r.session.state == "open"
    e = _last(svc, "request.approve")
    assert e["details"]["session"] == r.session.id and e["details"]["approvals"] == 2

    seen: list[tuple[int, int]] = []
    got: list[str] = []
    report = svc.restores.run(
        r.session.id,
        by=unlock(svc, cast.oscar),
        progress=lambda d, t: seen.append((d, t)),
        on_result=lambda x: got.append(x.backup),
    )
    assert [x.outcome for x in report.results] == ["ok", "ok"] and not report.failed
    assert got == [b.id for b in bs]
    assert seen[-1] == (sum(len(v) for v in data.values()),) * 2
    for k, v in data.items():
        assert (target / k).read_bytes() == v
    assert sorted(p.name for p in target.iterdir()) == ["db", "files"]  # no temp files
    r = svc.approvals.get(r.id)
    assert r.state == "done" and r.session is not None and r.session.state == "closed"
    assert [(x.backup, x.outcome, x.plaintext_size) for x in r.results] == [
        (b.id, "ok", len(data[b.label])) for b in bs
    ]
    actions = [e["action"] for e in svc.audit.entries()]
    assert actions[-6:] == [
        "restore.request",
        "request.approve",
        "request.approve",
        "restore.backup",
        "restore.backup",
        "restore.session.close",
    ]
    assert "2 restored, 0 failed" in report.summary()
    assert svc.audit.verify().ok
    _no_secrets(svc, cast, codes)
    # the session is closed: it unwraps nothing more
    with pytest.raises(AuthError, match="session is closed"):
        svc.restores._decrypt_backup(bs[0], target / "again", session=r.session)
    with pytest.raises(AuthError, match="no open session"):
        svc.restores.run(r.id, by=unlock(svc, cast.oscar))


def test_a_custodian_may_request_and_two_others_approve(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    carol = _carol(svc, cast)
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target, who=cast.alice)
    with pytest.raises(AuthError, match=r"alice asked for request .* cannot approve"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    _refused(svc, "request.approve", "requester cannot decide")
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert r.state == "approved"
    assert svc.restores.run(r.id, by=unlock(svc, cast.alice)).results[0].outcome == "ok"


def _carol(svc: Service, cast: Cast) -> Enrolled:
    from tests.conftest import enrol

    return enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))


# ---------------------------------------------------------------- who may decide


def test_self_approval_is_refused_even_for_a_custodian_operator(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    from tests.conftest import enrol

    dora = enrol(svc, "dora", ("custodian", "operator"), unlock(svc, cast.alice))
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target, who=dora)
    with pytest.raises(AuthError, match="cannot approve it"):
        svc.approvals.approve(r.id, next_code(svc, dora), by=unlock(svc, dora))
    e = _refused(svc, "request.approve", "requester cannot decide")
    assert e["actor"] == "dora" and e["subject"] == f"request:{r.id}"
    assert svc.approvals.get(r.id).decisions == ()


def test_the_same_custodian_twice_is_refused(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    with pytest.raises(ConflictError, match=r"alice already approved .* distinct custodians"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    _refused(svc, "request.approve", "already decided")
    with pytest.raises(ConflictError, match="already approved"):
        svc.approvals.deny(
            r.id, next_code(svc, cast.alice), "changed my mind", by=unlock(svc, cast.alice)
        )
    r = svc.approvals.get(r.id)
    assert (r.state, r.approvals, r.session) == ("open", ("alice",), None)


@pytest.mark.parametrize("who", ["oscar", "audrey"])
def test_an_operator_or_auditor_cannot_approve(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock, who: str
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target, who=cast.bob if who == "oscar" else None)
    person: Enrolled = getattr(cast, who)
    with pytest.raises(AuthError, match=f"{who} does not hold the custodian role"):
        svc.approvals.approve(r.id, next_code(svc, person), by=unlock(svc, person))
    e = _refused(svc, "request.approve", "does not hold the custodian role")
    assert e["actor"] == who
    assert svc.approvals.get(r.id).decisions == ()


def test_an_auditor_cannot_request(svc: Service, cast: Cast, tmp_path: Path, target: Path) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    with pytest.raises(AuthError, match="audrey may not request a restore"):
        _request(svc, cast, [b.id], target, who=cast.audrey)
    _refused(svc, "restore.request", "neither the operator nor the custodian")
    assert svc.approvals.requests() == []


def test_only_the_requester_runs_the_session(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    s = approved_session(svc, cast, [b.id], target)
    for who in (cast.alice, cast.bot):
        with pytest.raises(AuthError, match="only oscar, who asked for this restore"):
            svc.restores.run(s.id, by=unlock(svc, who))
    _refused(svc, "restore.run", "not the requester")
    assert list(target.iterdir()) == []


# ---------------------------------------------------------------- TOTP


def test_a_replayed_code_is_refused(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r1 = _request(svc, cast, [b.id], target)
    r2 = _request(svc, cast, [b.id], target)
    code = next_code(svc, cast.alice)
    svc.approvals.approve(r1.id, code, by=unlock(svc, cast.alice))
    with pytest.raises(AuthError, match="already used"):
        svc.approvals.approve(r2.id, code, by=unlock(svc, cast.alice))
    e = _refused(svc, "request.approve", "TOTP code replayed")
    assert e["subject"] == f"request:{r2.id}" and code not in json.dumps(e)
    assert svc.approvals.get(r2.id).decisions == ()


def test_a_code_two_steps_old_is_refused_one_step_old_is_accepted(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    clock.advance(5 * P.TOTP_PERIOD)
    assert cast.alice.totp is not None
    old = P.hotp(cast.alice.totp, P.current_step(clock()) - 2)
    with pytest.raises(AuthError, match="not valid now"):
        svc.approvals.approve(r.id, old, by=unlock(svc, cast.alice))
    _refused(svc, "request.approve", "did not match")
    with pytest.raises(AuthError, match="not valid now"):
        svc.approvals.approve(r.id, "12345x", by=unlock(svc, cast.alice))
    recent = P.hotp(cast.alice.totp, P.current_step(clock()) - 1)
    assert svc.approvals.approve(r.id, recent, by=unlock(svc, cast.alice)).approvals == ("alice",)


def test_a_service_identity_has_no_totp_and_cannot_approve(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    with pytest.raises(AuthError, match="custodian role"):
        svc.approvals.approve(r.id, "123456", by=unlock(svc, cast.bot))


# ---------------------------------------------------------------- expiry, denial, cancel


def test_an_expired_request_is_marked_logged_and_refused(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    clock.advance(24 * 3600 + 1)
    with pytest.raises(ConflictError, match=r"is expired .*final"):
        svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    exp = _last(svc, "request.expire")
    assert exp["subject"] == f"request:{r.id}" and exp["actor"] == "home"
    _refused(svc, "request.approve", "request is expired")
    assert svc.approvals.get(r.id).state == "expired"
    assert svc.approvals.requests("expired")[0].id == r.id and svc.approvals.requests("open") == []
    with pytest.raises(ConflictError, match="already expired"):
        svc.approvals.cancel(r.id, by=unlock(svc, cast.oscar))


def test_an_expired_session_unwraps_nothing(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    s = approved_session(svc, cast, [b.id], target)
    clock.advance(60 * 60 + 1)
    # the core refuses even before housekeeping has marked it
    with pytest.raises(AuthError, match="session has expired: no data key was unwrapped"):
        svc.restores._decrypt_backup(b, target / "x", session=s)
    _refused(svc, "restore.unwrap", "has expired")
    with pytest.raises(AuthError, match="its session expired"):
        svc.restores.run(s.id, by=unlock(svc, cast.oscar))
    assert _last(svc, "restore.session.expire")["subject"] == f"session:{s.id}"
    _refused(svc, "restore.run", "no open session")
    r = svc.approvals.get(s.id)
    assert (r.state, r.session.state if r.session else None) == ("expired", "expired")
    assert list(target.iterdir()) == []


def test_denial_is_final(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    carol = _carol(svc, cast)
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    with pytest.raises(CustodianError, match="needs a reason"):
        svc.approvals.deny(r.id, next_code(svc, cast.bob), "  ", by=unlock(svc, cast.bob))
    r = svc.approvals.deny(
        r.id, next_code(svc, cast.bob), "no ticket [/b]", by=unlock(svc, cast.bob)
    )
    assert r.state == "denied" and r.session is None
    assert _last(svc, "request.deny")["details"]["reason"] == "no ticket [/b]"
    with pytest.raises(ConflictError, match=r"is denied .*final"):
        svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    _refused(svc, "request.approve", "request is denied")
    with pytest.raises(AuthError, match="no open session"):
        svc.restores.run(r.id, by=unlock(svc, cast.oscar))


def test_cancel_is_final_and_closes_an_open_session(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    with pytest.raises(AuthError, match="only oscar, who asked, or a custodian"):
        svc.approvals.cancel(r.id, by=unlock(svc, cast.audrey))
    _refused(svc, "request.cancel", "neither the requester nor a custodian")
    r = svc.approvals.cancel(r.id, by=unlock(svc, cast.oscar), reason="wrong backup")
    assert r.state == "cancelled" and r.closed_at
    with pytest.raises(ConflictError, match=r"is cancelled .*final"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    # a custodian cancels an approved request: its session closes before it runs
    s = approved_session(svc, cast, [b.id], target)
    r = svc.approvals.cancel(s.id, by=unlock(svc, cast.alice))
    assert r.session is not None and r.session.state == "closed"
    assert _last(svc, "request.cancel")["details"]["session"] == s.id
    with pytest.raises(AuthError, match="session is closed"):
        svc.restores._decrypt_backup(b, target / "x", session=s)
    assert svc.audit.verify().ok


# ---------------------------------------------------------------- scope and the core gate


def test_a_backup_outside_the_sessions_scope_is_refused_by_the_core(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    a = _enc(svc, tmp_path, b"a", "a")
    other = _enc(svc, tmp_path, b"other", "other")
    s = approved_session(svc, cast, [a.id], target)
    with pytest.raises(AuthError, match="outside the restore session's scope"):
        svc.restores._decrypt_backup(other, target / "other", session=s)
    with pytest.raises(AuthError, match="outside the restore session's scope"):
        svc.restores._unwrap(other, session=s)
    e = _refused(svc, "restore.unwrap", "backup is outside")
    assert e["subject"] == f"backup:{other.id}" and e["details"]["session"] == s.id
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(AuthError, match="target is outside"):
        svc.restores._decrypt_backup(a, elsewhere / "a", session=s)
    forged = Session("not-a-session", s.request, s.opened_at, s.expires_at, "open", None)
    with pytest.raises(AuthError, match="no such restore session"):
        svc.restores._unwrap(a, session=forged)
    assert list(target.iterdir()) == [] and list(elsewhere.iterdir()) == []


def test_request_refuses_bad_input_and_records_each(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    b = _enc(svc, tmp_path, b"x", "x")
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(NotFoundError, match="no backup 00000000"):
        svc.restores.request(["00000000"], "why", target, by=oscar)
    _refused(svc, "restore.request", "not in the catalog")
    with pytest.raises(CustodianError, match="needs a reason"):
        svc.restores.request([b.id], " \n", target, by=oscar)
    _refused(svc, "restore.request", "no reason")
    with pytest.raises(NotFoundError, match="not an existing directory"):
        svc.restores.request([b.id], "why", tmp_path / "nope", by=oscar)
    _refused(svc, "restore.request", "not an existing directory")
    with pytest.raises(CustodianError, match="inside the custodian home"):
        svc.restores.request([b.id], "why", svc.home.path, by=oscar)
    with pytest.raises(CustodianError, match="at least one backup"):
        svc.restores.request([], "why", target, by=oscar)
    assert svc.approvals.requests() == []


# ---------------------------------------------------------------- failures during a run


def test_failures_are_per_backup_and_leave_nothing_at_the_target(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    # (a file in the way at the target is refused before the run: test_restore_targets.py)
    good = _enc(svc, tmp_path, b"good" * 1000, "good")
    tampered = _enc(svc, tmp_path, os.urandom(200_000), "tampered")
    gone = _enc(svc, tmp_path, b"gone", "gone")
    uncatalogued = _enc(svc, tmp_path, b"u", "uncatalogued")
    s = approved_session(svc, cast, [tampered.id, gone.id, uncatalogued.id, good.id], target)
    p = Path(tampered.location)
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 1
    p.write_bytes(raw)
    Path(gone.location).unlink()
    with svc.catalog.transaction() as db:
        db.execute("DELETE FROM backups WHERE id=?", (uncatalogued.id,))

    report = svc.restores.run(s.id, by=unlock(svc, cast.oscar))
    by_id = {x.backup: x for x in report.results}
    assert by_id[good.id].outcome == "ok"
    assert "chunk" in by_id[tampered.id].reason or "authentic" in by_id[tampered.id].reason
    assert "container of backup" in by_id[gone.id].reason and "missing" in by_id[gone.id].reason
    assert "no backup" in by_id[uncatalogued.id].reason
    assert [x.outcome for x in report.failed] == ["failed"] * 3
    assert sorted(x.name for x in target.iterdir()) == ["good"]
    assert (target / "good").read_bytes() == b"good" * 1000
    entries = svc.audit.entries(action="restore.backup")
    assert [e["outcome"] for e in entries] == ["failed"] * 3 + ["ok"]
    assert entries[0]["subject"] == f"backup:{tampered.id}"
    close = _last(svc, "restore.session.close")["details"]
    assert close["restored"] == [good.id] and len(close["failed"]) == 3
    assert "1 restored, 3 failed" in report.summary()
    r = svc.approvals.get(s.id)
    assert r.state == "done" and [x.outcome for x in r.results].count("failed") == 3
    assert svc.audit.verify().ok


def test_a_cancelled_run_keeps_the_session_and_resumes(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    bs = [_enc(svc, tmp_path, bytes([i]) * 100, f"b{i}") for i in range(3)]
    s = approved_session(svc, cast, [b.id for b in bs], target)
    calls = iter([False, True])
    report = svc.restores.run(s.id, by=unlock(svc, cast.oscar), cancelled=lambda: next(calls))
    assert report.cancelled and len(report.results) == 1
    assert svc.approvals.get(s.id).session.state == "open"  # type: ignore[union-attr]
    report = svc.restores.run(s.id, by=unlock(svc, cast.oscar))
    assert report.skipped == [bs[0].id] and len(report.ok) == 2
    assert sorted(p.name for p in target.iterdir()) == ["b0", "b1", "b2"]
    assert svc.approvals.get(s.id).state == "done"


def test_labels_become_safe_distinct_file_names(
    svc: Service, cast: Cast, tmp_path: Path, target: Path
) -> None:
    a = _enc(svc, tmp_path, b"a", "../../etc/passwd")
    b = _enc(svc, tmp_path, b"b", "etc_passwd")
    c = _enc(svc, tmp_path, b"c", "...")
    r = _request(svc, cast, [a.id, b.id, c.id], target)
    files = r.payload["files"]
    assert files[a.id] == "etc_passwd"
    assert files[b.id] == f"etc_passwd.{b.id[:8]}"
    assert files[c.id] == c.id


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("approval_quorum = 1", "at least 2"),
        ("approval_quorum = 0", "at least 2"),
        ("requester_may_approve = true", "never approves it"),
    ],
)
def test_unsafe_policy_is_refused_at_load(svc: Service, line: str, message: str) -> None:
    cfg = svc.home.path / "custodian.toml"
    text = cfg.read_text().replace("approval_quorum = 2\n", "")
    cfg.write_text(text + line + "\n")
    with pytest.raises(ConfigError, match=message):
        Service.open(svc.home.path)


def test_a_quorum_of_three_needs_three(
    svc: Service, cast: Cast, tmp_path: Path, target: Path, clock: Clock
) -> None:
    carol = _carol(svc, cast)
    # tightening the policy is direct (a custodian and a fresh code), and recorded in the log
    svc.policy.set(
        "approval_quorum", 3, by=unlock(svc, cast.alice), code=next_code(svc, cast.alice)
    )
    assert svc.ctx.policy.approval_quorum == 3
    b = _enc(svc, tmp_path, b"x", "x")
    r = _request(svc, cast, [b.id], target)
    for who in (cast.alice, cast.bob):
        r = svc.approvals.approve(r.id, next_code(svc, who), by=unlock(svc, who))
    assert r.state == "open" and r.session is None
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert r.state == "approved" and r.session is not None
