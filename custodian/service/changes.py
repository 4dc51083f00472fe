"""Credential changes under dual control (``svc.people.changes``, issue 11).

Until a home's first quorum KEK is created (its bootstrap, ``LogState.in_bootstrap``)
people are enrolled and changed directly, as :class:`custodian.service.people.People`
does. After it, every change about a person is a ``person.change`` request of the one
approval mechanism (:mod:`custodian.service.approvals`):

- **enrol** a new person (the request names them, their roles and kind), **key** (a new
  signing key), **totp** (a new TOTP secret), **holder** (a new holder key of one quorum
  KEK version), **disable**, **enable**, **roles**;
- it is approved by M custodians other than its subject (M: the policy's approval
  quorum), the requester counting as one of them when they are a custodian and not the
  subject (:func:`custodian.ledger.approvals_needed`); the subject never decides it;
- a disable, an enable or a change of roles takes effect with the approval that
  completes the quorum; the others are **completed by their subject in person**
  (:meth:`CredentialChanges.begin` then :meth:`CredentialChanges.complete`): the new
  TOTP secret or the new passphrase is made and shown only then, to them;
- a subject who lost their passphrase asks themselves with :meth:`request_own_key`: the
  new key is made in front of them, its public key is in the request (its scope), and
  the request is signed by that new key; M others approve.

``audit verify`` holds the log to the same rules (``LogState._person_completion`` and
``_person_change_at_quorum`` in :mod:`custodian.ledger`): after bootstrap a change
without its approved request is refused, and the home's own key has no authority over
anyone's keys.

A holder-key replacement makes a new holder key pair for the subject, sealed to their
personal key, and announces its public key (``person.holder.replace``); it changes no
manifest and no share is sealed to it, so it gives nobody another holder's share. A
share reaches it only through the refresh / redistribution of the rotation code, which
reads :attr:`custodian.ledger.LogState.next_holder_keys` and the listeners registered
with :meth:`CredentialChanges.watch_holders`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custodian import approvals as A
from custodian import people as P
from custodian.catalog import Person
from custodian.errors import ConflictError, CustodianError, NotFoundError
from custodian.ledger import (
    AT_QUORUM_CHANGES,
    CHANGES,
    COMPLETED_BY,
    PERSON_CHANGE,
    approvals_needed,
    change_scope,
)
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service.context import HOME, HomeContext, totp_name

if TYPE_CHECKING:
    from custodian.service.approvals import Approvals

ACTION = "person.change.request"
HolderListener = Callable[[str, "list[str]", str], None]
"""(event: "disabled" | "replaced", KEK names, person): what the rotation code registers."""


def next_holder_entry(person: str, kek: str, version: int) -> str:
    """The keyring entry of a replacement holder key (beside ``holder:...``, which stays)."""
    return f"holder-next:{person}:{kek}:v{version}"


@dataclass
class Completion:
    """A change its subject is completing in person: what was made for them, in memory.

    Holds the new signing key (enrolment, key replacement), the new TOTP secret
    (enrolment, TOTP replacement) or the new holder key; nothing is stored until
    :meth:`CredentialChanges.complete` accepts it."""

    request: A.Request
    change: str
    person: str
    signer: Actor
    key: P.NewKey | None = None
    totp: SecretBytes | None = None
    holder: Any = None  # custodian.custody.holders.NewHolderKey
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Completion {self.change} of {self.person} [secrets redacted]>"

    @property
    def name(self) -> str:
        return self.person

    replace_totp = False  # what the TOTP dialog of an enrolment reads

    __str__ = __repr__

    def uri(self, home_label: str) -> str:
        """The otpauth:// URI (holds the TOTP secret: show it to its owner, never log it)."""
        return P.provisioning_uri(self.totp, self.person, home_label) if self.totp else ""

    def qr(self, home_label: str) -> list[str]:
        return P.qr_lines(self.uri(home_label)) if self.totp is not None else []

    def secret_b32(self) -> str:
        return P.totp_b32(self.totp) if self.totp is not None else ""

    def discard(self) -> None:
        if self.totp is not None:
            self.totp.wipe()
        self.key = None
        self.holder = None
        if self.signer.name == self.person and self.change in ("enrol", "key"):
            self.signer.forget()


