"""Regression tests for faults found in review: each once lost a key, broke the
log for good, or leaked a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from custodian import cli
from custodian import people as P
from custodian.errors import ConflictError, KeyringError
from custodian.keystore import Keyring
from custodian.service import Service
from tests.conftest import Cast, approved_session, unlock


def test_kek_names_differing_only_in_case_are_refused(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    """'Backups' once overwrote the sealed private key of 'backups' v1."""
    alice = unlock(svc, cast.alice)
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(b"precious"), tmp_path / "p.cbk", by=bot)
    with pytest.raises(ConflictError, match="differ in more than case"):
        svc.keys.create("Backups", by=alice)
    assert [k.name for k in svc.keys.list()] == ["backups"]
    out = tmp_path / "restored"
    session = approved_session(svc, cast, [b.id], tmp_path)
    svc.restores._decrypt_backup(svc.backups.get(b.id), out, session=session)
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("name", ["alice\n", "alice\nbob", "Alice", "al ice"])
def test_person_names_with_a_trailing_newline_or_worse_are_refused(name: str) -> None:
    with pytest.raises(Exception, match="name"):
        P.check_name(name)


def test_kek_name_with_a_newline_is_refused(svc: Service, cast: Cast) -> None:
    with pytest.raises(Exception, match="not a valid KEK name"):
        svc.keys.create("backups2\n", by=unlock(svc, cast.alice))


def test_signing_out_after_being_disabled_keeps_the_log_verifiable(
    svc: Service, cast: Cast
) -> None:
    """A session outliving its person (or key) must not sign with the dead key."""
    bob = svc.auth.sign_in("bob", P.SecretBytes(cast.bob.passphrase.encode()), cast.bob.code(1))
    svc.people.disable("bob", by=unlock(svc, cast.alice), reason="left")
    svc.auth.sign_out(bob)
    last = svc.audit.entries()[-1]
    assert last["action"] == "person.sign_out" and last["actor"] == "home"
    assert last["subject"] == "person:bob"
    assert svc.audit.verify().ok
    with pytest.raises(P.AuthError):
        bob.sign(b"x")


def test_signing_out_after_own_key_replacement_keeps_the_log_verifiable(
    svc: Service, cast: Cast
) -> None:
    alice = unlock(svc, cast.alice)
    other = unlock(svc, cast.alice)  # a second session of alice (another terminal)
    svc.people.replace_key("alice", P.SecretBytes(b"alice new passphrase long enough"), by=alice)
    svc.auth.sign_out(other)
    assert svc.audit.entries()[-1]["actor"] == "home"
    assert svc.audit.verify().ok


def test_checkpoint_to_an_existing_file_records_nothing(
    svc: Service, cast: Cast, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "cp.json"
    target.write_text("keep me")
    before = len(svc.audit.entries())
    rc = cli.main(
        ["--home", str(svc.home.path), "audit", "checkpoint", "-o", str(target), "--as", "bot"]
    )
    assert rc != 0
    assert "exists" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    assert len(svc.audit.entries()) == before


def test_acting_as_an_unknown_name_is_refused_and_recorded(
    svc: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "s"
    src.write_bytes(b"x")
    rc = cli.main(
        [
            "--home",
            str(svc.home.path),
            "backup",
            "encrypt",
            str(src),
            str(tmp_path / "d.cbk"),
            "--as",
            "mallory",
        ]
    )
    assert rc == 7
    assert "nobody named 'mallory'" in capsys.readouterr().err
    last = svc.audit.entries()[-1]
    assert last["outcome"] == "refused" and "mallory" not in str(last)
    assert not (tmp_path / "d.cbk").exists()


def test_a_keyring_backend_that_cannot_load_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no_such_package.Keyring")
    kr = Keyring("system", tmp_path, "home-id")
    with pytest.raises(KeyringError, match=r"could not be loaded.*PYTHON_KEYRING_BACKEND"):
        kr.get("ksk")
    assert kr.description == "unavailable"
