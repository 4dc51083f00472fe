"""The demo home is built as a quorum home (issue 11): everyone enrolled first, then the
quorum KEK held by alice, bob and carol (2 of 3), sample backups wrapped to them; the
single-custody KEK `legacy` can be rotated or migrated; and every ceremony can be tried
by one person at the keyboard with the demo passphrases and codes."""

from __future__ import annotations

import time
from pathlib import Path

from custodian import container
from custodian import people as P
from custodian.demo import HOLDERS, QUORUM_KEK, SINGLE_KEK, build_demo
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service import Service, totp_name
from tests.conftest import Clock


def _actor(svc: Service, name: str) -> Actor:
    return svc.auth.unlock(name, SecretBytes(f"{name} demo passphrase for trying".encode()))


def _code(svc: Service, name: str) -> str:
    """``name``'s code for the service clock's step (moved on past every step the build
    or an earlier call used)."""
    assert isinstance(svc.clock, Clock)
    while P.current_step(svc.clock()) <= svc.catalog.totp_last_step(name):
        svc.clock.advance(P.TOTP_PERIOD)
    p = svc.catalog.person(name)
    with svc.sealed.unseal(svc.ctx.load_ksk(), totp_name(name, p.totp_generation)) as s:
        return P.hotp(s, P.current_step(svc.clock()))


def test_the_demo_is_a_quorum_home_where_every_ceremony_works_alone(tmp_path: Path) -> None:
    svc = build_demo(tmp_path / "demo", backups=40)
    try:
        svc.clock = Clock(time.time() + 60)
        k = svc.keys.get(QUORUM_KEK)
        man = svc.keys.manifest(QUORUM_KEK, 1)
        assert (k.backend, man.m, man.n) == ("quorum", 2, 3)
        assert tuple(h.name for h in man.holders) == HOLDERS
        assert svc.config.default_kek == QUORUM_KEK
        # the quorum KEK came after everyone was enrolled (the bootstrap rule)
        entries = svc.audit.entries()
        created = next(e["seq"] for e in entries if e["action"] == "kek.create"
                       and e["subject"] == f"kek:{QUORUM_KEK}")  # fmt: skip
        enrolled = [e["seq"] for e in entries if e["action"] == "person.enrol"]
        assert enrolled and max(enrolled) < created
        quorum = [b for b in svc.backups.list(limit=100) if b.kek == QUORUM_KEK]
        assert len(quorum) == 28
        with open(quorum[0].location, "rb") as f:
            assert container.read_header(f).format == container.FORMAT_QUORUM
        # a restore of a quorum backup: oscar asks, bob and carol approve, oscar runs
        target = tmp_path / "restored"
        target.mkdir(mode=0o700)
        oscar = _actor(svc, "oscar")
        r = svc.restores.request([quorum[0].id], "demo", target, by=oscar)
        for name in ("bob", "carol"):
            r = svc.approvals.approve(r.id, _code(svc, name), by=_actor(svc, name))
        rep = svc.restores.run(r.id, by=oscar)
        assert [x.outcome for x in rep.results] == ["ok"]
        # the legacy KEK migrates to the holders, alice at the keyboard with bob and carol's
        # demo passphrases; then its old versions retire and are destroyed at once
        holders = [_actor(svc, n) for n in HOLDERS]
        j = svc.migrations.to_quorum(
            SINGLE_KEK, holders, 2, by=holders[0], code=_code(svc, "alice")
        )
        svc.migrations.run(SINGLE_KEK, by=holders[0])
        rows = {(c.backend, c.version): c.deks for c in svc.migrations.census(SINGLE_KEK)}
        assert rows == {("local", 1): 0, ("local", 2): 0, ("quorum", 3): 12}
        assert j.target_version == 3
        for v in (1, 2):
            svc.keys.retire(SINGLE_KEK, v, _code(svc, "alice"), by=holders[0])
            svc.clock.advance(1)  # the demo's waiting period is 0 days, measured from then
            d = svc.keys.request_destroy(SINGLE_KEK, v, "migrated", by=holders[0])
            for name in ("bob", "carol"):
                d = svc.approvals.approve(d.id, _code(svc, name), by=_actor(svc, name))
            assert d.state == "done"
        assert svc.audit.verify().ok
    finally:
        svc.close()
