"""The rules of the signed log for custody (issue 11), applied by
:class:`custodian.ledger.LogState`: credential changes under dual control (a
``person.change`` request, its quorum, its completion in person; docs/audit-format.md
section 14) and the break-glass set (signed by its holders, sealed blobs vouched for,
the recovery identity; docs/custody.md section 10). Each function takes the state it
checks and changes, as the ``LogState`` method that calls it did."""

from __future__ import annotations

import base64
from typing import Any

from custodian.ledger import (
    AT_QUORUM_CHANGES,
    CHANGES,
    COMPLETED_BY,
    HOME,
    NAME_RE,
    PERSON_CHANGE,
    RECOVERY_ACTOR,
    BreakGlassInfo,
    KeyInfo,
    LogState,
    PersonInfo,
    RequestInfo,
    _int,
    _roles_problem,
    _subject,
    change_scope,
    key_id,
)


def person_change_request(st: LogState, e: dict[str, Any]) -> str:
    """A ``person.change`` request: who may ask for which change of whom, and the
    scope its approvals and its completion are bound to."""
    actor, d = e["actor"], e["details"]
    change, person = d.get("change"), d.get("person")
    if change not in CHANGES or not isinstance(person, str):
        return f"a person.change request asks for {str(change)[:20]!r}, not one of {CHANGES}"
    if d.get("scope") != change_scope(d):
        return "a person.change request's scope is not the hash of what it asks"
    if person == HOME:
        return "a person.change request names the home identity, which is not a person"
    self_signed = e["key_id"] not in st.keys
    if self_signed and (change != "key" or actor != person):
        return "a request signed by a key no entry enrolled is not a lost-key request"
    p = st.people.get(person)
    if change == "enrol":
        if not NAME_RE.fullmatch(person):
            return f"{person!r} is not a valid person name"
        if p is not None:
            return f"a request asks to enrol {person}, who is already enrolled"
        if not st.is_custodian(actor):
            return f"{actor} asked to enrol {person} without holding the custodian role"
        return _roles_problem(person, d.get("roles"), d.get("person_kind"))
    if p is None or not (p.active or change == "enable"):
        return f"a request asks to change {person}, who is not an enrolled, active person"
    if actor != person and not st.is_custodian(actor):
        return f"{actor} asked to change {person} without holding the custodian role"
    if change == "roles":
        if p.kind == "service":
            return f"{person} is a service identity, which holds the operator role only"
        return _roles_problem(person, d.get("roles"), p.kind)
    if change == "holder":
        kek, version = d.get("kek"), d.get("version")
        if person not in st.holders.get((str(kek), _int(version)), ()):
            return (
                f"a request asks to replace {person}'s holder key of {kek} v{version}, "
                "which they do not hold"
            )
    if change in ("totp", "holder") and p.kind != "person":
        return f"{person} is a service identity: no TOTP and no holder key"
    if change == "enable" and p.active:
        return f"a request asks to enable {person}, who is not disabled"
    return ""


def person_change_at_quorum(st: LogState, r: RequestInfo, d: dict[str, Any], seq: int) -> str:
    """The approval that completes a ``person.change``: a disable, an enable or a change
    of roles takes effect with it; the others wait for their subject to complete them."""
    change, person = str(r.details["change"]), str(r.details["person"])
    if change not in AT_QUORUM_CHANGES:
        if "person_change" in d:
            return f"request {r.id[:8]} changed {person} at its quorum; its subject completes it"
        r.state = "approved"
        return ""
    want = {"change": change, "person": person, "scope": r.details["scope"]}
    if d.get("person_change") != want or d.get("state") != "done":
        return f"request {r.id[:8]} changed someone or something other than it asked"
    r.state = "done"
    p = st.people.get(person)
    if p is None:
        return f"request {r.id[:8]} changed {person}, who was never enrolled"
    if change == "disable":
        if not p.active:
            return f"{person} was already disabled"
        if "custodian" in p.roles and st.active_custodians() == [person]:
            return f"disabling {person} leaves the home with no active custodian"
        p.state, p.state_at = "disabled", seq
    elif change == "enable":
        if p.active:
            return f"{person} is not disabled"
        p.state, p.state_at = "active", seq
    else:
        roles = tuple(r.details["roles"])
        if "custodian" not in roles and st.active_custodians() == [person]:
            return f"{person}'s new roles leave the home with no active custodian"
        p.roles = roles
    return ""