def describe(payload: dict[str, Any]) -> str:
    """A person.change request in a few words (the inbox, the CLI, the TUI)."""
    change, who = str(payload.get("change", "?")), str(payload.get("person", "?"))
    if change == "enrol":
        roles = ", ".join(payload.get("roles", ()))
        kind = " (service)" if payload.get("person_kind") == "service" else ""
        return f"enrol {who} as {roles}{kind}"
    if change == "roles":
        return f"{who}'s roles: {', '.join(payload.get('from', ()))} -> " + ", ".join(
            payload.get("roles", ())
        )
    if change == "key":
        fp = payload.get("key_id")
        return f"new signing key for {who}" + (f" ({str(fp)[:12]}…, lost key)" if fp else "")
    if change == "holder":
        return f"new holder key for {who} ({payload.get('kek')} v{payload.get('version')})"
    return {"totp": f"new TOTP secret for {who}", "disable": f"disable {who}"}.get(
        change, f"{change} {who}"
    )


class CredentialChanges:
    """Requests, completions and the hooks of the ``person.change`` kind."""

    def __init__(self, ctx: HomeContext, approvals: Approvals) -> None:
        self._ctx = ctx
        self._approvals = approvals
        self._holder_listeners: list[HolderListener] = []
        approvals.register(
            PERSON_CHANGE,
            at_quorum=self._at_quorum,
            after_commit=self._after_commit,
            excluded=lambda r: {str(r.payload.get("person", ""))},
            needed=lambda r: int(
                r.payload.get("approvals_needed", self._ctx.policy.approval_quorum)
            ),
        )
        approvals.on_housekeeping(self._sweep_pending_keys)

    # ------------------------------------------------------------ reading

    def in_bootstrap(self) -> bool:
        """True until the home's first quorum KEK: people are enrolled and changed directly."""
        return self._ctx.log_state().in_bootstrap

    def to_complete(self, name: str | None = None) -> list[A.Request]:
        """Approved changes waiting for their subject (``name``, or anyone) to complete."""
        return [
            r
            for r in self._approvals.requests("approved")
            if r.kind == PERSON_CHANGE
            and r.payload.get("change") in COMPLETED_BY
            and (name is None or r.payload.get("person") == name)
        ]

    def watch_holders(self, fn: HolderListener) -> None:
        """Call ``fn(event, kek_names, person)`` after a holder is disabled or announces a
        replacement holder key: the refresh / redistribution job hooks in here."""
        self._holder_listeners.append(fn)

    def held_by(self, person: str) -> list[str]:
        """The quorum KEKs whose current version ``person`` holds a share of (signed log)."""
        st = self._ctx.log_state()
        return sorted(
            name
            for name, k in st.keks.items()
            if k.backend == "quorum" and person in st.holders.get((name, k.current), ())
        )

    def on_holder_disabled(self, kek_names: list[str], person: str) -> None:
        """``person`` (disabled) held shares of ``kek_names``: their share keeps opening
        DEKs with M-1 others until a redistribution and a rotation leave them out
        (DESIGN.md). The rotation code registers the job with :meth:`watch_holders`;
        without one, the ``request.approve`` entry's ``holder_of`` records what is owed."""
        for fn in self._holder_listeners:
            fn("disabled", kek_names, person)

    # ------------------------------------------------------------ asking

    def request(
        self,
        change: str,
        name: str,
        *,
        by: Actor,
        reason: str,
        roles: list[str] | tuple[str, ...] | None = None,
        kek: str | None = None,
        service: bool = False,
    ) -> A.Request:
        """Ask for a change about ``name`` (``by`` is the subject, or a custodian)."""
        ctx = self._ctx
        subject = "request:new"
        if change not in CHANGES:
            raise CustodianError(
                f"{change!r} is not a credential change; use one of {', '.join(CHANGES)}."
            )
        ctx.require(by, None if by.name == name and change != "enrol" else "custodian", ACTION,
                    f"person:{name}")  # fmt: skip
        reason = self._reason(by, reason)
        self._after_bootstrap(by, change, name)
        if name == HOME:
            raise ctx.refused(
                by, ACTION, subject, "the home identity is not a person",
                f"{HOME!r} is the home's own identity, not a person; nothing was done.",
                AuthError,
            )  # fmt: skip
        payload: dict[str, Any] = {"change": change, "person": name, "reason": reason}
        if change == "enrol":
            P.check_name(name)
            if any(p.name == name for p in ctx.catalog.people()):
                raise ctx.refused(
                    by, ACTION, subject, "already enrolled",
                    f"{name} is already enrolled; nothing was done.", ConflictError,
                )  # fmt: skip
            r = P.check_roles(tuple(roles or ()))
            if service and r != ("operator",):
                raise CustodianError("a service identity holds the operator role only.")
            payload.update(roles=list(r), person_kind="service" if service else "person")
        else:
            p = ctx.catalog.person(name)  # NotFoundError names who is enrolled
            if change == "enable" and p.active:
                raise ctx.refused(
                    by, ACTION, subject, "not disabled", f"{name} is not disabled.",
                    ConflictError,
                )  # fmt: skip
            if change != "enable" and not p.active:
                raise ctx.refused(
                    by, ACTION, subject, "disabled", f"{name} is disabled; ask to enable "
                    "them first. Nothing was done.", ConflictError,
                )  # fmt: skip
            if change in ("totp", "holder") and p.kind != "person":
                raise CustodianError(f"{name} is a service identity: no TOTP, no holder key.")
            if change == "roles":
                if p.kind != "person":
                    raise CustodianError(f"{name} is a service identity (operator only).")
                new = P.check_roles(tuple(roles or ()))
                if new == tuple(sorted(p.roles)):
                    raise ctx.refused(
                        by, ACTION, subject, "no change",
                        f"{name} already holds {', '.join(new)}; nothing was done.",
                        ConflictError,
                    )  # fmt: skip
                payload.update(roles=list(new), **{"from": sorted(p.roles)})
            if change == "disable" or (change == "roles" and "custodian" not in (roles or ())):
                others = [n for n in ctx.log_state().active_custodians() if n != name]
                q = ctx.policy.approval_quorum
                if p.has("custodian") and len(others) < q:
                    raise ctx.refused(
                        by, ACTION, subject, f"{len(others)} custodians would remain",
                        f"without {name} this home would have {len(others)} active "
                        f"custodian(s), fewer than the quorum of {q}: nothing could be "
                        "approved any more. Enrol another custodian first; nothing was done.",
                        ConflictError,
                    )  # fmt: skip
            if change == "holder":
                payload.update(self._holder_target(by, name, kek))
        return self._open(payload, by)

    def request_own_key(self, name: str, passphrase: SecretBytes, *, reason: str) -> A.Request:
        """``name`` lost their passphrase (or fears their key is known): the new key is
        made now, in front of them, under ``passphrase``; the request names its public key
        and is signed by it. M custodians other than ``name`` approve; ``name`` then
        completes it (:meth:`begin` with the same passphrase)."""
        ctx = self._ctx
        subject = f"person:{name}"
        try:
            p = ctx.catalog.person(name)
        except NotFoundError:
            raise ctx.refused(
                None, ACTION, "request:new", "no such person",
                f"nobody named {name!r} is enrolled; nothing was done.", AuthError,
            ) from None  # fmt: skip
        if not p.active or p.kind != "person":
            raise ctx.refused(
                None, ACTION, subject, "not an active person",
                f"{name} is not an active person; nothing was done.", AuthError,
            )  # fmt: skip
        if ctx.log_state().in_bootstrap:
            raise ctx.refused(
                None, ACTION, subject, "bootstrap",
                "this home has no quorum KEK yet (bootstrap): a custodian replaces the key "
                f"directly with 'custodian people replace-key {name} --as NAME'.", ConflictError,
            )  # fmt: skip
        clean = " ".join(reason.split())
        if not clean or len(clean) > 2000:
            raise ctx.refused(
                None, ACTION, subject, "no reason given",
                "a credential change needs a reason of up to 2,000 characters (--reason "
                "TEXT); nothing was done.",
            )  # fmt: skip
        key, signer = _make_key(ctx, name, passphrase, p.roles)
        payload = {
            "change": "key",
            "person": name,
            "reason": clean,
            "key_id": key.key_id,
            "public_key": base64.b64encode(key.public_raw).decode(),
        }
        store_pending_key(ctx, name, key)  # not in the catalog: no authority until completed
        try:
            return self._open(payload, signer)
        finally:
            signer.forget()

    def _open(self, payload: dict[str, Any], by: Actor) -> A.Request:
        ctx = self._ctx
        q = ctx.policy.approval_quorum
        name = str(payload["person"])
        counts = by.name != name and ctx.log_state().is_custodian(by.name)
        need = approvals_needed(q, by.name, name, counts)
        others = [n for n in ctx.log_state().active_custodians() if n not in (by.name, name)]
        if len(others) < need:
            raise ctx.refused(
                None if by.name == name and "key_id" in payload else by, ACTION,
                f"person:{name}", f"only {len(others)} custodians could approve, {need} needed",
                f"this change needs {need} approval(s) by custodians other than {name} and "
                f"{by.name}, and this home has {len(others)}; nothing was done.", ConflictError,
            )  # fmt: skip
        payload["approvals_needed"] = need
        payload["scope"] = change_scope(payload)
        return self._approvals.open_request(PERSON_CHANGE, payload, by=by, action=ACTION)

    def _reason(self, by: Actor, reason: str) -> str:
        clean = " ".join(reason.split())
        if not clean or len(clean) > 2000:
            raise self._ctx.refused(
                by, ACTION, "request:new", "no reason given",
                "a credential change needs a reason of up to 2,000 characters (--reason "
                "TEXT); custodians decide on it. Nothing was done.",
            )  # fmt: skip
        return clean

    def _after_bootstrap(self, by: Actor, change: str, name: str) -> None:
        if self._ctx.log_state().in_bootstrap:
            raise self._ctx.refused(
                by, ACTION, f"person:{name}", "bootstrap",
                "this home has no quorum KEK yet (bootstrap): people are enrolled and changed "
                "directly until the first one is created ('custodian people enrol', "
                "'replace-key', 'replace-totp', 'disable'). Nothing was done.", ConflictError,
            )  # fmt: skip

    def _holder_target(self, by: Actor, name: str, kek: str | None) -> dict[str, Any]:
        held = self.held_by(name)
        if kek is None and len(held) == 1:
            kek = held[0]
        if kek is None or kek not in held:
            raise self._ctx.refused(
                by, ACTION, f"person:{name}", "not a holder",
                f"{name} holds a share of {', '.join(held) or 'no quorum KEK'}; name one of "
                "them (--kek NAME). Nothing was done.", ConflictError,
            )  # fmt: skip
        return {"kek": kek, "version": self._ctx.log_state().keks[kek].current}

    # ------------------------------------------------------------ at quorum

    def _at_quorum(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """Inside the approving transaction: a disable, an enable or new roles take
        effect; the other changes wait for their subject to complete them."""
        change, name = str(r.payload["change"]), str(r.payload["person"])
        if change not in AT_QUORUM_CHANGES:
            details["note"] = f"approved: {name} completes it in person"
            return
        ctx = self._ctx
        if change == "disable":
            ctx.catalog.set_person_state(name, "disabled")
            held = self.held_by(name)
            if held:
                details["holder_of"] = held
        elif change == "enable":
            ctx.catalog.set_person_state(name, "active")
        else:
            ctx.catalog.set_person_roles(name, tuple(r.payload["roles"]))
            held = self.held_by(name)
            if held and "custodian" not in r.payload["roles"]:
                details["holder_of"] = held
        A.set_request_state(ctx.catalog.db, r.id, "done", ctx.now())
        details.update(
            state="done",
            person_change={"change": change, "person": name, "scope": r.payload["scope"]},
        )

    def _sweep_pending_keys(self) -> None:
        """A lost-key request that ended without completion (denied, expired, cancelled)
        leaves its new key in the keyring, where it has no authority: remove it."""
        ctx = self._ctx
        rows = ctx.catalog.db.execute(
            "SELECT payload FROM requests WHERE kind=? AND state IN "
            "('denied', 'expired', 'cancelled')",
            (PERSON_CHANGE,),
        ).fetchall()
        for (raw,) in rows:
            p = json.loads(raw)
            kid, name = p.get("key_id"), p.get("person")
            if not kid or not isinstance(name, str):
                continue
            if ctx.keyring.get(f"sign:{name}:{kid}") is not None:
                ctx.keyring.delete(f"sign:{name}:{kid}")
                ctx.keyring.delete(f"personal:{name}:{kid}")

    def _after_commit(self, r: A.Request) -> None:
        lost = r.payload.get("change") == "disable" or (
            r.payload.get("change") == "roles" and "custodian" not in r.payload.get("roles", ())
        )
        if r.state == "done" and lost:
            held = self.held_by(str(r.payload["person"]))
            if held:
                self.on_holder_disabled(held, str(r.payload["person"]))

    # ------------------------------------------------------------ completing in person

    def begin(
        self,
        request_id: str,
        *,
        by: Actor | None = None,
        passphrase: SecretBytes | None = None,
        code: str | None = None,
    ) -> Completion:
        """The subject, in person, starts completing an approved change: an enrolment or
        a new key takes their (new) ``passphrase`` (the key it names opens with it, or one
        is made now); a new TOTP secret or holder key needs them unlocked (``by``). The new
        secret exists only in the returned :class:`Completion` until :meth:`complete`.

        A new key that someone else asked for (the request names no key) also takes the
        subject's current TOTP ``code``: otherwise whoever asked could complete it as
        them. A subject who lost their authenticator too asks themselves
        (:meth:`request_own_key`), with the new key made in front of the approvers."""
        ctx = self._ctx
        action = "person.change.complete"
        r = self._approvals.find(request_id, by, action)
        if r.kind != PERSON_CHANGE or r.payload.get("change") not in COMPLETED_BY:
            raise ctx.refused(
                by, action, f"request:{r.id}", "nothing to complete",
                f"request {r.id[:8]} is not a change its subject completes; nothing was done.",
                ConflictError,
            )  # fmt: skip
        change, name = str(r.payload["change"]), str(r.payload["person"])
        if r.state != "approved":
            raise ctx.refused(
                by, action, f"request:{r.id}", f"request is {r.state}",
                f"request {r.id[:8]} is {r.state}: only an approved change can be completed "
                f"({len(r.approvals)} of {r.quorum} approvals). Nothing was done.",
                ConflictError,
            )  # fmt: skip
        ctx.check_request(r, by, action)
        if r.expires_at <= ctx.now():
            raise ctx.refused(
                by, action, f"request:{r.id}", "request expired",
                f"request {r.id[:8]} expired at {r.expires_at[:16]} UTC before {name} completed "
                "it; cancel it and ask again. Nothing was done.", ConflictError,
            )  # fmt: skip
        if change in ("enrol", "key"):
            if change == "enrol":
                kind = str(r.payload["person_kind"])
                if kind == "person" and passphrase is None:
                    raise CustodianError("a person needs a passphrase; nothing was done.")
                roles = tuple(r.payload["roles"])
            else:
                roles = ctx.catalog.person(name).roles
                if passphrase is None:
                    raise CustodianError(f"{name}'s new signing key needs a passphrase.")
            if change == "key" and r.payload.get("key_id"):
                signer = self._open_pending(name, str(r.payload["key_id"]), passphrase, roles)
                key = None
            else:
                if change == "key":
                    self._subject_code(r, name, code)
                key, signer = _make_key(ctx, name, passphrase, roles)
            totp = P.new_totp_secret() if change == "enrol" and kind == "person" else None
            return Completion(r, change, name, signer, key=key, totp=totp)
        if by is None or by.name != name:
            raise ctx.refused(
                by, action, f"request:{r.id}", "not the subject",
                f"only {name}, signed in, completes request {r.id[:8]}; nothing was done.",
                AuthError,
            )  # fmt: skip
        ctx.require(by, None, action, f"person:{name}")
        if change == "totp":
            return Completion(r, change, name, by, totp=P.new_totp_secret())
        from custodian.custody import holders as H

        kek, version = str(r.payload["kek"]), int(r.payload["version"])
        suite = ctx.catalog.kek(kek).suite
        new = H.new_holder_key(
            suite, home_id=ctx.config.home_id, person=name, kek=kek, version=version,
            personal_key=by.personal, recovery_public=None,
        )  # fmt: skip
        return Completion(r, change, name, by, holder=new)

    def _check_witness(self, r: A.Request, witness: Actor | None) -> None:
        ctx = self._ctx
        name = str(r.payload["person"])
        if witness is None or witness.name not in r.approvals:
            approvers = ", ".join(r.approvals) or "nobody yet"
            raise ctx.refused(
                witness, "person.enrol.witness", f"request:{r.id}", "no approver witnesses",
                f"{name}'s enrolment is completed in front of one of the custodians who "
                f"approved it ({approvers}), who confirms with a fresh code (--witness "
                "NAME); nothing was done.", AuthError,
            )  # fmt: skip
        ctx.require(witness, "custodian", "person.enrol.witness", f"request:{r.id}")

    def _subject_code(self, r: A.Request, name: str, code: str | None) -> None:
        """The subject shows it is them with a code of their current authenticator."""
        ctx = self._ctx
        if not code:
            raise ctx.refused(
                None, "person.change.complete", f"request:{r.id}", "no code of the subject",
                f"completing a new key that {r.requester} asked for needs {name}'s current "
                f"TOTP code, which shows it is {name}. If {name} lost the authenticator too, "
                f"cancel this request; {name} asks with: custodian people request key {name} "
                "--reason TEXT (no --as). Nothing was done.", AuthError,
            )  # fmt: skip
        ctx.check_totp(Actor(name, (), "", None), code, "person.change.complete", f"request:{r.id}")

    def _open_pending(
        self, name: str, kid: str, passphrase: SecretBytes | None, roles: tuple[str, ...]
    ) -> Actor:
        ctx = self._ctx
        blob = ctx.keyring.get(f"sign:{name}:{kid}")
        if blob is None:
            raise AuthError(
                f"the new key {kid[:12]}… made with the request is not in this keyring; "
                "complete on the workstation where it was asked. Nothing was done."
            )
        opened = P.open_signing_key(
            name, kid, blob, passphrase, home_id=ctx.config.home_id,
            personal_blob=ctx.keyring.get(f"personal:{name}:{kid}"),
        )  # fmt: skip
        return Actor(name, roles, kid, opened.key, opened.personal)

    def complete(
        self,
        c: Completion,
        code: str | None = None,
        *,
        witness: Actor | None = None,
        witness_code: str | None = None,
    ) -> Person:
        """Record the completed change, signed by its subject (by the new key for an
        enrolment or a key replacement): the first code of a new TOTP secret must match.

        An enrolment is also witnessed: one of the custodians who approved it (``witness``,
        never the requester, who cannot approve) watches the new person complete it and
        signs the new key's id with a fresh TOTP ``witness_code`` (``person.enrol.witness``),
        so whoever asked cannot complete it alone with a key of their own."""
        ctx = self._ctx
        r, name = c.request, c.person
        action = COMPLETED_BY[c.change]
        if c.change == "enrol":
            self._check_witness(r, witness)
        step: int | None = None
        if c.totp is not None:
            step = P.match_step(c.totp, code or "", ctx.clock())
            if step is None:
                raise AuthError(
                    "that code does not match the new authenticator entry; nothing was "
                    "changed. Check the phone's clock and type the code now shown."
                )
        base: dict[str, Any] = {"request": r.id, "scope": r.payload["scope"]}
        signer = c.signer
        db = ctx.catalog.db
        if c.change in ("enrol", "key"):
            if c.key is not None:
                store_pending_key(ctx, name, c.key)
                kid, pub, prot = c.key.key_id, c.key.public_raw, c.key.blob_protected
            else:
                kid = signer.key_id
                pub = base64.b64decode(str(r.payload["public_key"]))
                prot = True
            base.update(
                key_id=kid,
                public_key=base64.b64encode(pub).decode(),
                protection="passphrase" if prot else "none",
            )
            if c.change == "enrol":
                base.update(
                    roles=list(r.payload["roles"]),
                    kind=str(r.payload["person_kind"]),
                    totp=c.totp is not None,
                )
            else:
                old = ctx.catalog.person(name).key
                base["previous_key_id"] = old.key_id if old else None
        elif c.change == "totp":
            base["generation"] = ctx.catalog.person(name).totp_generation + 1
        else:
            h = c.holder.key
            base.update(
                kek=h.kek,
                version=h.version,
                suite=h.suite,
                public_key=base64.b64encode(h.public_key).decode(),
                fingerprint=h.fingerprint,
            )
        if witness is not None and c.change == "enrol":
            with ctx.catalog.transaction():
                wstep = ctx.confirm(
                    witness, witness_code, "person.enrol.witness", f"request:{r.id}"
                )
                ctx.record(witness, "person.enrol.witness", f"request:{r.id}", details={
                    "person": name, "key_id": base["key_id"], "step": wstep})  # fmt: skip
        with ctx.audited(signer, action, f"person:{name}", base):
            fresh = A.find_request(db, ctx.policy.approval_quorum, r.id)
            if fresh.state != "approved":
                raise ConflictError(f"request {r.id[:8]} is {fresh.state}; nothing was done.")
            if c.change == "enrol":
                ctx.catalog.add_person(
                    name, tuple(r.payload["roles"]), str(r.payload["person_kind"])
                )
            if c.change in ("enrol", "key"):
                ctx.catalog.add_signing_key(name, base["key_id"], pub, base["protection"])
            if c.totp is not None:
                gen = 1 if c.change == "enrol" else int(base["generation"])
                ctx.sealed.seal(ctx.load_ksk(), totp_name(name, gen), c.totp)
                ctx.catalog.set_totp(name, gen)
                if step is not None:
                    ctx.catalog.use_totp_step(name, step)
            if c.holder is not None:
                from custodian.service import items

                h = c.holder.key
                items.put(ctx, next_holder_entry(name, h.kek, h.version), c.holder.item)
            A.set_request_state(db, r.id, "done", ctx.now())
        if c.change == "totp":
            spent = totp_name(name, int(base["generation"]) - 1)
            if ctx.sealed.exists(spent):
                ctx.sealed.destroy(spent)
        if c.holder is not None:
            for fn in self._holder_listeners:
                fn("replaced", [c.holder.key.kek], name)
        c.discard()
        return ctx.catalog.person(name)


def _make_key(
    ctx: HomeContext, name: str, passphrase: SecretBytes | None, roles: tuple[str, ...]
) -> tuple[P.NewKey, Actor]:
    """A new signing key under a new personal key, and an Actor that signs with it."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from custodian.custody import personal

    if passphrase is not None:
        try:
            personal.check_passphrase(passphrase, person=name)
        except personal.PersonalKeyError as e:
            raise CustodianError(f"{e} Nothing was saved.") from None
    priv = ed25519.Ed25519PrivateKey.generate()
    pub = priv.public_key().public_bytes_raw()
    with SecretBytes(priv.private_bytes_raw(), "signing key") as raw:
        blob, pblob, pk = P.seal_signing_key(
            name, raw, passphrase, home_id=ctx.config.home_id, kdf=P.kdf_params(ctx.config.demo)
        )
    kid = P.key_id(pub)
    return P.NewKey(kid, pub, blob, passphrase is not None, pblob), Actor(
        name, roles, kid, priv, pk
    )


def store_pending_key(ctx: HomeContext, name: str, key: P.NewKey) -> None:
    """A new key's blobs into the keyring; it acts only once the catalog and log name it."""
    if key.personal_blob is not None:
        ctx.keyring.set(f"personal:{name}:{key.key_id}", key.personal_blob)
    ctx.keyring.set(f"sign:{name}:{key.key_id}", key.blob)
