"""Shared fixtures. Every test points the home and the keyring at tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from custodian import hardening
from custodian import people as P
from custodian.approvals import Session
from custodian.custody import personal
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUSTODIAN_HOME", raising=False)
    # Never let a test reach the real keyring of whoever runs the suite.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    # scrypt at full cost (2**15) takes 0.1 s a call; the format carries the cost,
    # so in-process tests use a cheaper one. Subprocess tests use the real cost.
    monkeypatch.setattr(P, "SCRYPT_LOG_N", 10)
    # The same for Argon2id (512 MiB, 2 passes): the blob records its parameters, so
    # in-process tests use the cheap ones a demo home uses.
    monkeypatch.setattr(P, "KDF", personal.CHEAP_KDF)
    # custodian.cli.main forbids core dumps for good (RLIMIT_CORE hard limit 0, not
    # dumpable): called in-process it would do that to this test worker, and a later
    # test could no longer let a child dump core (tests/integration/test_core_dumps.py).
    # Subprocesses get the real thing.
    monkeypatch.setattr(hardening, "no_core_dumps", lambda: None)


@dataclass
class Enrolled:
    name: str
    passphrase: str
    totp: SecretBytes | None

    def code(self, step_offset: int = 0) -> str:
        assert self.totp is not None
        return P.hotp(self.totp, P.current_step() + step_offset)


def enrol(
    svc: Service,
    name: str,
    roles: tuple[str, ...],
    by: Actor | None,
    *,
    service: bool = False,
    passphrase: str | None = None,
) -> Enrolled:
    """Enrol someone the way the ceremony does, keeping their TOTP secret for the test."""
    phrase = None if service else (passphrase or f"{name} test passphrase long enough")
    pw = SecretBytes(phrase.encode()) if phrase else None
    pending = svc.people.begin_enrolment(name, roles, passphrase=pw, by=by, service=service)
    secret = SecretBytes(bytes(pending.totp.reveal())) if pending.totp else None
    code = P.hotp(secret, P.current_step()) if secret else None
    svc.people.complete_enrolment(pending, code, by=by)
    return Enrolled(name, phrase or "", secret)


def enrol_by_request(
    svc: Service, name: str, roles: tuple[str, ...], by: Enrolled, approver: Enrolled
) -> Enrolled:
    """Enrol someone after bootstrap (the home has a quorum KEK): ``by`` asks, ``approver``
    approves (a quorum of 2 with the requester), the new person completes in person with
    ``approver`` witnessing."""
    r = svc.people.changes.request(
        "enrol", name, by=unlock(svc, by), reason="test enrolment", roles=roles
    )
    svc.approvals.approve(r.id, next_code(svc, approver), by=unlock(svc, approver))
    phrase = f"{name} test passphrase long enough"
    c = svc.people.changes.begin(r.id, passphrase=SecretBytes(phrase.encode()))
    assert c.totp is not None
    secret = SecretBytes(bytes(c.totp.reveal()))
    svc.people.changes.complete(
        c,
        P.hotp(secret, P.current_step(svc.clock())),
        witness=unlock(svc, approver),
        witness_code=next_code(svc, approver),
    )
    return Enrolled(name, phrase, secret)


def unlock(svc: Service, who: Enrolled) -> Actor:
    pw = SecretBytes(who.passphrase.encode()) if who.passphrase else None
    return svc.auth.unlock(who.name, pw)


@dataclass
class Cast:
    """The people of a test home: two custodians, an operator, an auditor, a cron bot."""

    alice: Enrolled
    bob: Enrolled
    oscar: Enrolled
    audrey: Enrolled
    bot: Enrolled


def _make(home: Path, suite: str) -> tuple[Service, Cast]:
    s = Service.init(home, keyring_backend="home-file", suite=suite)
    alice = enrol(s, "alice", ("custodian",), None)
    a = unlock(s, alice)
    cast = Cast(
        alice=alice,
        bob=enrol(s, "bob", ("custodian",), a),
        oscar=enrol(s, "oscar", ("operator",), a),
        audrey=enrol(s, "audrey", ("auditor",), a),
        bot=enrol(s, "bot", ("operator",), a, service=True),
    )
    return s, cast


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def home_and_cast(home: Path) -> Iterator[tuple[Service, Cast]]:
    s, cast = _make(home, "x25519")
    yield s, cast
    s.close()


@pytest.fixture
def svc(home_and_cast: tuple[Service, Cast]) -> Service:
    return home_and_cast[0]


@pytest.fixture
def cast(home_and_cast: tuple[Service, Cast]) -> Cast:
    return home_and_cast[1]


@pytest.fixture
def bot(svc: Service, cast: Cast) -> Actor:
    """The cron service identity: an operator with no passphrase."""
    return unlock(svc, cast.bot)


@pytest.fixture
def alice(svc: Service, cast: Cast) -> Actor:
    return unlock(svc, cast.alice)


@pytest.fixture
def hybrid_svc(tmp_path: Path) -> Iterator[Service]:
    s, _ = _make(tmp_path / "hhome", "mlkem768-x25519")
    yield s
    s.close()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


class Clock:
    """A clock a test moves by hand; install with ``svc.clock = Clock()``."""

    def __init__(self, start: float | None = None) -> None:
        import time

        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def next_code(svc: Service, who: Enrolled) -> str:
    """A code ``who`` has not used yet: the step after their last one (TOTP steps only go
    forward). Moves a :class:`Clock` on when that step is not yet within the window."""
    now = P.current_step(svc.clock())
    step = max(svc.catalog.totp_last_step(who.name) + 1, now)
    if step > now + 1:
        assert isinstance(svc.clock, Clock), "install a tests.conftest.Clock to approve twice"
        svc.clock.advance(P.TOTP_PERIOD * (step - now - 1))
    assert who.totp is not None
    return P.hotp(who.totp, step)


def approved_session(
    svc: Service, cast: Cast, backups: list[str], target: Path, reason: str = "test restore"
) -> Session:
    """An open restore session, made the real way: oscar asks, alice and bob approve."""
    oscar = unlock(svc, cast.oscar)
    r = svc.restores.request(backups, reason, target, by=oscar)
    svc.approvals.approve(r.id, next_code(svc, cast.alice), by=unlock(svc, cast.alice))
    r = svc.approvals.approve(r.id, next_code(svc, cast.bob), by=unlock(svc, cast.bob))
    assert r.session is not None and r.state == "approved"
    return r.session
