"""What the signed audit log says the home is, and the rules its entries obey.

:class:`LogState` applies, entry by entry, the rules of docs/audit-format.md
section 7 (who may announce, replace, disable and enable which key; who may
create, rotate and retire KEK versions; how the policy changes; who decides a
request) and learns from each entry that passes them: people with their roles,
kinds, states and signing keys, KEKs with their versions' fingerprints and
states, the policy and the demo flag, and the requests with their decisions.
It checks no hash or signature itself: :func:`custodian.audit.verify` and
:class:`Ledger` do that before they hand it an entry.

:class:`Ledger` is what the service compares the catalog and the configuration
with before a security decision. It replays the log once per process, reading
every line but decoding only those whose action changes that state (a line
starts with its action: the canonical encoding sorts the members), checks each
such entry's hash and signature, and builds the state when a decision first asks
for it; it grows with the log: a later call reads only the bytes appended since
(by this process or another). The cheap check at open (policy and demo flag:
``custodian kek list`` loads no cryptography) is
:func:`custodian.audit.recorded_settings`.

What the ledger does not do, and ``custodian audit verify`` does: check the
hash chain and the signatures of the entries it skips. Removing an entry (a
``person.disable``, say) from the log and the catalog together is found by
verify and by ``custodian audit reconcile``, which verifies first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodian.config import POLICY_LIMITS, Policy
from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.audit import AuditLog

HOME = "home"
ROLES = ("custodian", "operator", "auditor")  # custodian.people.ROLES (a test keeps them equal)
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")  # custodian.people.NAME_RE
KEY_ID_PREFIX = b"custodian signing key v1\0"
RECOVERY_ACTOR = "breakglass:recovery"  # custodian.custody.breakglass.RECOVERY_ACTOR
BREAKGLASS_ACTIONS = (
    *("breakglass.sign", "breakglass.split", "breakglass.reshare", "breakglass.rekey"),
    *("breakglass.seal", "breakglass.recover"),
)
KEY_ACTIONS = (
    "person.enrol",
    "person.key.replace",
    "person.disable",
    "person.enable",
    "person.totp.replace",
    "person.holder.replace",
)
STATE_ACTIONS = frozenset(
    {
        "home.init",
        *KEY_ACTIONS,
        "person.enrol.witness",
        "kek.create",
        "kek.manifest.sign",
        "kek.version.create",
        "kek.rotate",
        "kek.redistribute",
        "kek.refresh.batch",
        "kek.redistribute.batch",
        "kek.migrate",
        "kek.version.retire",
        "policy.set",
        "request.approve",
        "request.deny",
        "request.cancel",
        "request.expire",
        "restore.session.expire",
        "restore.session.close",
        *BREAKGLASS_ACTIONS,
    }
)
# Kinds whose request is finished by the approval that completes the quorum.
DONE_AT_QUORUM = ("kek.destroy", "person.unlock", "policy.change")


def changes_state(action: str) -> bool:
    """Whether an entry of ``action`` (outcome ok) teaches :class:`LogState` anything."""
    return action in STATE_ACTIONS or action.endswith(".request")


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(KEY_ID_PREFIX + public_raw).hexdigest()[:32]


@dataclass
class KeyInfo:
    person: str
    public: bytes
    since: int
    replaced_at: int | None = None


@dataclass
class PersonInfo:
    name: str
    roles: tuple[str, ...]
    kind: str  # person | service | home
    state: str  # active | disabled
    key_id: str
    enrolled_at: int
    state_at: int

    @property
    def active(self) -> bool:
        return self.state == "active"


@dataclass
class VersionInfo:
    version: int
    fingerprint: str
    state: str  # active | retired | destroyed
    at: int  # the entry that made it so
    backend: str = ""  # the backend that holds it (kek.create's, or a kek.migrate's target)


@dataclass
class KekInfo:
    name: str
    backend: str
    suite: str
    created_at: int
    versions: dict[int, VersionInfo] = field(default_factory=dict)

    @property
    def current(self) -> int:
        return max(self.versions) if self.versions else 0


@dataclass
class BreakGlassInfo:
    """The break-glass set the log announced last (docs/custody.md section 10)."""

    set_id: int
    threshold: int
    holders: tuple[str, ...]
    fingerprint: str
    public_key: bytes
    check_value: str
    signing_key_id: str  # the recovery identity's key (RECOVERY_ACTOR)
    blobs: dict[str, str]  # name -> SHA-256 of each blob sealed to the recovery key, vouched
    at: int
    recovered_at: int | None = None  # a breakglass.recover signed by the recovery identity


@dataclass
class RequestInfo:
    id: str
    kind: str
    requester: str
    details: dict[str, Any]
    opened_at: int
    state: str = "open"
    decisions: dict[str, str] = field(default_factory=dict)  # custodian -> approve | deny
    session: str | None = None
    session_expires_at: str | None = None
    session_state: str | None = None
    needed: int = 0  # approvals that complete it (0: the policy's quorum)
    releases: dict[str, str] = field(default_factory=dict)  # blob name -> SHA-256, as signed

    @property
    def approvals(self) -> tuple[str, ...]:
        return tuple(n for n, d in self.decisions.items() if d == "approve")


class LogState:
    """The home as the log's accepted entries describe it, and the rules they obey."""

    def __init__(self) -> None:
        self.home_id = ""
        self.demo = False
        self.keyring = ""
        self.keys: dict[str, KeyInfo] = {}
        self.people: dict[str, PersonInfo] = {}
        self.keks: dict[str, KekInfo] = {}
        self.policy: dict[str, int] = Policy().values()
        self.policy_at: dict[str, int] = {}
        self.requests: dict[str, RequestInfo] = {}
        # (kek, version, manifest digest) -> the holders who signed that manifest
        self.manifest_signs: dict[tuple[str, int, str], set[str]] = {}
        self.breakglass: BreakGlassInfo | None = None  # the current set (break-glass rules)
        self.breakglass_revoked: set[int] = set()
        self.breakglass_signs: dict[tuple[int, str], set[str]] = {}
        self.last_seq = 0
        # Credential changes under dual control (section "Credential changes"): the seq
        # of the first quorum kek.create, which ends bootstrap (0: still in bootstrap);
        # the holders of each quorum version; holder keys announced to replace one.
        self.bootstrap_end = 0
        self.holders: dict[tuple[str, int], tuple[str, ...]] = {}
        self.next_holder_keys: dict[tuple[str, int, str], str] = {}
        self.witnessed: dict[str, tuple[str, str]] = {}  # request -> (approver, new key id)

    # ------------------------------------------------------------ reading it

    def active_custodians(self) -> list[str]:
        return [
            p.name
            for p in self.people.values()
            if p.active and p.kind != HOME and "custodian" in p.roles
        ]

    def is_custodian(self, name: str) -> bool:
        p = self.people.get(name)
        return p is not None and p.active and p.kind != HOME and "custodian" in p.roles

    def policy_object(self) -> Policy:
        return Policy(**self.policy)  # type: ignore[arg-type]  # every field but one is int

    def person_keys(self, name: str) -> dict[str, KeyInfo]:
        return {k: v for k, v in self.keys.items() if v.person == name}

    @property
    def in_bootstrap(self) -> bool:
        """True until the first quorum KEK is created: until then people are enrolled
        and changed directly; after it every change is a ``person.change`` request."""
        return self.bootstrap_end == 0

    # ------------------------------------------------------------ the signer

    def signer(self, e: dict[str, Any]) -> tuple[str, bytes | None]:
        """(why the entry's signer may not sign it, '' if they may; their public key)."""
        seq, kid, actor = int(e["seq"]), e["key_id"], e["actor"]
        if seq == 1:
            if e["action"] != "home.init":
                return "the log does not start with home.init", None
            pub = base64.b64decode(e["details"]["public_key"], validate=True)
            if actor != HOME:
                return f"home.init is signed by {actor}, not by the home identity", None
            if not (kid == e["details"]["key_id"] == key_id(pub)):
                return "the home key's id is not the hash of its public key", None
            return "", pub
        k = self.keys.get(kid)
        if k is None:
            own = _self_signed(e)
            if own is not None:
                return "", own
            return f"signed by key {kid[:12]}…, which no earlier entry enrolled", None
        if k.person != actor:
            return (
                f"actor is {actor} but the key belongs to {k.person} (re-signed by someone else)",
                None,
            )
        if k.replaced_at is not None and seq > k.replaced_at:
            return f"signed with {k.person}'s key replaced at entry {k.replaced_at}", None
        p = self.people.get(actor)
        if p is not None and not p.active and seq > p.state_at:
            return f"signed by {actor}, disabled at entry {p.state_at}", None
        return "", k.public

    # ------------------------------------------------------------ the rules

    def apply(self, e: dict[str, Any]) -> str:
        """Learn from an entry whose hash and signature were checked; returns why it
        breaks a rule ('' when it does not). Entries not ``ok`` change nothing."""
        seq = int(e["seq"])
        if seq <= self.last_seq:
            return f"entry {seq} comes after entry {self.last_seq}"
        self.last_seq = seq
        action = e["action"]
        if e["outcome"] != "ok":
            return ""
        if action == "home.init":
            return self._home_init(e) if seq == 1 else "home.init appears only as entry 1"
        if action.endswith(".request"):
            return self._request(e)
        if action == "person.enrol.witness":
            return self._witness(e)
        if action in KEY_ACTIONS:
            return self._person(e)
        if action.startswith("kek."):
            return self._kek(e)
        if action == "policy.set":
            return self._policy_set(e)
        if action in BREAKGLASS_ACTIONS:
            return self._breakglass(e)
        if action.startswith(("request.", "restore.session.")):
            return self._decision(e)
        return ""

    def _home_init(self, e: dict[str, Any]) -> str:
        d = e["details"]
        pub = base64.b64decode(d["public_key"], validate=True)
        self.home_id = str(d["home_id"])
        self.keyring = str(d.get("keyring", ""))
        demo = d.get("demo", False)
        if not isinstance(demo, bool):
            return "home.init's demo is not true or false"
        self.demo = demo
        pol = d.get("policy", {})
        if not isinstance(pol, dict):
            return "home.init's policy is not an object"
        for name, value in pol.items():
            why = _policy_value(name, value)
            if why:
                return f"home.init records {why}"
            self.policy[name] = value
            self.policy_at[name] = 1
        self.keys[e["key_id"]] = KeyInfo(HOME, pub, 1)
        self.people[HOME] = PersonInfo(HOME, (), HOME, "active", e["key_id"], 1, 1)
        return ""

    def _person(self, e: dict[str, Any]) -> str:
        action, actor, seq, d = e["action"], e["actor"], int(e["seq"]), e["details"]
        if not str(e["subject"]).startswith("person:"):
            return f"{action}'s subject {str(e['subject'])[:60]!r} is not person:NAME"
        subject = _subject(e, "person:")
        custodian = self.is_custodian(actor)
        p = self.people.get(subject)
        if subject == HOME:
            if action == "person.enrol":
                return "'home' is the home's own identity: no person is enrolled under that name"
            what = {"person.key.replace": "its key is never replaced"}.get(
                action, "it is never disabled or enabled"
            )
            return f"the home identity is not a person: {what}"
        if isinstance(d.get("request"), str):
            return self._person_completion(e, subject)
        if not self.in_bootstrap and not (
            action == "person.key.replace" and self._recovery_rekeys(actor)
        ):
            # After a break-glass recovery, the recovery identity (the threshold of paper
            # shares) re-announces the lost keys: it stands in for the custodians.
            return (
                f"{action} of {subject} after bootstrap (it ended at entry "
                f"{self.bootstrap_end}, the first quorum KEK) without an approved "
                "person.change request"
            )
        if action in ("person.totp.replace", "person.holder.replace"):
            if p is None:
                return f"{action} of {subject}, who was never enrolled"
            if action == "person.holder.replace":
                return f"{subject}'s holder key was replaced while the home has no quorum KEK"
            if actor != subject and not custodian:
                return f"{actor} replaced {subject}'s TOTP without holding the custodian role"
            return ""
        if action == "person.enrol":
            if not NAME_RE.fullmatch(subject):
                return f"{subject!r} is not a valid person name"
            if actor == HOME:
                if self.active_custodians():
                    return "the home key enrolled someone after the home had a custodian"
            elif not custodian:
                return f"{actor} enrolled {subject} without holding the custodian role"
            if p is not None:
                return f"{subject} was already enrolled"
            roles, kind = d["roles"], d["kind"]
            if (
                not isinstance(roles, list)
                or not roles
                or any(r not in ROLES for r in roles)
                or roles != sorted(set(roles))
            ):
                return f"{subject}'s roles are not one or more of {', '.join(ROLES)}"
            if kind not in ("person", "service"):
                return f"{subject}'s kind is {kind!r}, not person or service"
            if kind == "service" and roles != ["operator"]:
                return f"{subject} is a service identity, which holds the operator role only"
            why = self._new_key(subject, d, seq)
            if why:
                return why
            self.people[subject] = PersonInfo(
                subject, tuple(roles), kind, "active", d["key_id"], seq, seq
            )
            return ""
        if p is None:
            verb = {"person.key.replace": "a key was announced for"}.get(action, "the state of")
            tail = "" if action == "person.key.replace" else " was changed"
            return f"{verb} {subject}{tail}, who was never enrolled"
        if action == "person.key.replace":
            if actor != subject and not custodian and not self._recovery_rekeys(actor):
                return f"{actor} replaced {subject}'s key without holding the custodian role"
            prev = d.get("previous_key_id")
            if prev is not None and prev != p.key_id:
                return f"previous_key_id is not {subject}'s current key"
            why = self._new_key(subject, d, seq)
            if why:
                return why
            p.key_id = d["key_id"]
            return ""
        if not custodian:
            return f"{actor} changed {subject}'s state without holding the custodian role"
        if action == "person.disable":
            if not p.active:
                return f"{subject} was already disabled"
            if "custodian" in p.roles and self.active_custodians() == [subject]:
                return f"disabling {subject} leaves the home with no active custodian"
            p.state, p.state_at = "disabled", seq
        else:
            if p.active:
                return f"{subject} is not disabled"
            p.state, p.state_at = "active", seq
        return ""

    def _new_key(self, person: str, d: dict[str, Any], seq: int) -> str:
        pub = base64.b64decode(d["public_key"], validate=True)
        kid = d["key_id"]
        if len(pub) != 32 or key_id(pub) != kid:
            return "the announced key id is not the hash of the announced public key"
        old = self.keys.get(kid)
        if old is not None:
            owner = "the home identity" if old.person == HOME else old.person
            if old.person == person:
                return f"{person}'s key {kid[:12]}… was announced before (keys are never reused)"
            return f"the key {kid[:12]}… announced for {person} already belongs to {owner}"
        for k in self.keys.values():
            if k.person == person and k.replaced_at is None:
                k.replaced_at = seq
        self.keys[kid] = KeyInfo(person, pub, seq)
        return ""

    def _manifest_sign(self, e: dict[str, Any]) -> str:
        """A holder signs a quorum version's manifest digest (before its announcement)."""
        actor, d = e["actor"], e["details"]
        name, _, v = _subject(e, "kek:").rpartition("/v")
        if not self.is_custodian(actor):
            return f"{actor} signed a manifest without holding the custodian role"
        if not v.isdigit() or not isinstance(d.get("digest"), str):
            raise TypeError("a manifest signature names no version or digest")
        self.manifest_signs.setdefault((name, int(v), d["digest"]), set()).add(actor)
        return ""

    def _quorum_version(self, name: str, version: int, d: dict[str, Any]) -> str:
        """A quorum version's announcement: the manifest in the entry rebuilds to its
        digest and fingerprint, and M of its holders signed that digest before it."""
        from custodian.custody import quorum as Q

        m = d.get("manifest")
        if not isinstance(m, dict):
            return f"quorum KEK {name} v{version} was announced without its manifest"
        try:
            holders = tuple(
                Q.Holder(str(h["name"]), int(h["x"]), base64.b64decode(h["public_key"]))
                for h in m["holders"]
            )
            man = Q.Manifest(
                self.home_id, name, version, str(d["suite"]), int(m["m"]), holders,
                str(m["recovery_fingerprint"]),
            ).check()  # fmt: skip
        except (KeyError, TypeError, ValueError, Q.QuorumError) as err:
            return f"quorum KEK {name} v{version} announces a manifest that does not hold ({err})"
        if man.digest() != m.get("digest") or man.fingerprint != d.get("fingerprint"):
            return f"quorum KEK {name} v{version}: the manifest does not match its digest"
        names = {h.name for h in holders}
        signed = self.manifest_signs.get((name, version, man.digest()), set()) & names
        if len(signed) < man.m:
            return (
                f"quorum KEK {name} v{version}'s manifest was signed by {len(signed)} of its "
                f"holders before it was announced; it needs {man.m}"
            )
        return ""

    def _kek(self, e: dict[str, Any]) -> str:
        action, actor, seq, d = e["action"], e["actor"], int(e["seq"]), e["details"]
        if action == "kek.manifest.sign":
            return self._manifest_sign(e)
        if action in ("kek.refresh.batch", "kek.redistribute.batch"):
            # a holder's part of a custody job is recorded by that holder (the dealer's by
            # any custodian): nobody seals or re-shares in another's name
            role, _, who = str(d.get("step", "")).partition(":")
            if role in ("source", "target") and who != actor:
                return f"{actor} recorded {who}'s part of custody job {str(d.get('job'))[:8]}"
            if not self.is_custodian(actor):
                return f"{actor} recorded a part of a custody job without the custodian role"
            return ""
        if action not in (
            "kek.create", "kek.version.create", "kek.rotate", "kek.redistribute", "kek.migrate",
            "kek.version.retire",
        ):  # fmt: skip
            return ""
        if action == "kek.create" and actor == HOME:
            pass  # the home key creates the first KEK at init (and may create others)
        elif not self.is_custodian(actor):
            return f"{actor} changed KEK versions without holding the custodian role"
        if action == "kek.version.retire":
            name, _, v = _subject(e, "kek:").rpartition("/v")
            k = self.keks.get(name)
            ver = k.versions.get(int(v)) if k is not None and v.isdigit() else None
            if k is None or ver is None:
                return f"{_subject(e, 'kek:')} was retired but never created"
            if ver.state != "active" or ver.version == k.current:
                return f"KEK {name} v{v} was retired while {ver.state} or current"
            ver.state, ver.at = "retired", seq
            return ""
        name = _subject(e, "kek:")
        version, fp = d["version"], d["fingerprint"]
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(fp, str):
            raise TypeError("a KEK version's number or fingerprint has the wrong type")
        k = self.keks.get(name)
        if action == "kek.create":
            if k is not None:
                return f"KEK {name} was already created (entry {k.created_at})"
            if version != 1:
                return f"KEK {name} was created at version {version}, not 1"
            k = self.keks[name] = KekInfo(name, str(d["backend"]), str(d["suite"]), seq)
        elif k is None:
            return f"a version of KEK {name} was created, but the KEK never was"
        elif version != k.current + 1:
            return f"KEK {name} got version {version} after version {k.current}"
        if action == "kek.migrate":
            why = _migration(k, d)
            if why:
                return why
            k.backend = str(d["backend"])
        if k.backend == "quorum":
            why = self._quorum_version(name, version, d)
            if why:
                return why
            self.holders[(name, version)] = tuple(str(h["name"]) for h in d["manifest"]["holders"])
            if action in ("kek.create", "kek.migrate") and not self.bootstrap_end:
                # the first quorum KEK (made, or migrated to): bootstrap is over
                self.bootstrap_end = seq
        k.versions[version] = VersionInfo(version, fp, "active", seq, k.backend)
        return ""

    def _policy_set(self, e: dict[str, Any]) -> str:
        d, actor = e["details"], e["actor"]
        name, old, new = d["setting"], d["from"], d["to"]
        why = _policy_value(name, new)
        if why:
            return f"policy.set records {why}"
        if not self.is_custodian(actor):
            return f"{actor} changed the policy without holding the custodian role"
        if old != self.policy[name]:
            return f"policy.set says policy.{name} was {old}, but it was {self.policy[name]}"
        if not self.policy_object().tighter(name, new):
            return f"policy.{name} was loosened from {old} to {new} without a quorum"
        self.policy[name], self.policy_at[name] = new, int(e["seq"])
        return ""

    def _request(self, e: dict[str, Any]) -> str:
        rid = _subject(e, "request:")
        d = e["details"]
        if rid in self.requests:
            return f"request {rid[:8]} was opened twice"
        kind = d["kind"]
        if not isinstance(kind, str):
            raise TypeError("a request's kind is not a string")
        if d.get("quorum") != self.policy["approval_quorum"]:
            return (
                f"request {rid[:8]} records quorum {d.get('quorum')!r}, but the policy's is "
                f"{self.policy['approval_quorum']}"
            )
        if kind == "policy.change":
            why = _policy_value(d["setting"], d["to"])
            if why:
                return f"the request asks for {why}"
            if not self.is_custodian(e["actor"]):
                return f"{e['actor']} asked to change the policy without the custodian role"
        needed = 0
        if kind == PERSON_CHANGE:
            why = self._person_change_request(e)
            if why:
                return why
            needed = approvals_needed(
                self.policy["approval_quorum"],
                e["actor"],
                str(d["person"]),
                self.is_custodian(e["actor"]) and e["key_id"] in self.keys,
            )
        self.requests[rid] = RequestInfo(rid, kind, e["actor"], d, int(e["seq"]), needed=needed)
        return ""

    def _decision(self, e: dict[str, Any]) -> str:
        action, actor, seq, d = e["action"], e["actor"], int(e["seq"]), e["details"]
        if action.startswith("restore.session."):
            rid = str(d["request"])
        else:
            rid = _subject(e, "request:")
        r = self.requests.get(rid)
        if r is None:
            return f"{action} of request {rid[:8]}, which was never opened"
        if action == "restore.session.close":
            r.session_state = "closed"
            r.state = "done" if r.state == "approved" else r.state
            return ""
        if action == "restore.session.expire":
            r.session_state, r.state = "expired", "expired"
            return ""
        if action == "request.cancel":
            if r.state not in ("open", "approved"):
                return f"request {rid[:8]} was cancelled while {r.state}"
            if actor != r.requester and not self.is_custodian(actor):
                return f"{actor} cancelled request {rid[:8]}: neither its requester nor a custodian"
            r.state = "cancelled"
            if r.session_state == "open":
                r.session_state = "closed"
            return ""
        if action == "request.expire":
            if actor != HOME:
                return f"request {rid[:8]} was expired by {actor}, not the home identity"
            if r.state == "open":
                r.state = "expired"
            return ""
        # request.approve, request.deny
        if r.state != "open":
            return f"{actor} decided request {rid[:8]} while it was {r.state}"
        if not self.is_custodian(actor):
            return f"{actor} decided request {rid[:8]} without holding the custodian role"
        if actor == r.requester:
            return f"{actor} decided their own request {rid[:8]}"
        if actor in r.decisions:
            return f"{actor} decided request {rid[:8]} twice"
        if r.kind == "person.unlock" and actor == r.details.get("person"):
            return f"{actor} decided the request to lift their own lockout"
        if r.kind == PERSON_CHANGE and actor == r.details.get("person"):
            return f"{actor} decided request {rid[:8]}, a change about themselves"
        if action == "request.deny":
            r.decisions[actor] = "deny"
            r.state = "denied"
            return ""
        r.decisions[actor] = "approve"
        rel = d.get("releases")
        if isinstance(rel, dict):  # the quorum shares this approval released (custody v2)
            r.releases.update({str(k): str(v) for k, v in rel.items()})
        if len(r.approvals) < (r.needed or self.policy["approval_quorum"]):
            if d.get("state") != "open" or "destroyed" in d or "policy" in d:
                return f"request {rid[:8]} acted on before its quorum"
            if "person_change" in d:
                return f"request {rid[:8]} acted on before its quorum"
            return ""
        r.state = "done" if r.kind in DONE_AT_QUORUM else "approved"
        if r.kind == PERSON_CHANGE:
            return self._person_change_at_quorum(r, d, seq)
        if r.kind == "restore":
            r.session = str(d["session"])
            r.session_expires_at = str(d["session_expires_at"])
            r.session_state = "open"
        elif r.kind == "kek.destroy":
            name, version = str(r.details["kek"]), r.details["version"]
            k = self.keks.get(name)
            ver = k.versions.get(version) if k is not None else None
            if ver is None or d.get("destroyed") != f"{name}/v{version}":
                return f"request {rid[:8]} destroyed something other than it asked"
            if ver.state != "retired":
                return f"KEK {name} v{version} was destroyed while {ver.state}"
            ver.state, ver.at = "destroyed", seq
        elif r.kind == "policy.change":
            name, new = r.details["setting"], r.details["to"]
            if d.get("policy") != {name: new}:
                return f"request {rid[:8]} changed the policy other than it asked"
            self.policy[name], self.policy_at[name] = new, seq
        elif r.kind == "person.unlock" and d.get("unlocked") != r.details.get("person"):
            return f"request {rid[:8]} lifted the lockout of someone other than it named"
        return ""

    # -------------------- credential changes and break-glass: custodian.ledger_custody

    def _person_change_request(self, e: dict[str, Any]) -> str:
        from custodian import ledger_custody

        return ledger_custody.person_change_request(self, e)

    def _person_change_at_quorum(self, r: RequestInfo, d: dict[str, Any], seq: int) -> str:
        from custodian import ledger_custody

        return ledger_custody.person_change_at_quorum(self, r, d, seq)

    def _witness(self, e: dict[str, Any]) -> str:
        from custodian import ledger_custody

        return ledger_custody.witness(self, e)

    def _person_completion(self, e: dict[str, Any], subject: str) -> str:
        from custodian import ledger_custody

        return ledger_custody.person_completion(self, e, subject)

    def _recovery_rekeys(self, actor: str) -> bool:
        from custodian import ledger_custody

        return ledger_custody.recovery_rekeys(self, actor)

    def _breakglass(self, e: dict[str, Any]) -> str:
        from custodian import ledger_custody

        return ledger_custody.breakglass(self, e)


