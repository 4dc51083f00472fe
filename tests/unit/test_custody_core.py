"""Custody v2 building blocks: GF(256) sharing, personal keys, quorum wraps, releases,
refresh and redistribution (custodian/custody/, docs/custody.md)."""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custodian.backends.local import generate, load_private
from custodian.custody import gf256, personal
from custodian.custody import quorum as Q
from custodian.secret import SecretBytes

# ---------------------------------------------------------------- GF(256)


def test_multiplication_matches_the_slip39_tables() -> None:
    from shamir_mnemonic.shamir import EXP_TABLE, LOG_TABLE

    for a in range(256):
        for b in range(256):
            want = 0 if 0 in (a, b) else EXP_TABLE[(LOG_TABLE[a] + LOG_TABLE[b]) % 255]
            assert gf256.mul(a, b) == want
            assert gf256.mul_const(a, b, 1) == want


def test_inverse() -> None:
    for a in range(1, 256):
        assert gf256.mul(a, gf256.inv(a)) == 1
    with pytest.raises(ZeroDivisionError):
        gf256.inv(0)


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=48),
    n=st.integers(2, 7),
    data=st.data(),
)
def test_any_m_shares_give_the_secret_back(secret: bytes, n: int, data: Any) -> None:
    m = data.draw(st.integers(1, n))
    xs = data.draw(st.permutations(range(1, 256)))[:n]
    shares = gf256.split(secret, m, xs)
    for subset in itertools.combinations(zip(xs, shares, strict=True), m):
        assert gf256.combine(list(subset)) == secret


def test_interpolation_agrees_with_the_reference_implementation() -> None:
    from shamir_mnemonic.shamir import RawShare, _interpolate

    secret = os.urandom(32)
    shares = gf256.split(secret, 3, [1, 2, 3, 4, 5])
    pts = [(x, s) for x, s in zip([1, 2, 3, 4, 5], shares, strict=True)]
    for subset in itertools.combinations(pts, 3):
        ref = _interpolate([RawShare(x, s) for x, s in subset], 0)
        assert ref == secret == gf256.combine(list(subset))
        # and at another point, the reference gives the share we made there
        unused = next(p for p in pts if p not in subset)
        assert _interpolate([RawShare(x, s) for x, s in subset], unused[0]) == unused[1]


def test_one_share_below_threshold_takes_every_value() -> None:
    """With M=2, share 1 of a fixed secret byte is uniform: each value shows up."""
    seen = {gf256.split(b"\x42", 2, [1, 2])[0][0] for _ in range(4000)}
    assert len(seen) == 256


def test_bad_indices_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        gf256.split(b"x", 2, [1, 1, 2])
    with pytest.raises(ValueError, match=r"1\.\.255"):
        gf256.split(b"x", 2, [0, 1, 2])
    with pytest.raises(ValueError, match="threshold"):
        gf256.split(b"x", 4, [1, 2, 3])


def test_zero_sharing_refreshes_without_changing_the_secret() -> None:
    secret = os.urandom(32)
    xs = [1, 2, 3]
    shares = gf256.split(secret, 2, xs)
    deltas = gf256.zero_sharing(2, xs, 32)
    assert gf256.combine([(1, deltas[0]), (3, deltas[2])]) == bytes(32)
    fresh = [gf256.xor(s, d) for s, d in zip(shares, deltas, strict=True)]
    assert fresh != shares
    assert gf256.combine([(2, fresh[1]), (3, fresh[2])]) == secret
    # an old share and a new one do not combine to the secret
    assert gf256.combine([(1, shares[0]), (2, fresh[1])]) != secret


def test_redistribution_math_and_the_trap() -> None:
    secret = os.urandom(32)
    old_xs, new_xs = [1, 2, 3], [1, 2, 3, 4]
    shares = dict(zip(old_xs, gf256.split(secret, 2, old_xs), strict=True))
    dealers = [1, 3]
    w = dict(zip(dealers, gf256.lagrange_at_zero(dealers), strict=True))
    subs = {i: gf256.split(shares[i], 3, new_xs) for i in dealers}
    new = {
        x: gf256.xor(gf256.weighted(subs[1][j], w[1]), gf256.weighted(subs[3][j], w[3]))
        for j, x in enumerate(new_xs)
    }
    for subset in itertools.combinations(new_xs, 3):
        assert gf256.combine([(x, new[x]) for x in subset]) == secret
    # the trap: handing a newcomer lambda_i * share_i from each dealer hands over the DEK
    handed = gf256.xor(gf256.weighted(shares[1], w[1]), gf256.weighted(shares[3], w[3]))
    assert handed == secret


