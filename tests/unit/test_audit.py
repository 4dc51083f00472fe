"""The audit log under bad input.

Every edited byte, missing, swapped or cut entry, forged signature and
unwritable log directory is caught: ``verify`` names the first bad entry and
why, an action whose entry cannot be written does not happen, and nothing that
was there before is lost.
"""

from __future__ import annotations

import base64
import errno
import functools
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from custodian import audit as A
from custodian import people as P
from custodian.audit import AuditError, AuditLog, VerifyResult, verify
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, _make, next_code, unlock

EXE = str(Path(sys.executable).parent / "custodian")
HASH_EDITED = "content does not match its hash (the entry was edited)"
BAD_SIG = "signature does not verify"
LINK_BROKEN = "previous-hash link broken"
CP_ALTERED = "the checkpoint's signature does not verify (the checkpoint file was altered)"
CP_STRANGER = "the checkpoint is signed by a key this log never enrolled"


# ---------------------------------------------------------------- a populated log


def _populate(svc: Service, cast: Cast, alice: Actor, out: Path) -> None:
    """Entries 8-12 after the cast's 1-7: two backups, a rotation, a refusal, a KEK.

    1 home.init (home)        5 person.enrol oscar (alice)   9 kek.version.create (alice)
    2 kek.create (home)       6 person.enrol audrey (alice) 10 backup.encrypt (oscar)
    3 person.enrol alice      7 person.enrol bot (alice)    11 kek.version.create refused (oscar)
    4 person.enrol bob        8 backup.encrypt (oscar)      12 kek.create archive (alice)
    """
    oscar = unlock(svc, cast.oscar)
    out.mkdir(exist_ok=True)
    svc.backups.encrypt(io.BytesIO(b"one"), out / "one.cbk", by=oscar, label="one")
    svc.keys.add_version("backups", by=alice)
    svc.backups.encrypt(io.BytesIO(b"two"), out / "two.cbk", by=oscar, label="two")
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.add_version("backups", by=oscar)
    svc.keys.create(
        "archive", by=alice, purpose="long-term archive", code=next_code(svc, cast.alice)
    )
    assert svc.log.count() == 12


@dataclass
class Golden:
    """One populated log, built once: its segment bytes and two people's unlocked keys."""

    data: bytes
    alice: Actor
    bob: Actor

    def entry(self, seq: int) -> dict[str, Any]:
        e: dict[str, Any] = json.loads(self.data.splitlines()[seq - 1])
        return e

    def lines(self) -> list[bytes]:
        return self.data.splitlines(keepends=True)


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    base = tmp_path_factory.mktemp("golden")
    with pytest.MonkeyPatch.context() as mp:  # what conftest's autouse fixture does per test
        mp.delenv("CUSTODIAN_HOME", raising=False)
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        mp.setenv("XDG_DATA_HOME", str(base / "xdg-data"))
        mp.setenv("XDG_CONFIG_HOME", str(base / "xdg-config"))
        mp.setattr(P, "SCRYPT_LOG_N", 10)
        mp.setattr(P, "KDF", P.personal.CHEAP_KDF)
        svc, cast = _make(base / "home", "x25519")
        try:
            alice = unlock(svc, cast.alice)
            _populate(svc, cast, alice, base / "out")
            (seg,) = svc.log.segments()
            yield Golden(seg.read_bytes(), alice, unlock(svc, cast.bob))
        finally:
            svc.close()


@pytest.fixture
def populated(svc: Service, cast: Cast, alice: Actor, tmp_path: Path) -> Service:
    _populate(svc, cast, alice, tmp_path / "out")
    return svc


def _log(directory: Path, data: bytes) -> AuditLog:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "segment-000001.jsonl").write_bytes(data)
    return AuditLog(directory)


def _segment(svc: Service) -> Path:
    (seg,) = svc.log.segments()
    return seg


def _bad(res: VerifyResult, seq: int | None, reason: str) -> None:
    """``res`` fails, names entry ``seq`` (None: the log as a whole) and says ``reason``."""
    assert not res.ok, res.summary()
    assert res.first_bad == seq, res.summary()
    assert reason in res.reason, res.summary()
    where = f"entry {seq}: " if seq is not None else "the log: "
    assert res.summary() == f"audit log does NOT verify: {where}{res.reason}"


def _resign(entry: dict[str, Any], signer: Actor, old_sig: bool = False, **changes: Any) -> bytes:
    """``entry`` with ``changes``, its hash recomputed and signed by ``signer`` (a new line)."""
    e = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    e.update(changes)
    e["hash"] = A.entry_hash(e)
    e["sig"] = (
        entry["sig"]
        if old_sig
        else base64.b64encode(signer.sign(A.SIG_PREFIX + bytes.fromhex(e["hash"]))).decode()
    )
    return A.canonical(e) + b"\n"


# ---------------------------------------------------------------- one edited byte


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _respell(sig: str) -> str:
    """The same 64 signature bytes in another base64 spelling: its last character
    carries 2 data bits and 4 padding bits; flip the lowest padding bit."""
    assert sig.endswith("==") and len(sig) == 88
    return sig[:85] + B64[B64.index(sig[85]) ^ 1] + "=="