def _subject(e: dict[str, Any], prefix: str) -> str:
    s = e["subject"]
    if not isinstance(s, str) or not s.startswith(prefix):
        raise ValueError(f"the subject of {e['action']} does not start with {prefix!r}")
    return s[len(prefix) :]


def _policy_value(name: Any, value: Any) -> str:
    if name not in POLICY_LIMITS:
        return f"an unknown policy setting {str(name)[:40]!r}"
    low, high, _, unit = POLICY_LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"policy.{name} = {value!r}, outside {low} to {high} {unit}"
    return ""


# ---------------------------------------------------------------- credential changes (issue 11)

PERSON_CHANGE = "person.change"
# What a person.change request may ask for, and the entry with which its subject
# completes it in person (the others take effect at the approval completing the quorum).
CHANGES = ("enrol", "key", "totp", "holder", "disable", "enable", "roles")
COMPLETED_BY = {
    "enrol": "person.enrol",
    "key": "person.key.replace",
    "totp": "person.totp.replace",
    "holder": "person.holder.replace",
}
AT_QUORUM_CHANGES = ("disable", "enable", "roles")
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
SCOPE_LABEL = b"custodian/v2/person-change\0"


def change_scope(d: dict[str, Any]) -> str:
    """SHA-256 over what a person.change request asks (docs/audit-format.md, section 14):
    the request entry, each approval (through the request id) and the completing entry
    carry it, so a completion cannot change what was approved."""
    fields = {k: d[k] for k in SCOPE_FIELDS if d.get(k) is not None}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(SCOPE_LABEL + body.encode()).hexdigest()