# ---------------------------------------------------------------- personal keys

FAST = personal.CHEAP_KDF


def test_personal_key_round_trip_and_binding() -> None:
    key = personal.new_personal_key()
    pw = SecretBytes(b"a long enough passphrase for tests")
    blob = personal.seal_personal_key(key, pw, home_id="h1", person="alice", params=FAST)
    assert personal.blob_params(blob) == FAST
    opened = personal.open_personal_key(blob, pw, home_id="h1", person="alice")
    assert bytes(opened.reveal()) == bytes(key.reveal())
    for kw in ({"home_id": "h2", "person": "alice"}, {"home_id": "h1", "person": "bob"}):
        with pytest.raises(personal.PersonalKeyError, match="does not open"):
            personal.open_personal_key(blob, pw, **kw)
    with pytest.raises(personal.PersonalKeyError, match="does not open"):
        personal.open_personal_key(blob, SecretBytes(b"wrong"), home_id="h1", person="alice")


def test_kdf_parameters_cannot_be_swapped_or_inflated() -> None:
    key = personal.new_personal_key()
    pw = SecretBytes(b"a long enough passphrase for tests")
    blob = bytearray(personal.seal_personal_key(key, pw, home_id="h", person="a", params=FAST))
    weaker = bytearray(blob)
    weaker[6:10] = (16 * 1024).to_bytes(4, "big")  # memory edited: the header is in the AAD
    with pytest.raises(personal.PersonalKeyError, match="does not open"):
        personal.open_personal_key(bytes(weaker), pw, home_id="h", person="a")
    huge = bytearray(blob)
    huge[6:10] = (2**31).to_bytes(4, "big")
    with pytest.raises(personal.PersonalKeyError, match="out of range"):
        personal.open_personal_key(bytes(huge), pw, home_id="h", person="a")
    with pytest.raises(personal.PersonalKeyError, match="not a personal key"):
        personal.open_personal_key(bytes(blob[:-1]), pw, home_id="h", person="a")


def test_default_and_floor_parameters() -> None:
    assert personal.DEFAULT_KDF.meets_floor() and personal.FLOOR_KDF.meets_floor()
    assert not personal.CHEAP_KDF.meets_floor()
    assert personal.DEFAULT_KDF.memory_kib == 512 * 1024 and personal.DEFAULT_KDF.iterations == 2


def test_items_are_bound_to_their_name_and_owner() -> None:
    key = personal.new_personal_key()
    item = personal.seal_item(
        key, SecretBytes(b"holder key"), home_id="h", person="a", name="holder/k/v1"
    )
    got = personal.open_item(key, item, home_id="h", person="a", name="holder/k/v1")
    assert bytes(got.reveal()) == b"holder key"
    for kw in ({"person": "b", "name": "holder/k/v1"}, {"person": "a", "name": "holder/k/v2"}):
        with pytest.raises(personal.PersonalKeyError, match="does not open"):
            personal.open_item(key, item, home_id="h", **kw)
    with pytest.raises(personal.PersonalKeyError):
        personal.open_item(
            personal.new_personal_key(), item, home_id="h", person="a", name="holder/k/v1"
        )


def test_generated_passphrase_and_the_rules_for_chosen_ones() -> None:
    from shamir_mnemonic.wordlist import WORDLIST

    gen = bytes(personal.generate_passphrase().reveal()).decode().split()
    assert len(gen) == 8 and all(w in WORDLIST for w in gen)  # 80 bits
    assert len({bytes(personal.generate_passphrase().reveal()) for _ in range(50)}) == 50
    personal.check_passphrase(personal.generate_passphrase())
    personal.check_passphrase(SecretBytes(b"maple river quietly folds paper"))
    personal.check_passphrase(SecretBytes(b"Xk9#tQ2!vR7@pL4$wN8^zM3&"))
    for bad, why in [
        (b"short one", "short"),
        (b"correct horse battery staple", "short"),  # 4 words, 28 chars: long enough...
        (b"Correct Horse Battery Staple!", "well known"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "well known"),
        (b"alicealicealicealicealicealice", "well known"),
        (b"word word word word word word", "well known"),
        (b"", "short"),
    ]:
        if bad == b"correct horse battery staple":
            with pytest.raises(personal.PersonalKeyError, match="well known"):
                personal.check_passphrase(SecretBytes(bad))
            continue
        with pytest.raises(personal.PersonalKeyError, match=why):
            personal.check_passphrase(SecretBytes(bad), person="alice")
    with pytest.raises(personal.PersonalKeyError, match="empty"):
        personal.seal_personal_key(
            personal.new_personal_key(), SecretBytes(b""), home_id="h", person="a", params=FAST
        )