def _value_at(line: bytes, field: str) -> int:
    """Offset of the first letter or digit of a top-level field's value.

    Keys are sorted, so a key that also occurs inside ``details`` ("key_id")
    is top-level at its last occurrence; "action" and "actor" come first.
    """
    if field == "details":
        i = line.index(b'"details":{') + len(b'"details":{')
        i = line.index(b'":', i) + 2  # the first value inside details
        while line[i : i + 4] in (b"true", b"fals", b"null"):  # a literal: the next value
            i = line.index(b'":', i) + 2
    else:
        key = b'"' + field.encode() + b'":'
        i = (line.rindex(key) if field > "details" else line.index(key)) + len(key)
        if field == "sig":
            i += 10  # away from the last characters, whose low bits are padding
    while not chr(line[i]).isalnum():
        i += 1
    return i


def _other(c: int) -> int:
    """Another byte of the same kind (digit, letter), so the line stays valid JSON."""
    ch = chr(c)
    if ch.isdigit():
        return ord(str((int(ch) + 1) % 10))
    assert ch.isalpha(), ch
    return c - 1 if ch in "zZ" else c + 1


EDITS = {  # field edited -> what verify says
    "actor": HASH_EDITED,
    "details": HASH_EDITED,
    "time": HASH_EDITED,
    "key_id": HASH_EDITED,
    "hash": HASH_EDITED,
    "sig": BAD_SIG,
    "prev": LINK_BROKEN,
    "seq": "sequence gap",
}


@pytest.mark.parametrize("field", list(EDITS))
@pytest.mark.parametrize("seq", [1, 4, 8, 11, 12])
def test_one_edited_byte_is_named(golden: Golden, tmp_path: Path, seq: int, field: str) -> None:
    lines = golden.lines()
    line = bytearray(lines[seq - 1])
    i = _value_at(bytes(line), field)
    line[i] = _other(line[i])
    lines[seq - 1] = bytes(line)
    data = b"".join(lines)
    assert sum(a != b for a, b in zip(data, golden.data, strict=True)) == 1
    json.loads(line)  # still valid JSON: the hash, link or signature check must catch it
    log = _log(tmp_path / "audit", data)
    res = verify(log)
    _bad(res, seq, EDITS[field])
    assert res.entries == seq - 1  # everything before it verified
    assert (log.dir / "segment-000001.jsonl").read_bytes() == data  # verify changed nothing


def test_sig_in_a_non_canonical_base64_spelling_is_refused(golden: Golden, tmp_path: Path) -> None:
    """A 64-byte signature ends in 4 padding bits: changing them alters the stored
    bytes but not the decoded signature. The stored entry must be exactly what was
    signed, so verify refuses any spelling but the canonical one."""
    sig = golden.entry(12)["sig"]
    spelled = _respell(sig)
    assert base64.b64decode(spelled) == base64.b64decode(sig) and spelled != sig
    lines = golden.lines()
    lines[11] = lines[11].replace(sig.encode(), spelled.encode())
    _bad(verify(_log(tmp_path / "a", b"".join(lines))), 12, BAD_SIG)


# ---------------------------------------------------------------- gaps, swaps, repeats


@pytest.mark.parametrize("gone", [1, 2, 6, 11])
def test_deleted_entry_is_a_gap(golden: Golden, tmp_path: Path, gone: int) -> None:
    lines = golden.lines()
    del lines[gone - 1]
    res = verify(_log(tmp_path / "a", b"".join(lines)))
    _bad(res, gone, f"sequence gap: expected {gone}, found {gone + 1} (entries missing)")


def test_deleted_entry_with_the_rest_renumbered_breaks_the_chain(
    golden: Golden, tmp_path: Path
) -> None:
    lines = golden.lines()
    del lines[5]  # entry 6
    for n in range(5, len(lines)):  # entries 7.. become 6..
        lines[n] = lines[n].replace(b'"seq":%d,' % (n + 2), b'"seq":%d,' % (n + 1))
    _bad(verify(_log(tmp_path / "a", b"".join(lines))), 6, LINK_BROKEN)


@pytest.mark.parametrize(("i", "j"), [(4, 5), (3, 9), (11, 12), (1, 2)])
def test_swapped_entries_are_caught(golden: Golden, tmp_path: Path, i: int, j: int) -> None:
    lines = golden.lines()
    lines[i - 1], lines[j - 1] = lines[j - 1], lines[i - 1]
    res = verify(_log(tmp_path / "a", b"".join(lines)))
    _bad(res, i, f"sequence gap: expected {i}, found {j}")
    # and with their numbers swapped back, the hash chain still gives them away
    lines[i - 1] = lines[i - 1].replace(b'"seq":%d,' % j, b'"seq":%d,' % i)
    lines[j - 1] = lines[j - 1].replace(b'"seq":%d,' % i, b'"seq":%d,' % j)
    res = verify(_log(tmp_path / "b", b"".join(lines)))
    _bad(res, i, LINK_BROKEN)


def test_repeated_entry_is_caught(golden: Golden, tmp_path: Path) -> None:
    lines = golden.lines()
    lines.insert(7, lines[6])  # entry 7 twice
    res = verify(_log(tmp_path / "a", b"".join(lines)))
    _bad(res, 8, "sequence gap: expected 8, found 7 (entries repeated or out of order)")


def test_garbage_line_is_named(golden: Golden, tmp_path: Path) -> None:
    lines = golden.lines()
    lines[4] = lines[4][:100] + b"\n"
    _bad(
        verify(_log(tmp_path / "a", b"".join(lines))),
        5,
        "not valid JSON (segment-000001.jsonl line 5)",
    )