def approvals_needed(quorum: int, requester: str, subject: str, requester_counts: bool) -> int:
    """Approvals a change about ``subject`` needs: M custodians other than the subject, the
    requester counting as one of them when they are a custodian and not the subject."""
    return quorum - 1 if requester_counts and requester != subject else quorum


def _self_signed(e: dict[str, Any]) -> bytes | None:
    """The public key of an entry signed by the key it announces itself (a lost-key
    request, the completion of an enrolment or of a key replacement), or None."""
    d = e.get("details")
    if not isinstance(d, dict) or d.get("key_id") != e.get("key_id"):
        return None
    action = e.get("action")
    if action == "person.change.request":
        if d.get("change") != "key" or d.get("person") != e.get("actor"):
            return None
    elif action not in ("person.enrol", "person.key.replace") or not isinstance(
        d.get("request"), str
    ):
        return None
    if not isinstance(d.get("public_key"), str):
        return None
    pub = base64.b64decode(d["public_key"], validate=True)
    return pub if len(pub) == 32 and key_id(pub) == e["key_id"] else None


def _roles_problem(person: str, roles: Any, kind: Any) -> str:
    if (
        not isinstance(roles, list)
        or not roles
        or any(r not in ROLES for r in roles)
        or roles != sorted(set(roles))
    ):
        return f"{person}'s roles are not one or more of {', '.join(ROLES)}"
    if kind not in ("person", "service"):
        return f"{person}'s kind is {kind!r}, not person or service"
    if kind == "service" and roles != ["operator"]:
        return f"{person} is a service identity, which holds the operator role only"
    return ""


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


