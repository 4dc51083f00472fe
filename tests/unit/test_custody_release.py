"""The release protocol of custody v2 as pure functions: a request's session key, an
early approver's lock, the approval that reaches quorum lifting it, and the runner
combining only what was released to its session (custodian/custody/release.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from custodian.backends.local import generate, load_private
from custodian.custody import quorum as Q
from custodian.custody import release as RL
from custodian.secret import SecretBytes

SUITE = "x25519"


class World:
    """Three holders (2 of 3), ten backups, oscar requesting."""

    def __init__(self, n_backups: int = 10) -> None:
        self.priv: dict[str, Any] = {}
        holders = []
        for x, name in enumerate(("alice", "bob", "carol"), start=1):
            p, pub = generate(SUITE)
            self.priv[name] = load_private(SUITE, p)
            holders.append(Q.Holder(name, x, pub))
        self.m = Q.Manifest("home-1", "backups", 1, SUITE, 2, tuple(holders), "").check()
        self.deks = {str(uuid.uuid4()): SecretBytes.random(32) for _ in range(n_backups)}
        self.wraps = {b: Q.wrap(d, self.m, b) for b, d in self.deks.items()}

    def request(self, rid: str = "req-1") -> tuple[RL.SessionKey, bytes]:
        sk = RL.new_session_key(SUITE)
        scope = RL.Scope(
            "home-1", rid, "oscar", sk.fingerprint, tuple(self.deks), "/srv/r", "2026-12-02", 2
        )
        return sk, RL.scope_hash(scope)

    def releases(self, who: str, rid: str, scope: bytes, sk: RL.SessionKey) -> dict[str, bytes]:
        out = {}
        for b, qw in self.wraps.items():
            s = Q.open_share(qw, self.m, b, who, self.priv[who])
            info = self.info(b, s.x, rid, scope)
            out[b] = Q.seal_release(s, SUITE, sk.public_key, info)
        return out

    def info(self, b: str, x: int, rid: str, scope: bytes) -> bytes:
        return Q.release_info(
            home_id="home-1",
            request_id=rid,
            scope_hash=scope,
            backup_id=b,
            manifest=self.m,
            deal_id=self.wraps[b].deal_id,
            x=x,
            approver=self.m.at(x).name,
        )

    def recipients(self, *names: str) -> list[tuple[str, str, bytes, str]]:
        return [
            (n, SUITE, self.m.holder(n).public_key, self.m.holder(n).fingerprint(SUITE))
            for n in names
        ]

    def lift(self, lk: RL.Lock, who: str, scope: bytes) -> dict[str, bytes]:
        return RL.unlock(
            lk,
            home_id="home-1",
            scope=scope,
            recipient=who,
            suite_name=SUITE,
            private_key=self.priv[who],
            fingerprint=self.m.holder(who).fingerprint(SUITE),
        )

    def run(
        self, sk: RL.SessionKey, rid: str, scope: bytes, released: dict[str, dict[str, bytes]]
    ) -> dict[str, bytes]:
        priv = load_private(SUITE, sk.private)
        out = {}
        for b, qw in self.wraps.items():
            shares = []
            for who, blobs in released.items():
                x = self.m.holder(who).x
                shares.append(Q.open_release(blobs[b], SUITE, priv, self.info(b, x, rid, scope), x))
            out[b] = bytes(Q.combine(qw, self.m, b, shares).reveal())
        return out


def test_two_approvals_release_the_scope_and_nothing_else() -> None:
    w = World()
    sk, scope = w.request()
    alice = w.releases("alice", "req-1", scope, sk)
    lk = RL.lock(
        alice,
        home_id="home-1",
        request_id="req-1",
        scope=scope,
        approver="alice",
        recipients=w.recipients("bob", "carol"),
    )
    # bob approves and reaches quorum: he lifts alice's lock and adds his own shares
    lifted = w.lift(lk, "bob", scope)
    assert lifted == alice
    got = w.run(sk, "req-1", scope, {"alice": lifted, "bob": w.releases("bob", "req-1", scope, sk)})
    assert got == {b: bytes(d.reveal()) for b, d in w.deks.items()}
    assert len({Q.release_hash(v) for v in alice.values()}) == 10


def test_the_requester_cannot_lift_a_lock_and_bob_cannot_read_inside_it() -> None:
    w = World(2)
    sk, scope = w.request()
    lk = RL.lock(
        w.releases("alice", "req-1", scope, sk),
        home_id="home-1",
        request_id="req-1",
        scope=scope,
        approver="alice",
        recipients=w.recipients("bob", "carol"),
    )
    with pytest.raises(Q.QuorumError, match="not made for oscar"):
        RL.unlock(
            lk,
            home_id="home-1",
            scope=scope,
            recipient="oscar",
            suite_name=SUITE,
            private_key=load_private(SUITE, sk.private),
            fingerprint=sk.fingerprint,
        )
    # what bob lifts is sealed to the session key: his own key does not open it
    for b, blob in w.lift(lk, "bob", scope).items():
        with pytest.raises(Q.QuorumError, match="does not open"):
            Q.open_release(blob, SUITE, w.priv["bob"], w.info(b, 1, "req-1", scope), 1)


def test_a_lock_of_another_request_or_scope_does_not_open() -> None:
    w = World(1)
    sk, scope = w.request()
    lk = RL.lock(
        w.releases("alice", "req-1", scope, sk),
        home_id="home-1",
        request_id="req-1",
        scope=scope,
        approver="alice",
        recipients=w.recipients("bob"),
    )
    with pytest.raises(Q.QuorumError, match="does not open"):
        w.lift(lk, "bob", b"\0" * 32)
    moved = RL.Lock("req-2", lk.approver, lk.nonce, lk.sealed, lk.keys)
    with pytest.raises(Q.QuorumError, match="does not open"):
        w.lift(moved, "bob", scope)
    assert moved.digest() == lk.digest()  # the request id is bound by the AAD, not the digest
    with pytest.raises(Q.QuorumError, match="own share"):
        RL.lock(
            {},
            home_id="h",
            request_id="r",
            scope=scope,
            approver="bob",
            recipients=w.recipients("bob"),
        )


def test_shares_released_under_two_requests_never_combine() -> None:
    """Oscar asks twice; alice's share is released under request 1, bob's under 2.
    Each blob opens only under its own request's info, so the runner of either
    request has one share."""
    w = World(1)
    (b,) = w.deks
    sk1, scope1 = w.request("req-1")
    sk2, scope2 = w.request("req-2")
    a1 = w.releases("alice", "req-1", scope1, sk1)
    b2 = w.releases("bob", "req-2", scope2, sk2)
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_release(
            a1[b], SUITE, load_private(SUITE, sk2.private), w.info(b, 1, "req-2", scope2), 1
        )
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_release(
            b2[b], SUITE, load_private(SUITE, sk1.private), w.info(b, 2, "req-1", scope1), 2
        )


def test_a_swapped_release_blob_is_refused() -> None:
    """A release of backup 1 filed under backup 2 (same request) does not open."""
    w = World(2)
    sk, scope = w.request()
    b1, b2 = list(w.deks)
    alice = w.releases("alice", "req-1", scope, sk)
    swapped = {
        "alice": {b1: alice[b2], b2: alice[b1]},
        "bob": w.releases("bob", "req-1", scope, sk),
    }
    with pytest.raises(Q.QuorumError, match="does not open"):
        w.run(sk, "req-1", scope, swapped)


def test_scope_hash_covers_every_signed_field() -> None:
    base = RL.Scope(
        "h", "r", "oscar", "fp", (str(uuid.UUID(int=1)), str(uuid.UUID(int=2))), "/t", "e", 2
    )
    h = RL.scope_hash(base)
    reordered = RL.Scope("h", "r", "oscar", "fp", tuple(reversed(base.backups)), "/t", "e", 2)
    assert RL.scope_hash(reordered) == h  # sorted backup ids
    for field, value in [
        ("home_id", "h2"),
        ("request_id", "r2"),
        ("requester", "bob"),
        ("session_fingerprint", "fp2"),
        ("backups", base.backups[:1]),
        ("target", "/u"),
        ("expires_at", "f"),
        ("quorum", 3),
    ]:
        other = RL.Scope(**{**base.__dict__, field: value})
        assert RL.scope_hash(other) != h, field
    assert "redacted" in repr(RL.new_session_key(SUITE))


def test_a_lock_with_no_one_to_lift_it_is_refused_before_anything_is_sealed() -> None:
    """An early approver's lock goes to the holders who may still approve. With M <= N-1
    and distinct approvers there is always one, but if the list were ever empty (every
    other holder decided), the lock would be a release no one can lift: refused."""
    w = World()
    sk, scope = w.request()
    alice = w.releases("alice", "req-1", scope, sk)
    with pytest.raises(Q.QuorumError, match="at least one custodian"):
        RL.lock(
            alice,
            home_id="home-1",
            request_id="req-1",
            scope=scope,
            approver="alice",
            recipients=[],
        )
    with pytest.raises(Q.QuorumError, match="own share"):
        RL.lock(
            alice,
            home_id="home-1",
            request_id="req-1",
            scope=scope,
            approver="alice",
            recipients=w.recipients("alice", "bob"),
        )
