"""The aws-kms backend against a real moto_server on 127.0.0.1 (and a fault proxy).

Wrap, unwrap and rewrap with the encryption context; key state checked by the
backend itself (moto encrypts to a disabled key or one pending deletion); the
decrypt credential only per session; bounded timeouts and throttling retries.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from custodian.backends import aws_kms as K
from custodian.backends.base import DekRef
from custodian.errors import BackendError, ConfigError, UnwrapError
from custodian.secret import SecretBytes, new_dek
from custodian.service import Service
from tests.conftest import Cast, Clock, next_code, unlock
from tests.integration.kms.conftest import (
    REGION,
    FaultProxy,
    MotoServer,
    backend,
    decrypt_credential,
    kms_home,
    short_timeouts,
)


def raw_client(url: str) -> Any:
    return boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wrap_some(be: K.AwsKmsBackend, n: int, version: int = 1) -> list[tuple[DekRef, SecretBytes]]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    deks = [new_dek() for _ in ids]
    wrapped = be.wrap("offsite", version, list(zip(ids, deks, strict=True)))
    return [
        (DekRef(i, "offsite", version, w), d) for i, w, d in zip(ids, wrapped, deks, strict=True)
    ]


def test_wrap_unwrap_rewrap_bind_the_context(kms: tuple[Service, Cast], moto: MotoServer) -> None:
    svc, cast = kms
    be = backend(svc)
    items = wrap_some(be, 5)
    m1 = be.material("offsite", 1)
    assert m1.arn.startswith(f"arn:aws:kms:{REGION}:") and m1.endpoint_url == moto.url
    # the catalog's fingerprint is the signed log's, computed over the material
    v1 = svc.catalog.kek_version("offsite", 1)
    assert v1.fingerprint == K.fingerprint(bytes(v1.public_key or b""))
    # and an auditor reads the key's ARN and recomputes the fingerprint from the log alone
    (created,) = [
        e for e in svc.audit.entries(action="kek.create") if e["subject"] == "kek:offsite"
    ]
    assert m1.arn in created["details"]["material"]
    assert (
        K.fingerprint(created["details"]["material"].encode()) == created["details"]["fingerprint"]
    )
    with be.decrypt_session(decrypt_credential()):
        got = be.unwrap([r for r, _ in items])
        assert got == [d for _, d in items]
        # moved onto another backup, or read as another version: refused, item by item
        r0 = items[0][0]
        moved = DekRef(str(uuid.uuid4()), "offsite", 1, r0.wrapped)
        out = be.unwrap([moved, items[1][0]])
        assert isinstance(out[0], UnwrapError) and "does not open" in str(out[0])
        assert out[1] == items[1][1]
        svc.keys.add_version("offsite", by=unlock(svc, cast.alice))
        m2 = be.material("offsite", 2)
        assert m2.arn != m1.arn
        re = [x for x in be.rewrap([r for r, _ in items], 2) if isinstance(x, bytes)]
        assert len(re) == len(items)
        back = be.unwrap(
            [DekRef(r.backup_id, "offsite", 2, w) for (r, _), w in zip(items, re, strict=True)]
        )
        assert back == [d for _, d in items]
        # the new wrap is under v2's key: v1's key does not open it
        c = raw_client(moto.url)
        with pytest.raises(c.exceptions.ClientError):
            c.decrypt(
                CiphertextBlob=re[0],
                KeyId=m1.arn,
                EncryptionContext=K.context(svc.ctx.config.home_id, r0.backup_id, "offsite", 2),
            )
    # the current alias follows the current version; each version has its own
    c = raw_client(moto.url)
    current = be._alias("offsite")
    assert c.describe_key(KeyId=current)["KeyMetadata"]["Arn"] == m2.arn
    assert c.describe_key(KeyId=m1.alias)["KeyMetadata"]["Arn"] == m1.arn


def test_unwrap_needs_the_session_credential_and_forgets_it(kms: tuple[Service, Cast]) -> None:
    """The boto3 chain (the operator's credential) never decrypts: only a credential
    passed in for a session does, and it is wiped when the session ends."""
    svc, _ = kms
    be = backend(svc)
    ((ref, dek),) = wrap_some(be, 1)
    with pytest.raises(BackendError, match="decrypt role's credential"):
        be.unwrap([ref])
    with pytest.raises(BackendError, match="decrypt role's credential"):
        be.rewrap([ref], 1)
    cred = decrypt_credential()
    assert "decrypt-role-secret" not in repr(cred) + str(cred)
    with be.decrypt_session(cred):
        assert be.unwrap([ref]) == [dek]
    assert cred.secret_access_key.wiped and cred.session_token is not None
    assert cred.session_token.wiped
    assert not be.has_decrypt_credential
    with pytest.raises(BackendError, match="decrypt role's credential"):
        be.unwrap([ref])


def test_a_credential_in_the_configuration_is_refused(
    kms: tuple[Service, Cast], home: Path
) -> None:
    """Attack: put the decrypt role's secret in custodian.toml. Refused by name, through
    the service and when a hand-edited file is loaded; nothing is saved."""
    svc, cast = kms
    alice = unlock(svc, cast.alice)
    for key in ("aws_secret_access_key", "aws_session_token", "decrypt_credentials"):
        with pytest.raises(ConfigError, match="never reads an AWS credential"):
            svc.keys.configure_backend("aws-kms", {key: "x"}, by=alice)
    assert "secret" not in svc.ctx.home.config.read_text()
    text = svc.ctx.home.config.read_text()
    svc.close()
    svc.ctx.home.config.write_text(
        text.replace("[backends.aws-kms]", '[backends.aws-kms]\naws_secret_access_key = "x"')
    )
    s2 = Service.open(home)
    try:
        with pytest.raises(ConfigError, match="never reads an AWS credential"):
            s2.keys.backend("aws-kms")
    finally:
        s2.close()


def test_settings_are_bounded() -> None:
    with pytest.raises(ConfigError, match="7 to 30 days"):
        K.Settings.from_config({"deletion_window_days": 5})
    with pytest.raises(ConfigError, match="hung endpoint"):
        K.Settings.from_config({"read_timeout": 600})
    with pytest.raises(ConfigError, match="alias_prefix"):
        K.Settings.from_config({"alias_prefix": "custodian"})
    with pytest.raises(ConfigError, match="unknown settings"):
        K.Settings.from_config({"regoin": "eu-west-1"})
    assert K.alias_part("a.b_c") == "a_db__c" and K.alias_part("a_db") != K.alias_part("a.b")


def test_disabled_or_pending_deletion_key_wraps_nothing(
    kms: tuple[Service, Cast], moto: MotoServer
) -> None:
    """moto encrypts to a disabled key (AWS does not): shown first with a bare call, then
    the backend refuses on its own check of the key's state."""
    svc, _ = kms
    be = backend(svc)
    m = be.material("offsite", 1)
    c = raw_client(moto.url)
    c.disable_key(KeyId=m.key_id)
    assert c.encrypt(KeyId=m.arn, Plaintext=bytes(32))["CiphertextBlob"]  # moto's gap
    with pytest.raises(BackendError, match="Disabled in KMS"):
        be.wrap("offsite", 1, [(str(uuid.uuid4()), new_dek())])
    c.enable_key(KeyId=m.key_id)
    wrap_some(be, 1)
    c.schedule_key_deletion(KeyId=m.key_id, PendingWindowInDays=7)
    with pytest.raises(BackendError, match="PendingDeletion in KMS"):
        be.wrap("offsite", 1, [(str(uuid.uuid4()), new_dek())])
    with be.decrypt_session(decrypt_credential()), pytest.raises(BackendError, match="Pending"):
        be.unwrap([DekRef(str(uuid.uuid4()), "offsite", 1, b"x")])
    c.cancel_key_deletion(KeyId=m.key_id)


def test_a_moved_alias_or_a_missing_one_is_named(
    kms: tuple[Service, Cast], moto: MotoServer
) -> None:
    svc, _ = kms
    be = backend(svc)
    m = be.material("offsite", 1)
    c = raw_client(moto.url)
    other = c.create_key(Description="someone else's")["KeyMetadata"]["Arn"]
    c.update_alias(AliasName=m.alias, TargetKeyId=other)
    with pytest.raises(BackendError, match="Someone moved the alias") as e:
        be.wrap("offsite", 1, [(str(uuid.uuid4()), new_dek())])
    assert other in str(e.value) and m.arn in str(e.value)
    c.delete_alias(AliasName=m.alias)
    with pytest.raises(BackendError, match=r"alias .* is missing, though its key") as e:
        be.wrap("offsite", 1, [(str(uuid.uuid4()), new_dek())])
    assert "create-alias" in str(e.value)
    h = be.health()
    assert not h.ok and "missing" in h.detail


def test_a_missing_key_is_named(own_moto: MotoServer, home: Path) -> None:
    """The key is gone from the server (another account or region; here: moto reset)."""
    import http.client

    svc, _ = kms_home(home, own_moto.url)
    try:
        be = backend(svc)
        conn = http.client.HTTPConnection("127.0.0.1", own_moto.port, timeout=5)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()
        with pytest.raises(BackendError, match="does not exist"):
            be.wrap("offsite", 1, [(str(uuid.uuid4()), new_dek())])
        h = be.health()
        assert not h.ok and "does not exist" in h.detail
    finally:
        svc.close()


def test_throttling_is_retried_with_jittered_backoff(proxy: FaultProxy, home: Path) -> None:
    svc, _ = kms_home(home, proxy.url, max_attempts=5)
    try:
        be = backend(svc)
        sleeps: list[float] = []
        be._sleep = sleeps.append
        proxy.arm("ThrottlingException", times=3, op="Encrypt")
        wrap_some(be, 1)
        assert proxy.answered == ["Encrypt:ThrottlingException"] * 3 and be.retries == 3
        caps = [min(be.settings.backoff_cap, be.settings.backoff_base * 2**i) for i in range(3)]
        assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True)) and len(sleeps) == 3
        # past max_attempts: a clear error, nothing wrapped
        proxy.arm("ThrottlingException", times=5, op="Encrypt")
        with pytest.raises(BackendError, match=r"kept throttling Encrypt.*5 tries"):
            wrap_some(be, 1)
    finally:
        svc.close()


