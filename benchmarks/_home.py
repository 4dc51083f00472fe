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
    pending = svc.people.begin_enrolment(CUSTODIAN, ("custodian",), passphrase=pw, by=None)
    code = P.hotp(pending.totp, P.current_step()) if pending.totp else None
    svc.people.complete_enrolment(pending, code, by=None)
    by = custodian(svc)
    try:
        pending = svc.people.begin_enrolment(
            BOT, ("operator",), passphrase=None, by=by, service=True
        )
        svc.people.complete_enrolment(pending, None, by=by)
        pending = svc.people.begin_enrolment(CUSTODIAN_2, ("custodian",), passphrase=pw, by=by)
        code = P.hotp(pending.totp, P.current_step()) if pending.totp else None
        svc.people.complete_enrolment(pending, code, by=by)
    finally:
        by.forget()


def custodian(svc: Service) -> Actor:
    """The bench custodian, signed in (its key unlocked with its passphrase)."""
    return svc.auth.unlock(CUSTODIAN, SecretBytes(PHRASE, "passphrase"))


def bot(svc: Service) -> Actor:
    """The service identity ``backup-bot`` (no passphrase)."""
    return svc.auth.unlock(BOT, None)


def fresh_steps(svc: Service, names: tuple[str, ...] = (CUSTODIAN, CUSTODIAN_2)) -> dict[str, int]:
    """A TOTP step each of ``names`` has not used yet, moving ``svc.clock`` on if need be.

    TOTP steps only go forward per person and a code is accepted for the step
    before, at and after now, so one bench person can confirm about twice per
    30 s. When the next unused step is further ahead than that (benchmark
    rounds a few seconds apart), this process's clock is moved on to it, as the
    tests do with ``tests.conftest.Clock``; the codes are still checked for real.
    """
    last = {n: svc.catalog.totp_last_step(n) for n in names}
    ahead = max(last.values()) + 1 - (P.current_step(svc.clock()) + 1)
    if ahead > 0:
        base = svc.clock
        svc.clock = lambda: base() + ahead * P.TOTP_PERIOD
    now = P.current_step(svc.clock())
    return {n: max(s + 1, now) for n, s in last.items()}


def code_for(svc: Service, name: str, step: int) -> str:
    """``name``'s TOTP code for ``step``, from the secret sealed in the bench home."""
    with svc.sealed.unseal(svc.ctx.load_ksk(), f"totp/{name}/g1") as secret:
        return P.hotp(secret, step)


def open_session(svc: Service, backup_ids: list[str], target: Path) -> str:
    """An open restore session for ``backup_ids`` into ``target``, made the real way:
    backup-bot asks, both bench custodians approve with a fresh TOTP code each.

    The codes are computed from the TOTP secrets sealed in the bench home (the
    benchmark plays the custodians' phones). Returns the request id (which
    ``svc.restores.run`` takes).
    """
    steps = fresh_steps(svc)
    r = svc.restores.request(backup_ids, "benchmark restore", target, by=bot(svc))
    for name in (CUSTODIAN, CUSTODIAN_2):
        by = svc.auth.unlock(name, SecretBytes(PHRASE, "passphrase"))
        r = svc.approvals.approve(r.id, code_for(svc, name, steps[name]), by=by)
        by.forget()
    if r.session is None:
        raise RuntimeError(f"the bench restore request is {r.state}, not approved")
    return r.id
