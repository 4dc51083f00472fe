"""The catalog and the configuration against the signed audit log.

Every value a security decision reads from the catalog or the configuration
(roles, signing keys, people's states, KEK versions' public keys and
fingerprints, the policy, the demo flag, requests and their decisions) was
recorded in a signed entry when it was made. This module compares the two:
one subject at a time before a decision (:func:`person_differences`,
:func:`kek_differences`, ...: the service refuses on a difference), and all of
them for ``custodian audit reconcile`` (:func:`reconcile`).

A difference is one line naming the subject, what differs, and both values,
with the entry that recorded the log's value when there is one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from custodian import approvals as A
from custodian.catalog import Catalog, Kek, Person
from custodian.config import POLICY_LIMITS, Config
from custodian.errors import MismatchError
from custodian.ledger import HOME, LogState, PersonInfo, RequestInfo


@dataclass(frozen=True)
class Difference:
    subject: str  # person:bob, kek:backups/v2, policy.session_minutes, request:<id>, ...
    what: str  # roles, state, public key, ...
    catalog: str
    log: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.what}: catalog {self.catalog}, signed log {self.log}"


def kek_fingerprint(suite: str, pub: bytes) -> str:
    """custodian.backends.local.fingerprint (a test keeps them equal)."""
    h = hashlib.sha256(b"custodian kek v1\0" + suite.encode() + b"\0" + pub).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def version_fingerprint(backend: str, suite: str, material: bytes) -> str:
    """What the log records of a version's key material: a quorum version's is its
    manifest's fingerprint (custodian.custody.quorum.manifest_fingerprint), any other's
    its public key's."""
    if backend == "quorum":
        h = hashlib.sha256(material).hexdigest()[:32]
        return " ".join(h[i : i + 4] for i in range(0, 32, 4))
    return kek_fingerprint(suite, material)


def refuse(diffs: list[Difference], doing: str) -> MismatchError:
    """The error for a decision refused because of ``diffs`` (one sentence, then advice)."""
    first = "; ".join(str(d) for d in diffs[:3])
    more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
    return MismatchError(
        f"the catalog disagrees with the signed audit log ({first}{more}), so {doing} was "
        "refused and nothing was done. The catalog was changed outside custodian: run "
        "'custodian audit reconcile' and restore the catalog from a copy."
    )


# ---------------------------------------------------------------- one subject


def person_differences(p: Person | None, lp: PersonInfo | None, st: LogState) -> list[Difference]:
    """What differs between a person's catalog row (with keys) and the log's record."""
    name = p.name if p is not None else lp.name if lp is not None else "?"
    subject = f"person:{name}"
    if p is None and lp is None:
        return []
    if lp is None:
        return [Difference(subject, "enrolment", "enrolled", "never enrolled")]
    if p is None:
        return [Difference(subject, "enrolment", "absent", f"enrolled at entry {lp.enrolled_at}")]
    out: list[Difference] = []
    if tuple(sorted(p.roles)) != lp.roles:
        out.append(
            Difference(
                subject,
                "roles",
                ",".join(sorted(p.roles)) or "none",
                f"{','.join(lp.roles) or 'none'} (entry {lp.enrolled_at})",
            )
        )
    if p.kind != lp.kind:
        out.append(Difference(subject, "kind", p.kind, f"{lp.kind} (entry {lp.enrolled_at})"))
    if p.state != lp.state:
        out.append(Difference(subject, "state", p.state, f"{lp.state} (entry {lp.state_at})"))
    cur = p.key
    if (cur.key_id if cur else "none") != lp.key_id:
        out.append(
            Difference(subject, "current signing key", cur.key_id if cur else "none", lp.key_id)
        )
    logged = st.person_keys(name)
    for k in p.keys:
        info = logged.get(k.key_id)
        if info is None:
            out.append(Difference(subject, f"signing key {k.key_id}", "present", "never announced"))
        elif bytes(k.public_key) != info.public:
            out.append(
                Difference(
                    subject,
                    f"public key of {k.key_id}",
                    "differs",
                    f"announced at entry {info.since}",
                )
            )
    have = {k.key_id for k in p.keys}
    for kid, info in logged.items():
        if kid not in have:
            out.append(
                Difference(
                    subject, f"signing key {kid}", "absent", f"announced at entry {info.since}"
                )
            )
    return out