def test_expired_token_is_named(proxy: FaultProxy, home: Path) -> None:
    svc, _ = kms_home(home, proxy.url)
    try:
        be = backend(svc)
        items = wrap_some(be, 3)
        proxy.arm("ExpiredTokenException", times=1, op="Decrypt")
        with be.decrypt_session(decrypt_credential()):
            with pytest.raises(BackendError, match=r"has expired .*ExpiredTokenException"):
                be.unwrap([r for r, _ in items])
            assert be.unwrap([r for r, _ in items]) == [d for _, d in items]
    finally:
        svc.close()


def test_rewrap_is_concurrent_and_bounded(proxy: FaultProxy, home: Path) -> None:
    import threading

    svc, cast = kms_home(home, proxy.url, workers=4)
    try:
        be = backend(svc)
        items = wrap_some(be, 40)
        svc.keys.add_version("offsite", by=unlock(svc, cast.alice))
        inflight, peak = [0], [0]
        lock = threading.Lock()
        real = be._call

        def counting(client: Any, op: str, what: str, **kw: Any) -> dict[str, Any]:
            with lock:
                inflight[0] += 1
                peak[0] = max(peak[0], inflight[0])
            try:
                time.sleep(0.01 if op == "re_encrypt" else 0)
                return real(client, op, what, **kw)
            finally:
                with lock:
                    inflight[0] -= 1

        be._call = counting  # type: ignore[method-assign]
        with be.decrypt_session(decrypt_credential()):
            out = be.rewrap([r for r, _ in items], 2)
        assert all(isinstance(x, bytes) for x in out)
        assert 2 <= peak[0] <= 4
        assert proxy.seen.count("ReEncrypt") == 40
    finally:
        svc.close()


