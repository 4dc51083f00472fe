"""A catalog commit that fails after the audit entry was written (issue 12).

``HomeContext.audited`` fsyncs the signed entry before the catalog commits, so
a full disk at the commit used to leave an ``ok`` entry for an action the
catalog does not have. Now a compensating entry (same action and subject,
``outcome: "failed"``, ``details.aborts`` = the entry's seq) follows, and
``audit verify`` treats the cancelled entry as not in effect.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from custodian import audit
from custodian.audit import AuditError
from custodian.errors import CatalogError, NotFoundError
from custodian.service import Service
from tests.conftest import Cast, enrol, unlock


class _FullDisk:
    """The catalog's connection, except that COMMIT fails as it does on a full disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.fail = True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.fail and sql.strip().upper() == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _agree(svc: Service) -> None:
    """Every ok backup.encrypt entry that no later entry cancels names a catalogued backup."""
    entries = list(svc.log.entries())
    aborted = {e["details"].get("aborts") for e in entries if e["outcome"] == "failed"}
    for e in entries:
        if e["action"] == "backup.encrypt" and e["outcome"] == "ok" and e["seq"] not in aborted:
            svc.backups.get(e["subject"].removeprefix("backup:"))


def test_a_failed_commit_of_backup_encrypt_is_cancelled_in_the_log(
    svc: Service, cast: Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = unlock(svc, cast.bot)
    full = _FullDisk(svc.catalog.db)
    monkeypatch.setattr(svc.catalog, "db", full)
    dst = tmp_path / "out" / "a.cbk"
    dst.parent.mkdir()
    with pytest.raises(CatalogError, match=r"could not record backup\.encrypt") as ei:
        svc.backups.encrypt(io.BytesIO(b"x" * 5000), dst, by=bot, label="a")
    assert ei.value.exit_code == 3 and "says so after its entry" in str(ei.value)
    assert list(dst.parent.iterdir()) == []  # no container the catalog does not know
    assert not full.in_transaction  # the failed COMMIT was rolled back
    *_, made, cancel = svc.log.entries()
    assert (made["action"], made["outcome"]) == ("backup.encrypt", "ok")
    assert (cancel["action"], cancel["subject"], cancel["outcome"]) == (
        "backup.encrypt",
        made["subject"],
        "failed",
    )
    assert cancel["details"]["aborts"] == made["seq"]
    assert cancel["details"]["aborts_hash"] == made["hash"]
    assert cancel["actor"] == "bot"
    with pytest.raises(NotFoundError):
        svc.backups.get(made["subject"].removeprefix("backup:"))
    res = svc.audit.verify()
    assert res.ok and res.aborted == 1, res.summary()
    assert "1 cancelled by a later entry" in res.summary()
    _agree(svc)

    full.fail = False  # space again: the same command works, and nothing was left stuck
    b = svc.backups.encrypt(io.BytesIO(b"x" * 5000), dst, by=bot, label="a")
    assert svc.backups.get(b.id).location == str(dst)
    assert svc.audit.verify().ok
    _agree(svc)


def test_a_forced_encrypt_whose_commit_fails_keeps_the_file_it_would_replace(
    svc: Service, cast: Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = unlock(svc, cast.bot)
    dst = tmp_path / "a.cbk"
    dst.write_bytes(b"yesterday's container")
    monkeypatch.setattr(svc.catalog, "db", _FullDisk(svc.catalog.db))
    with pytest.raises(CatalogError):
        svc.backups.encrypt(io.BytesIO(b"new"), dst, by=bot, force=True)
    assert dst.read_bytes() == b"yesterday's container"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cbk", "home"]


def test_when_the_log_cannot_be_told_either_the_message_says_so(
    svc: Service, cast: Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compensating entry fails too at first; it is tried again once the container's
    space is free, and the message says which of the two happened."""
    bot = unlock(svc, cast.bot)
    monkeypatch.setattr(svc.catalog, "db", _FullDisk(svc.catalog.db))
    real = svc.log.append
    refusals = {"left": 1}

    def append(**kw: Any) -> dict[str, Any]:
        if kw["outcome"] == "failed" and refusals["left"]:
            refusals["left"] -= 1
            raise AuditError("the audit log cannot be written (No space left on device)")
        return real(**kw)

    monkeypatch.setattr(svc.log, "append", append)
    with pytest.raises(CatalogError) as ei:
        svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "a.cbk", by=bot)
    assert "says so after its entry" in str(ei.value)  # the second try got through
    assert svc.audit.verify().aborted == 1

    refusals["left"] = 2
    with pytest.raises(CatalogError) as ei:
        svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "b.cbk", by=bot)
    assert "the audit log could not be told" in str(ei.value)
    assert "Traceback" not in str(ei.value) and "\n" not in str(ei.value)


def test_a_cancelled_enrolment_does_not_count_as_one(
    svc: Service, cast: Cast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the compensating entry, verify learns a person the catalog never had:
    enrolling that name again later then breaks verification ("already enrolled")."""
    alice = unlock(svc, cast.alice)
    full = _FullDisk(svc.catalog.db)
    monkeypatch.setattr(svc.catalog, "db", full)
    with pytest.raises(CatalogError, match=r"could not record person\.enrol"):
        enrol(svc, "carol", ("custodian",), alice)
    with pytest.raises(NotFoundError):
        svc.people.get("carol")
    full.fail = False
    enrol(svc, "carol", ("custodian",), alice)
    res = svc.audit.verify()
    assert res.ok and res.aborted == 1, res.summary()


def test_verify_refuses_a_compensating_entry_that_does_not_match(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    """A compensating entry must name an earlier ok entry by its seq and hash, with the same
    action and subject, once; for a change of keys or roles, by the same key."""
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "a.cbk", by=bot)
    made = list(svc.log.entries())[-1]

    def cancel(**details: Any) -> None:
        svc.ctx.record(bot, "backup.encrypt", f"backup:{b.id}", "failed", details)

    cancel(aborts=made["seq"], aborts_hash="0" * 64)
    res = audit.verify(svc.log)
    assert not res.ok and "names another action, subject or hash" in res.reason


def test_verify_refuses_a_second_cancellation_and_one_by_another_key(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    alice = unlock(svc, cast.alice)
    enrol(svc, "carol", ("auditor",), alice)
    made = list(svc.log.entries())[-1]
    assert made["action"] == "person.enrol"
    bob = unlock(svc, cast.bob)
    svc.ctx.record(
        bob,
        "person.enrol",
        made["subject"],
        "failed",
        {"aborts": made["seq"], "aborts_hash": made["hash"], "reason": "forged"},
    )
    res = audit.verify(svc.log)
    assert not res.ok and "signed by another key" in res.reason
