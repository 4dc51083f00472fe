"""An independent verifier of a custodian audit log, written from docs/audit-format.md.

It uses the standard library and the ``cryptography`` package only, and imports
nothing from custodian. It performs the checks of ``custodian audit verify`` in
the same order and prints the same one-line summary, so the two can be compared:

    python docs/audit_verify_example.py HOME/audit
    python docs/audit_verify_example.py HOME/audit --checkpoint cp.json
    python docs/audit_verify_example.py HOME/audit --strict

``--strict`` adds checks that custodian 0.1.0 does not make (docs/audit-format.md,
section 8): every line is byte-for-byte its canonical encoding, announced key ids
match their public keys, key announcements and disablements come from someone
allowed to make them, and a checkpoint names this log's home.

Exit status: 0 the log verifies, 8 it does not, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_PREFIX = b"custodian audit v1\n"
SIG_PREFIX = b"custodian audit sig v1\x00"
CHECKPOINT_PREFIX = b"custodian audit checkpoint v1\x00"
KEY_ID_PREFIX = b"custodian signing key v1\x00"
GENESIS = "0" * 64
HOME = "home"


class Bad(Exception):
    """The log does not verify; ``seq`` is the first bad entry (None: the log as a whole)."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def canonical(obj: Any) -> bytes:
    """Section 4: sorted keys, no whitespace, UTF-8 without escaping, no floats."""

    def check(o: Any) -> None:
        if isinstance(o, float):
            raise TypeError("floats are not allowed")
        if isinstance(o, dict):
            for k, v in o.items():
                if not isinstance(k, str):
                    raise TypeError("keys must be strings")
                check(v)
        elif isinstance(o, list):
            for v in o:
                check(v)

    check(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(s: str) -> bytes:
    """Base64 in its one canonical spelling (padding, no stray characters), else ValueError."""
    raw = base64.b64decode(s, validate=True)
    if base64.b64encode(raw).decode() != s:
        raise ValueError("base64 not in its canonical spelling")
    return raw


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    return hashlib.sha256(HASH_PREFIX + canonical(body)).hexdigest()


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(KEY_ID_PREFIX + public_raw).hexdigest()[:32]


@dataclass
class Key:
    person: str
    public: Ed25519PublicKey
    replaced_at: int | None = None


class Verifier:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.keys: dict[str, Key] = {}
        self.disabled: dict[str, int] = {}
        self.roles: dict[str, list[str]] = {}  # --strict only: roles from enrolment entries
        self.home_id = ""
        self.n = 0
        self.head = GENESIS
        self.hash_at: dict[int, str] = {}

    # ---------------------------------------------------------------- reading

    def lines(self, audit_dir: Path) -> Any:
        for seg in sorted(audit_dir.glob("segment-*.jsonl")):
            with open(seg, "rb") as f:
                for number, raw in enumerate(f, 1):
                    if raw.strip():
                        yield f"{seg.name} line {number}", raw

    def run(self, audit_dir: Path, want_seq: int | None) -> None:
        # section 7, "Compensating entries": which ok entries a later entry cancels
        self.cancelled_by: dict[int, int] = {}
        self.voided: dict[int, tuple[str, str, str, str]] = {}
        for _, raw in self.lines(audit_dir):
            if b'"aborts":' in raw:
                try:
                    c = json.loads(raw)
                    t = c["details"]["aborts"]
                except (ValueError, KeyError, TypeError):
                    continue
                if c.get("outcome") == "failed" and type(t) is int:
                    self.cancelled_by.setdefault(t, c["seq"])
        for where, raw in self.lines(audit_dir):
            expect = self.n + 1
            try:
                e = json.loads(raw)
            except ValueError:
                raise Bad(expect, f"not valid JSON ({where})") from None
            try:
                self.entry(e, raw)
            except (KeyError, TypeError, ValueError, AttributeError) as ex:
                raise Bad(expect, f"malformed entry ({type(ex).__name__}: {ex})") from None
            self.n, self.head = expect, e["hash"]
            if expect == want_seq:
                self.hash_at[expect] = e["hash"]

    # ---------------------------------------------------------------- one entry

    def entry(self, e: dict[str, Any], raw: bytes) -> None:
        expect = self.n + 1
        seq = int(e["seq"])
        if seq != expect:
            what = "missing" if seq > expect else "repeated or out of order"
            raise Bad(expect, f"sequence gap: expected {expect}, found {seq} (entries {what})")
        if e["prev"] != self.head:
            raise Bad(
                seq,
                "previous-hash link broken (an entry before it was removed, swapped or altered)",
            )
        if entry_hash(e) != e["hash"]:
            raise Bad(seq, "content does not match its hash (the entry was edited)")
        if self.strict and raw.rstrip(b"\n") != canonical(e):
            raise Bad(seq, "strict: the line is not the canonical encoding of its entry")
        kid, actor = e["key_id"], e["actor"]
        if seq == 1:
            if e["action"] != "home.init":
                raise Bad(1, "the log does not start with home.init")
            pub = base64.b64decode(e["details"]["public_key"])
            if self.strict and not (kid == e["details"]["key_id"] == key_id(pub)):
                raise Bad(1, "strict: the home key's id does not match its public key")
            self.keys[kid] = Key(actor, Ed25519PublicKey.from_public_bytes(pub))
            self.home_id = str(e["details"].get("home_id", ""))
        k = self.keys.get(kid)
        if k is None:
            raise Bad(seq, f"signed by key {kid[:12]}…, which no earlier entry enrolled")
        if k.person != actor:
            raise Bad(
                seq,
                f"actor is {actor} but the key belongs to {k.person} (re-signed by someone else)",
            )
        if k.replaced_at is not None and seq > k.replaced_at:
            raise Bad(seq, f"signed with {k.person}'s key replaced at entry {k.replaced_at}")
        if actor in self.disabled and seq > self.disabled[actor]:
            raise Bad(seq, f"signed by {actor}, disabled at entry {self.disabled[actor]}")
        try:
            k.public.verify(b64(e["sig"]), SIG_PREFIX + bytes.fromhex(e["hash"]))
        except (InvalidSignature, ValueError):
            raise Bad(seq, "signature does not verify") from None
        if e["outcome"] == "ok" and seq in self.cancelled_by:
            self.voided[seq] = (e["action"], e["subject"], e["hash"], kid)  # did not happen
        elif e["outcome"] == "ok":
            self.learn(e, seq)
        elif e["outcome"] == "failed" and "aborts" in e["details"]:
            t = e["details"]["aborts"]
            if self.cancelled_by.get(t) != seq or t not in self.voided:
                raise Bad(seq, f"cancels entry {t}, which is not an earlier ok entry it may cancel")
            action, subject, h, signer = self.voided[t]
            if (action, subject, h) != (e["action"], e["subject"], e["details"].get("aborts_hash")):
                raise Bad(seq, f"cancels entry {t} but names another action, subject or hash")
            if action.startswith("person.") and kid != signer:
                raise Bad(seq, f"cancels entry {t}, a change of keys or roles, by another key")

    def learn(self, e: dict[str, Any], seq: int) -> None:
        """Section 6: what an accepted entry teaches about keys and people."""
        action, actor, d = e["action"], e["actor"], e["details"]
        person = e["subject"].removeprefix("person:")
        if self.strict:
            self.authorised(action, actor, person, seq)
        if action in ("person.enrol", "person.key.replace"):
            pub = base64.b64decode(d["public_key"])
            if self.strict and d["key_id"] != key_id(pub):
                raise Bad(seq, "strict: an announced key id does not match its public key")
            for old in self.keys.values():
                if old.person == person and old.replaced_at is None:
                    old.replaced_at = seq
            self.keys[d["key_id"]] = Key(person, Ed25519PublicKey.from_public_bytes(pub))
            if action == "person.enrol":
                self.roles[person] = list(d.get("roles", []))
        elif action == "person.disable":
            self.disabled[person] = seq
        elif action == "person.enable":
            self.disabled.pop(person, None)

    def authorised(self, action: str, actor: str, person: str, seq: int) -> None:
        """--strict: who may announce keys and disable people (the service's own rules)."""
        if action not in ("person.enrol", "person.key.replace", "person.disable", "person.enable"):
            return

        def custodian(name: str) -> bool:
            return "custodian" in self.roles.get(name, []) and name not in self.disabled

        if action == "person.enrol" and actor == HOME:
            if any(custodian(p) for p in self.roles):
                raise Bad(seq, "strict: the home key enrolled someone after bootstrap")
        elif action == "person.key.replace" and actor == person:
            pass
        elif not custodian(actor):
            raise Bad(seq, f"strict: {actor} may not {action} {person} (not a custodian)")

    # ---------------------------------------------------------------- checkpoint

    def checkpoint(self, cp: dict[str, Any]) -> tuple[str, int | None]:
        """Section 9: what is wrong (empty if nothing) and the entry to blame, if any."""
        try:
            body = {k: v for k, v in cp.items() if k != "sig"}
            seq = int(cp["seq"])
            k = self.keys.get(cp["key_id"])
            if k is None or k.person != cp["actor"]:
                return "the checkpoint is signed by a key this log never enrolled", None
            k.public.verify(b64(cp["sig"]), CHECKPOINT_PREFIX + canonical(body))
        except (KeyError, ValueError, TypeError, InvalidSignature):
            altered = "the checkpoint's signature does not verify (the checkpoint file was altered)"
            return altered, None
        if self.strict and (cp.get("format") != 1 or cp.get("home_id") != self.home_id):
            return "strict: the checkpoint is not a format 1 checkpoint of this home", None
        if seq > self.n:
            return (
                f"the log was cut: the checkpoint vouches for {seq} entries but only {self.n} "
                "remain (newest entries removed)"
            ), None
        if self.hash_at.get(seq) != cp["head"]:
            return (
                f"entry {seq} differs from the one the checkpoint vouches for (log rewritten)",
                seq,
            )
        return "", None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify a custodian audit log (independently).")
    ap.add_argument("audit_dir", type=Path, help="the home's audit/ directory")
    ap.add_argument("--checkpoint", type=Path, metavar="FILE")
    ap.add_argument("--strict", action="store_true", help="also the checks of section 8")
    args = ap.parse_args(argv)
    if not args.audit_dir.is_dir():
        print(f"error: {args.audit_dir} is not a directory", file=sys.stderr)
        return 2
    cp = None
    if args.checkpoint:
        try:
            cp = json.loads(args.checkpoint.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"error: cannot read checkpoint {args.checkpoint}: {e}", file=sys.stderr)
            return 2
    v = Verifier(args.strict)
    want = None
    if isinstance(cp, dict):
        try:
            want = int(cp["seq"])
        except (KeyError, TypeError, ValueError):
            want = None
    try:
        v.run(args.audit_dir, want)
    except Bad as b:
        where = f"entry {b.seq}" if b.seq is not None else "the log"
        print(f"audit log does NOT verify: {where}: {b.reason}")
        return 8
    if args.strict and v.n == 0:
        print("audit log does NOT verify: the log: strict: the log is empty (no home.init)")
        return 8
    note = ""
    if cp is not None:
        problem, seq = (
            v.checkpoint(cp) if isinstance(cp, dict) else ("the checkpoint is not an object", None)
        )
        if problem:
            where = f"entry {seq}" if seq is not None else "the log"
            print(f"audit log does NOT verify: {where}: {problem}")
            return 8
        note = f"; checkpoint at entry {want} by {cp['actor']} holds"
    print(
        f"audit log verified: {v.n} entries, chain and signatures intact, "
        f"{len(v.keys)} signing keys known{note}; head {v.head[:16]}…"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