# ---------------------------------------------------------------- another person's key


@pytest.mark.parametrize("seq", [5, 12])
def test_entry_re_signed_with_another_persons_key_is_caught(
    golden: Golden, tmp_path: Path, seq: int
) -> None:
    """Bob recomputes alice's entry and signs it with his own valid key."""
    e = golden.entry(seq)
    assert e["actor"] == "alice"
    bob, alice = golden.bob, golden.alice
    cases = [
        # his key id on it: the key is known, but it is bob's
        (_resign(e, bob, key_id=bob.key_id), "actor is alice but the key belongs to bob"),
        # her key id on it, his signature: her key does not verify it
        (_resign(e, bob), BAD_SIG),
        # content edited and the hash recomputed, her old signature kept
        (_resign(e, alice, old_sig=True, subject="kek:other"), BAD_SIG),
    ]
    for n, (line, reason) in enumerate(cases):
        lines = golden.lines()
        lines[seq - 1] = line
        _bad(verify(_log(tmp_path / str(n), b"".join(lines))), seq, reason)
    if seq < 12:  # alice herself can re-sign her edit: an enrolment of no person is refused
        lines = golden.lines()  # (an edit the rules allowed would break the next link)
        lines[seq - 1] = _resign(e, alice, subject="kek:other")
        _bad(
            verify(_log(tmp_path / "self", b"".join(lines))),
            seq,
            "person.enrol's subject 'kek:other' is not person:NAME",
        )


# ---------------------------------------------------------------- any flipped byte


def test_any_flipped_byte_fails_verify_at_its_own_entry(golden: Golden, tmp_path: Path) -> None:
    """Flip any byte of the segment (XOR with 1..255): verify names the entry whose
    line holds that byte, or else the log parses to exactly the same entries.

    The second case is possible in one place only: the final newline turned into
    JSON whitespace (space, tab, CR), which ``json`` ignores at the end of a line.
    Everywhere else canonical JSON has no slack: a structural character cannot
    become whitespace without breaking the line, and any other change alters a
    value (hash, link or signature fail), a key (malformed) or the UTF-8
    (not valid JSON). Verify never raises, whatever the bytes.
    """
    data = golden.data
    original = list(_log(tmp_path / "orig", data).entries())
    log = _log(tmp_path / "flip", data)
    seg = log.dir / "segment-000001.jsonl"
    last = len(data) - 1
    sig12 = data.rindex(b'"sig":"') + len(b'"sig":"')

    @settings(max_examples=300, deadline=None)
    @given(pos=st.integers(0, last), mask=st.integers(1, 255))
    @example(pos=last, mask=0x0A ^ 0x20)  # final newline -> space: same entries
    @example(pos=last, mask=0x0A ^ 0x0D)  # final newline -> CR: same entries
    @example(pos=last, mask=0x0A ^ 0x7D)  # final newline -> "}"
    @example(pos=data.index(b"\n"), mask=0x0A ^ 0x20)  # two lines merged
    @example(pos=sig12 + 85, mask=1)  # signature padding bits
    @example(pos=data.index(b"Z"), mask=0x80)  # invalid UTF-8
    def flip(pos: int, mask: int) -> None:
        bad = bytearray(data)
        bad[pos] ^= mask
        seg.write_bytes(bad)
        res = verify(log)
        if res.ok:
            assert pos == last and chr(bad[pos]) in " \t\r", (pos, mask)
            assert list(log.entries()) == original
        else:
            assert res.first_bad == data[:pos].count(b"\n") + 1, (pos, mask, res.summary())

    flip()


def test_every_bit_of_an_entry_matters(golden: Golden, tmp_path: Path) -> None:
    """Exhaustive for one entry (alice enrolling bob, the newest of a 4-entry log):
    flipping the low bit of any of its bytes fails verify at that entry."""
    data = b"".join(golden.lines()[:4])
    start = data.rstrip(b"\n").rindex(b"\n") + 1
    log = _log(tmp_path / "a", data)
    seg = log.dir / "segment-000001.jsonl"
    for pos in range(start, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 1
        seg.write_bytes(bad)
        res = verify(log)
        assert not res.ok and res.first_bad == 4, (pos, chr(data[pos]), res.summary())


def test_torn_last_line_is_named_and_refuses_new_entries(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    """A write cut short (a crash before fsync) leaves half a line: verify says so,
    and no new entry is chained onto it."""
    seg = _segment(svc)
    data = seg.read_bytes()
    torn = data[: data.rstrip(b"\n").rindex(b"\n") + 1 + 40]
    seg.write_bytes(torn)
    _bad(svc.audit.verify(), 7, "not valid JSON (segment-000001.jsonl line 7)")
    with pytest.raises(AuditError, match="the action was not carried out"):
        svc.keys.create("after", by=alice, code=next_code(svc, cast.alice))
    assert "after" not in {k.name for k in svc.keys.list()}
    assert seg.read_bytes() == torn


# ---------------------------------------------------------------- checkpoints and cut tails


@pytest.mark.parametrize("cut", [2, 5, 10, 11, 13])
def test_cut_tail_verifies_alone_but_not_against_a_checkpoint(
    populated: Service, alice: Actor, cut: int
) -> None:
    svc = populated
    cp = svc.audit.checkpoint(by=alice)
    # a checkpoint vouches for the entries before it; its own record is entry 13
    assert (cp["seq"], svc.log.count()) == (12, 13)
    assert svc.audit.verify(checkpoint=cp).checkpoint == "checkpoint at entry 12 by alice holds"
    seg = _segment(svc)
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:-1]))
    assert svc.audit.verify(checkpoint=cp).ok  # only the checkpoint's own record gone
    seg.write_bytes(b"".join(lines[:-cut]))
    left = 13 - cut
    plain = svc.audit.verify()
    if left == 0:  # nothing left: an empty log proves nothing and does not verify
        assert not plain.ok and "empty" in plain.reason
        assert "empty" in svc.audit.verify(checkpoint=cp).reason
        return
    assert plain.ok and plain.entries == left  # what remains is a valid chain
    res = svc.audit.verify(checkpoint=cp)
    if left >= 3:  # alice's key, which signed the checkpoint, is enrolled by entry 3
        _bad(
            res,
            None,
            f"the log was cut: the checkpoint vouches for 12 entries but only {left} remain "
            "(newest entries removed)",
        )
    else:  # cut so far that the checkpoint's own key is gone: it cannot vouch for anything
        _bad(res, None, CP_STRANGER)


