"""The aws-kms backend through the service: the whole KEK lifecycle, and each fault
(missing key, moved alias, throttling, expired token, a hung server) refused with a
clear message, nothing lost, and the refusal in the signed audit log."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from custodian.backends import aws_kms as K
from custodian.errors import BackendError
from custodian.service import Service
from tests.conftest import Cast, Clock, approved_session, enrol, next_code, unlock, write
from tests.integration.kms.conftest import (
    FaultProxy,
    MotoServer,
    backend,
    decrypt_credential,
    kms_home,
    short_timeouts,
)
from tests.integration.kms.test_kms_backend import raw_client


def encrypt(svc: Service, cast: Cast, tmp: Path, n: int, start: int = 0) -> list[str]:
    oscar = unlock(svc, cast.oscar)
    (tmp / "src").mkdir(exist_ok=True)
    (tmp / "cbk").mkdir(exist_ok=True)
    ids = []
    for i in range(start, start + n):
        src = write(tmp / "src" / f"f{i}.txt", f"backup {i} ".encode() * (100 + i))
        b = svc.backups.encrypt(src, tmp / "cbk" / f"f{i}.cbk", by=oscar, kek="offsite")
        ids.append(b.id)
    return ids


def census(svc: Service) -> dict[int, int]:
    return {v.version: v.dek_count for v in svc.keys.get("offsite").versions}


def refusals(svc: Service, action: str) -> list[str]:
    return [
        str(e["details"].get("reason", ""))
        for e in svc.audit.entries(action=action)
        if e["outcome"] == "refused"
    ]


def test_the_whole_lifecycle_on_aws_kms(
    kms: tuple[Service, Cast], moto: MotoServer, tmp_path: Path
) -> None:
    """Create (fixture), encrypt backups, rotate (a new KMS key behind the alias), the
    rewrap job with ReEncrypt, a restore through an approved session, retire
    (DisableKey), destroy after the census is zero (ScheduleKeyDeletion)."""
    svc, cast = kms
    assert isinstance(svc.clock, Clock)
    alice = unlock(svc, cast.alice)
    carol_e = enrol(svc, "carol", ("custodian",), alice)
    ids = encrypt(svc, cast, tmp_path, 4)
    assert census(svc) == {1: 4}
    svc.keys.rotate("offsite", next_code(svc, cast.alice), by=alice)
    be = backend(svc)
    c = raw_client(moto.url)
    m1, m2 = be.material("offsite", 1), be.material("offsite", 2)
    assert c.describe_key(KeyId=be._alias("offsite"))["KeyMetadata"]["Arn"] == m2.arn
    # rewrap without the session's credential: stopped, logged, nothing lost
    with pytest.raises(BackendError, match="decrypt role's credential"):
        svc.keys.rewrap("offsite", by=alice)
    assert census(svc) == {1: 4, 2: 0}
    assert any("decrypt role" in r for r in refusals(svc, "kek.rewrap.run"))
    with be.decrypt_session(decrypt_credential()):
        report = svc.keys.rewrap("offsite", by=alice)
    assert report.finished and report.rewrapped == 4 and census(svc) == {1: 0, 2: 4}
    # a restore, through an approved session, with the session's credential
    target = tmp_path / "restore"
    target.mkdir()
    session = approved_session(svc, cast, ids[:2], target)
    with be.decrypt_session(decrypt_credential()):
        rep = svc.restores.run(session.id, by=unlock(svc, cast.oscar))
    assert len(rep.ok) == 2 and not rep.failed
    for i in range(2):
        got = sorted(target.iterdir())[i].read_bytes()
        assert got == f"backup {i} ".encode() * (100 + i)
    # retire v1 (census zero): KMS disables the key
    svc.keys.retire("offsite", 1, next_code(svc, cast.alice), by=alice)
    assert c.describe_key(KeyId=m1.arn)["KeyMetadata"]["KeyState"] == "Disabled"
    svc.clock.advance(7 * 86400 + 1)
    r = svc.keys.request_destroy("offsite", 1, "quarterly clean-up", by=alice)
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    r = svc.approvals.approve(r.id, next_code(svc, carol_e), by=unlock(svc, carol_e))
    assert r.state == "done"
    meta = c.describe_key(KeyId=m1.arn)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert svc.catalog.kek_version("offsite", 1).state == "destroyed"
    # v2 still opens everything
    with be.decrypt_session(decrypt_credential()):
        rep2 = svc.restores.run(
            approved_session(svc, cast, ids[2:], target).id, by=unlock(svc, cast.oscar)
        )
    assert len(rep2.ok) == 2
    res = svc.audit.verify()
    assert res.ok, res.summary()


def test_an_edited_catalog_redirects_no_wrap(kms: tuple[Service, Cast], tmp_path: Path) -> None:
    """Attack: point the catalog's v1 at a key the attacker holds. The version's material
    is fingerprinted in the signed log, so the encrypt is refused and nothing is sent."""
    svc, cast = kms
    be = backend(svc)
    m = be.material("offsite", 1)
    evil = K.KeyMaterial(m.arn.replace(m.key_id, "0" * 8 + m.key_id[8:]), m.region,
                         m.endpoint_url, m.alias)  # fmt: skip
    svc.catalog.db.execute(
        "UPDATE kek_versions SET public_key=? WHERE kek='offsite' AND version=1", (evil.encode(),)
    )
    with pytest.raises(Exception, match="disagrees with the signed audit log"):
        encrypt(svc, cast, tmp_path, 1)
    assert svc.catalog.backup_count() == 0


def test_an_edited_endpoint_in_the_configuration_redirects_no_wrap(
    kms: tuple[Service, Cast], proxy: FaultProxy, tmp_path: Path, home: Path
) -> None:
    """Attack: point endpoint_url at a server that would see every plaintext DEK. Existing
    versions are called where their signed material says; the configuration only says
    where new keys are made."""
    svc, cast = kms
    text = svc.ctx.home.config.read_text()
    assert svc.ctx.config.backends["aws-kms"]["endpoint_url"] in text
    svc.close()
    old = text.split('endpoint_url = "')[1].split('"')[0]
    svc.ctx.home.config.write_text(text.replace(old, proxy.url))
    s2 = Service.open(home)
    try:
        s2.clock = Clock()
        encrypt(s2, cast, tmp_path, 1)
        assert proxy.seen == []  # no call reached the configured endpoint
    finally:
        s2.close()


def test_a_moved_alias_is_refused_and_logged(
    kms: tuple[Service, Cast], moto: MotoServer, tmp_path: Path
) -> None:
    svc, cast = kms
    be = backend(svc)
    m = be.material("offsite", 1)
    c = raw_client(moto.url)
    other = c.create_key()["KeyMetadata"]["Arn"]
    c.update_alias(AliasName=m.alias, TargetKeyId=other)
    with pytest.raises(BackendError, match="Someone moved the alias"):
        encrypt(svc, cast, tmp_path, 1)
    assert svc.catalog.backup_count() == 0
    assert list((tmp_path / "cbk").iterdir()) == []  # no container left behind
    assert any("moved the alias" in r for r in refusals(svc, "backup.encrypt"))


def test_a_missing_key_is_refused_and_logged(
    own_moto: MotoServer, home: Path, tmp_path: Path
) -> None:
    import http.client

    svc, cast = kms_home(home, own_moto.url)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", own_moto.port, timeout=5)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        with pytest.raises(BackendError, match="does not exist"):
            encrypt(svc, cast, tmp_path, 1)
        assert any("does not exist" in r for r in refusals(svc, "backup.encrypt"))
        assert svc.audit.verify().ok
    finally:
        svc.close()


def test_throttling_during_the_rewrap_job(proxy: FaultProxy, home: Path, tmp_path: Path) -> None:
    """Throttled ReEncrypts are tried again and the job finishes; throttled past the
    retries, the job stops (logged), nothing is lost, and the next run finishes it."""
    svc, cast = kms_home(home, proxy.url, max_attempts=3)
    try:
        alice = unlock(svc, cast.alice)
        encrypt(svc, cast, tmp_path, 6)
        svc.keys.rotate("offsite", next_code(svc, cast.alice), by=alice)
        be = backend(svc)
        be._sleep = lambda s: None
        proxy.arm("ThrottlingException", times=2, op="ReEncrypt")
        with be.decrypt_session(decrypt_credential()):
            rep = svc.keys.rewrap("offsite", by=alice, batch_size=3)
        assert rep.finished and rep.rewrapped == 6 and be.retries == 2
        svc.keys.rotate("offsite", next_code(svc, cast.alice), by=alice)
        proxy.arm("ThrottlingException", times=100, op="ReEncrypt")
        with be.decrypt_session(decrypt_credential()), pytest.raises(BackendError, match="kept"):
            svc.keys.rewrap("offsite", by=alice, batch_size=3)
        assert census(svc) == {1: 0, 2: 6, 3: 0}  # nothing lost, nothing half-done
        assert any("kept throttling ReEncrypt" in r for r in refusals(svc, "kek.rewrap.run"))
        proxy.faults.clear()
        with be.decrypt_session(decrypt_credential()):
            rep = svc.keys.rewrap("offsite", by=alice, batch_size=3)
        assert rep.finished and census(svc) == {1: 0, 2: 0, 3: 6}
        assert svc.audit.verify().ok
    finally:
        svc.close()


def test_an_expired_token_during_a_restore(proxy: FaultProxy, home: Path, tmp_path: Path) -> None:
    svc, cast = kms_home(home, proxy.url)
    try:
        ids = encrypt(svc, cast, tmp_path, 1)
        target = tmp_path / "restore"
        target.mkdir()
        session = approved_session(svc, cast, ids, target)
        be = backend(svc)
        proxy.arm("ExpiredTokenException", times=1, op="Decrypt")
        oscar = unlock(svc, cast.oscar)
        with be.decrypt_session(decrypt_credential()):
            rep = svc.restores.run(session.id, by=oscar)
        assert not rep.ok and "has expired" in rep.failed[0].reason
        assert list(target.iterdir()) == []  # no plaintext, no partial file
        (e,) = [x for x in svc.audit.entries(action="restore.backup") if x["outcome"] != "ok"]
        assert "ExpiredTokenException" in e["details"]["reason"]
        # the wrapped DEK is fine: the session stays open, and a renewed credential runs it
        assert rep.kept_open and "Renew it" in rep.kept_open
        with be.decrypt_session(decrypt_credential()):
            rep = svc.restores.run(session.id, by=oscar)
        assert len(rep.ok) == 1 and len(list(target.iterdir())) == 1
        assert svc.audit.verify().ok
    finally:
        svc.close()


def test_a_hung_server_stops_the_job_within_seconds(
    own_moto: MotoServer, home: Path, tmp_path: Path
) -> None:
    import time

    svc, cast = kms_home(home, own_moto.url)
    try:
        alice = unlock(svc, cast.alice)
        encrypt(svc, cast, tmp_path, 8)
        svc.keys.rotate("offsite", next_code(svc, cast.alice), by=alice)
        be = backend(svc)
        short_timeouts(be)
        os.kill(own_moto.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with be.decrypt_session(decrypt_credential()), pytest.raises(BackendError):
                svc.keys.rewrap("offsite", by=alice)
            assert time.monotonic() - start < 10  # one 1 s timeout, under load; not 8 x 60 s
        finally:
            os.kill(own_moto.proc.pid, signal.SIGCONT)
        short_timeouts(be, 20)  # the server is back: room for a loaded machine again
        assert census(svc) == {1: 8, 2: 0}
        assert any("did not answer" in r for r in refusals(svc, "kek.rewrap.run"))
        assert [j.id for j in svc.keys.jobs("offsite")]
        with be.decrypt_session(decrypt_credential()):
            assert svc.keys.rewrap("offsite", by=alice).finished
        assert census(svc) == {1: 0, 2: 8}
    finally:
        svc.close()


def test_a_destruction_kms_refused_is_scheduled_at_the_next_read(
    proxy: FaultProxy, moto: MotoServer, home: Path, tmp_path: Path
) -> None:
    """KMS fails ScheduleKeyDeletion after the quorum's commit: the version is recorded
    destroyed, the error says so, and the next read of the requests schedules it."""
    svc, cast = kms_home(home, proxy.url)
    try:
        assert isinstance(svc.clock, Clock)
        alice = unlock(svc, cast.alice)
        carol_e = enrol(svc, "carol", ("custodian",), alice)
        svc.keys.rotate("offsite", next_code(svc, cast.alice), by=alice)
        svc.keys.retire("offsite", 1, next_code(svc, cast.alice), by=alice)
        svc.clock.advance(7 * 86400 + 1)
        r = svc.keys.request_destroy("offsite", 1, "clean-up", by=alice)
        svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
        proxy.arm("KMSInternalException", times=1, op="ScheduleKeyDeletion", status=500)
        with pytest.raises(BackendError, match="recorded as destroyed"):
            svc.approvals.approve(r.id, next_code(svc, carol_e), by=unlock(svc, carol_e))
        be = backend(svc)
        assert be.deletion_state("offsite", 1) == "Disabled"
        svc.approvals.requests()
        assert be.deletion_state("offsite", 1) == "PendingDeletion"
        assert svc.audit.verify().ok
    finally:
        svc.close()