def kek_differences(k: Kek, st: LogState, version: int | None = None) -> list[Difference]:
    """What differs between a KEK (one version of it, if given) and the log's record."""
    lk = st.keks.get(k.name)
    subject = f"kek:{k.name}"
    if lk is None:
        return [Difference(subject, "creation", "present", "never created")]
    out: list[Difference] = []
    if k.suite != lk.suite:
        out.append(Difference(subject, "suite", k.suite, f"{lk.suite} (entry {lk.created_at})"))
    if k.backend != lk.backend:
        out.append(
            Difference(subject, "backend", k.backend, f"{lk.backend} (entry {lk.created_at})")
        )
    if k.current_version != lk.current:
        out.append(Difference(subject, "current version", str(k.current_version), str(lk.current)))
    versions = {v.version: v for v in k.versions}
    wanted = [version] if version is not None else sorted(set(versions) | set(lk.versions))
    for n in wanted:
        v, lv = versions.get(n), lk.versions.get(n)
        vs = f"kek:{k.name}/v{n}"
        if lv is None:
            out.append(Difference(vs, "creation", "present" if v else "absent", "never created"))
            continue
        if v is None:
            out.append(Difference(vs, "creation", "absent", f"created at entry {lv.at}"))
            continue
        if v.fingerprint != lv.fingerprint:
            out.append(Difference(vs, "fingerprint", v.fingerprint, lv.fingerprint))
        vb = v.backend or k.backend
        if lv.backend and vb != lv.backend:
            out.append(Difference(vs, "backend", vb, f"{lv.backend} (entry {lv.at})"))
        if v.public_key is not None and version_fingerprint(vb, k.suite, bytes(v.public_key)) != (
            lv.fingerprint
        ):
            what = "manifest" if vb == "quorum" else "public key"
            out.append(Difference(vs, what, "does not have the fingerprint", lv.fingerprint))
        if v.state != lv.state:
            out.append(Difference(vs, "state", v.state, f"{lv.state} (entry {lv.at})"))
    return out


def request_differences(r: A.Request, lr: RequestInfo | None) -> list[Difference]:
    """What differs between a request in the catalog and the log's record of it."""
    subject = f"request:{r.id}"
    if lr is None:
        return [Difference(subject, "request", "present", "never opened")]
    out: list[Difference] = []
    if (r.kind, r.requester) != (lr.kind, lr.requester):
        out.append(
            Difference(
                subject,
                "kind and requester",
                f"{r.kind} by {r.requester}",
                f"{lr.kind} by {lr.requester} (entry {lr.opened_at})",
            )
        )
    if r.expires_at != lr.details.get("expires_at"):
        out.append(Difference(subject, "expiry", r.expires_at, str(lr.details.get("expires_at"))))
    for key, value in r.payload.items():
        if _canon(lr.details.get(key)) != _canon(value):
            out.append(Difference(subject, key, _short(value), _short(lr.details.get(key))))
    mine = {d.custodian: d.decision for d in r.decisions}
    if mine != lr.decisions:
        out.append(
            Difference(
                subject,
                "decisions",
                _decisions(mine),
                _decisions(lr.decisions),
            )
        )
    if r.state != lr.state and not (r.state == "approved" and lr.state == "done"):
        out.append(Difference(subject, "state", r.state, lr.state))
    if r.session is not None and r.session.id != lr.session:
        out.append(Difference(subject, "session", r.session.id, str(lr.session)))
    return out


def session_differences(s: A.Session, lr: RequestInfo | None) -> list[Difference]:
    subject = f"session:{s.id}"
    if lr is None or lr.session != s.id:
        return [Difference(subject, "session", "open", "never opened by a quorum")]
    out = []
    if s.expires_at != lr.session_expires_at:
        out.append(Difference(subject, "expiry", s.expires_at, str(lr.session_expires_at)))
    if s.state == "open" and lr.session_state != "open":
        out.append(Difference(subject, "state", s.state, str(lr.session_state)))
    return out