def witness(st: LogState, e: dict[str, Any]) -> str:
    """An approver of an enrolment watches the new person complete it, signing the
    new key's id with their own key: so the requester alone cannot enrol a sybil."""
    actor, d = e["actor"], e["details"]
    rid = _subject(e, "request:")
    r = st.requests.get(rid)
    if r is None or r.kind != PERSON_CHANGE or r.details.get("change") != "enrol":
        return f"{actor} witnessed request {rid[:8]}, which is no enrolment request"
    if r.state != "approved":
        return f"{actor} witnessed request {rid[:8]} while it is {r.state}"
    if actor not in r.approvals or not st.is_custodian(actor):
        return f"{actor} witnessed request {rid[:8]} without having approved it"
    if not isinstance(d.get("key_id"), str):
        raise TypeError("a witness entry names no key id")
    st.witnessed[rid] = (actor, d["key_id"])
    return ""


def person_completion(st: LogState, e: dict[str, Any], subject: str) -> str:
    """The subject completes an approved request in person: an enrolment or a new signing
    key is signed by the key it announces; a new TOTP or holder key by their own key."""
    action, actor, seq, d = e["action"], e["actor"], int(e["seq"]), e["details"]
    rid = str(d["request"])
    r = st.requests.get(rid)
    if r is None or r.kind != PERSON_CHANGE:
        return f"{action} of {subject} names request {rid[:8]}, which is no person.change request"
    change = str(r.details["change"])
    if COMPLETED_BY.get(change) != action or r.details["person"] != subject:
        return (
            f"{action} of {subject} does not match request {rid[:8]} "
            f"({change} of {r.details['person']})"
        )
    if r.state != "approved":
        return f"{action} of {subject} completes request {rid[:8]} while it is {r.state}"
    need = r.needed or st.policy["approval_quorum"]
    others = [n for n in r.approvals if n not in (subject, r.requester)]
    if len(others) < need:
        return f"request {rid[:8]} has {len(others)} approvals of the {need} it needs"
    if d.get("scope") != r.details["scope"]:
        return f"{action} of {subject} is bound to another scope than request {rid[:8]}"
    if actor != subject:
        return f"{actor} completed request {rid[:8]}, which only {subject} completes, in person"
    p = st.people.get(subject)
    if action in ("person.enrol", "person.key.replace"):
        if e["key_id"] != d.get("key_id"):
            return f"{action} of {subject} is not signed by the key it announces"
        want = r.details.get("key_id")
        if want is not None and d["key_id"] != want:
            return f"{action} of {subject} announces another key than request {rid[:8]} named"
    if action == "person.enrol":
        if p is not None:
            return f"{subject} was already enrolled"
        w = st.witnessed.get(rid)
        if w is None or w[1] != d["key_id"]:
            return (
                f"{subject}'s enrolment (request {rid[:8]}) was completed without an "
                "approver witnessing its new key"
            )
        if list(d.get("roles", ())) != list(r.details["roles"]) or d.get("kind") != r.details.get(
            "person_kind"
        ):
            return f"{subject} was enrolled with other roles or kind than request {rid[:8]} named"
        why = st._new_key(subject, d, seq)
        if why:
            return why
        st.people[subject] = PersonInfo(
            subject, tuple(d["roles"]), str(d["kind"]), "active", d["key_id"], seq, seq
        )
    elif p is None or not p.active:
        return f"{action} of {subject}, who is not an enrolled, active person"
    elif action == "person.key.replace":
        if d.get("previous_key_id") not in (None, p.key_id):
            return f"previous_key_id is not {subject}'s current key"
        why = st._new_key(subject, d, seq)
        if why:
            return why
        p.key_id = d["key_id"]
    elif action == "person.holder.replace":
        kek, version = str(r.details["kek"]), _int(r.details["version"])
        if (d.get("kek"), d.get("version")) != (kek, version):
            return f"{action} of {subject} names another KEK version than request {rid[:8]}"
        fp = d.get("fingerprint")
        if not isinstance(fp, str) or not fp:
            return f"{action} of {subject} announces no holder key fingerprint"
        st.next_holder_keys[(kek, version, subject)] = fp
    r.state = "done"
    return ""


def recovery_rekeys(st: LogState, actor: str) -> bool:
    """Whether ``actor`` is the recovery identity of the current set after its
    ``breakglass.recover``: the threshold of paper shares stands in for the custodians
    whose keys were all lost, and re-announces their keys (docs/custody.md 10.4)."""
    bg = st.breakglass
    return actor == RECOVERY_ACTOR and bg is not None and bg.recovered_at is not None


