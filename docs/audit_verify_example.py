"""An independent verifier of a custodian audit log, written from docs/audit-format.md.

It uses the standard library and the ``cryptography`` package only, and imports
nothing from custodian. It performs the checks of ``custodian audit verify`` in
the same order and prints the same one-line summary, so the two can be compared:

    python docs/audit_verify_example.py HOME/audit
    python docs/audit_verify_example.py HOME/audit --checkpoint cp.json
    python docs/audit_verify_example.py HOME/audit --strict

It enforces the rules of section 7 step 11 (who may announce, replace, disable and
enable which key) as custodian does. ``--strict`` adds one check custodian does not
make (section 8): every line is byte-for-byte its canonical encoding. custodian's
own verify also checks the rules of section 7 step 12 (KEK versions, the policy,
decisions on requests), which this example leaves out, except those of section 14
(credential changes after bootstrap: a change of keys or roles completes an approved
``person.change`` request).

Exit status: 0 the log verifies, 8 it does not, 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
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
    raw: bytes
    replaced_at: int | None = None


@dataclass
class Person:
    roles: list[str]
    kind: str  # person | service | home
    key_id: str
    disabled_at: int | None = None  # the entry that disabled them, while they are


SEGMENT = re.compile(r"segment-([0-9]{6,})\.jsonl")
NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")
ROLES = ("custodian", "operator", "auditor")
TYPES = {  # section 2: each member and its JSON type
    "seq": int,
    "time": str,
    "actor": str,
    "action": str,
    "subject": str,
    "outcome": str,
    "details": dict,
    "prev": str,
    "key_id": str,
    "hash": str,
    "sig": str,
}
CHECKPOINT_TYPES = {
    "format": int,
    "home_id": str,
    "seq": int,
    "head": str,
    "time": str,
    "actor": str,
    "key_id": str,
    "sig": str,
}


PERSON_ACTIONS = (
    "person.enrol",
    "person.key.replace",
    "person.disable",
    "person.enable",
    "person.totp.replace",
    "person.holder.replace",
)
COMPLETED_BY = {
    "enrol": "person.enrol",
    "key": "person.key.replace",
    "totp": "person.totp.replace",
    "holder": "person.holder.replace",
}
SCOPE_FIELDS = (
    "change",
    "person",
    "roles",
    "person_kind",
    "key_id",
    "public_key",
    "kek",
    "version",
)


def change_scope(d: dict[str, Any]) -> str:
    """Section 14: SHA-256 over what a person.change request asks."""
    fields = {k: d[k] for k in SCOPE_FIELDS if d.get(k) is not None}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"custodian/v2/person-change\0" + body.encode()).hexdigest()


def self_signed(e: dict[str, Any]) -> bytes | None:
    """Section 14: the public key of an entry signed by the key it announces (a lost-key
    request, the completion of an enrolment or of a new key), or None."""
    d = e.get("details")
    if not isinstance(d, dict) or d.get("key_id") != e.get("key_id"):
        return None
    if e["action"] == "person.change.request":
        if d.get("change") != "key" or d.get("person") != e["actor"]:
            return None
    elif e["action"] not in ("person.enrol", "person.key.replace") or not isinstance(
        d.get("request"), str
    ):
        return None
    pub = base64.b64decode(d.get("public_key", ""), validate=True)
    return pub if len(pub) == 32 and key_id(pub) == e["key_id"] else None


def json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    names = {int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(v), "null" if v is None else type(v).__name__)


class Verifier:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.keys: dict[str, Key] = {}
        self.people: dict[str, Person] = {}
        self.home_id = ""
        self.n = 0
        self.head = GENESIS
        self.hash_at: dict[int, str] = {}
        # section 14: where bootstrap ended, the quorum (policy), the person.change requests
        self.bootstrap_end = 0
        self.quorum = 2
        self.requests: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- reading

    def segments(self, audit_dir: Path) -> list[Path]:
        """Section 1: exactly segment-NNNNNN.jsonl (6 digits or more, no extra zeros),
        in numeric order; any other file is not part of the log."""
        found = []
        for p in audit_dir.iterdir():
            m = SEGMENT.fullmatch(p.name)
            if m and f"segment-{int(m.group(1)):06d}.jsonl" == p.name and int(m.group(1)) >= 1:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def lines(self, audit_dir: Path) -> Any:
        for seg in self.segments(audit_dir):
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
            if not isinstance(e, dict):
                raise Bad(expect, f"not valid JSON ({where} is not a JSON object)")
            try:
                self.entry(e, raw)
            except (KeyError, TypeError, ValueError, AttributeError) as ex:
                raise Bad(expect, f"malformed entry ({type(ex).__name__}: {ex})") from None
            self.n, self.head = expect, e["hash"]
            if expect == want_seq:
                self.hash_at[expect] = e["hash"]

    # ---------------------------------------------------------------- one entry

    def entry(self, e: dict[str, Any], raw: bytes) -> None:
        for name, kind in TYPES.items():  # step 2: every member, of its type
            if name not in e:
                raise TypeError(f"no {name}")
            if isinstance(e[name], bool) or not isinstance(e[name], kind):
                raise TypeError(f"{name} is {type(e[name]).__name__}, not {kind.__name__}")
        expect = self.n + 1
        seq = e["seq"]
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
            pub = base64.b64decode(e["details"]["public_key"], validate=True)
            if actor != HOME:
                raise Bad(1, f"home.init is signed by {actor}, not by the home identity")
            if not (kid == e["details"]["key_id"] == key_id(pub)):
                raise Bad(1, "the home key's id is not the hash of its public key")
            self.keys[kid] = Key(HOME, Ed25519PublicKey.from_public_bytes(pub), pub)
            self.people[HOME] = Person([], HOME, kid)
            self.home_id = str(e["details"].get("home_id", ""))
            self.quorum = int(e["details"].get("policy", {}).get("approval_quorum", 2))
        k = self.keys.get(kid)
        if k is None and seq > 1:
            own = self_signed(e)  # section 14: a lost-key request, an enrolment completed
            if own is not None:
                k = Key(actor, Ed25519PublicKey.from_public_bytes(own), own)
        if k is None:
            raise Bad(seq, f"signed by key {kid[:12]}…, which no earlier entry enrolled")
        if k.person != actor:
            raise Bad(
                seq,
                f"actor is {actor} but the key belongs to {k.person} (re-signed by someone else)",
            )
        if k.replaced_at is not None and seq > k.replaced_at:
            raise Bad(seq, f"signed with {k.person}'s key replaced at entry {k.replaced_at}")
        p = self.people.get(actor)
        if p is not None and p.disabled_at is not None and seq > p.disabled_at:
            raise Bad(seq, f"signed by {actor}, disabled at entry {p.disabled_at}")
        try:
            k.public.verify(b64(e["sig"]), SIG_PREFIX + bytes.fromhex(e["hash"]))
        except (InvalidSignature, ValueError):
            raise Bad(seq, "signature does not verify") from None
        if e["outcome"] == "ok":
            why = self.rules(e, seq)  # step 11, also for an entry cancelled later
            if why:
                raise Bad(seq, why)
            if seq in self.cancelled_by:
                self.voided[seq] = (e["action"], e["subject"], e["hash"], kid)  # did not happen
            else:
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

    def custodian(self, name: str) -> bool:
        p = self.people.get(name)
        return p is not None and p.kind != HOME and p.disabled_at is None and "custodian" in p.roles

    def active_custodians(self) -> list[str]:
        return [n for n in self.people if self.custodian(n)]

    def rules(self, e: dict[str, Any], seq: int) -> str:
        """Section 7 step 11: who may announce, replace, disable and enable which key.
        Returns what is wrong ('' when nothing); changes nothing."""
        action, actor, d = e["action"], e["actor"], e["details"]
        if action == "home.init":
            return "" if seq == 1 else "home.init appears only as entry 1"
        if action == "person.enrol.witness":
            rid = e["subject"].removeprefix("request:")
            r = self.requests.get(rid)
            if r is None or r["details"]["change"] != "enrol":
                return f"{actor} witnessed request {rid[:8]}, which is no enrolment request"
            if r["state"] != "approved":
                return f"{actor} witnessed request {rid[:8]} while it is {r['state']}"
            if actor not in r["approvals"] or not self.custodian(actor):
                return f"{actor} witnessed request {rid[:8]} without having approved it"
            return ""
        if action == "person.change.request" or (
            action == "request.approve" and e["subject"].removeprefix("request:") in self.requests
        ):
            return self.change_rules(e)
        if action not in PERSON_ACTIONS:
            return ""
        if not e["subject"].startswith("person:"):
            return f"{action}'s subject {e['subject'][:60]!r} is not person:NAME"
        s = e["subject"].removeprefix("person:")
        p = self.people.get(s)
        if s != HOME and isinstance(d.get("request"), str):
            return self.completion_rules(e, s, p)
        if s != HOME and self.bootstrap_end:
            return (
                f"{action} of {s} after bootstrap (it ended at entry {self.bootstrap_end}, the "
                "first quorum KEK) without an approved person.change request"
            )
        if action in ("person.totp.replace", "person.holder.replace"):
            if p is None:
                return f"{action} of {s}, who was never enrolled"
            if action == "person.holder.replace":
                return f"{s}'s holder key was replaced while the home has no quorum KEK"
            if actor != s and not self.custodian(actor):
                return f"{actor} replaced {s}'s TOTP without holding the custodian role"
            return ""
        if s == HOME:
            if action == "person.enrol":
                return "'home' is the home's own identity: no person is enrolled under that name"
            if action == "person.key.replace":
                return "the home identity is not a person: its key is never replaced"
            return "the home identity is not a person: it is never disabled or enabled"
        if action == "person.enrol":
            if not NAME.fullmatch(s):
                return f"{s!r} is not a valid person name"
            if actor == HOME:
                if self.active_custodians():
                    return "the home key enrolled someone after the home had a custodian"
            elif not self.custodian(actor):
                return f"{actor} enrolled {s} without holding the custodian role"
            if p is not None:
                return f"{s} was already enrolled"
            roles, kind = d["roles"], d["kind"]
            if (
                not isinstance(roles, list)
                or not roles
                or any(r not in ROLES for r in roles)
                or roles != sorted(set(roles))
            ):
                return f"{s}'s roles are not one or more of {', '.join(ROLES)}"
            if kind not in ("person", "service"):
                return f"{s}'s kind is {kind!r}, not person or service"
            if kind == "service" and roles != ["operator"]:
                return f"{s} is a service identity, which holds the operator role only"
            return self.fresh_key(s, d)
        if p is None:
            if action == "person.key.replace":
                return f"a key was announced for {s}, who was never enrolled"
            return f"the state of {s} was changed, who was never enrolled"
        if action == "person.key.replace":
            if actor != s and not self.custodian(actor):
                return f"{actor} replaced {s}'s key without holding the custodian role"
            prev = d.get("previous_key_id")
            if prev is not None and prev != p.key_id:
                return f"previous_key_id is not {s}'s current key"
            return self.fresh_key(s, d)
        if not self.custodian(actor):
            return f"{actor} changed {s}'s state without holding the custodian role"
        if action == "person.disable":
            if p.disabled_at is not None:
                return f"{s} was already disabled"
            if "custodian" in p.roles and self.active_custodians() == [s]:
                return f"disabling {s} leaves the home with no active custodian"
        elif p.disabled_at is None:
            return f"{s} is not disabled"
        return ""

    def fresh_key(self, person: str, d: dict[str, Any]) -> str:
        pub = base64.b64decode(d["public_key"], validate=True)
        if len(pub) != 32 or key_id(pub) != d["key_id"]:
            return "the announced key id is not the hash of the announced public key"
        old = self.keys.get(d["key_id"])
        if old is None:
            return ""
        if old.person == person:
            return (
                f"{person}'s key {d['key_id'][:12]}… was announced before (keys are never reused)"
            )
        owner = "the home identity" if old.person == HOME else old.person
        return f"the key {d['key_id'][:12]}… announced for {person} already belongs to {owner}"

    # ---------------------------------------------------------------- section 14

    def change_rules(self, e: dict[str, Any]) -> str:
        """A person.change request, and the approval of one (section 14)."""
        actor, d = e["actor"], e["details"]
        if e["action"] == "request.approve":
            r = self.requests[e["subject"].removeprefix("request:")]
            if actor == r["details"]["person"]:
                rid = e["subject"].removeprefix("request:")
                return f"{actor} decided request {rid[:8]}, a change about themselves"
            return ""
        if d.get("kind") != "person.change":
            return ""
        person, change = d.get("person"), d.get("change")
        if d.get("scope") != change_scope(d):
            return "a person.change request's scope is not the hash of what it asks"
        if e["key_id"] not in self.keys and (change != "key" or actor != person):
            return "a request signed by a key no entry enrolled is not a lost-key request"
        if change == "enrol" and not self.custodian(actor):
            return f"{actor} asked to enrol {person} without holding the custodian role"
        if change != "enrol" and actor != person and not self.custodian(actor):
            return f"{actor} asked to change {person} without holding the custodian role"
        return ""

    def completion_rules(self, e: dict[str, Any], s: str, p: Person | None) -> str:
        action, actor, d = e["action"], e["actor"], e["details"]
        rid = str(d["request"])
        r = self.requests.get(rid)
        if r is None:
            return f"{action} of {s} names request {rid[:8]}, which is no person.change request"
        rd = r["details"]
        if COMPLETED_BY.get(rd["change"]) != action or rd["person"] != s:
            what = f"{rd['change']} of {rd['person']}"
            return f"{action} of {s} does not match request {rid[:8]} ({what})"
        if r["state"] != "approved":
            return f"{action} of {s} completes request {rid[:8]} while it is {r['state']}"
        if d.get("scope") != rd["scope"]:
            return f"{action} of {s} is bound to another scope than request {rid[:8]}"
        if actor != s:
            return f"{actor} completed request {rid[:8]}, which only {s} completes, in person"
        if action in ("person.enrol", "person.key.replace"):
            if e["key_id"] != d.get("key_id"):
                return f"{action} of {s} is not signed by the key it announces"
            if rd.get("key_id") is not None and d["key_id"] != rd["key_id"]:
                return f"{action} of {s} announces another key than request {rid[:8]} named"
            if action == "person.enrol" and p is not None:
                return f"{s} was already enrolled"
            if action == "person.enrol" and r.get("witnessed") != d["key_id"]:
                return (
                    f"{s}'s enrolment (request {rid[:8]}) was completed without an "
                    "approver witnessing its new key"
                )
            return self.fresh_key(s, d)
        if p is None or p.disabled_at is not None:
            return f"{action} of {s}, who is not an enrolled, active person"
        return ""

    def learn_change(self, e: dict[str, Any], seq: int) -> None:
        """Section 14: bootstrap's end, requests and their decisions."""
        action, d = e["action"], e["details"]
        rid = e["subject"].removeprefix("request:")
        if action == "person.enrol.witness" and rid in self.requests:
            self.requests[rid]["witnessed"] = d["key_id"]
        if action == "kek.create" and d.get("backend") == "quorum" and not self.bootstrap_end:
            self.bootstrap_end = seq
        elif action == "person.change.request":
            counts = e["actor"] != d["person"] and self.custodian(e["actor"])
            need = self.quorum - 1 if counts else self.quorum
            self.requests[rid] = {"details": d, "state": "open", "approvals": set(), "need": need}
        elif action == "policy.set" and d.get("setting") == "approval_quorum":
            self.quorum = int(d["to"])
        elif action == "request.approve" and isinstance(d.get("policy"), dict):
            self.quorum = int(d["policy"].get("approval_quorum", self.quorum))
        if action.startswith("request.") and rid in self.requests:
            r = self.requests[rid]
            if action == "request.approve":
                r["approvals"].add(e["actor"])
                if len(r["approvals"]) >= r["need"] and r["state"] == "open":
                    r["state"] = "approved"
                    pc = d.get("person_change")
                    if isinstance(pc, dict):
                        r["state"] = "done"
                        p = self.people[str(pc["person"])]
                        if pc["change"] == "disable":
                            p.disabled_at = seq
                        elif pc["change"] == "enable":
                            p.disabled_at = None
                        else:
                            p.roles = list(r["details"]["roles"])
            elif action == "request.deny":
                r["state"] = "denied"
            elif action == "request.cancel":
                r["state"] = "cancelled"
            elif action == "request.expire" and r["state"] == "open":
                r["state"] = "expired"
        done = isinstance(d.get("request"), str) and d["request"] in self.requests
        if done and action in COMPLETED_BY.values():
            self.requests[d["request"]]["state"] = "done"

    def learn(self, e: dict[str, Any], seq: int) -> None:
        """Section 6: what an accepted entry teaches about keys and people."""
        action, d = e["action"], e["details"]
        self.learn_change(e, seq)
        person = e["subject"].removeprefix("person:")
        if action in ("person.enrol", "person.key.replace"):
            pub = base64.b64decode(d["public_key"])
            for old in self.keys.values():
                if old.person == person and old.replaced_at is None:
                    old.replaced_at = seq
            self.keys[d["key_id"]] = Key(person, Ed25519PublicKey.from_public_bytes(pub), pub)
            if action == "person.enrol":
                self.people[person] = Person(list(d["roles"]), d["kind"], d["key_id"])
            else:
                self.people[person].key_id = d["key_id"]
        elif action == "person.disable":
            self.people[person].disabled_at = seq
        elif action == "person.enable":
            self.people[person].disabled_at = None

    # ---------------------------------------------------------------- checkpoint

    def checkpoint(self, cp: Any) -> tuple[str, int | None]:
        """Section 9: what is wrong (empty if nothing) and the entry to blame, if any."""
        if not isinstance(cp, dict):
            return (
                "the checkpoint file is not a custodian audit checkpoint (not a JSON object)",
                None,
            )
        missing = sorted(set(CHECKPOINT_TYPES) - set(cp))
        if missing:
            no = ", ".join(missing)
            return f"the checkpoint file is not a custodian audit checkpoint (no {no})", None
        for name, kind in CHECKPOINT_TYPES.items():
            v = cp[name]
            if isinstance(v, bool) or not isinstance(v, kind):
                return (
                    f"the checkpoint's {name} is a JSON {json_type(v)}, not "
                    f"{'an' if kind is int else 'a'} {json_type(kind())}; the file is not a "
                    "custodian audit checkpoint"
                ), None
        try:
            body = {k: v for k, v in cp.items() if k != "sig"}
            k = self.keys.get(cp["key_id"])
            if k is None or k.person != cp["actor"]:
                return "the checkpoint is signed by a key this log never enrolled", None
            k.public.verify(b64(cp["sig"]), CHECKPOINT_PREFIX + canonical(body))
        except (KeyError, ValueError, TypeError, InvalidSignature):
            altered = "the checkpoint's signature does not verify (the checkpoint file was altered)"
            return altered, None
        seq = cp["seq"]
        if cp["format"] != 1:
            return f"the checkpoint has format {cp['format']}; this custodian reads format 1", None
        if seq < 1:
            return (
                f"the checkpoint vouches for {seq} entries; a checkpoint vouches for 1 or more",
                None,
            )
        if cp["home_id"] != self.home_id:
            return (
                f"the checkpoint is of another home ({cp['home_id'][:40]}), not of this log's "
                f"({self.home_id})"
            ), None
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
    if isinstance(cp, dict) and type(cp.get("seq")) is int:
        want = cp["seq"]
    try:
        v.run(args.audit_dir, want)
    except Bad as b:
        where = f"entry {b.seq}" if b.seq is not None else "the log"
        print(f"audit log does NOT verify: {where}: {b.reason}")
        return 8
    if v.n == 0:
        empty = "the log is empty; every home's log starts with home.init"
        print(f"audit log does NOT verify: the log: {empty}")
        return 8
    note = ""
    if cp is not None:
        problem, seq = v.checkpoint(cp)
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