def test_a_hung_server_fails_within_the_timeout(own_moto: MotoServer, home: Path) -> None:
    """SIGSTOP the server: each call gives up after the configured timeouts, and a batch
    stops at its first timeout, not after a timeout per item."""
    svc, cast = kms_home(home, own_moto.url, workers=4)
    try:
        be = backend(svc)
        items = wrap_some(be, 30)
        svc.keys.add_version("offsite", by=unlock(svc, cast.alice))
        short_timeouts(be)
        os.kill(own_moto.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(BackendError, match=r"did not answer .* within 1 s to connect"):
                be.wrap("offsite", 2, [(str(uuid.uuid4()), new_dek())])
            assert time.monotonic() - start < 5
            start = time.monotonic()
            with (
                be.decrypt_session(decrypt_credential()),
                pytest.raises(BackendError, match="did not answer"),
            ):
                be.rewrap([r for r, _ in items], 2)
            assert time.monotonic() - start < 8  # 30 items, 4 at a time: not 30 timeouts
            h = be.health()
            assert not h.ok and "did not answer" in h.detail
        finally:
            os.kill(own_moto.proc.pid, signal.SIGCONT)
        short_timeouts(be, 20)  # the server is back: room for a loaded machine again
        assert len(wrap_some(be, 1, version=2)) == 1  # back once the server is
    finally:
        svc.close()


def test_a_batch_stops_at_its_first_timeout(proxy: FaultProxy, home: Path) -> None:
    """ReEncrypt calls that hang (the keys' DescribeKey answered): the calls in flight
    time out once, and the batch's other items are not tried: about one read timeout for
    the batch, not one per item (30 items, 4 at a time would be 8 timeouts in a row)."""
    svc, cast = kms_home(home, proxy.url, workers=4)
    try:
        be = backend(svc)
        items = wrap_some(be, 30)
        svc.keys.add_version("offsite", by=unlock(svc, cast.alice))
        short_timeouts(be, 2)
        proxy.arm("Hung", times=100, op="ReEncrypt", hang=10)
        start = time.monotonic()
        with (
            be.decrypt_session(decrypt_credential()),
            pytest.raises(BackendError, match="did not answer ReEncrypt"),
        ):
            be.rewrap([r for r, _ in items], 2)
        assert time.monotonic() - start < 7  # one 2 s timeout (loaded machine); not 8 in a row
        assert proxy.seen.count("ReEncrypt") <= 8  # the first in flight, not all 30
    finally:
        svc.close()


def test_retire_disables_and_destroy_schedules_deletion(
    kms: tuple[Service, Cast], moto: MotoServer
) -> None:
    svc, _ = kms
    be = backend(svc)
    c = raw_client(moto.url)
    m = be.material("offsite", 1)
    be.retire("offsite", 1)
    assert c.describe_key(KeyId=m.arn)["KeyMetadata"]["KeyState"] == "Disabled"
    be.destroy("offsite", 1)
    meta = c.describe_key(KeyId=m.arn)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and be.deletion_state("offsite", 1) == (
        "PendingDeletion"
    )
    be.destroy("offsite", 1)  # again: left as it is


def test_health_reports_each_check(kms: tuple[Service, Cast]) -> None:
    svc, _ = kms
    be = backend(svc)
    names = [n for n, ok, _ in be.checks() if ok]
    assert names[:3] == ["reachable, authenticated", "key offsite v1", "wrap (Encrypt)"]
    assert "not checked" in be.checks()[-1][2]
    with be.decrypt_session(decrypt_credential()):
        names = [n for n, ok, _ in be.checks() if ok]
    assert names[-2:] == ["unwrap (Decrypt)", "rewrap (ReEncrypt)"]
    st = svc.status()
    (h,) = [b for b in st.backends if b.backend == "aws-kms"]
    assert h.ok


def test_kms_suite_is_the_backends_own(kms: tuple[Service, Cast]) -> None:
    svc, cast = kms
    assert svc.keys.get("offsite").suite == K.SUITE
    svc.clock = Clock()
    with pytest.raises(Exception, match="does not apply"):
        svc.keys.create(
            "other", by=unlock(svc, cast.alice), backend="aws-kms", suite="x25519",
            code=next_code(svc, cast.alice),
        )  # fmt: skip


def test_a_rotation_cut_short_leaves_no_blocking_alias(
    kms: tuple[Service, Cast], moto: MotoServer
) -> None:
    """KMS made v2's key and aliases, then the catalog commit never happened (a crash):
    the next rotation moves the aliases to its own key and schedules the orphan's
    deletion, instead of failing on 'alias already exists' for good."""
    svc, cast = kms
    be = backend(svc)
    orphan = K.KeyMaterial.decode(bytes(be.create_version("offsite", K.SUITE, 2).public_key or b""))
    svc.clock = Clock()
    svc.keys.rotate("offsite", next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    m2 = be.material("offsite", 2)
    c = raw_client(moto.url)
    assert m2.arn != orphan.arn
    assert c.describe_key(KeyId=m2.alias)["KeyMetadata"]["Arn"] == m2.arn
    assert c.describe_key(KeyId=be._alias("offsite"))["KeyMetadata"]["Arn"] == m2.arn
    assert c.describe_key(KeyId=orphan.arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    wrap_some(be, 1, version=2)