# ---------------------------------------------------------------- quorum wraps

SUITE = "x25519"  # fast; one test below runs the default hybrid suite


def _holders(n: int, suite: str = SUITE) -> tuple[Q.Manifest, dict[str, Any]]:
    names = ["alice", "bob", "carol", "dave", "erin"][:n]
    privs: dict[str, Any] = {}
    holders = []
    for x, name in enumerate(names, start=1):
        priv, pub = generate(suite)
        privs[name] = load_private(suite, priv)
        holders.append(Q.Holder(name, x, pub))
    m = Q.Manifest("home-1", "backups", 1, suite, 2, tuple(holders), "rec0 fp00").check()
    return m, privs


def _dek() -> SecretBytes:
    return SecretBytes.random(32, "DEK")


def test_wrap_open_combine() -> None:
    m, privs = _holders(3)
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.QuorumWrap.decode(Q.wrap(dek, m, bid).encode())
    assert [s.x for s in qw.shares] == [1, 2, 3]
    shares = {n: Q.open_share(qw, m, bid, n, privs[n]) for n in privs}
    for a, b in itertools.combinations(shares, 2):
        got = Q.combine(qw, m, bid, [shares[a], shares[b]])
        assert bytes(got.reveal()) == bytes(dek.reveal())
    with pytest.raises(Q.QuorumError, match="1 distinct share"):
        Q.combine(qw, m, bid, [shares["alice"], shares["alice"]])
    assert "redacted" in repr(shares["bob"])


def test_default_hybrid_suite() -> None:
    m, privs = _holders(3, "mlkem768-x25519")
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.wrap(dek, m, bid)
    s = [Q.open_share(qw, m, bid, n, privs[n]) for n in ("alice", "carol")]
    assert bytes(Q.combine(qw, m, bid, s).reveal()) == bytes(dek.reveal())


def test_a_share_opens_only_for_its_backup_holder_and_manifest() -> None:
    m, privs = _holders(3)
    bid = str(uuid.uuid4())
    qw = Q.wrap(_dek(), m, bid)
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_share(qw, m, str(uuid.uuid4()), "alice", privs["alice"])  # moved to another backup
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_share(qw, m, bid, "alice", privs["bob"])
    # a manifest edited to give alice's index to a key of the attacker's: nothing opens
    _, evil_pub = generate(SUITE)
    edited = Q.Manifest(
        m.home_id,
        m.kek,
        m.version,
        m.suite,
        m.m,
        (Q.Holder("alice", 1, evil_pub), *m.holders[1:]),
        m.recovery_fingerprint,
    )
    assert edited.digest() != m.digest()
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_share(qw, edited, bid, "alice", privs["alice"])
    # another version's manifest: the version is in the info
    v2 = Q.Manifest(m.home_id, m.kek, 2, m.suite, m.m, m.holders, m.recovery_fingerprint)
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_share(qw, v2, bid, "bob", privs["bob"])


def test_a_bad_share_is_named() -> None:
    m, privs = _holders(3)
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.wrap(dek, m, bid)
    good = {n: Q.open_share(qw, m, bid, n, privs[n]) for n in privs}
    forged = Q.Share(2, SecretBytes(os.urandom(32)))
    with pytest.raises(Q.QuorumError, match=r"share of bob .index 2. does not match"):
        Q.combine(qw, m, bid, [good["alice"], forged])
    # a share of another DEK (another backup's wrap) is named too, not combined
    other = Q.wrap(_dek(), m, bid)
    theirs = Q.open_share(other, m, bid, "carol", privs["carol"])
    with pytest.raises(Q.QuorumError, match="carol"):
        Q.combine(qw, m, bid, [good["alice"], theirs])
    assert bytes(Q.combine(qw, m, bid, [good["bob"], good["carol"]]).reveal()) == bytes(
        dek.reveal()
    )