def test_cut_tail_regrown_is_a_rewrite(populated: Service, alice: Actor) -> None:
    svc = populated
    cp = svc.audit.checkpoint(by=alice)
    seg = _segment(svc)
    seg.write_bytes(b"".join(seg.read_bytes().splitlines(keepends=True)[:-3]))
    for _ in range(3):  # new entries chained onto the cut log
        svc.audit.checkpoint(by=alice)
    assert svc.log.count() == 13 and svc.audit.verify().ok
    _bad(
        svc.audit.verify(checkpoint=cp),
        12,
        "entry 12 differs from the one the checkpoint vouches for (log rewritten)",
    )


def test_signer_rewriting_their_own_newest_entry_is_caught_only_by_a_checkpoint(
    populated: Service, alice: Actor
) -> None:
    svc = populated
    cp = svc.audit.checkpoint(by=alice)
    seg = _segment(svc)
    lines = seg.read_bytes().splitlines(keepends=True)[:-1]  # drop the checkpoint's record
    e = json.loads(lines[-1])
    assert (e["seq"], e["actor"]) == (12, "alice")
    lines[-1] = _resign(e, alice, details={**e["details"], "purpose": "something else"})
    seg.write_bytes(b"".join(lines))
    assert svc.audit.verify().ok  # a valid chain, validly signed...
    _bad(svc.audit.verify(checkpoint=cp), 12, "log rewritten")  # ...but not what was vouched for


CP_EDITS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "seq": (lambda cp: cp["seq"] - 1, CP_ALTERED),
    # one hex digit changed (a head that starts with "0" gets a "1": never a no-op edit)
    "head": (lambda cp: ("1" if cp["head"][0] == "0" else "0") + cp["head"][1:], CP_ALTERED),
    "time": (lambda cp: cp["time"].replace("T", "X"), CP_ALTERED),
    "home_id": (lambda cp: "another home", CP_ALTERED),
    "actor": (lambda cp: "bob", CP_STRANGER),
    "key_id": (lambda cp: "0" * 32, CP_STRANGER),
    "sig": (
        lambda cp: cp["sig"][:10] + ("A" if cp["sig"][10] != "A" else "B") + cp["sig"][11:],
        CP_ALTERED,
    ),
    "sig-padding": (lambda cp: _respell(cp["sig"]), CP_ALTERED),
    "format": (lambda cp: 2, CP_ALTERED),
}


@pytest.mark.parametrize("field", list(CP_EDITS))
def test_edited_checkpoint_fails_its_signature(svc: Service, alice: Actor, field: str) -> None:
    cp = svc.audit.checkpoint(by=alice)
    assert svc.audit.verify(checkpoint=cp).ok
    edit, reason = CP_EDITS[field]
    key = field.split("-")[0]
    bad = {**cp, key: edit(cp)}
    assert bad[key] != cp[key]
    res = svc.audit.verify(checkpoint=bad)
    _bad(res, None, reason)


# ---------------------------------------------------------------- disabled and replaced keys


