"""Break-glass core (custodian/custody/breakglass.py, slip39.py; docs/custody.md section 10):
the SLIP-39 known-answer vectors, split and recovery round trips, the recovery key and
check value against the spec computed here from the primitives, and every bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import os
import pickle
import re
import string
import struct
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from shamir_mnemonic import combine_mnemonics
from shamir_mnemonic.share import Share

from custodian.approvals import stamp
from custodian.backends.local import load_private, load_public, suite
from custodian.custody import breakglass as B
from custodian.custody.breakglass import BreakGlassError, Recovery, RecoverySecret
from custodian.custody.slip39 import WORDS

HOME = "3f2c8a4e-9b1d-4e7a-8c5f-6d0e2b1a9c47"
VECTORS_DIR = Path(__file__).parents[1] / "vectors"
VECTORS: list[list[Any]] = json.loads((VECTORS_DIR / "slip39-vectors.json").read_text())
VALID = [v for v in VECTORS if v[2]]
INVALID = [v for v in VECTORS if not v[2]]
DOCS = Path(__file__).parents[2] / "docs" / "custody.md"
ONE_WORD: frozenset[str] = frozenset({"<one word>"})


def _id(v: list[Any]) -> str:
    return str(v[0].split(".")[0])


def assert_clean(
    err: BaseException,
    shares: Sequence[str] = (),
    secret: bytes = b"",
    quoted: Collection[str] = frozenset(),
) -> str:
    """One sentence, no secret, no run of share words, only the word at fault quoted.

    ``quoted=ONE_WORD``: any one word of a share, and what the checksum says it should be.
    """
    msg = str(err)
    assert isinstance(err, BreakGlassError)
    assert "\n" not in msg and msg[-1] in ".?", msg
    assert not re.search(r"[.?!] [A-Z]", msg), msg
    if secret:
        assert secret.hex() not in msg
    got = set(re.findall(r"'([^' ]+)'", msg))
    if quoted is ONE_WORD:
        assert len(got) <= 2 and all(w in WORDS for w in got), msg
        assert re.search(r"^(the share's checksum does not hold: )?word \d+ ", msg) or not got, msg
    else:
        assert got <= set(quoted), msg
    tokens = re.findall(r"[a-z]+", msg.lower())
    bigrams = set(itertools.pairwise(tokens))
    for text in shares:
        words = text.split()
        assert not bigrams & set(itertools.pairwise(words)), msg
    return msg


def secret_of(seed: int) -> RecoverySecret:
    return RecoverySecret(hashlib.sha256(b"test secret %d" % seed).digest())


def recover(shares: list[str], set_id: int, check: str, **kw: Any) -> bytes:
    with Recovery(HOME, set_id, check, **kw) as r:
        for s in shares:
            r.add(s)
        return bytes(r.secret.reveal())


@pytest.fixture(scope="module")
def made() -> tuple[RecoverySecret, B.ShareSet]:
    secret = secret_of(1)
    return secret, B.split(secret, HOME, iteration_exponent=0)


def texts(ss: B.ShareSet) -> list[str]:
    return [s.reveal() for s in ss.shares]


# ---------------------------------------------------------------- known-answer vectors


def test_the_vectors_are_the_reference_suite_with_its_licence() -> None:
    assert len(VECTORS) == 45 and len(VALID) == 15 and len(INVALID) == 30
    assert "SatoshiLabs" in (VECTORS_DIR / "slip39-vectors.LICENSE").read_text()


@pytest.mark.parametrize("vector", VALID, ids=_id)
def test_every_valid_vector_combines_to_its_secret(vector: list[Any]) -> None:
    _, mnemonics, want, _ = vector
    with B.combine(mnemonics, b"TREZOR") as got:
        assert bytes(got.reveal()).hex() == want
    assert combine_mnemonics(mnemonics, b"TREZOR").hex() == want  # the reference agrees


@pytest.mark.parametrize("vector", INVALID, ids=_id)
def test_every_invalid_vector_is_refused_clearly(vector: list[Any]) -> None:
    _, mnemonics, _, _ = vector
    with pytest.raises(BreakGlassError) as e:
        B.combine(mnemonics, b"TREZOR")
    assert_clean(e.value, mnemonics, quoted=ONE_WORD)


@pytest.mark.parametrize("vector", [v for v in VALID if len(v[1][0].split()) == 33], ids=_id)
def test_256_bit_vectors_in_the_ceremony(vector: list[Any]) -> None:
    """One-group sets of T >= 2 recover in Recovery; 1-of-1 and multi-group sets are refused."""
    _, mnemonics, want, _ = vector
    info = B.share_info(mnemonics[0])
    check = B.check_value(RecoverySecret(bytes.fromhex(want)), HOME, info.set_id)
    if info.groups == 1 and info.threshold >= 2:
        assert recover(mnemonics, info.set_id, check, passphrase=b"TREZOR").hex() == want
    else:
        with pytest.raises(BreakGlassError) as e:
            recover(mnemonics, info.set_id, check, passphrase=b"TREZOR")
        msg = assert_clean(e.value, mnemonics)
        assert "groups" in msg or "threshold 1" in msg


@pytest.mark.parametrize("vector", INVALID, ids=_id)
def test_every_invalid_vector_is_refused_by_the_ceremony_before_any_check_value(
    vector: list[Any],
) -> None:
    _, mnemonics, _, _ = vector
    with pytest.raises(BreakGlassError) as e:
        set_id = B.share_info(mnemonics[0]).set_id
        recover(mnemonics, set_id, "00" * 32, passphrase=b"TREZOR")
    msg = assert_clean(e.value, mnemonics, quoted=ONE_WORD)
    assert "not to this home's recovery secret" not in msg


# ---------------------------------------------------------------- split


def test_split_makes_a_2_of_3_set_and_keeps_no_secret_in_view(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, ss = made
    assert (ss.threshold, ss.count, len(ss.shares)) == (2, 3, 3)
    assert 0 <= ss.set_id < 2**15
    assert [s.number for s in ss.shares] == [1, 2, 3]
    assert all(len(s.words()) == 33 and s.set_id == ss.set_id for s in ss.shares)
    assert ss.check_value == B.check_value(secret, HOME, ss.set_id)
    assert ss.fingerprint == B.recovery_fingerprint(B.recovery_public_key(secret, HOME))
    for shown in (repr(ss), str(ss), repr(ss.shares[0]), str(ss.shares[0]), repr(secret)):
        assert secret.reveal().hex() not in shown
        assert not set(shown.split()) & set(ss.shares[0].words()), shown
    for info in map(B.share_info, texts(ss)):
        assert (info.set_id, info.threshold, info.groups) == (ss.set_id, 2, 1)
        assert (info.iteration_exponent, info.extendable) == (0, True)
    # the reference library reads every pair
    for pair in ([0, 1], [1, 2], [2, 0]):
        assert combine_mnemonics([texts(ss)[i] for i in pair]) == bytes(secret.reveal())


@settings(max_examples=20, deadline=None)
@given(
    t_n=st.integers(2, 6).flatmap(lambda t: st.tuples(st.just(t), st.integers(t, 8))),
    passphrase=st.text(string.printable[:95], max_size=12),
    data=st.data(),
)
def test_any_threshold_of_shares_recovers_the_secret(
    t_n: tuple[int, int], passphrase: str, data: st.DataObject
) -> None:
    t, n = t_n
    secret = RecoverySecret(data.draw(st.binary(min_size=32, max_size=32)))
    pw = passphrase.encode()
    ss = B.split(secret, HOME, threshold=t, count=n, passphrase=pw, iteration_exponent=0)
    chosen = data.draw(st.permutations(texts(ss)))[:t]
    assert recover(chosen, ss.set_id, ss.check_value, passphrase=pw) == bytes(secret.reveal())


@pytest.mark.parametrize(
    ("t", "n", "words"),
    [
        (1, 3, "at least 2"),
        (0, 3, "at least 2"),
        (3, 2, "cannot exceed"),
        (2, 17, "at most 16"),
        (17, 17, "at most 16"),
    ],
)
def test_split_refuses_schemes_outside_2_le_t_le_n_le_16(t: int, n: int, words: str) -> None:
    secret = secret_of(2)
    with pytest.raises(BreakGlassError, match=words) as e:
        B.split(secret, HOME, threshold=t, count=n)
    assert_clean(e.value, secret=bytes(secret.reveal()))


def test_split_refuses_a_non_ascii_passphrase_and_a_bad_exponent() -> None:
    with pytest.raises(BreakGlassError, match="printable ASCII") as e:
        B.split(secret_of(3), HOME, passphrase="pässword".encode())
    assert "pässword" not in str(e.value)
    with pytest.raises(BreakGlassError, match=r"0\.\.15"):
        B.split(secret_of(3), HOME, iteration_exponent=16)


def test_split_never_reuses_an_earlier_set_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import shamir_mnemonic.shamir as S

    forced = 0x1234

    def fake_random(n: int) -> bytes:  # the 2-byte draw is the identifier, forced each time
        return forced.to_bytes(2, "big") if n == 2 and calls and calls.pop() else os.urandom(n)

    monkeypatch.setattr(S, "RANDOM_BYTES", fake_random)
    calls = [True]
    assert B.split(secret_of(4), HOME, iteration_exponent=0).set_id == forced
    calls = [True]
    assert (
        B.split(secret_of(4), HOME, iteration_exponent=0, avoid_set_ids={forced}).set_id != forced
    )


def test_a_recovery_secret_is_256_bits_redacted_and_not_picklable() -> None:
    with pytest.raises(BreakGlassError, match="32 bytes"):
        RecoverySecret(b"\x01" * 16)
    s = RecoverySecret.generate()
    assert len(s) == 32 and "redacted" in repr(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    ss = B.split(s, HOME, iteration_exponent=0)
    with pytest.raises(TypeError):
        pickle.dumps(ss.shares[0])
    with ss:
        pass
    assert all(m._text.wiped for m in ss.shares)


# ---------------------------------------------------------------- the derivations, per the spec


def _lp(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def _spec_key(secret: bytes, home: str) -> tuple[bytes, bytes, bytes]:
    """DESIGN.md / docs/custody.md, step by step, from the primitives."""
    seed = HKDF(hashes.SHA256(), 32, home.encode(), b"custodian/v2/recovery-kem").derive(secret)
    e = hashlib.shake_256(seed).digest(96)
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(e[:64])
    x = x25519.X25519PrivateKey.from_private_bytes(e[64:])
    pub = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    return seed, e, pub


def test_the_recovery_key_follows_the_spec_and_opens_with_the_local_backend() -> None:
    secret = secret_of(5)
    private, public = B.recovery_keypair(secret, HOME)
    _, e, pub = _spec_key(bytes(secret.reveal()), HOME)
    assert bytes(private.reveal()) == e and len(e) == 96
    assert public == pub and len(public) == 1184 + 32
    hs = suite(B.SUITE)
    ct = hs.encrypt(b"holder key", load_public(B.SUITE, public), info=b"i")
    assert hs.decrypt(ct, load_private(B.SUITE, private), info=b"i") == b"holder key"
    assert "redacted" in repr(private)


def test_the_recovery_key_is_deterministic_and_bound_to_secret_and_home() -> None:
    a = B.recovery_public_key(secret_of(6), HOME)
    assert a == B.recovery_public_key(secret_of(6), HOME)
    assert a != B.recovery_public_key(secret_of(7), HOME)
    assert a != B.recovery_public_key(secret_of(6), "another-home")
    with pytest.raises(ValueError):
        B.recovery_public_key(secret_of(6), "")


def test_the_fingerprint_is_128_bits_of_the_labelled_hash() -> None:
    pub = B.recovery_public_key(secret_of(8), HOME)
    want = hashlib.sha256(_lp(b"custodian/v2/recovery-key", b"mlkem768-x25519", pub)).hexdigest()
    fp = B.recovery_fingerprint(pub)
    assert re.fullmatch(r"([0-9a-f]{4} ){7}[0-9a-f]{4}", fp)
    assert fp.replace(" ", "") == want[:32]


def test_the_check_value_is_the_specified_hmac_and_binds_home_and_set() -> None:
    secret = secret_of(9)
    key = HKDF(hashes.SHA256(), 32, None, b"custodian/v2/recovery-check").derive(
        bytes(secret.reveal())
    )
    msg = _lp(b"custodian/v2/recovery-check", HOME.encode(), (321).to_bytes(2, "big"))
    want = hmac.new(key, msg, "sha256").hexdigest()
    assert B.check_value(secret, HOME, 321) == want
    assert B.verify_check_value(secret, HOME, 321, want)
    assert B.verify_check_value(secret, HOME, 321, f" {want.upper()}\n")
    assert not B.verify_check_value(secret, HOME, 322, want)
    assert not B.verify_check_value(secret, "other", 321, want)
    assert not B.verify_check_value(secret_of(10), HOME, 321, want)
    assert not B.verify_check_value(secret, HOME, 321, "é" * 64)
    with pytest.raises(ValueError):
        B.check_value(secret, HOME, 2**15)


def test_the_spec_vector_in_docs_custody_md() -> None:
    spec = DOCS.read_text()
    section = spec[spec.index("## 10. Break-glass") :]
    rows = dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", section, re.M))
    secret = RecoverySecret(bytes(range(32)))
    assert "`000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f`" in section
    assert f"home id\n`{HOME}`, set id 12345" in section
    seed, e, pub = _spec_key(bytes(secret.reveal()), HOME)
    private, public = B.recovery_keypair(secret, HOME)
    assert rows["recovery seed"] == seed.hex()
    assert rows["private key (96 bytes) SHA-256"] == hashlib.sha256(private.reveal()).hexdigest()
    assert rows["private key (96 bytes) SHA-256"] == hashlib.sha256(e).hexdigest()
    assert rows["X25519 public key"] == public[1184:].hex()
    assert rows["public key (1216 bytes) SHA-256"] == hashlib.sha256(public).hexdigest()
    assert public == pub
    assert rows["recovery-key fingerprint"] == B.recovery_fingerprint(public)
    assert rows["check value (set 12345)"] == B.check_value(secret, HOME, 12345)


# ---------------------------------------------------------------- the ceremony


def test_recovery_says_1_of_2_then_recovers_and_checks(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, ss = made
    with Recovery(HOME, ss.set_id, ss.check_value, fingerprint=ss.fingerprint) as r:
        assert r.progress == B.Progress(0, 0, ss.set_id) and not r.progress.done
        p = r.add(texts(ss)[2])
        assert str(p) == "1 of 2" and not p.done and p.set_id == ss.set_id
        with pytest.raises(BreakGlassError, match="one more is needed"):
            r.secret  # noqa: B018
        p = r.add(texts(ss)[0])
        assert str(p) == "2 of 2" and p.done
        got = r.secret
        assert got == secret
        with pytest.raises(BreakGlassError, match="nothing more is needed") as e:
            r.add(texts(ss)[1])
        assert_clean(e.value, texts(ss), bytes(secret.reveal()))
    assert got.wiped
    with pytest.raises(BreakGlassError, match="wiped"):
        r.add(texts(ss)[1])


def test_words_may_be_typed_as_four_letter_prefixes_in_any_case(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, ss = made
    short = [" ".join(w[:4].upper() for w in t.split()) for t in texts(ss)]
    assert recover(["  " + short[0] + "\t", short[1]], ss.set_id, ss.check_value) == bytes(
        secret.reveal()
    )


def test_word_completion() -> None:
    assert B.complete("acad") == ["academic"] == Recovery.complete("ACAD ")
    assert len(B.complete("ac")) > 1 and all(w.startswith("ac") for w in B.complete("ac"))
    assert B.complete("") == [] and B.complete("zzzz") == []
    assert all(B.complete(w[:4]) == [w] for w in WORDS)


def test_a_share_of_another_set_is_refused_naming_both(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    other = B.split(secret_of(11), HOME, iteration_exponent=0, avoid_set_ids={ss.set_id})
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        with pytest.raises(BreakGlassError) as e:
            r.add(texts(other)[0])
        msg = assert_clean(e.value, texts(other))
        assert f"set {other.set_id}, not the current set {ss.set_id}" in msg
        assert r.progress.have == 0


def test_a_share_of_a_revoked_set_is_refused_naming_it(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, old = made
    new = B.split(secret, HOME, iteration_exponent=0, avoid_set_ids={old.set_id})  # a reshare
    assert new.check_value != old.check_value
    with Recovery(HOME, new.set_id, new.check_value, revoked=[old.set_id]) as r:
        r.add(texts(new)[0])
        with pytest.raises(BreakGlassError) as e:
            r.add(texts(old)[1])
        msg = assert_clean(e.value, texts(old), bytes(secret.reveal()))
        assert f"set {old.set_id}, which was revoked; use a share of set {new.set_id}" in msg
    with pytest.raises(BreakGlassError, match="both current and revoked"):
        Recovery(HOME, new.set_id, new.check_value, revoked=[new.set_id])


def test_the_same_share_twice_is_refused(made: tuple[RecoverySecret, B.ShareSet]) -> None:
    _, ss = made
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        r.add(texts(ss)[1])
        with pytest.raises(BreakGlassError) as e:
            r.add(texts(ss)[1].upper())
        assert "share 2 of set" in assert_clean(e.value, texts(ss))
        assert str(r.progress) == "1 of 2"


def test_a_different_share_with_the_same_number_is_refused(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    s1 = Share.from_mnemonic(texts(ss)[0])
    forged = dataclasses.replace(s1, value=os.urandom(32)).mnemonic()
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        r.add(texts(ss)[0])
        with pytest.raises(BreakGlassError, match="different share 1") as e:
            r.add(forged)
        assert_clean(e.value, [texts(ss)[0], forged])


def test_other_parameters_than_the_earlier_shares_are_refused(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    s2 = Share.from_mnemonic(texts(ss)[1])
    for change, what in (
        ({"iteration_exponent": 3}, "iteration exponent"),
        ({"member_threshold": 3}, "3 shares are needed"),
        ({"extendable": False}, "extendable flag"),
    ):
        with Recovery(HOME, ss.set_id, ss.check_value) as r:
            r.add(texts(ss)[0])
            with pytest.raises(BreakGlassError, match=what) as e:
                r.add(dataclasses.replace(s2, **change).mnemonic())
            assert_clean(e.value, texts(ss))


def test_a_misspelt_word_is_named_with_a_suggestion(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    words = texts(ss)[0].split()
    right = words[6]
    typo = right[:4] + "q" + right[5:] if len(right) > 4 else right + "q"
    if typo in WORDS:
        typo = right + "q"
    words[6] = typo
    with Recovery(HOME, ss.set_id, ss.check_value) as r, pytest.raises(BreakGlassError) as e:
        r.add(" ".join(words))
    msg = assert_clean(e.value, texts(ss), quoted={typo, right})
    assert msg == f"word 7 '{typo}' is not a SLIP-39 word; did you mean '{right}'?"


def test_a_word_far_from_any_is_named_without_a_guess_and_run_together_words_are_not_quoted(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    words = texts(ss)[0].split()
    with pytest.raises(BreakGlassError) as e:
        B.share_info(" ".join([*words[:3], "xyzzy", *words[4:]]))
    msg = assert_clean(e.value, texts(ss), quoted={"xyzzy"})
    assert msg == "word 4 'xyzzy' is not a SLIP-39 word; check it against the paper share."
    glued = " ".join([*words[:9], words[9] + words[10], *words[11:]])
    with pytest.raises(BreakGlassError, match="run together") as e:
        B.share_info(glued)
    assert_clean(e.value, texts(ss))


def test_a_wrong_checksum_points_at_the_word_or_the_swap(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    words = texts(ss)[1].split()
    for pos in (0, 1, 11, 32):  # the set id, the middle, the checksum itself
        bad = list(words)
        bad[pos] = "acid" if words[pos] != "acid" else "acne"
        with pytest.raises(BreakGlassError) as e:
            B.share_info(" ".join(bad))
        msg = assert_clean(e.value, texts(ss), quoted={bad[pos], words[pos]})
        assert f"word {pos + 1} '{bad[pos]}' looks mistyped" in msg
        assert f"holds with '{words[pos]}' there" in msg
    pos = next(i for i in range(5, 30) if words[i] != words[i + 1])
    swapped = list(words)
    swapped[pos], swapped[pos + 1] = swapped[pos + 1], swapped[pos]
    with pytest.raises(BreakGlassError, match=f"words {pos + 1} and {pos + 2} look swapped") as e:
        B.share_info(" ".join(swapped))
    assert_clean(e.value, texts(ss))
    garbled = [*words[:5], *words[6:8], words[5], "acid", "acne", *words[10:]]
    with pytest.raises(BreakGlassError, match="a word is wrong or missing") as e:
        B.share_info(" ".join(garbled))
    assert_clean(e.value, texts(ss))


def test_a_missing_word_or_an_empty_share_is_refused(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        with pytest.raises(BreakGlassError, match="has 32 words, but a break-glass share has 33"):
            r.add(" ".join(texts(ss)[0].split()[:-1]))
        with pytest.raises(BreakGlassError, match="empty"):
            r.add("   ")
        with pytest.raises(BreakGlassError, match="no share was given yet"):
            r.secret  # noqa: B018


def test_one_share_short_gives_no_secret() -> None:
    secret = secret_of(12)
    ss = B.split(secret, HOME, threshold=3, count=5, iteration_exponent=0)
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        r.add(texts(ss)[4])
        assert str(r.add(texts(ss)[0])) == "2 of 3"
        with pytest.raises(BreakGlassError) as e:
            r.secret  # noqa: B018
        assert "needs 3 shares and 2 were given; one more is needed." in assert_clean(e.value)
        with pytest.raises(BreakGlassError, match="one more"):
            r.retry(b"")


def test_a_wrong_slip39_passphrase_is_caught_by_the_check_value_and_can_be_retried() -> None:
    secret = secret_of(13)
    ss = B.split(secret, HOME, passphrase=b"right horse", iteration_exponent=0)
    with Recovery(HOME, ss.set_id, ss.check_value, passphrase=b"wrong horse") as r:
        r.add(texts(ss)[0])
        with pytest.raises(BreakGlassError) as e:
            r.add(texts(ss)[1])
        msg = assert_clean(e.value, texts(ss), bytes(secret.reveal()))
        assert "the SLIP-39 passphrase is wrong" in msg and "horse" not in msg
        with pytest.raises(BreakGlassError, match="no checked secret"):
            r.secret  # noqa: B018
        with pytest.raises(BreakGlassError, match="try the passphrase again"):
            r.add(texts(ss)[2])
        with pytest.raises(BreakGlassError, match="passphrase is wrong"):
            r.retry(b"")
        assert r.retry(b"right horse").done
        assert r.secret == secret
        with pytest.raises(BreakGlassError, match="over"):
            r.retry(b"right horse")


def test_a_set_made_for_another_home_or_a_swapped_fingerprint_is_refused(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, ss = made
    with pytest.raises(BreakGlassError, match="another home") as e:
        recover(texts(ss)[:2], ss.set_id, B.check_value(secret, "other-home", ss.set_id))
    assert_clean(e.value, texts(ss), bytes(secret.reveal()))
    fake = B.recovery_fingerprint(B.recovery_public_key(secret_of(14), HOME))
    with pytest.raises(BreakGlassError, match="not the announced") as e:
        recover(texts(ss)[:2], ss.set_id, ss.check_value, fingerprint=fake)
    assert_clean(e.value, texts(ss), bytes(secret.reveal()))


def test_shares_that_do_not_fit_together_start_the_recovery_over(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    s2 = Share.from_mnemonic(texts(ss)[1])
    forged = dataclasses.replace(s2, value=os.urandom(32)).mnemonic()
    with Recovery(HOME, ss.set_id, ss.check_value) as r:
        r.add(texts(ss)[0])
        with pytest.raises(BreakGlassError, match="do not fit together") as e:
            r.add(forged)
        assert_clean(e.value, [texts(ss)[0], forged])
        assert r.progress.have == 0
        r.add(texts(ss)[2])
        assert r.add(texts(ss)[0]).done


def test_a_bad_passphrase_argument_is_refused() -> None:
    with pytest.raises(BreakGlassError, match="printable ASCII"):
        Recovery(HOME, 1, "00", passphrase=b"tab\there")


# ---------------------------------------------------------------- drill


def test_a_drill_checks_every_share_and_changes_nothing(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    _, ss = made
    before = texts(ss)
    rec = B.drill(before, home_id=HOME, set_id=ss.set_id, check_value=ss.check_value, now=1e9)
    assert rec == B.DrillRecord(ss.set_id, stamp(1e9), True, 3)
    assert texts(ss) == before  # the caller's shares are untouched


def test_a_drill_records_a_failure_instead_of_raising(
    made: tuple[RecoverySecret, B.ShareSet],
) -> None:
    secret, ss = made
    kw: dict[str, Any] = {"home_id": HOME, "set_id": ss.set_id, "check_value": ss.check_value}
    short = B.drill(texts(ss)[:1], **kw)
    assert not short.ok and "one more is needed" in short.problem
    wrong = B.drill(texts(ss), passphrase=b"guess", **kw)
    assert not wrong.ok and "passphrase is wrong" in wrong.problem
    assert not B.drill([], **kw).ok
    s3 = Share.from_mnemonic(texts(ss)[2])
    bad_third = dataclasses.replace(s3, value=os.urandom(32)).mnemonic()
    rec = B.drill([*texts(ss)[:2], bad_third], **kw)
    assert not rec.ok and rec.shares_checked == 2 and "do not fit together" in rec.problem
    for r in (short, wrong, rec):
        assert secret.reveal().hex() not in repr(r)