# ---------------------------------------------------------------- the per-process replay


class LedgerError(CustodianError):
    """The log's entries that the catalog is checked against do not hold together."""

    exit_code = 8


@dataclass
class _Segment:
    path: Path
    offset: int = 0


class _Replay:
    """One state built from the ledger's entries, with the check each entry passes first."""

    def __init__(self, check: Callable[[LogState, dict[str, Any]], str]) -> None:
        self.check = check
        self.state = LogState()
        self.upto = 0
        self.problem = ""
        self.cancelled: set[int] = set()

    def advance(self, entries: list[dict[str, Any]]) -> None:
        while not self.problem and self.upto < len(entries):
            e = entries[self.upto]
            self.upto += 1
            try:
                why = self.check(self.state, e)
                if not why and _seq(e) not in self.cancelled:
                    why = self.state.apply(e)
                target = _aborts(e, entries)
                if not why and target is not None and target not in self.cancelled:
                    # A compensating entry (the commit after entry `target` failed): the
                    # state is built again without it.
                    self.cancelled.add(target)
                    self.state, self.upto, done = LogState(), 0, self.upto
                    while self.upto < done and not self.problem:
                        x = entries[self.upto]
                        self.upto += 1
                        if _seq(x) not in self.cancelled:
                            why = self.state.apply(x)
                            if why:
                                break
            except (KeyError, TypeError, ValueError) as ex:
                why = f"malformed entry ({type(ex).__name__}: {ex})"
            if why:
                self.problem = f"entry {e.get('seq')}: {why}"


