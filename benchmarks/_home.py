"""Benchmark homes, made through the service facade the way the tests and the demo do.

Acting calls take ``by=<Actor>``. A bench home has three people, enrolled as
tests/conftest.py does it:

* ``bench-custodian``: custodian role, passphrase, TOTP (the first custodian,
  enrolled by the home identity during bootstrap); makes KEK versions.
* ``bench-custodian-2``: the second custodian, so that a restore can be
  approved (a quorum of two distinct custodians, neither of them the requester).
* ``backup-bot``: a service identity (operator only, no passphrase, no TOTP),
  enrolled by the custodian; encrypts backups, also from the command line
  (``--as backup-bot`` needs no passphrase).

The root key stays in a keyring file inside the home, never the user's keyring.
"""

from __future__ import annotations

from pathlib import Path

from custodian import people as P
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service

CUSTODIAN = "bench-custodian"
CUSTODIAN_2 = "bench-custodian-2"
BOT = "backup-bot"
PHRASE = b"bench-only passphrase, not a secret"


def make_home(
    path: Path, *, suite: str = "mlkem768-x25519", kek: str = "backups", people: bool = True
) -> Service:
    """A fresh home (root key in a file inside it), with the two bench people enrolled."""
    svc = Service.init(path, kek=kek, suite=suite, keyring_backend="home-file")
    if people:
        try:
            enrol_people(svc)
        except BaseException:
            svc.close()
            raise
    return svc


def enrol_people(svc: Service) -> None:
    pw = SecretBytes(PHRASE, "passphrase")
    pending = svc.begin_enrolment(CUSTODIAN, ("custodian",), passphrase=pw, by=None)
    code = P.hotp(pending.totp, P.current_step()) if pending.totp else None
    svc.complete_enrolment(pending, code, by=None)
    by = custodian(svc)
    try:
        pending = svc.begin_enrolment(BOT, ("operator",), passphrase=None, by=by, service=True)
        svc.complete_enrolment(pending, None, by=by)
        pending = svc.begin_enrolment(CUSTODIAN_2, ("custodian",), passphrase=pw, by=by)
        code = P.hotp(pending.totp, P.current_step()) if pending.totp else None
        svc.complete_enrolment(pending, code, by=by)
    finally:
        by.forget()


def custodian(svc: Service) -> Actor:
    """The bench custodian, signed in (its key unlocked with its passphrase)."""
    return svc.unlock(CUSTODIAN, SecretBytes(PHRASE, "passphrase"))


def bot(svc: Service) -> Actor:
    """The service identity ``backup-bot`` (no passphrase)."""
    return svc.unlock(BOT, None)


def open_session(svc: Service, backup_ids: list[str], target: Path) -> str:
    """An open restore session for ``backup_ids`` into ``target``, made the real way:
    backup-bot asks, both bench custodians approve with a fresh TOTP code each.

    The codes are computed from the TOTP secrets sealed in the bench home (the
    benchmark plays the custodians' phones). Returns the session id.
    """
    r = svc.request_restore(backup_ids, "benchmark restore", target, by=bot(svc))
    for name in (CUSTODIAN, CUSTODIAN_2):
        by = svc.unlock(name, SecretBytes(PHRASE, "passphrase"))
        step = max(svc.catalog.totp_last_step(name) + 1, P.current_step(svc.clock()))
        with svc.sealed.unseal(svc._load_ksk(), f"totp/{name}/g1") as secret:
            code = P.hotp(secret, step)
        r = svc.approve(r.id, code, by=by)
        by.forget()
    if r.session is None:
        raise RuntimeError(f"the bench restore request is {r.state}, not approved")
    return r.session.id
