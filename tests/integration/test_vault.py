"""The vault backend against a real OpenBao (``bao server -dev`` on 127.0.0.1).

One dev server per module (each home has its own key prefix, from its home id);
the fault tests that kill or stop a server have their own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from custodian import rotation as R
from custodian.backends import vault as V
from custodian.backends.base import DekRef
from custodian.config import Config
from custodian.errors import BackendError, ConfigError, CustodianError, UnwrapError
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.integration import openbao
from tests.unit.test_rotation import fill, fingerprints


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openbao.Server]:
    s = openbao.dev(tmp_path_factory.mktemp("bao"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clock(svc: Service) -> None:
    svc.clock = Clock()  # TOTP steps move on by hand


def secret(token: str) -> SecretBytes:
    return SecretBytes(token.encode(), "token")


def prefix_of(svc: Service) -> str:
    return f"custodian-{svc.ctx.config.home_id[:8]}-"


def setup_vault(
    svc: Service, alice: Actor, server: openbao.Server, **extra: object
) -> tuple[str, str]:
    """Configure backend 'vault' on ``server``, seal a wrap-only token; (wrap, custody)."""
    server.setup_transit(prefix_of(svc))
    svc.backends.configure("vault", {"address": server.address, **extra}, by=alice)
    wrap = server.token("custodian-wrap")
    custody = server.token("custodian-custody")
    svc.backends.set_wrap_credential("vault", secret(wrap), by=alice)
    return wrap, custody


def create_kek(svc: Service, cast: Cast, alice: Actor, custody: str, name: str = "vbk") -> None:
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.create(name, by=alice, backend="vault", code=next_code(svc, cast.alice))


def entries(svc: Service, action: str) -> list[dict[str, object]]:
    return [e for e in svc.log.entries() if e["action"] == action]


# ---------------------------------------------------------------- configuration


def test_a_credential_in_the_configuration_is_refused(svc: Service, alice: Actor) -> None:
    with pytest.raises(ConfigError, match="never kept in the configuration"):
        svc.backends.configure("vault", {"address": "http://127.0.0.1:1", "token": "s.x"}, by=alice)
    assert "vault" not in svc.ctx.config.backends


def test_plain_http_only_to_loopback(svc: Service, alice: Actor) -> None:
    with pytest.raises(ConfigError, match="plain http to another machine"):
        svc.backends.configure("vault", {"address": "http://10.0.0.1:8200"}, by=alice)
    for ok in ("http://127.0.0.1:8200", "http://[::1]:8200", "http://localhost:8200"):
        V.VaultOptions.parse("vault", {"address": ok}, "h")
    V.VaultOptions.parse("vault", {"address": "https://vault.example.org"}, "h")


def test_configuration_written_and_audited(svc: Service, alice: Actor, bao: openbao.Server) -> None:
    svc.backends.configure("vault", {"address": bao.address}, by=alice)
    again = Config.load(svc.ctx.home.config)
    assert again.backends["vault"] == {"address": bao.address}
    (e,) = entries(svc, "backend.configure")
    assert e["details"]["address"] == bao.address  # type: ignore[index]


# ---------------------------------------------------------------- the happy path


def test_create_wrap_unwrap_with_two_credentials(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    key = bao.admin().secrets.transit.read_key(prefix_of(svc) + "vbk")["data"]
    assert key["type"] == "aes256-gcm96" and key["derived"] is True
    assert key["exportable"] is False
    k = svc.keys.get("vbk")
    assert (k.backend, k.current_version) == ("vault", 1)
    # an operator wraps with the sealed wrap credential alone
    prints = fill(svc, 300, "vbk")
    be = svc.keys.backend("vault")
    with pytest.raises(BackendError, match="custody credential"):
        be.unwrap([DekRef(next(iter(prints)), "vbk", 1, b"vault:v1:x")])
    with svc.backends.custody("vault", secret(custody)):
        assert fingerprints(svc, "vbk") == prints
    # the custody credential is gone after the block
    assert not be.has_credential("custody")  # type: ignore[attr-defined]


def test_health_says_each_check(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    h = svc.backends.check("vault")
    assert h.ok, h
    names = [c.name for c in h.checks]
    assert names[0] == "reachable" and "wrap credential" in names
    assert any(c.name.startswith("key vbk") and c.ok for c in h.checks)
    with svc.backends.custody("vault", secret(custody)):
        h = svc.backends.check("vault")
    assert h.ok and any("(custody" in c.detail and c.ok for c in h.checks), h
    # a custody token that cannot rewrap: the health says which permission is missing
    with svc.backends.custody("vault", secret(bao.token("custodian-wrap"))):
        h = svc.backends.check("vault")
    assert not h.ok and "cannot config, rewrap, rotate, trim, unwrap" in h.detail


def test_status_shows_vault_health(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    setup_vault(svc, alice, bao)
    st = svc.status()
    (v,) = [b for b in st.backends if b.backend == "vault"]
    assert v.ok and v.checks


# ---------------------------------------------------------------- attacks


def test_attack_root_token_as_wrap_credential_is_refused(
    svc: Service, alice: Actor, bao: openbao.Server
) -> None:
    """A wrap credential sits under the KSK: one that decrypts would let the account
    holder open every DEK. Refused, logged, nothing stored."""
    bao.setup_transit(prefix_of(svc))
    svc.backends.configure("vault", {"address": bao.address}, by=alice)
    for tok in (bao.root, bao.token("custodian-custody")):
        with pytest.raises(CustodianError, match="can also"):
            svc.backends.set_wrap_credential("vault", secret(tok), by=alice)
    assert not svc.ctx.sealed.exists(V.sealed_credential("vault"))
    refused = [e for e in entries(svc, "backend.credential.set") if e["outcome"] == "refused"]
    assert len(refused) == 2


def test_attack_config_pointed_at_another_key_wraps_nothing(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server, oscar: None = None
) -> None:
    """An edited configuration (another mount/key prefix, say an attacker's key the
    attacker can decrypt) must not receive new DEKs: the version's fingerprint names
    the server, mount, key and creation time, and the signed log holds it."""
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    evil = prefix_of(svc) + "evil-"
    admin = bao.admin()
    admin.secrets.transit.create_key(evil + "vbk", key_type="aes256-gcm96", derived=True)
    cfg = svc.ctx.config
    backends = {**cfg.backends, "vault": {**cfg.backends["vault"], "key_prefix": evil}}
    from dataclasses import replace

    replace(cfg, backends=backends).save(svc.ctx.home.config)
    svc.close()
    s2 = Service.open(svc.ctx.home.path)
    try:
        with pytest.raises(BackendError, match="not the key version"):
            fill(s2, 1, "vbk")
    finally:
        s2.close()


def test_attack_decrypt_error_body_holds_plaintext_but_no_error_does(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    """A batch decrypt with one bad item fails as a whole, and the server's error body
    holds the good items' plaintext: hvac's exception text carries it. Custodian reads
    the items from it and keeps none of it in an error."""
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 3, "vbk")
    rows = svc.catalog.db.execute(
        "SELECT id, kek_version, wrapped_dek FROM backups WHERE kek='vbk' ORDER BY rowid"
    ).fetchall()
    refs = [DekRef(b, "vbk", v, bytes(w)) for b, v, w in rows]
    refs[1] = DekRef(refs[1].backup_id, "vbk", 1, refs[2].wrapped)  # moved from another backup
    # the attack on a naive client: its error names a plaintext DEK
    import hvac.exceptions

    naive = openbao.client(bao.address, custody).secrets.transit
    with pytest.raises(hvac.exceptions.InvalidRequest) as ei:
        naive.decrypt_data(
            prefix_of(svc) + "vbk",
            ciphertext=None,
            batch_input=[
                {"ciphertext": r.wrapped.decode(), "context": V.vault_context(r.backup_id, "vbk")}
                for r in refs
            ],
        )
    leaked = json.loads(ei.value.text)["data"]["batch_results"][0]["plaintext"]
    assert leaked in str(ei.value)
    with svc.backends.custody("vault", secret(custody)):
        out = svc.keys.backend("vault").unwrap(refs)
    assert isinstance(out[1], UnwrapError) and "bound to another backup" in str(out[1])
    assert leaked not in str(out[1])
    for r, d in ((refs[0], out[0]), (refs[2], out[2])):
        assert isinstance(d, SecretBytes)
        assert hashlib.sha256(d.reveal()).hexdigest() == prints[r.backup_id]


def test_attack_wrapped_dek_claiming_another_version_is_refused(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    fill(svc, 1, "vbk")
    (b, w) = svc.catalog.db.execute("SELECT id, wrapped_dek FROM backups").fetchone()
    with svc.backends.custody("vault", secret(custody)):
        (out,) = svc.keys.backend("vault").unwrap([DekRef(b, "vbk", 2, bytes(w))])
    assert isinstance(out, UnwrapError) and "not a transit ciphertext of it" in str(out)


# ---------------------------------------------------------------- rotation


def test_rotate_rewrap_retire_destroy(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 1200, "vbk")
    bob = unlock(svc, cast.bob)
    carol_e = enrol(svc, "carol", ("custodian",), alice)
    carol = unlock(svc, carol_e)
    name = prefix_of(svc) + "vbk"
    admin = bao.admin().secrets.transit
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
        assert admin.read_key(name)["data"]["latest_version"] == 2
        rep = svc.keys.rewrap("vbk", by=alice)
        assert rep.finished and rep.rewrapped == 1200 and not rep.failed
        assert {v.version: v.dek_count for v in svc.keys.get("vbk").versions} == {1: 0, 2: 1200}
        assert fingerprints(svc, "vbk") == prints
        be = svc.keys.backend("vault")
        assert be.batch_items == V.FIRST_BATCH  # type: ignore[attr-defined]
        # every stored wrap is a v2 ciphertext now
        (n,) = svc.catalog.db.execute(
            "SELECT count(*) FROM backups WHERE CAST(wrapped_dek AS TEXT) LIKE 'vault:v2:%'"
        ).fetchone()
        assert n == 1200
        old = bao.admin().secrets.transit.encrypt_data(
            name, plaintext=base64.b64encode(os.urandom(32)).decode(),
            context=V.vault_context(str(uuid.uuid4()), "vbk"), key_version=1,
        )["data"]["ciphertext"]  # fmt: skip
        svc.keys.retire("vbk", 1, next_code(svc, cast.alice), by=alice)
        assert admin.read_key(name)["data"]["min_decryption_version"] == 2
        with pytest.raises(Exception, match="too old"):
            admin.decrypt_data(
                name, ciphertext=old, context=V.vault_context(str(uuid.uuid4()), "vbk")
            )
        assert isinstance(svc.clock, Clock)
        svc.clock.advance(8 * 86400)
        r = svc.keys.request_destroy("vbk", 1, "v1 retired a week ago", by=alice)
        for who, e in ((bob, cast.bob), (carol, carol_e)):
            svc.approvals.approve(r.id, next_code(svc, e), by=who)
        key = admin.read_key(name)["data"]
        assert key["min_available_version"] == 2 and set(key["keys"]) == {"2"}
        assert key["min_encryption_version"] == 2
    assert svc.keys.get("vbk").versions[0].state == "destroyed"
    with svc.backends.custody("vault", secret(custody)):
        assert fingerprints(svc, "vbk") == prints  # v2 untouched


# ---------------------------------------------------------------- batches


def test_batch_size_found_from_a_larger_start(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    """Configured at 1,000 (over the default listener's limit): the first refusal halves
    it until the server accepts, and nothing is lost on the way."""
    _wrap, custody = setup_vault(svc, alice, bao, batch_items=1000)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 1100, "vbk")
    be = svc.keys.backend("vault")
    assert be.batch_items <= V.FIRST_BATCH  # type: ignore[attr-defined]
    with svc.backends.custody("vault", secret(custody)):
        assert fingerprints(svc, "vbk") == prints


def test_a_bad_item_in_a_rewrap_batch_is_recorded_and_the_rest_rewrapped(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 500, "vbk")
    a, b = svc.catalog.db.execute("SELECT id FROM backups ORDER BY rowid LIMIT 2").fetchall()
    with svc.catalog.transaction():  # backup a's row now holds b's wrapped DEK
        svc.catalog.db.execute(
            "UPDATE backups SET wrapped_dek=(SELECT wrapped_dek FROM backups WHERE id=?) "
            "WHERE id=?",
            (b[0], a[0]),
        )
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
        rep = svc.keys.rewrap("vbk", by=alice)
    assert rep.rewrapped == 499 and [f.backup for f in rep.failed] == [a[0]]
    assert "bound to another backup" in rep.failed[0].reason
    assert svc.keys.failures(rep.job)[0].backup == a[0]
    (row,) = svc.catalog.db.execute("SELECT kek_version FROM backups WHERE id=?", (a[0],))
    assert row[0] == 1  # kept as it was, under v1, nothing lost
    del prints[a[0]]


# ---------------------------------------------------------------- faults


def test_custody_token_without_rewrap_permission_stops_the_job_audited(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 300, "vbk")
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
    with (
        svc.backends.custody("vault", secret(wrap)),
        pytest.raises(BackendError, match="do not allow it") as ei,
    ):
        svc.keys.rewrap("vbk", by=alice)
    assert "custodian-wrap" in str(ei.value)
    (stop,) = entries(svc, "kek.rewrap.stop")
    assert stop["outcome"] == "error" and "refused" in stop["details"]["reason"]  # type: ignore[index]
    assert svc.keys.get("vbk").versions[0].dek_count == 300  # nothing moved, nothing lost
    with svc.backends.custody("vault", secret(custody)):
        rep = svc.keys.rewrap("vbk", by=alice)
        assert rep.finished and rep.rewrapped == 300
        assert fingerprints(svc, "vbk") == prints


def test_expired_token_is_said_so(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    fill(svc, 10, "vbk")
    short = bao.token("custodian-custody", ttl="2s")
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
    time.sleep(2.5)
    with (
        svc.backends.custody("vault", secret(short)),
        pytest.raises(BackendError, match="expired, revoked or wrong"),
    ):
        svc.keys.rewrap("vbk", by=alice)
    assert entries(svc, "kek.rewrap.stop")
    assert svc.keys.get("vbk").versions[0].dek_count == 10


def test_missing_key_is_said_so(
    svc: Service, cast: Cast, alice: Actor, bao: openbao.Server
) -> None:
    _wrap, custody = setup_vault(svc, alice, bao)
    create_kek(svc, cast, alice, custody)
    prints = fill(svc, 20, "vbk")
    name = prefix_of(svc) + "vbk"
    admin = bao.admin().secrets.transit
    with svc.backends.custody("vault", secret(custody)):
        svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
    backup = admin.backup_key  # the key goes away (deleted on the server) and comes back
    admin.update_key_configuration(name, deletion_allowed=True, exportable=True,
                                   allow_plaintext_backup=True)  # fmt: skip
    blob = backup(name)["data"]["backup"]
    admin.delete_key(name)
    svc.close()
    s2 = Service.open(svc.ctx.home.path)
    try:
        a2 = unlock(s2, cast.alice)
        with (
            s2.backends.custody("vault", secret(custody)),
            pytest.raises(BackendError, match="missing on this server"),
        ):
            s2.keys.rewrap("vbk", by=a2)
        h = s2.backends.check("vault")
        assert not h.ok and "missing on this server" in h.detail
        assert s2.keys.get("vbk").versions[0].dek_count == 20
        admin.restore_key(blob, name=name)
        with s2.backends.custody("vault", secret(custody)):
            assert s2.keys.rewrap("vbk", by=a2).rewrapped == 20
            assert fingerprints(s2, "vbk") == prints
    finally:
        s2.close()


def test_hung_server_times_out_in_bounded_time(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    server = openbao.dev(tmp_path / "hung")
    try:
        _wrap, custody = setup_vault(svc, alice, server, timeout_seconds=1)
        create_kek(svc, cast, alice, custody)
        fill(svc, 600, "vbk")
        with svc.backends.custody("vault", secret(custody)):
            svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
            server.pause()
            try:
                t = time.monotonic()
                h = svc.backends.check("vault")
                assert time.monotonic() - t < 4
                assert not h.ok and "did not answer within 1 s" in h.detail
                t = time.monotonic()
                with pytest.raises(BackendError, match="did not answer within 1 s"):
                    svc.keys.rewrap("vbk", by=alice)
                assert time.monotonic() - t < 6
            finally:
                server.resume()
            assert svc.keys.get("vbk").versions[0].dek_count == 600
            assert svc.keys.rewrap("vbk", by=alice).finished
    finally:
        server.stop()


def test_server_killed_mid_rewrap_then_restarted(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    """A non-dev server with file storage is killed (SIGKILL) while the job runs: the job
    stops with a clear error; the server restarts on the same storage, the job resumes
    from its cursor, and every DEK opens to what it was."""
    server = openbao.FileServer(tmp_path / "file")
    server.start()
    try:
        _wrap, custody = setup_vault(svc, alice, server)
        create_kek(svc, cast, alice, custody)
        prints = fill(svc, 6000, "vbk")
        killed = threading.Event()

        def progress(done: int, total: int) -> None:
            if done >= 1000 and not killed.is_set():
                server.kill()
                killed.set()

        with svc.backends.custody("vault", secret(custody)):
            svc.keys.rotate("vbk", next_code(svc, cast.alice), by=alice)
            with pytest.raises(BackendError, match="cannot be reached"):
                svc.keys.rewrap("vbk", by=alice, batch_size=500, progress=progress)
        job = R.jobs(svc.catalog.db, "vbk")[-1]
        assert 1000 <= job.rewrapped < 6000 and job.state == "running"
        assert svc.keys.job_states([job])[job.id] == "interrupted"
        census = {v.version: v.dek_count for v in svc.keys.get("vbk").versions}
        assert sum(census.values()) == 6000
        server.start()
        with svc.backends.custody("vault", secret(custody)):
            rep = svc.keys.rewrap("vbk", by=alice, batch_size=500)
            assert rep.finished and rep.remaining == 0 and not rep.failed
            assert fingerprints(svc, "vbk") == prints
        assert entries(svc, "kek.rewrap.stop")
    finally:
        server.stop()


# ---------------------------------------------------------------- TLS and AppRole


def test_tls_with_a_ca_file_and_without_it(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    server = openbao.dev(tmp_path / "tls", tls=True)
    try:
        assert isinstance(server, openbao.TlsServer)
        server.setup_transit(prefix_of(svc))
        h = svc.backends.check_options("vault", {"address": server.address})
        assert not h.ok and "TLS handshake failed" in h.detail  # the CA is not trusted
        svc.backends.configure(
            "vault", {"address": server.address, "ca_file": str(server.ca_file)}, by=alice
        )
        svc.backends.set_wrap_credential("vault", secret(server.token("custodian-wrap")), by=alice)
        create_kek(svc, cast, alice, server.token("custodian-custody"))
        assert svc.backends.check("vault").ok
        prints = fill(svc, 10, "vbk")
        with svc.backends.custody("vault", secret(server.token("custodian-custody"))):
            assert fingerprints(svc, "vbk") == prints
    finally:
        server.stop()


def test_approle_credentials(svc: Service, cast: Cast, alice: Actor, bao: openbao.Server) -> None:
    """Both credentials as AppRole secret ids; the role ids (not secrets) in the file."""
    bao.setup_transit(prefix_of(svc))
    admin = bao.admin()
    mount = f"approle-{uuid.uuid4().hex[:6]}"
    admin.sys.enable_auth_method("approle", path=mount)
    ids = {}
    for role in ("custodian-wrap", "custodian-custody"):
        admin.auth.approle.create_or_update_approle(
            role, token_policies=[role], token_ttl="10m", mount_point=mount
        )
        rid = admin.auth.approle.read_role_id(role, mount_point=mount)["data"]["role_id"]
        sid = admin.auth.approle.generate_secret_id(role, mount_point=mount)["data"]["secret_id"]
        ids[role] = (rid, sid)
    svc.backends.configure(
        "vault",
        {
            "address": bao.address,
            "auth": "approle",
            "approle_mount": mount,
            "wrap_role_id": ids["custodian-wrap"][0],
            "custody_role_id": ids["custodian-custody"][0],
        },
        by=alice,
    )
    svc.backends.set_wrap_credential("vault", secret(ids["custodian-wrap"][1]), by=alice)
    create_kek(svc, cast, alice, ids["custodian-custody"][1])
    prints = fill(svc, 20, "vbk")
    with svc.backends.custody("vault", secret(ids["custodian-custody"][1])):
        assert fingerprints(svc, "vbk") == prints
    with (
        svc.backends.custody("vault", secret("not-a-secret-id")),
        pytest.raises(BackendError, match="invalid role or secret ID"),
    ):
        fingerprints(svc, "vbk")