def breakglass(st: LogState, e: dict[str, Any]) -> str:
    action, actor, seq, d = e["action"], e["actor"], int(e["seq"]), e["details"]
    if _subject(e, "home:") != st.home_id:
        return f"{action} names another home"
    bg = st.breakglass
    if action == "breakglass.recover":
        if actor != RECOVERY_ACTOR:
            return f"breakglass.recover is signed by {actor}, not by the recovery identity"
        if bg is None or d.get("set_id") != bg.set_id:
            return "breakglass.recover names a set that is not the current one"
        bg.recovered_at = seq
        return ""
    if not st.is_custodian(actor):
        return f"{actor} made {action} without holding the custodian role"
    if action == "breakglass.sign":
        fp, sid = d["fingerprint"], d["set_id"]
        if not isinstance(fp, str) or type(sid) is not int:
            raise TypeError("a break-glass signature names no set id or fingerprint")
        st.breakglass_signs.setdefault((sid, fp), set()).add(actor)
        return ""
    if action == "breakglass.seal":
        blobs = _blob_map(d.get("blobs"))
        if bg is None or d.get("fingerprint") != bg.fingerprint:
            return "blobs were sealed to a recovery key the log does not hold as current"
        if any(n.startswith("bundle/") for n in blobs):
            return "a recovery bundle was vouched for outside a split or rekey"
        bg.blobs.update(blobs)
        return ""
    return breakglass_set(st, e, action, seq, d, bg)


def breakglass_set(
    st: LogState,
    e: dict[str, Any],
    action: str,
    seq: int,
    d: dict[str, Any],
    bg: BreakGlassInfo | None,
) -> str:
    """split, reshare or rekey: a new set, which >= T of its holders signed."""
    from custodian.custody.breakglass import recovery_fingerprint

    sid, t, n, holders = d["set_id"], d["threshold"], d["count"], d["holders"]
    if any(type(v) is not int for v in (sid, t, n)) or not isinstance(holders, list):
        raise TypeError("a break-glass set's id, threshold, count or holders")
    pub = base64.b64decode(d["public_key"], validate=True)
    spub = base64.b64decode(d["signing_public_key"], validate=True)
    fp, kid = str(d["fingerprint"]), str(d["signing_key_id"])
    blobs = _blob_map(d.get("blobs"))
    if not (2 <= t <= n == len(holders) == len(set(holders))):
        return f"{action} of set {sid}: {t} of {n} with holders {holders} does not hold"
    if recovery_fingerprint(pub) != fp:
        return f"{action} of set {sid}: the fingerprint is not the recovery key's"
    if len(spub) != 32 or key_id(spub) != kid:
        return f"{action} of set {sid}: the recovery identity's key id is not its key's"
    if sid in st.breakglass_revoked or (bg is not None and sid == bg.set_id):
        return f"{action} reuses the id of set {sid}, made before"
    if d.get("revokes") != (bg.set_id if bg is not None else None):
        return f"{action} of set {sid} does not revoke the current set"
    signed = st.breakglass_signs.get((sid, fp), set()) & set(holders)
    if len(signed) < t:
        return (
            f"{action} of set {sid}: {len(signed)} of its holders signed the recovery key "
            f"before it was announced; it needs {t}"
        )
    if action == "breakglass.split":
        if "bundle/ksk" not in blobs:
            return f"set {sid} was announced without its recovery bundle"
    elif bg is None:
        return f"{action} of set {sid} with no set to replace"
    elif action == "breakglass.reshare":
        if (fp, kid) != (bg.fingerprint, bg.signing_key_id) or blobs:
            return f"breakglass.reshare of set {sid} changed the recovery key or its blobs"
        blobs = bg.blobs
    elif fp == bg.fingerprint or not set(bg.blobs) <= set(blobs) or "bundle/ksk" not in blobs:
        return f"breakglass.rekey of set {sid} did not reseal everything to a new key"
    old = st.keys.get(kid)
    if old is None:
        for k in st.keys.values():
            if k.person == RECOVERY_ACTOR and k.replaced_at is None:
                k.replaced_at = seq
        st.keys[kid] = KeyInfo(RECOVERY_ACTOR, spub, seq)
    elif (
        old.person != RECOVERY_ACTOR
        or old.replaced_at is not None
        or (bg is not None and kid != bg.signing_key_id)
    ):
        return f"{action} of set {sid} announces a signing key used before"
    if bg is not None:
        st.breakglass_revoked.add(bg.set_id)
    st.breakglass = BreakGlassInfo(
        sid, t, tuple(holders), fp, pub, str(d["check_value"]), kid, dict(blobs), seq
    )
    st.breakglass_signs.clear()
    return ""


def _blob_map(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(
        isinstance(k, str) and isinstance(x, str) and len(x) == 64 for k, x in v.items()
    ):
        raise TypeError("a list of recovery blobs is not {name: SHA-256}")
    return dict(v)