def config_differences(cfg: Config, st: LogState) -> list[Difference]:
    """The configuration's policy, demo flag and home id against the log's."""
    out: list[Difference] = []
    if st.home_id and cfg.home_id != st.home_id:
        out.append(Difference("home", "home id", cfg.home_id, f"{st.home_id} (entry 1)"))
    values = cfg.policy.values()
    for name in POLICY_LIMITS:
        if values[name] != st.policy[name]:
            at = st.policy_at.get(name)
            where = f"entry {at}" if at else "the default"
            out.append(
                Difference(
                    f"policy.{name}", "value", str(values[name]), f"{st.policy[name]} ({where})"
                )
            )
    if cfg.demo != st.demo:
        out.append(
            Difference(
                "demo",
                "value",
                "true" if cfg.demo else "false",
                f"{'true' if st.demo else 'false'} (fixed when the home was made, entry 1)",
            )
        )
    return out


def config_refusal(cfg: Config, st: LogState, path: object) -> MismatchError | None:
    """The refusal of a configuration that differs from the verified log (None: agrees)."""
    msg = cfg.recorded_mismatch(st.home_id, st.demo, st.policy, st.policy_at, path)
    return MismatchError(msg) if msg else None


# ---------------------------------------------------------------- everything


def reconcile(
    catalog: Catalog, cfg: Config, st: LogState, backups: Iterable[dict[str, Any]]
) -> Iterator[Difference]:
    """Every difference between the catalog (and configuration) and the verified log.

    ``backups`` are the log's ``backup.encrypt`` and ``backup.import`` entries with
    outcome ok, not cancelled by a later compensating entry, in order."""
    yield from config_differences(cfg, st)
    meta = catalog.get_meta("home_id")
    if meta != st.home_id:
        yield Difference("home", "home id", str(meta), f"{st.home_id} (entry 1)")
    people = {p.name: p for p in catalog.people()}
    for name in sorted(set(people) | set(st.people)):
        yield from person_differences(people.get(name), st.people.get(name), st)
    keks = {k.name: k for k in catalog.keks()}
    for name in sorted(set(keks) | set(st.keks)):
        if name not in keks:
            yield Difference(
                f"kek:{name}", "creation", "absent", f"created at entry {st.keks[name].created_at}"
            )
        else:
            yield from kek_differences(keks[name], st)
    q = cfg.policy.approval_quorum
    requests = {r.id: r for r in A.requests(catalog.db, q)}
    for rid in sorted(set(requests) | set(st.requests)):
        r = requests.get(rid)
        if r is None:
            lr = st.requests[rid]
            yield Difference(
                f"request:{rid}", "request", "absent", f"opened at entry {lr.opened_at}"
            )
            continue
        yield from request_differences(r, st.requests.get(rid))
    yield from _backup_differences(catalog, backups)


_BACKUP_FIELDS = ("label", "container_size", "container_sha256", "location", "kek")


def _backup_differences(
    catalog: Catalog, entries: Iterable[dict[str, Any]]
) -> Iterator[Difference]:
    logged: dict[str, dict[str, Any]] = {}
    for e in entries:
        logged[str(e["subject"]).removeprefix("backup:")] = e
    seen: set[str] = set()
    offset = 0
    while True:
        page = catalog.backups(order="id", descending=False, limit=5000, offset=offset)
        if not page:
            break
        offset += len(page)
        for b in page:
            seen.add(b.id)
            found = logged.get(b.id)
            subject = f"backup:{b.id}"
            if found is None:
                yield Difference(subject, "record", "present", "never encrypted or imported")
                continue
            e = found
            d = e["details"]
            for f in _BACKUP_FIELDS:
                if f in d and str(getattr(b, f)) != str(d[f]):
                    yield Difference(
                        subject, f, _short(getattr(b, f)), f"{_short(d[f])} (entry {e['seq']})"
                    )
            if e["action"] == "backup.encrypt" and "size" in d and d["size"] != b.size:
                yield Difference(subject, "size", str(b.size), f"{d['size']} (entry {e['seq']})")
    for bid, e in logged.items():
        if bid not in seen:
            yield Difference(
                f"backup:{bid}", "record", "absent", f"{e['action']} at entry {e['seq']}"
            )


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= 60 else s[:57] + "..."


def _decisions(d: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


__all__ = [
    "HOME",
    "Difference",
    "MismatchError",
    "config_differences",
    "config_refusal",
    "kek_differences",
    "person_differences",
    "reconcile",
    "refuse",
    "request_differences",
    "session_differences",
]
