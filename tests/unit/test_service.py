"""The service facade over a real home in tmp_path: init, encrypt, import, decrypt."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from custodian.catalog import SCHEMA_VERSION, Backup, Catalog
from custodian.errors import (
    CatalogError,
    ConfigError,
    ConflictError,
    ContainerError,
    HomeError,
    KeyringError,
    NotFoundError,
    SealError,
    UnwrapError,
)
from custodian.keystore import SealedStore
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, approved_session


def _out(tmp: Path) -> Path:
    """Where restores go: not the directory that holds the containers (a request into
    a directory that already holds a backup's restore name is refused)."""
    d = tmp / "restore"
    d.mkdir(exist_ok=True)
    return d


def _enc(svc: Service, tmp: Path, data: bytes, name: str = "b.cbk", **kw: Any) -> Backup:
    by = svc.auth.unlock("bot", None)
    return svc.backups.encrypt(io.BytesIO(data), tmp / name, by=by, label=name, **kw)


def test_init_makes_a_private_home_with_a_first_kek(svc: Service, home: Path) -> None:
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for p in [home / "custodian.toml", home / "catalog.db", *(home / "sealed").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    (kek,) = svc.keys.list()
    assert (kek.name, kek.backend, kek.suite, kek.current_version) == (
        "backups",
        "local",
        "x25519",
        1,
    )
    assert kek.versions[0].state == "active"
    assert len(kek.versions[0].fingerprint.split()) == 8
    # the catalog holds no private key: only the sealed store does
    raw = home.joinpath("catalog.db").read_bytes()
    sealed = SealedStore(home / "sealed")
    with sealed.unseal(svc.ctx.load_ksk(), "kek/backups/v1") as priv:
        assert bytes(priv.reveal()) not in raw


def test_init_refuses_an_existing_home(svc: Service, home: Path) -> None:
    with pytest.raises(HomeError, match="already a custodian home"):
        Service.init(home, keyring_backend="home-file")


def test_open_missing_home_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match=r"custodian --home .* init"):
        Service.open(tmp_path / "nowhere")


def test_open_refuses_loose_permissions_and_reads_nothing(svc: Service, home: Path) -> None:
    os.chmod(home / "catalog.db", 0o644)
    with pytest.raises(HomeError, match="chmod -R go-rwx"):
        Service.open(home)
    os.chmod(home / "catalog.db", 0o600)
    os.chmod(home, 0o755)
    with pytest.raises(HomeError, match="readable or writable by others"):
        Service.open(home)
    os.chmod(home, 0o700)
    Service.open(home).close()


def test_system_keyring_unavailable_is_named_and_leaves_no_home(tmp_path: Path) -> None:
    # conftest points python-keyring at its "fail" backend: like a bare server.
    with pytest.raises(KeyringError, match="PYTHON_KEYRING_BACKEND"):
        Service.init(tmp_path / "h")
    assert not (tmp_path / "h").exists()


def test_encrypt_records_and_decrypts_under_each_version(
    svc: Service, tmp_path: Path, alice: Actor, cast: Cast
) -> None:
    b1 = _enc(svc, tmp_path, b"one" * 1000, "one.cbk")
    v2 = svc.keys.add_version("backups", by=alice)
    b2 = _enc(svc, tmp_path, b"two" * 1000, "two.cbk")
    assert (b1.kek_version, b2.kek_version, v2.version) == (1, 2, 2)
    census = {v.version: v.dek_count for v in svc.keys.get("backups").versions}
    assert census == {1: 1, 2: 1}
    session = approved_session(svc, cast, [b1.id, b2.id], _out(tmp_path))
    for b, data in ((b1, b"one" * 1000), (b2, b"two" * 1000)):
        out = _out(tmp_path) / f"{b.id}.out"
        w = svc.restores._decrypt_backup(b, out, session=session)
        assert out.read_bytes() == data
        assert w.sha256 == b.container_sha256


def test_every_backup_gets_its_own_dek(svc: Service, tmp_path: Path, cast: Cast) -> None:
    a = _enc(svc, tmp_path, b"same", "a.cbk")
    b = _enc(svc, tmp_path, b"same", "b.cbk")
    session = approved_session(svc, cast, [a.id, b.id], _out(tmp_path))
    da, db = svc.restores._unwrap(a, session=session), svc.restores._unwrap(b, session=session)
    assert da != db
    assert "redacted" in repr(da) and bytes(da.reveal()).hex() not in repr(da)


def test_encrypt_refuses_to_overwrite_without_force(svc: Service, tmp_path: Path) -> None:
    dst = tmp_path / "x.cbk"
    dst.write_bytes(b"precious")
    with pytest.raises(ConflictError, match="--force"):
        _enc(svc, tmp_path, b"new", "x.cbk")
    assert dst.read_bytes() == b"precious"
    assert svc.backups.total() == 0
    _enc(svc, tmp_path, b"new", "x.cbk", force=True)
    assert svc.backups.total() == 1


def test_encrypt_under_unknown_kek_writes_nothing(svc: Service, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="kek list"):
        _enc(svc, tmp_path, b"x", kek="nope")
    assert not (tmp_path / "b.cbk").exists()


def test_swapped_wrapped_dek_does_not_unwrap(svc: Service, tmp_path: Path, cast: Cast) -> None:
    a = _enc(svc, tmp_path, b"a", "a.cbk")
    b = _enc(svc, tmp_path, b"b", "b.cbk")
    forged = replace(a, wrapped_dek=b.wrapped_dek)
    session = approved_session(svc, cast, [a.id], _out(tmp_path))
    with pytest.raises(UnwrapError, match="bound to another backup"):
        svc.restores._decrypt_backup(forged, _out(tmp_path) / "out", session=session)
    assert not (_out(tmp_path) / "out").exists()


def test_wrong_kek_version_does_not_unwrap(
    svc: Service, tmp_path: Path, alice: Actor, cast: Cast
) -> None:
    a = _enc(svc, tmp_path, b"a", "a.cbk")
    svc.keys.add_version("backups", by=alice)
    session = approved_session(svc, cast, [a.id], _out(tmp_path))
    with pytest.raises(UnwrapError):
        svc.restores._decrypt_backup(
            replace(a, kek_version=2), _out(tmp_path) / "out", session=session
        )
    assert not (_out(tmp_path) / "out").exists()


def test_header_of_another_backup_is_refused(svc: Service, tmp_path: Path, cast: Cast) -> None:
    a = _enc(svc, tmp_path, b"a" * 5000, "a.cbk")
    b = _enc(svc, tmp_path, b"b" * 5000, "b.cbk")
    moved = replace(a, location=b.location)
    session = approved_session(svc, cast, [a.id], _out(tmp_path))
    with pytest.raises(ContainerError, match="another backup"):
        svc.restores._decrypt_backup(moved, _out(tmp_path) / "out", session=session)
    assert not (_out(tmp_path) / "out").exists()


def test_flipped_byte_in_stored_container_writes_no_plaintext(
    svc: Service, tmp_path: Path, cast: Cast
) -> None:
    a = _enc(svc, tmp_path, os.urandom(3 * 1024 * 1024), "a.cbk", chunk_size=1024 * 1024)
    session = approved_session(svc, cast, [a.id], _out(tmp_path))
    p = Path(a.location)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40
    p.write_bytes(data)
    with pytest.raises(ContainerError, match="chunk 1"):
        svc.restores._decrypt_backup(a, _out(tmp_path) / "out", session=session)
    assert (
        sorted(x.name for x in _out(tmp_path).iterdir() if x.name.startswith((".out", "out"))) == []
    )


def test_container_replaced_by_an_older_copy_fails_the_hash(
    svc: Service, tmp_path: Path, cast: Cast
) -> None:
    a = _enc(svc, tmp_path, b"a" * 100, "a.cbk")
    session = approved_session(svc, cast, [a.id], _out(tmp_path))
    with pytest.raises(ContainerError, match="digest differs"):
        svc.restores._decrypt_backup(
            replace(a, container_sha256="0" * 64), _out(tmp_path) / "out", session=session
        )
    assert not (_out(tmp_path) / "out").exists()


def test_import_rebuilds_a_lost_catalog_entry(svc: Service, tmp_path: Path, cast: Cast) -> None:
    a = _enc(svc, tmp_path, b"payload" * 50, "a.cbk")
    with svc.catalog.transaction() as db:
        db.execute("DELETE FROM backups")
    b = svc.backups.import_file(Path(a.location), by=svc.auth.unlock("bot", None))
    assert (b.id, b.kek_version, b.wrapped_dek, b.container_sha256) == (
        a.id,
        a.kek_version,
        a.wrapped_dek,
        a.container_sha256,
    )
    session = approved_session(svc, cast, [b.id], _out(tmp_path))
    svc.restores._decrypt_backup(b, _out(tmp_path) / "out", session=session)
    assert (_out(tmp_path) / "out").read_bytes() == b"payload" * 50
    with pytest.raises(ConflictError, match="already in the catalog"):
        svc.backups.import_file(Path(b.location), by=svc.auth.unlock("bot", None))


def test_import_refuses_non_containers_and_unknown_keks(
    svc: Service, tmp_path: Path, hybrid_svc: Service
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a container at all")
    with pytest.raises(ContainerError, match="not a custodian backup container"):
        svc.backups.import_file(junk, by=svc.auth.unlock("bot", None))
    other = hybrid_svc.keys.create("elsewhere", by=hybrid_svc.ctx.home_actor())
    c = hybrid_svc.backups.encrypt(
        io.BytesIO(b"x"), tmp_path / "c.cbk", by=hybrid_svc.auth.unlock("bot", None), kek=other.name
    )
    with pytest.raises(NotFoundError, match="elsewhere"):
        svc.backups.import_file(Path(c.location), by=svc.auth.unlock("bot", None))
    assert svc.backups.total() == 0


def test_wrong_root_key_in_keyring_is_named(svc: Service, home: Path) -> None:
    svc.close()
    s = Service.open(home)
    s.keyring.store_ksk(SecretBytes.random(32))
    with pytest.raises(KeyringError, match="not this home's"):
        s.ctx.load_ksk()
    s.close()


def test_sealed_blob_renamed_or_tampered_is_refused(svc: Service, home: Path) -> None:
    ksk = svc.ctx.load_ksk()
    sealed = SealedStore(home / "sealed")
    blob = home / "sealed" / "kek__backups__v1.sealed"
    original = blob.read_bytes()
    (home / "sealed" / "kek__backups__v9.sealed").write_bytes(original)
    with pytest.raises(SealError, match="tampered or renamed"):
        sealed.unseal(ksk, "kek/backups/v9")
    bad = bytearray(original)
    bad[-1] ^= 1
    blob.write_bytes(bad)
    with pytest.raises(SealError):
        sealed.unseal(ksk, "kek/backups/v1")
    with pytest.raises(SealError, match="another root key"):
        blob.write_bytes(original)
        sealed.unseal(SecretBytes.random(32), "kek/backups/v1")


def test_policy_with_a_quorum_of_one_is_refused_at_load(svc: Service, home: Path) -> None:
    cfg = home / "custodian.toml"
    cfg.write_text(cfg.read_text().replace("approval_quorum = 2", "approval_quorum = 1"))
    with pytest.raises(ConfigError, match="at least 2"):
        Service.open(home)


def test_catalog_is_migrated_and_refuses_a_newer_schema(svc: Service, home: Path) -> None:
    db = sqlite3.connect(home / "catalog.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(CatalogError, match="newer than this custodian"):
        Catalog(home / "catalog.db")


def test_list_filters_sorts_and_pages(svc: Service, tmp_path: Path) -> None:
    for i, name in enumerate(["b_x", "a%y", "c_z"]):
        _enc(svc, tmp_path, b"." * (i + 1), f"{i}.cbk")
        with svc.catalog.transaction() as db:
            db.execute("UPDATE backups SET label=? WHERE label=?", (name, f"{i}.cbk"))
    assert [b.label for b in svc.backups.list(order="label", descending=False)] == [
        "a%y",
        "b_x",
        "c_z",
    ]
    assert [b.label for b in svc.backups.list(text="%")] == ["a%y"]  # LIKE wildcards are literal
    assert [b.label for b in svc.backups.list(text="_")] != []
    assert svc.backups.count(text="_") == 2
    assert [b.size for b in svc.backups.list(order="size", limit=1, offset=1)] == [2]
    assert (
        svc.backups.get(svc.backups.list(limit=1)[0].id[:8]).id == svc.backups.list(limit=1)[0].id
    )


def test_service_default_chunk_matches_the_container() -> None:
    from custodian import container, service

    assert service.DEFAULT_CHUNK == container.DEFAULT_CHUNK


def _pw(name: str) -> SecretBytes:
    return SecretBytes(f"{name} test passphrase long enough".encode())


def test_a_home_may_name_containers_by_whole_file_sha256(
    svc: Service, tmp_path: Path, cast: Cast
) -> None:
    """container_digest = "sha256": the catalog holds what sha256sum prints. Entries made
    so keep verifying that way after the home switches back to t1."""
    import hashlib

    from custodian.config import Config

    svc.ctx.config = replace(svc.config, container_digest="sha256")
    a = _enc(svc, tmp_path, b"old" * 500, "old.cbk")
    assert a.container_sha256 == hashlib.sha256(Path(a.location).read_bytes()).hexdigest()
    svc.config.save(svc.home.config)
    assert Config.load(svc.home.config).container_digest == "sha256"
    svc.ctx.config = replace(svc.config, container_digest="tags")
    b = _enc(svc, tmp_path, b"new" * 500, "new.cbk")
    assert b.container_sha256.startswith("t1:")
    session = approved_session(svc, cast, [a.id, b.id], _out(tmp_path))
    for x, data in ((a, b"old" * 500), (b, b"new" * 500)):
        out = _out(tmp_path) / f"{x.id}.out"
        assert svc.restores._decrypt_backup(x, out, session=session).sha256 == x.container_sha256
        assert out.read_bytes() == data
    bad = svc.home.config.read_text().replace('"sha256"', '"md5"')
    svc.home.config.write_text(bad)
    with pytest.raises(ConfigError, match="container_digest"):
        Config.load(svc.home.config)