def _aborts(e: dict[str, Any], entries: list[dict[str, Any]]) -> int | None:
    """The seq of the entry that ``e`` cancels, if ``e`` is a compensating entry naming an
    earlier entry of the same action, subject and hash (docs/audit-format.md)."""
    d = e.get("details")
    if e.get("outcome") != "failed" or not isinstance(d, dict) or "aborts" not in d:
        return None
    target = d["aborts"]
    if type(target) is not int:
        raise TypeError("details.aborts is not an integer")
    for x in entries:
        if x.get("seq") == target:
            if (x["action"], x["subject"], x["hash"]) == (
                e["action"],
                e["subject"],
                d.get("aborts_hash"),
            ) and x["outcome"] == "ok":
                return target
            break
    return None


def _hash_only(st: LogState, e: dict[str, Any]) -> str:
    from custodian.audit import entry_hash

    return "content does not match its hash" if entry_hash(e) != e["hash"] else ""


class Ledger:
    """The log's state for one process, read once and extended as the log grows."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._segments: list[_Segment] = []
        self._entries: list[dict[str, Any]] = []  # state-changing entries, in order
        self._full = _Replay(self._hash_and_signature)
        self._pubs: dict[str, Any] = {}

    def refresh(self) -> None:
        """Read what was appended since the last call (one stat when nothing was)."""
        try:
            names = self._log.segments()
        except OSError:
            return  # an unreadable log: the entry of any action cannot be written either
        known = {s.path for s in self._segments}
        for p in names:
            if p not in known:
                self._segments.append(_Segment(p))
        for seg in self._segments:
            try:
                size = seg.path.stat().st_size
                if size <= seg.offset:
                    continue
                with open(seg.path, "rb") as f:
                    f.seek(seg.offset)
                    data = f.read(size - seg.offset)
            except OSError:
                continue  # the same: verify and the writer name what is wrong
            end = data.rfind(b"\n") + 1
            self._scan(data[:end])
            seg.offset += end
            if data[end:].strip():  # a last line with no line end: read it, keep the offset
                self._scan(data[end:])

    def _scan(self, data: bytes) -> None:
        prefix = b'{"action":"'
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            if line.startswith(prefix):
                end = line.find(b'"', len(prefix))
                action = line[len(prefix) : end].decode("utf-8", "replace")
                if not changes_state(action):
                    continue
            try:
                e = json.loads(line)
            except ValueError:
                continue  # verify names it; what it would have said is not known
            if not isinstance(e, dict) or not changes_state(str(e.get("action", ""))):
                continue
            if self._entries and _seq(e) <= _seq(self._entries[-1]):
                continue  # the unterminated last line, read before (verify names disorder)
            self._entries.append(e)

    def verified(self) -> LogState:
        """The state from every entry read so far whose hash and signature hold and whose
        signer was allowed to make it; LedgerError at the first one that is not."""
        self.refresh()
        self._full.advance(self._entries)
        if self._full.problem:
            raise LedgerError(
                f"the signed audit log does not hold together at {self._full.problem}, so "
                "the catalog cannot be checked against it; nothing was done. Run "
                "'custodian audit verify' and restore the log from a copy."
            )
        return self._full.state

    def _hash_and_signature(self, st: LogState, e: dict[str, Any]) -> str:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from custodian.audit import SIG_PREFIX, _b64_strict

        why = _hash_only(st, e)
        if why:
            return why
        why, pub = st.signer(e)
        if why or pub is None:
            return why or "no key to check the signature with"
        key = self._pubs.get(e["key_id"])
        if key is None:
            key = self._pubs[e["key_id"]] = ed25519.Ed25519PublicKey.from_public_bytes(pub)
        try:
            key.verify(_b64_strict(e["sig"]), SIG_PREFIX + bytes.fromhex(e["hash"]))
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return ""


def _seq(e: dict[str, Any]) -> int:
    s = e.get("seq")
    return s if isinstance(s, int) and not isinstance(s, bool) else 0


def _migration(k: KekInfo, d: dict[str, Any]) -> str:
    """What is wrong with a ``kek.migrate`` entry of KEK ``k`` ('' if nothing): it moves
    the KEK from the backend it is on to another one. Leaving a quorum KEK is never done
    by a migration (it would rebuild every DEK in one process)."""
    src, dst = d.get("from_backend"), d.get("backend")
    if not isinstance(src, str) or not isinstance(dst, str):
        raise TypeError("a migration names no backends")
    if src != k.backend:
        return f"KEK {k.name} was migrated from {src}, but it was on {k.backend}"
    if dst == src:
        return f"KEK {k.name} was migrated to the backend it was on ({src})"
    if src == "quorum":
        return f"KEK {k.name} left quorum custody by a migration (a restore is the only way out)"
    return ""