def test_manifest_rules() -> None:
    m, _ = _holders(3)
    h = m.holders
    bad = [
        (Q.Manifest(m.home_id, m.kek, 1, SUITE, 3, h, ""), r"2 <= M <= N-1"),
        (Q.Manifest(m.home_id, m.kek, 1, SUITE, 1, h, ""), r"2 <= M <= N-1"),
        (
            Q.Manifest(m.home_id, m.kek, 1, SUITE, 2, (h[0], h[1], Q.Holder("alice", 3, b"k")), ""),
            "one share per person",
        ),
        (
            Q.Manifest(
                m.home_id,
                m.kek,
                1,
                SUITE,
                2,
                (h[0], h[1], Q.Holder("carol", 4, h[2].public_key)),
                "",
            ),
            "1..N",
        ),
        (Q.Manifest(m.home_id, m.kek, 1, SUITE, 2, (h[1], h[0], h[2]), ""), r"1\.\.N"),
        (
            Q.Manifest(
                m.home_id,
                m.kek,
                1,
                SUITE,
                2,
                (h[0], h[1], Q.Holder("carol", 3, h[0].public_key)),
                "",
            ),
            "same public key",
        ),
    ]
    for man, why in bad:
        with pytest.raises(Q.QuorumError, match=why):
            man.check()


def test_wrap_encoding_refuses_damage() -> None:
    m, _ = _holders(3)
    blob = Q.wrap(_dek(), m, str(uuid.uuid4())).encode()
    for cut in (3, 22, 40, len(blob) - 1):
        with pytest.raises(Q.QuorumError):
            Q.QuorumWrap.decode(blob[:cut])
    with pytest.raises(Q.QuorumError, match="after its last share"):
        Q.QuorumWrap.decode(blob + b"\0")
    renamed = Q.QuorumWrap.decode(blob)
    swapped = Q.QuorumWrap(
        2, 3, renamed.deal_id, (renamed.shares[1], renamed.shares[0], renamed.shares[2])
    )
    with pytest.raises(Q.QuorumError, match="distinct indices in order"):
        Q.QuorumWrap.decode(swapped.encode())


# ---------------------------------------------------------------- releases


def _session(suite: str = SUITE) -> tuple[bytes, Any]:
    priv, pub = generate(suite)
    return pub, load_private(suite, priv)


def _rinfo(
    m: Q.Manifest, qw: Q.QuorumWrap, bid: str, x: int, rid: str = "req-1", scope: bytes = b"s" * 32
) -> bytes:
    return Q.release_info(
        home_id=m.home_id,
        request_id=rid,
        scope_hash=scope,
        backup_id=bid,
        manifest=m,
        deal_id=qw.deal_id,
        x=x,
        approver=m.at(x).name,
    )


def test_released_shares_open_only_under_their_request() -> None:
    m, privs = _holders(3)
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.wrap(dek, m, bid)
    pub, sk = _session()
    blobs = {}
    for name in ("bob", "carol"):
        s = Q.open_share(qw, m, bid, name, privs[name])
        blobs[s.x] = Q.seal_release(s, SUITE, pub, _rinfo(m, qw, bid, s.x))
    opened = [Q.open_release(b, SUITE, sk, _rinfo(m, qw, bid, x), x) for x, b in blobs.items()]
    assert bytes(Q.combine(qw, m, bid, opened).reveal()) == bytes(dek.reveal())
    assert Q.release_hash(blobs[2]) != Q.release_hash(blobs[3])
    # the same blob under another request or another scope hash does not open
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_release(blobs[2], SUITE, sk, _rinfo(m, qw, bid, 2, rid="req-2"), 2)
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_release(blobs[2], SUITE, sk, _rinfo(m, qw, bid, 2, scope=b"t" * 32), 2)
    # claimed as another approver's share: the index is bound
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.open_release(blobs[2], SUITE, sk, _rinfo(m, qw, bid, 3), 3)
    with pytest.raises(Q.QuorumError, match="belongs to bob"):
        Q.release_info(
            home_id=m.home_id,
            request_id="r",
            scope_hash=b"",
            backup_id=bid,
            manifest=m,
            deal_id=qw.deal_id,
            x=2,
            approver="carol",
        )


def test_a_forged_release_by_someone_with_no_share_is_named() -> None:
    """HPKE base mode is unauthenticated: anyone can seal bytes to the session key. The
    runner names the forgery by its commitment and opens nothing."""
    m, privs = _holders(3)
    bid = str(uuid.uuid4())
    qw = Q.wrap(_dek(), m, bid)
    pub, sk = _session()
    real = Q.open_share(qw, m, bid, "bob", privs["bob"])
    fake = Q.seal_release(
        Q.Share(3, SecretBytes(os.urandom(32))), SUITE, pub, _rinfo(m, qw, bid, 3)
    )
    got = [
        Q.open_release(
            Q.seal_release(real, SUITE, pub, _rinfo(m, qw, bid, 2)),
            SUITE,
            sk,
            _rinfo(m, qw, bid, 2),
            2,
        ),
        Q.open_release(fake, SUITE, sk, _rinfo(m, qw, bid, 3), 3),
    ]
    with pytest.raises(Q.QuorumError, match=r"carol .index 3. does not match"):
        Q.combine(qw, m, bid, got)


