"""Online guessing is bounded (issue 12): wrong passphrases and TOTP codes, per person.

The attack: someone at the keyboard (or a script calling the CLI) tries code after
code, or passphrase after passphrase. Every path that checks one of them (``--as``
unlock, TUI sign-in, the TOTP of approve/deny and of KEK ceremonies) goes through one
counter in the catalog: a backoff after a few failures, a lockout after more, a
correct attempt refused while either lasts, each refusal audited.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from custodian import people as P
from custodian.errors import ConflictError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock


def _wrong_codes(who: Enrolled, now: float) -> list[str]:
    """Codes that are wrong for ``who`` at ``now`` and at every step near it."""
    assert who.totp is not None
    step = P.current_step(now)
    right = {P.hotp(who.totp, s) for s in range(step - 200, step + 200)}
    return [f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in right][:3000]


def _attack_totp(svc: Service, actor: Actor, codes: list[str], tick: float) -> tuple[int, int]:
    """Try every code, the clock moving ``tick`` s per try: (codes checked, refused unseen)."""
    checked = refused_unseen = 0
    real = P.match_step
    calls = 0

    def counting(*a: object, **k: object) -> int | None:
        nonlocal calls
        calls += 1
        return real(*a, **k)  # type: ignore[arg-type]

    P.match_step = counting  # type: ignore[assignment]
    try:
        for c in codes:
            before = calls
            with pytest.raises(AuthError):
                svc.auth.check_totp(actor, c)
            if calls > before:
                checked += 1
            else:
                refused_unseen += 1
            assert isinstance(svc.clock, Clock)
            svc.clock.advance(tick)
    finally:
        P.match_step = real
    return checked, refused_unseen


def test_three_thousand_wrong_codes_are_bounded(svc: Service, cast: Cast, alice: Actor) -> None:
    svc.clock = Clock()
    start = time.perf_counter()
    codes = _wrong_codes(cast.alice, svc.clock())
    checked, unseen = _attack_totp(svc, alice, codes, tick=1.0)  # 3,000 tries in 50 minutes
    pol = svc.ctx.policy
    # before: all 3,000 were checked. Now: the first few, then one per backoff, then none
    assert checked <= pol.auth_lockout_after, checked
    assert checked + unseen == 3000
    assert time.perf_counter() - start < 60
    lock = svc.auth.lockout("alice")
    assert lock is not None and lock.locked and lock.failures == pol.auth_lockout_after
    # a correct code during the lockout is refused too, and says until when
    with pytest.raises(AuthError, match=r"locked .* until .*UTC") as e:
        svc.auth.check_totp(alice, cast.alice.code())
    assert "custodian people unlock alice" in str(e.value)
    # each refusal is in the log, with the wait, never with the code
    refused = [e for e in svc.audit.entries(outcome="refused") if e["actor"] == "alice"]
    assert len(refused) == 3001
    assert (
        sum("locked" in e["details"]["reason"] or "wait" in e["details"]["reason"] for e in refused)
        == 3001 - checked
    )
    assert all(c not in str(refused[-1]) for c in codes[-3:])
    assert svc.audit.verify().ok


def test_backoff_refuses_a_correct_code_and_then_lets_it_through(
    svc: Service, cast: Cast, alice: Actor
) -> None:
    svc.clock = Clock()
    pol = svc.ctx.policy
    bad = _wrong_codes(cast.alice, svc.clock())
    for c in bad[: pol.auth_backoff_after]:
        with pytest.raises(AuthError, match="not valid now"):
            svc.auth.check_totp(alice, c)
    with pytest.raises(AuthError, match=r"wait .*try again|next attempt"):
        svc.auth.check_totp(alice, next_code(svc, cast.alice))  # right code, refused
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(pol.auth_backoff_seconds + 1)
    svc.auth.check_totp(alice, next_code(svc, cast.alice))  # after the wait: accepted
    assert svc.auth.lockout("alice") is None  # a success clears the TOTP count


def test_passphrase_guessing_is_bounded_and_shares_the_person_s_lock(
    svc: Service, cast: Cast
) -> None:
    svc.clock = Clock()
    pol = svc.ctx.policy
    tried = 0
    for i in range(60):
        try:
            svc.auth.unlock("bob", SecretBytes(f"guess number {i:04d}".encode()))
        except AuthError as e:
            if "wrong passphrase" in str(e):
                tried += 1
        assert isinstance(svc.clock, Clock)
        svc.clock.advance(60)  # an hour of trying
    assert tried == pol.auth_lockout_after  # before: all 60
    # the right passphrase is refused while locked: on the CLI (--as) and at TUI sign-in
    with pytest.raises(AuthError, match="locked"):
        unlock(svc, cast.bob)
    with pytest.raises(AuthError, match="locked"):
        svc.auth.sign_in("bob", SecretBytes(cast.bob.passphrase.encode()), cast.bob.code(+1))
    # the lock ends by itself, and the counter does not start again from zero
    lock = svc.auth.lockout("bob")
    assert lock is not None and lock.locked
    svc.clock.now = lock.until_epoch + 1
    with pytest.raises(AuthError, match=r"wrong passphrase.*now locked"):
        svc.auth.unlock("bob", SecretBytes(b"one more wrong guess"))
    again = svc.auth.lockout("bob")
    assert again is not None and again.failures == lock.failures + 1
    assert again.until_epoch - svc.clock() == 2 * 60 * pol.auth_lockout_minutes  # doubled
    svc.clock.now = again.until_epoch + 1
    assert unlock(svc, cast.bob).name == "bob"  # the right one, after the wait
    assert svc.auth.lockout("bob") is None


def test_approvals_and_ceremonies_count_on_the_same_counter(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    svc.clock = Clock()
    pol = svc.ctx.policy
    oscar = unlock(svc, cast.oscar)
    b = svc.backups.encrypt(io.BytesIO(b"data"), tmp_path / "x.cbk", by=unlock(svc, cast.bot))
    (tmp_path / "out").mkdir()
    r = svc.restores.request([b.id], "drill", tmp_path / "out", by=oscar)
    bob = unlock(svc, cast.bob)
    bad = _wrong_codes(cast.bob, svc.clock())
    for i, c in enumerate(bad[: pol.auth_lockout_after]):
        with pytest.raises(AuthError, match="not valid now"):
            if i % 2:
                svc.approvals.approve(r.id, c, by=bob)
            else:  # inside the rotation's transaction, which rolls back: still counted
                svc.keys.rotate("backups", c, by=bob)
        assert isinstance(svc.clock, Clock)
        svc.clock.advance(1000)
    lock = svc.auth.lockout("bob")
    assert lock is not None and lock.locked
    with pytest.raises(AuthError, match="locked"):
        svc.approvals.approve(r.id, next_code(svc, cast.bob), by=bob)
    assert svc.approvals.get(r.id).approvals == ()


def test_a_lockout_is_lifted_early_by_a_custodian_request_and_a_quorum(
    svc: Service, cast: Cast
) -> None:
    svc.clock = Clock()
    a = unlock(svc, cast.alice)
    carol = enrol(svc, "carol", ("custodian",), a)
    dave = enrol(svc, "dave", ("custodian",), a)
    pol = svc.ctx.policy
    for i in range(pol.auth_lockout_after):
        assert isinstance(svc.clock, Clock)
        svc.clock.advance(1000)  # past every backoff: only the lockout remains
        with pytest.raises(AuthError, match="wrong passphrase"):
            svc.auth.unlock("bob", SecretBytes(f"wrong {i:02d} passphrase".encode()))
    assert svc.auth.lockout("bob") is not None
    with pytest.raises(AuthError, match="locked"):
        unlock(svc, cast.bob)
    with pytest.raises(ConflictError, match="not locked"):
        svc.people.request_unlock("carol", "no reason to", by=a)
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.people.request_unlock("bob", "let me in", by=oscar)
    r = svc.people.request_unlock("bob", "bob mistyped on the new keyboard", by=a)
    assert r.kind == "person.unlock" and r.state == "open"
    with pytest.raises(AuthError):  # the requester does not decide their own request
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=a)
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=unlock(svc, carol))
    assert r.state == "open"
    with pytest.raises(AuthError, match="locked"):
        unlock(svc, cast.bob)
    r = svc.approvals.approve(r.id, next_code(svc, dave), by=unlock(svc, dave))
    assert r.state == "done"
    assert svc.auth.lockout("bob") is None
    assert unlock(svc, cast.bob).name == "bob"
    e = [x for x in svc.audit.entries(action="request.approve")][-1]
    assert e["details"]["unlocked"] == "bob"
    assert svc.audit.verify().ok
