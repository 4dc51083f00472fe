"""A restore's target problems are the requester's to fix (issue 13): a request into a
directory that already holds a file of a restore name is refused when it is made, and
a session is never closed because of a problem at the target; the run says what to do
and the session waits for the next run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from custodian.errors import ConflictError
from custodian.service import Service
from tests.conftest import Cast, approved_session, unlock
from tests.unit.test_approvals import _enc, target  # noqa: F401  (a fixture)


def test_a_request_into_a_directory_holding_a_restore_name_is_refused(
    svc: Service,
    cast: Cast,
    tmp_path: Path,
    target: Path,  # noqa: F811
) -> None:
    b = _enc(svc, tmp_path, b"data", "pg-orders.sql")
    (target / "pg-orders.sql").write_bytes(b"precious")
    with pytest.raises(ConflictError, match=r"already holds pg-orders\.sql"):
        svc.restores.request([b.id], "INC-1", target, by=unlock(svc, cast.oscar))
    assert svc.approvals.requests() == []
    assert (target / "pg-orders.sql").read_bytes() == b"precious"
    (target / "pg-orders.sql").unlink()
    os.chmod(target, 0o500)
    try:
        if not os.access(target, os.W_OK):  # root writes anywhere: nothing to test then
            with pytest.raises(ConflictError, match="not writable"):
                svc.restores.request([b.id], "INC-1", target, by=unlock(svc, cast.oscar))
    finally:
        os.chmod(target, 0o700)


def test_a_file_in_the_way_at_run_time_keeps_the_session_open(
    svc: Service,
    cast: Cast,
    tmp_path: Path,
    target: Path,  # noqa: F811
) -> None:
    a = _enc(svc, tmp_path, b"a" * 100, "a.sql")
    b = _enc(svc, tmp_path, b"b" * 100, "b.sql")
    s = approved_session(svc, cast, [a.id, b.id], target)
    oscar = unlock(svc, cast.oscar)
    (target / "b.sql").write_bytes(b"put there after the approvals")
    with pytest.raises(ConflictError, match=r"already holds b\.sql.*session stays open"):
        svc.restores.run(s.id, by=oscar)
    r = svc.approvals.get(s.id)
    assert r.session is not None and r.session.state == "open" and not r.results
    assert sorted(p.name for p in target.iterdir()) == ["b.sql"]  # nothing decrypted
    (target / "b.sql").unlink()
    report = svc.restores.run(s.id, by=oscar)
    assert len(report.ok) == 2 and report.session_state == "closed"


def test_a_file_that_appears_during_the_run_fails_its_backup_only_and_the_session_waits(
    svc: Service,
    cast: Cast,
    tmp_path: Path,
    target: Path,  # noqa: F811
) -> None:
    a = _enc(svc, tmp_path, b"a" * 100, "a.sql")
    b = _enc(svc, tmp_path, b"b" * 100, "b.sql")
    s = approved_session(svc, cast, [a.id, b.id], target)
    oscar = unlock(svc, cast.oscar)

    def plant(res: object) -> None:  # after the first backup, someone writes the second's
        if not (target / "b.sql").exists():
            (target / "b.sql").write_bytes(b"someone else's")

    report = svc.restores.run(s.id, by=oscar, on_result=plant)
    assert [x.outcome for x in report.results] == ["ok", "failed"]
    assert report.kept_open and "the session stays open" in report.summary()
    assert "run the session again" in report.summary()
    r = svc.approvals.get(s.id)
    assert r.session is not None and r.session.state == "open" and r.state == "approved"
    assert (target / "b.sql").read_bytes() == b"someone else's"
    (target / "b.sql").unlink()
    report = svc.restores.run(s.id, by=oscar)
    assert [x.outcome for x in report.results] == ["ok"] and report.skipped == [a.id]
    assert report.session_state == "closed"
    assert (target / "b.sql").read_bytes() == b"b" * 100
    assert svc.audit.verify().ok