# ---------------------------------------------------------------- refresh and redistribution


def _new_version(m: Q.Manifest, version: int = 2) -> tuple[Q.Manifest, dict[str, Any]]:
    privs = {}
    holders = []
    for h in m.holders:
        priv, pub = generate(m.suite)
        privs[h.name] = load_private(m.suite, priv)
        holders.append(Q.Holder(h.name, h.x, pub))
    return Q.Manifest(
        m.home_id, m.kek, version, m.suite, m.m, tuple(holders), m.recovery_fingerprint
    ), privs


def test_refresh_keeps_the_dek_and_kills_old_shares() -> None:
    old, old_privs = _holders(3)
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.wrap(dek, old, bid)
    new, new_privs = _new_version(old)
    new_deal, deltas = Q.deal_refresh(old, new, bid, qw.deal_id)
    fresh = []
    for h in new.holders:
        s = Q.open_share(qw, old, bid, h.name, old_privs[h.name])
        fresh.append(
            Q.apply_refresh(
                s, deltas[h.x], old, new, bid, qw.deal_id, new_deal, h.name, new_privs[h.name]
            )
        )
    nw = Q.QuorumWrap(new.m, new.n, new_deal, tuple(fresh))
    opened = {h.name: Q.open_share(nw, new, bid, h.name, new_privs[h.name]) for h in new.holders}
    for a, b in itertools.combinations(opened, 2):
        assert bytes(Q.combine(nw, new, bid, [opened[a], opened[b]]).reveal()) == bytes(
            dek.reveal()
        )
    # an old share (from a compromised old key) does not combine with a new one
    stolen = Q.open_share(qw, old, bid, "alice", old_privs["alice"])
    with pytest.raises(Q.QuorumError, match="alice"):
        Q.combine(nw, new, bid, [stolen, opened["bob"]])
    # a delta is bound to its holder and deal
    with pytest.raises(Q.QuorumError, match="does not open"):
        Q.apply_refresh(
            stolen, deltas[2], old, new, bid, qw.deal_id, new_deal, "alice", new_privs["alice"]
        )


def test_refresh_refuses_a_change_of_holders() -> None:
    old, _ = _holders(3)
    other, _ = _holders(4)
    with pytest.raises(Q.QuorumError, match="redistribution"):
        Q.deal_refresh(
            old,
            Q.Manifest(old.home_id, old.kek, 2, SUITE, 2, other.holders, ""),
            str(uuid.uuid4()),
            b"d" * 16,
        )


def test_redistribution_to_a_new_holder_set() -> None:
    old, old_privs = _holders(3)
    dek, bid = _dek(), str(uuid.uuid4())
    qw = Q.wrap(dek, old, bid)
    # dana joins, carol leaves: new holders alice, bob, dana, erin (3 of 4)
    privs, holders = {}, []
    for x, name in enumerate(["alice", "bob", "dana", "erin"], start=1):
        priv, pub = generate(SUITE)
        privs[name] = load_private(SUITE, priv)
        holders.append(Q.Holder(name, x, pub))
    new = Q.Manifest(old.home_id, old.kek, 2, SUITE, 3, tuple(holders), "").check()
    new_deal = os.urandom(16)
    dealers = ["alice", "carol"]  # any M old holders
    sub: dict[int, dict[int, bytes]] = {h.x: {} for h in new.holders}
    for d in dealers:
        s = Q.open_share(qw, old, bid, d, old_privs[d])
        for to_x, blob in Q.reshare(s, old, new, bid, qw.deal_id, new_deal).items():
            sub[to_x][s.x] = blob
    fresh = tuple(
        Q.combine_subshares(sub[h.x], old, new, bid, qw.deal_id, new_deal, h.name, privs[h.name])
        for h in new.holders
    )
    nw = Q.QuorumWrap(3, 4, new_deal, fresh)
    opened = [Q.open_share(nw, new, bid, n, privs[n]) for n in ("bob", "dana", "erin")]
    assert bytes(Q.combine(nw, new, bid, opened).reveal()) == bytes(dek.reveal())
    with pytest.raises(Q.QuorumError, match="exactly 2"):
        Q.combine_subshares(
            {1: sub[1][1]}, old, new, bid, qw.deal_id, new_deal, "alice", privs["alice"]
        )