def test_entry_signed_after_its_signer_was_disabled_is_caught(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    oscar = unlock(svc, cast.oscar)
    svc.backups.encrypt(io.BytesIO(b"before"), tmp_path / "before.cbk", by=oscar)
    svc.people.disable("oscar", by=alice, reason="left the team")
    disabled_at = svc.log.count()
    # the service refuses the stale actor and the home signs the refusal...
    with pytest.raises(AuthError, match="not an active person"):
        svc.backups.encrypt(io.BytesIO(b"after"), tmp_path / "after.cbk", by=oscar)
    refusal = svc.audit.entries()[-1]
    assert (refusal["actor"], refusal["outcome"]) == ("home", "refused")
    assert svc.audit.verify().ok  # oscar's earlier entries still verify
    # ...and an entry written with oscar's key anyway is caught
    forged = svc.log.append(
        actor="oscar",
        key_id=oscar.key_id,
        sign=oscar.sign,
        action="backup.encrypt",
        subject="backup:forged",
    )
    _bad(svc.audit.verify(), forged["seq"], f"signed by oscar, disabled at entry {disabled_at}")


def test_replaced_key_old_entries_verify_and_the_old_key_signs_nothing_new(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    old = unlock(svc, cast.oscar)
    svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=old)
    old_entry = svc.log.count()
    cp = svc.audit.checkpoint(by=alice)  # signed with alice's first key
    svc.people.replace_key("oscar", SecretBytes(b"oscar new passphrase long enough"), by=alice)
    replaced_at = svc.log.count()
    svc.people.replace_key("alice", SecretBytes(b"alice new passphrase long enough"), by=alice)
    new = svc.auth.unlock("oscar", SecretBytes(b"oscar new passphrase long enough"))
    svc.backups.encrypt(io.BytesIO(b"y"), tmp_path / "y.cbk", by=new)
    res = svc.audit.verify(checkpoint=cp)  # both old keys still known
    assert res.ok, res.summary()
    assert res.keys == 8  # home, 5 people, 2 replacements
    with pytest.raises(AuthError, match="replaced"):
        svc.backups.encrypt(io.BytesIO(b"z"), tmp_path / "z.cbk", by=old)
    assert svc.audit.verify().ok

    seg = _segment(svc)
    good = seg.read_bytes()
    # the new key is not valid back in time: re-signing the old entry with it is caught
    lines = good.splitlines(keepends=True)
    lines[old_entry - 1] = _resign(json.loads(lines[old_entry - 1]), new, key_id=new.key_id)
    seg.write_bytes(b"".join(lines))
    _bad(svc.audit.verify(), old_entry, "which no earlier entry enrolled")
    # and the old key signs nothing after its replacement
    seg.write_bytes(good)
    forged = svc.log.append(
        actor="oscar",
        key_id=old.key_id,
        sign=old.sign,
        action="backup.encrypt",
        subject="backup:forged",
    )
    _bad(
        svc.audit.verify(),
        forged["seq"],
        f"signed with oscar's key replaced at entry {replaced_at}",
    )


def test_key_announced_by_someone_without_the_right_is_caught(svc: Service, cast: Cast) -> None:
    """An operator's valid key must not be able to give a custodian a new key."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    oscar = unlock(svc, cast.oscar)  # an operator
    fake = ed25519.Ed25519PrivateKey.generate()
    pub = fake.public_key().public_bytes_raw()
    announce = svc.log.append(
        actor="oscar",
        key_id=oscar.key_id,
        sign=oscar.sign,
        action="person.key.replace",
        subject="person:alice",
        details={"key_id": P.key_id(pub), "public_key": base64.b64encode(pub).decode()},
    )
    svc.log.append(
        actor="alice",
        key_id=P.key_id(pub),
        sign=fake.sign,
        action="kek.destroy",
        subject="kek:backups",
    )
    res = svc.audit.verify()
    assert not res.ok and res.first_bad == announce["seq"]
    assert "without holding the custodian role" in res.reason


def test_enrolment_by_a_non_custodian_and_a_forged_key_id_are_caught(
    svc: Service, cast: Cast
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    audrey = unlock(svc, cast.audrey)  # an auditor
    pub = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    details = {
        "roles": ["custodian"],
        "kind": "person",
        "key_id": P.key_id(pub),
        "public_key": base64.b64encode(pub).decode(),
    }
    e = svc.log.append(
        actor="audrey",
        key_id=audrey.key_id,
        sign=audrey.sign,
        action="person.enrol",
        subject="person:eve",
        details=details,
    )
    res = svc.audit.verify()
    assert not res.ok and res.first_bad == e["seq"]
    assert "audrey enrolled eve without holding the custodian role" in res.reason


def test_an_announced_key_id_must_hash_the_public_key(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    alice = unlock(svc, cast.alice)
    pub = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    e = svc.log.append(
        actor="alice",
        key_id=alice.key_id,
        sign=alice.sign,
        action="person.key.replace",
        subject="person:bob",
        details={"key_id": "0" * 32, "public_key": base64.b64encode(pub).decode()},
    )
    res = svc.audit.verify()
    assert not res.ok and res.first_bad == e["seq"] and "not the hash" in res.reason


def test_an_empty_log_and_a_non_object_line_do_not_verify(svc: Service) -> None:
    segs = sorted((svc.home.path / "audit").glob("segment-*.jsonl"))
    data = segs[-1].read_bytes()
    segs[-1].write_bytes(data + b"5\n")
    res = svc.audit.verify()
    assert not res.ok and "not a JSON object" in res.reason
    for seg in segs:
        seg.write_bytes(b"")
    res = svc.audit.verify()
    assert not res.ok and "empty" in res.reason


@pytest.mark.parametrize("cp", [[1], {"seq": 3}, {"seq": "x"}, "text"])
def test_a_malformed_checkpoint_is_refused_cleanly(svc: Service, cp: Any) -> None:
    res = svc.audit.verify(checkpoint=cp)
    assert not res.ok and "not a custodian audit checkpoint" in res.reason


# ---------------------------------------------------------------- refused sign-ins


SIGN_IN_REFUSALS = {  # case -> (message, entry actor, entry action, logged reason)
    "wrong-passphrase": ("wrong passphrase", "home", "person.unlock", "wrong passphrase"),
    "replayed-totp": ("already used", "bob", "person.sign_in", "TOTP code replayed"),
    "stale-totp": ("not valid now", "bob", "person.sign_in", "TOTP code did not match"),
    "disabled": ("bob is disabled", "home", "person.unlock", "person is disabled"),
}


@pytest.mark.parametrize("case", list(SIGN_IN_REFUSALS))
def test_refused_sign_in_is_logged_and_the_log_verifies(
    svc: Service, cast: Cast, alice: Actor, case: str
) -> None:
    phrase = b"bob test passphrase long enough"
    code = cast.bob.code(+1)  # enrolment used the current step
    passphrase, typed = phrase, code
    if case == "wrong-passphrase":
        passphrase = b"not bob's passphrase"
    elif case == "replayed-totp":
        svc.auth.sign_in("bob", SecretBytes(phrase), code).forget()
    elif case == "stale-totp":
        typed = cast.bob.code(-2)
    else:
        svc.people.disable("bob", by=alice, reason="left the team")
    n = svc.log.count()
    message, actor, action, reason = SIGN_IN_REFUSALS[case]
    with pytest.raises(AuthError, match=message):
        svc.auth.sign_in("bob", SecretBytes(passphrase), typed)
    entries = svc.audit.entries()
    assert len(entries) == n + 1
    e = entries[-1]
    assert (e["actor"], e["action"], e["subject"], e["outcome"], e["details"]["reason"]) == (
        actor,
        action,
        "person:bob",
        "refused",
        reason,
    )
    assert passphrase.decode() not in json.dumps(e) and f'"{typed}"' not in json.dumps(e)
    res = svc.audit.verify()
    assert res.ok and res.entries == n + 1, res.summary()
    if case in ("wrong-passphrase", "stale-totp"):  # the refusal burned no code
        svc.auth.sign_in("bob", SecretBytes(phrase), code)
        assert svc.audit.entries()[-1]["action"] == "person.sign_in"
        assert svc.audit.verify().ok


# ---------------------------------------------------------------- fail-closed


@functools.cache
def _mount_problem() -> str:
    """Empty if this process can mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return f"mounting a tmpfs needs root; these tests run as uid {os.geteuid()}"
    d = tempfile.mkdtemp()
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode:
            return f"'mount -t tmpfs' is refused in this sandbox: {r.stderr.strip()}"
        subprocess.run(["umount", d], check=True, timeout=10)
        return ""
    except OSError as e:
        return f"no mount command: {e}"
    finally:
        os.rmdir(d)


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


class Breakage:
    """One way for the audit directory to become unwritable, and its repair."""

    def __init__(self, kind: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        self.dir = directory
        self.test_mp = monkeypatch  # lives as long as the test
        self.faults = pytest.MonkeyPatch()  # undone by repair
        self.mounted = False

    def _mount(self, size: str) -> None:
        files = {p.name: p.read_bytes() for p in self.dir.iterdir()}
        _sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(self.dir))
        self.mounted = True
        for name, data in files.items():
            (self.dir / name).write_bytes(data)
            os.chmod(self.dir / name, 0o600)

    def _fault(self, name: str, make: Callable[[Any], Any]) -> None:
        real = getattr(os, name)
        prefix = str(self.dir)

        def faulty(fd: int, *args: Any) -> Any:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                return make(real)(fd, *args)
            return real(fd, *args)

        self.faults.setattr(A.os, name, faulty)

    def prepare(self, svc: Service, alice: Actor) -> None:
        """Before the snapshot: for the full tmpfs, pad the log with real entries until
        the next one cannot fit in the slack of the segment's last page (a full
        tmpfs still takes writes there)."""
        if self.kind == "disk-full-tmpfs":
            page = resource.getpagesize()
            for _ in range(80):
                if -_segment(svc).stat().st_size % page < 450:  # action lines are 550+
                    return
                svc.audit.checkpoint(by=alice)
            raise AssertionError("could not bring the segment's page slack under 450 bytes")

    def apply(self, svc: Service) -> None:
        d = self.dir
        if self.kind == "read-only-mount":
            self._mount("1m")
            _sh("mount", "-o", "remount,ro", str(d))
        elif self.kind == "read-only-chmod":
            for p in d.iterdir():
                os.chmod(p, 0o400)
            os.chmod(d, 0o500)
        elif self.kind == "audit-dir-is-a-file":
            d.rename(d.with_name("audit.aside"))
            d.write_bytes(b"not a directory\n")
        elif self.kind == "lock-is-a-directory":
            (d / ".lock").unlink()
            (d / ".lock").mkdir()
        elif self.kind == "segment-is-a-directory":
            self.test_mp.setattr(A, "SEGMENT_ENTRIES", svc.log.count())  # next: segment 2
            (d / "segment-000002.jsonl").mkdir()
        elif self.kind == "disk-full-tmpfs":
            self._mount("64k")
            with open(d / "filler", "wb", buffering=0) as f:
                with pytest.raises(OSError) as full:
                    while True:
                        f.write(bytes(resource.getpagesize()))
                assert full.value.errno == errno.ENOSPC
        elif self.kind == "write-enospc":
            self._fault("write", lambda real: _raise_enospc)
        elif self.kind == "short-write":
            self._fault("write", lambda real: lambda fd, b: real(fd, b[: len(b) // 2]))
        elif self.kind == "fsync-enospc":
            self._fault("fsync", lambda real: _raise_enospc)
        else:
            raise AssertionError(self.kind)

    def repair(self) -> None:
        d = self.dir
        self.faults.undo()
        if self.kind == "read-only-mount":
            _sh("mount", "-o", "remount,rw", str(d))
        elif self.kind == "read-only-chmod":
            os.chmod(d, 0o700)
            for p in d.iterdir():
                os.chmod(p, 0o600)
        elif self.kind == "audit-dir-is-a-file":
            d.unlink()
            d.with_name("audit.aside").rename(d)
        elif self.kind == "lock-is-a-directory":
            (d / ".lock").rmdir()
        elif self.kind == "segment-is-a-directory":
            (d / "segment-000002.jsonl").rmdir()  # the next entry starts segment 2 for real
        elif self.kind == "disk-full-tmpfs":
            (d / "filler").unlink()

    def cleanup(self) -> None:
        self.faults.undo()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.dir)], check=False, timeout=10)


def _raise_enospc(fd: int, *args: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


MOUNTED = ("read-only-mount", "disk-full-tmpfs")


@pytest.fixture(
    params=[
        "read-only-mount",  # root: a real read-only file system
        "read-only-chmod",  # not root: permission bits
        "audit-dir-is-a-file",
        "lock-is-a-directory",
        "segment-is-a-directory",
        "disk-full-tmpfs",  # a real ENOSPC (and a short write) from a tiny full tmpfs
        "write-enospc",  # os.write raising ENOSPC, simulated
        "short-write",  # os.write taking half the line, simulated
        "fsync-enospc",  # the line written but fsync failing, simulated
    ]
)
def breakage(
    request: pytest.FixtureRequest, svc: Service, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Breakage]:
    kind: str = request.param
    if kind in MOUNTED and (why := _mount_problem()):
        pytest.skip(why)
    if kind == "read-only-chmod" and os.geteuid() == 0:
        pytest.skip("running as root, whom permission bits do not stop; read-only-mount covers it")
    b = Breakage(kind, svc.home.audit, monkeypatch)
    try:
        yield b
    finally:
        b.cleanup()


@pytest.mark.parametrize("action", ["encrypt-backup", "create-kek"])
def test_unwritable_log_means_the_action_does_not_happen(
    breakage: Breakage, action: str, svc: Service, cast: Cast, alice: Actor, tmp_path: Path
) -> None:
    oscar = unlock(svc, cast.oscar)
    out = tmp_path / "out"
    out.mkdir()

    def act(name: str) -> None:
        if action == "encrypt-backup":
            svc.backups.encrypt(
                io.BytesIO(b"payload " * 100), out / f"{name}.cbk", by=oscar, label=name
            )
        else:
            svc.keys.create(
                name, by=alice, purpose="fail-closed test", code=next_code(svc, cast.alice)
            )

    def committed(name: str) -> bool:
        if action == "encrypt-backup":
            return any(b.label == name for b in svc.backups.list())
        return name in {k.name for k in svc.keys.list()}

    breakage.prepare(svc, alice)
    before = {p.name: p.read_bytes() for p in svc.log.segments()}
    breakage.apply(svc)
    backups = svc.backups.total()
    with pytest.raises(AuditError, match="the action was not carried out") as err:
        act("lost")
    assert str(svc.home.audit) in str(err.value)
    assert not committed("lost")
    assert svc.backups.total() == backups
    assert sorted(os.listdir(out)) == []  # no container, no partial file left behind

    breakage.repair()
    after = {p.name: p.read_bytes() for p in svc.log.segments()}
    assert after == before  # nothing appended, nothing half-written, nothing lost
    res = svc.audit.verify()
    assert res.ok and res.entries == svc.log.count(), res.summary()
    n = res.entries
    act("kept")
    assert committed("kept")
    last = svc.audit.entries()[-1]
    assert (last["seq"], last["outcome"]) == (n + 1, "ok")
    assert last["action"] == ("backup.encrypt" if action == "encrypt-backup" else "kek.create")
    res = svc.audit.verify()
    assert res.ok and res.entries == n + 1, res.summary()
    if action == "encrypt-backup":
        assert sorted(os.listdir(out)) == ["kept.cbk"]


@pytest.mark.parametrize("kind", ["audit-dir-is-a-file", "fsync-enospc"])
def test_forced_encrypt_that_cannot_be_logged_keeps_the_file_it_would_replace(
    svc: Service,
    cast: Cast,
    alice: Actor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """``--force`` over last night's container: if the entry cannot be written, the
    new container goes and last night's is still there, whole, under its name."""
    oscar = unlock(svc, cast.oscar)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "nightly.cbk"
    monday = svc.backups.encrypt(io.BytesIO(b"monday"), dst, by=oscar)
    kept = dst.read_bytes()
    b = Breakage(kind, svc.home.audit, monkeypatch)
    try:
        b.apply(svc)
        with pytest.raises(AuditError, match="the action was not carried out"):
            svc.backups.encrypt(io.BytesIO(b"tuesday"), dst, by=oscar, force=True)
        assert dst.read_bytes() == kept and os.listdir(out) == ["nightly.cbk"]
        assert [x.id for x in svc.backups.list()] == [monday.id]
        b.repair()
    finally:
        b.cleanup()
    tuesday = svc.backups.encrypt(io.BytesIO(b"tuesday"), dst, by=oscar, force=True)
    assert dst.read_bytes() != kept and os.listdir(out) == ["nightly.cbk"]
    assert svc.backups.get(tuesday.id).location == str(dst)
    assert svc.audit.verify().ok


# ---------------------------------------------------------------- several segments


def test_missing_middle_or_last_segment(
    svc: Service, cast: Cast, alice: Actor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(A, "SEGMENT_ENTRIES", 4)
    _populate(svc, cast, alice, tmp_path / "out")
    for _ in range(3):
        svc.audit.checkpoint(by=alice)
    cp = svc.audit.checkpoint(by=alice)
    segs = svc.log.segments()
    assert len(segs) >= 3
    # the checkpoint vouches for an entry in the newest segment
    assert json.loads(segs[-1].read_bytes().splitlines()[0])["seq"] <= cp["seq"]
    res = svc.audit.verify(checkpoint=cp)
    assert res.ok and res.entries == 16, res.summary()
    middle, newest = segs[1].read_bytes(), segs[-1].read_bytes()
    first = json.loads(middle.splitlines()[0])["seq"]
    following = first + len(middle.splitlines())
    segs[1].unlink()
    _bad(
        svc.audit.verify(),
        first,
        f"sequence gap: expected {first}, found {following} (entries missing)",
    )
    segs[1].write_bytes(middle)
    segs[-1].unlink()
    assert svc.audit.verify().ok  # a whole newest segment cut off is a valid prefix...
    _bad(svc.audit.verify(checkpoint=cp), None, "the log was cut")  # ...a checkpoint sees it
    segs[-1].write_bytes(newest)
    assert svc.audit.verify(checkpoint=cp).ok


# ---------------------------------------------------------------- the command line


def _cli(*commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[bytes]]:
    """Run ``custodian`` commands as cron would (no terminal, no stdin), all at once."""
    procs = [
        subprocess.Popen(
            [EXE, *c], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    done = []
    for c, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess([EXE, *c], proc.returncode, out, err))
    return done


def test_cli_audit_show_filters(populated: Service) -> None:
    home = str(populated.home.path)
    filters: dict[tuple[str, ...], list[int]] = {
        (): list(range(1, 13)),
        ("--actor", "oscar"): [8, 10, 11],
        ("--action", "kek."): [2, 9, 11, 12],  # a prefix
        ("--action", "kek.create"): [2, 12],
        ("--outcome", "refused"): [11],
        ("--outcome", "ok", "--actor", "oscar"): [8, 10],
        ("--text", "LONG-TERM"): [12],  # in details, any case
        ("--text", "person:bob"): [4],  # in the subject
        ("--actor", "alice", "--last", "2"): [9, 12],
        ("--actor", "nobody"): [],
    }
    show = ("--home", home, "audit", "show")
    runs = _cli(
        *[(*show, "--json", *f) for f in filters],
        (*show, "--last", "2"),
        (*show, "--outcome", "maybe"),
    )
    for f, r in zip(filters, runs, strict=False):
        assert r.returncode == 0 and r.stderr == b"", (f, r.stderr)
        rows = [json.loads(x) for x in r.stdout.splitlines()]
        assert [e["seq"] for e in rows] == filters[f], f
    stored = _segment(populated).read_bytes().splitlines()
    assert [json.loads(x) for x in runs[0].stdout.splitlines()] == [json.loads(x) for x in stored]

    plain, invalid = runs[-2:]
    rows = plain.stdout.decode().splitlines()
    assert plain.returncode == 0 and len(rows) == 2
    assert rows[0].split()[0] == "11"
    assert rows[0].split()[2:5] == ["oscar", "refused", "kek.version.create"]
    assert rows[1].split()[-1] == "kek:archive"
    assert invalid.returncode == 2 and b"invalid choice" in invalid.stderr


def test_cli_audit_verify_exit_status(populated: Service, alice: Actor, tmp_path: Path) -> None:
    home = str(populated.home.path)
    verify_cmd = ("--home", home, "audit", "verify")
    cp_file = tmp_path / "cp.json"
    cp_file.write_text(json.dumps(populated.audit.checkpoint(by=alice)), encoding="utf-8")
    edited = json.loads(cp_file.read_text(encoding="utf-8")) | {"seq": 3}
    (tmp_path / "edited.json").write_text(json.dumps(edited), encoding="utf-8")

    good, altered, missing = _cli(
        (*verify_cmd, "--json"),
        (*verify_cmd, "--checkpoint", str(tmp_path / "edited.json")),
        (*verify_cmd, "--checkpoint", str(tmp_path / "missing.json")),
    )
    assert good.returncode == 0, good.stdout
    assert json.loads(good.stdout) | {"head": ""} == {
        "ok": True,
        "entries": 13,
        "head": "",
        "first_bad": None,
        "reason": "",
        "checkpoint": "",
        "keys": 6,
    }
    assert altered.returncode == 8
    assert altered.stdout.decode().strip() == f"audit log does NOT verify: the log: {CP_ALTERED}"
    assert missing.returncode == 1 and b"cannot read checkpoint" in missing.stderr
    assert missing.stderr.count(b"\n") == 1 and b"Traceback" not in missing.stderr

    seg = _segment(populated)
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[8] = lines[8].replace(b'"outcome":"ok"', b'"outcome":"no"')
    seg.write_bytes(b"".join(lines))
    human, as_json, show = _cli(
        verify_cmd,
        (*verify_cmd, "--json", "--checkpoint", str(cp_file)),
        ("--home", home, "audit", "show", "--json"),
    )
    assert human.returncode == 8
    assert human.stdout.decode().strip() == f"audit log does NOT verify: entry 9: {HASH_EDITED}"
    out = json.loads(as_json.stdout)
    assert as_json.returncode == 8
    assert (out["ok"], out["first_bad"], out["entries"]) == (False, 9, 8)
    assert show.returncode == 0 and len(show.stdout.splitlines()) == 13  # reading is not blocked
