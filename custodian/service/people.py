"""``svc.people``: enrolment, key and TOTP replacement, disabling, the roster.

Enrolment is two steps: :meth:`People.begin_enrolment` makes the keys in
memory (a :class:`PendingEnrolment`), and nothing is stored until
:meth:`People.complete_enrolment` accepts the first code from the new
authenticator. Signing in is :mod:`custodian.service.auth`.
"""

from __future__ import annotations

import base64
import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from custodian import approvals as A
from custodian import people as P
from custodian.catalog import Person
from custodian.errors import ConflictError, CustodianError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service.changes import CredentialChanges
from custodian.service.context import HOME, HomeContext, totp_name

if TYPE_CHECKING:
    from custodian.service.approvals import Approvals


@dataclass
class PendingEnrolment:
    """An enrolment (or TOTP replacement) waiting for its first code.

    Holds the TOTP secret and the new key blob in memory only; nothing is
    stored until :meth:`People.complete_enrolment` accepts a code.
    """

    name: str
    roles: tuple[str, ...]
    kind: str
    by: str
    key: P.NewKey | None
    totp: SecretBytes | None
    replace_totp: bool = False

    def __repr__(self) -> str:
        return f"<PendingEnrolment {self.name} roles={self.roles} [secrets redacted]>"

    __str__ = __repr__

    def uri(self, home_label: str) -> str:
        """The otpauth:// URI (holds the TOTP secret: show it, never log it)."""
        if self.totp is None:
            return ""
        return P.provisioning_uri(self.totp, self.name, home_label)

    def qr(self, home_label: str) -> list[str]:
        return P.qr_lines(self.uri(home_label)) if self.totp is not None else []

    def secret_b32(self) -> str:
        return P.totp_b32(self.totp) if self.totp is not None else ""

    def discard(self) -> None:
        if self.totp is not None:
            self.totp.wipe()
        self.key = None


class People:
    """Who is enrolled, with which roles, keys and TOTP secrets."""

    def __init__(self, ctx: HomeContext, approvals: Approvals | None = None) -> None:
        self._ctx = ctx
        if approvals is not None:
            self._approvals = approvals
            approvals.register(
                "person.unlock",
                at_quorum=self._unlock_at_quorum,
                excluded=lambda r: {str(r.payload.get("person", ""))},
            )
            # After bootstrap every change about a person is a request (issue 11).
            self.changes = CredentialChanges(ctx, approvals)

    def list(self, *, include_home: bool = False) -> builtins.list[Person]:
        return [p for p in self._ctx.catalog.people() if include_home or p.kind != "home"]

    def get(self, name: str) -> Person:
        return self._ctx.catalog.person(name)

    def needs_bootstrap(self) -> bool:
        """True while no active custodian exists: the home identity may enrol the first."""
        return not any(p.active and p.has("custodian") for p in self.list())

    # ------------------------------------------------------------ enrolment

    def begin_enrolment(
        self,
        name: str,
        roles: builtins.list[str] | tuple[str, ...],
        *,
        passphrase: SecretBytes | None,
        by: Actor | None,
        service: bool = False,
    ) -> PendingEnrolment:
        """Prepare a person's keys; nothing is stored until the first code comes back.

        ``by`` is the enrolling custodian; None only while the home has no
        custodian yet (bootstrap), when the home identity signs the entry.
        A service identity (``service=True``) holds the operator role only, may
        have no passphrase, and has no TOTP (it never approves anything).
        """
        P.check_name(name)
        roles = P.check_roles(tuple(roles))
        actor = self._enroller(by, f"person:{name}")
        self._bootstrap_only(
            by, "person.enrol", name,
            f"custodian people request enrol {name} --role ROLE --reason TEXT --as NAME",
        )  # fmt: skip
        if name == HOME:
            raise CustodianError(f"{HOME!r} is reserved for the home's own identity.")
        if any(p.name == name for p in self._ctx.catalog.people()):
            raise ConflictError(f"{name} is already enrolled; nothing was changed.")
        if service:
            if roles != ("operator",):
                raise CustodianError("a service identity holds the operator role only.")
        elif passphrase is None:
            raise CustodianError("a person needs a passphrase; only service identities may not.")
        key = _new_key(self._ctx, name, passphrase)
        totp = None if service else P.new_totp_secret()
        return PendingEnrolment(
            name, roles, "service" if service else "person", actor.name, key, totp
        )

    def _enroller(self, by: Actor | None, subject: str) -> Actor:
        if by is None:
            if self._ctx.log_state().active_custodians():  # as the signed log says
                raise AuthError(
                    "this home has custodians: enrolment needs one of them (--as NAME); "
                    "nothing was done."
                )
            return self._ctx.home_actor()
        self._ctx.require(by, "custodian", "person.enrol", subject)
        return by

    def complete_enrolment(
        self, pending: PendingEnrolment, code: str | None, *, by: Actor | None
    ) -> Person:
        """Check the first code, then store everything and record the enrolment."""
        ctx = self._ctx
        actor = self._enroller(by, f"person:{pending.name}")
        self._bootstrap_only(
            by, "person.enrol", pending.name,
            f"custodian people request enrol {pending.name} --role ROLE --reason TEXT --as NAME",
        )  # fmt: skip
        if actor.name != pending.by:
            raise AuthError("the enrolment was begun by someone else; start again.")
        step: int | None = None
        if pending.kind == "person":
            step = P.match_step(pending.totp, code or "") if pending.totp else None
            if step is None:
                raise AuthError(
                    "that code does not match the new authenticator entry; nothing was "
                    "enrolled. Check the phone's clock and type the code now shown."
                )
        key = pending.key
        if key is None:
            raise CustodianError("this enrolment was discarded; start again.")
        store_key(ctx, pending.name, key)
        with ctx.audited(
            actor,
            "person.enrol",
            f"person:{pending.name}",
            {
                "roles": list(pending.roles),
                "kind": pending.kind,
                "key_id": key.key_id,
                "public_key": base64.b64encode(key.public_raw).decode(),
                "protection": "passphrase" if key.blob_protected else "none",
                "totp": pending.totp is not None,
            },
        ):
            ctx.catalog.add_person(pending.name, pending.roles, pending.kind)
            ctx.catalog.add_signing_key(
                pending.name,
                key.key_id,
                key.public_raw,
                "passphrase" if key.blob_protected else "none",
            )
            if pending.totp is not None:
                ctx.sealed.seal(ctx.load_ksk(), totp_name(pending.name, 1), pending.totp)
                ctx.catalog.set_totp(pending.name, 1)
                if step is not None:
                    ctx.catalog.use_totp_step(pending.name, step)
        pending.discard()
        return ctx.catalog.person(pending.name)

    # ------------------------------------------------------------ credential changes

    def replace_key(self, name: str, passphrase: SecretBytes | None, *, by: Actor) -> Person:
        """A new signing key for ``name`` (lost passphrase, suspected compromise).

        Done by the person themselves or by a custodian. The old public key
        stays known so old entries still verify.
        """
        ctx = self._ctx
        subject = f"person:{name}"
        ctx.require(by, None if by.name == name else "custodian", "person.key.replace", subject)
        self._not_home(name, by, "person.key.replace")
        self._bootstrap_only(
            by, "person.key.replace", name,
            f"custodian people request key {name} --reason TEXT (as {name}, with the new key)",
        )  # fmt: skip
        p = ctx.catalog.person(name)
        if p.kind == "person" and passphrase is None:
            raise CustodianError("a person's signing key needs a passphrase.")
        old = p.key
        key = _new_key(ctx, name, passphrase)
        store_key(ctx, name, key)
        prot = "passphrase" if key.blob_protected else "none"
        with ctx.audited(
            by,
            "person.key.replace",
            subject,
            {
                "key_id": key.key_id,
                "public_key": base64.b64encode(key.public_raw).decode(),
                "previous_key_id": old.key_id if old else None,
                "protection": prot,
            },
        ):
            ctx.catalog.add_signing_key(name, key.key_id, key.public_raw, prot)
        if by.name == name:
            by.forget()  # the old key signs nothing more
        return ctx.catalog.person(name)

    def begin_totp_replacement(self, name: str, *, by: Actor) -> PendingEnrolment:
        self._ctx.require(
            by, None if by.name == name else "custodian", "person.totp.replace", f"person:{name}"
        )
        self._not_home(name, by, "person.totp.replace")
        self._bootstrap_only(
            by, "person.totp.replace", name,
            f"custodian people request totp {name} --reason TEXT --as NAME",
        )  # fmt: skip
        p = self._ctx.catalog.person(name)
        if p.kind != "person":
            raise CustodianError(f"{name} is a service identity and has no TOTP.")
        return PendingEnrolment(
            name, p.roles, p.kind, by.name, None, P.new_totp_secret(), replace_totp=True
        )

    def complete_totp_replacement(
        self, pending: PendingEnrolment, code: str, *, by: Actor
    ) -> Person:
        ctx = self._ctx
        subject = f"person:{pending.name}"
        ctx.require(
            by, None if by.name == pending.name else "custodian", "person.totp.replace", subject
        )
        self._bootstrap_only(
            by, "person.totp.replace", pending.name,
            f"custodian people request totp {pending.name} --reason TEXT --as NAME",
        )  # fmt: skip
        step = P.match_step(pending.totp, code) if pending.totp else None
        if step is None or pending.totp is None:
            raise AuthError(
                "that code does not match the new authenticator entry; the old "
                "TOTP secret stays in force. Type the code now shown."
            )
        gen = ctx.catalog.person(pending.name).totp_generation + 1
        with ctx.audited(by, "person.totp.replace", subject, {"generation": gen}):
            ctx.sealed.seal(ctx.load_ksk(), totp_name(pending.name, gen), pending.totp)
            ctx.catalog.set_totp(pending.name, gen)
            ctx.catalog.use_totp_step(pending.name, step)
        old = totp_name(pending.name, gen - 1)
        if ctx.sealed.exists(old):
            ctx.sealed.destroy(old)
        pending.discard()
        return ctx.catalog.person(pending.name)

    def disable(self, name: str, *, by: Actor, reason: str = "") -> Person:
        ctx = self._ctx
        subject = f"person:{name}"
        ctx.require(by, "custodian", "person.disable", subject)
        self._not_home(name, by, "person.disable")
        self._bootstrap_only(
            by, "person.disable", name,
            f"custodian people request disable {name} --reason TEXT --as NAME",
        )  # fmt: skip
        p = ctx.catalog.person(name)
        if not p.active:
            raise ConflictError(f"{name} is already disabled.")
        others = [q for q in ctx.log_state().active_custodians() if q != name]
        if p.has("custodian") and not others:
            ctx.record_refusal(by, "person.disable", subject, "last active custodian")
            raise CustodianError(
                f"{name} is the last active custodian; enrol another custodian first."
            )
        with ctx.audited(by, "person.disable", subject, {"reason": reason}):
            ctx.catalog.set_person_state(name, "disabled")
        return ctx.catalog.person(name)

    def _bootstrap_only(self, by: Actor | None, action: str, name: str, how: str) -> None:
        """Direct changes are for bootstrap only: once the first quorum KEK exists, a
        change about a person is a request that M custodians other than them approve."""
        if self._ctx.log_state().in_bootstrap:
            return
        raise self._ctx.refused(
            by,
            action,
            f"person:{name}",
            "after bootstrap a credential change is an approval request",
            f"this home has a quorum KEK, so {action} of {name} needs custodians other "
            f"than {name} to approve it: '{how}'. Nothing was done.",
            AuthError,
        )

    def _not_home(self, name: str, by: Actor, action: str) -> None:
        """The home identity is not a person: its key is never replaced and it is never
        disabled (either would break verification from its next entry on)."""
        if name == HOME:
            raise self._ctx.refused(
                by,
                action,
                f"person:{name}",
                "the home identity is not a person",
                f"{HOME!r} is the home's own identity, not a person: its key and state "
                "change only with the home itself. Nothing was done.",
                AuthError,
            )

    # ------------------------------------------------------------ lockouts

    def request_unlock(self, name: str, reason: str, *, by: Actor) -> A.Request:
        """Ask to lift ``name``'s lockout (or backoff) before it ends: a custodian asks,
        custodians other than the requester and ``name`` approve with TOTP
        (``svc.approvals.approve``); at quorum the count starts again."""
        ctx = self._ctx
        action = "person.unlock.request"
        subject = f"person:{name}"
        ctx.require(by, "custodian", action, subject)
        self._not_home(name, by, action)
        reason = " ".join(reason.split())
        if not reason:
            raise ctx.refused(
                by,
                action,
                subject,
                "no reason given",
                "lifting a lockout needs a reason (--reason TEXT); nothing was done.",
            )
        if len(reason) > 2000:
            raise ctx.refused(
                by,
                action,
                subject,
                "reason too long",
                "the reason is longer than 2,000 characters; shorten it. Nothing was done.",
            )
        ctx.catalog.person(name)  # NotFoundError names who is enrolled
        if by.name == name:
            raise ctx.refused(
                by,
                action,
                subject,
                "a person cannot lift their own lockout",
                f"{name} cannot ask to lift their own lockout; another custodian asks. "
                "Nothing was done.",
                AuthError,
            )
        st = ctx.attempts.status(name)
        if st is None or not st.waiting(ctx.clock()):
            raise ctx.refused(
                by,
                action,
                subject,
                "not locked out",
                f"{name} is not locked out and has no wait; nothing was done.",
                ConflictError,
            )
        payload = {"person": name, "reason": reason, "failures": st.failures, "until": st.until}
        return self._approvals.open_request("person.unlock", payload, by=by, action=action)

    def _unlock_at_quorum(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """Inside the approving transaction: the person's count starts again."""
        ctx = self._ctx
        name = str(r.payload["person"])
        ctx.attempts.lift(name)
        A.set_request_state(ctx.catalog.db, r.id, "done", ctx.now())
        details.update(state="done", unlocked=name)

    def demo_codes(self) -> builtins.list[tuple[str, str, int]]:
        """Current TOTP codes of every person, on a demo home only: (name, code, seconds left)."""
        ctx = self._ctx
        if not (ctx.config.demo and ctx.log_state().demo):  # fixed in home.init
            raise AuthError("demo codes exist only on a demo home (custodian demo); refused.")
        import time

        now = time.time()
        left = P.TOTP_PERIOD - int(now) % P.TOTP_PERIOD
        out = []
        for p in self.list():
            if p.totp_generation and p.active:
                with ctx.sealed.unseal(ctx.load_ksk(), totp_name(p.name, p.totp_generation)) as s:
                    out.append((p.name, P.hotp(s, P.current_step(now)), left))
        return out


def _new_key(ctx: HomeContext, name: str, passphrase: SecretBytes | None) -> P.NewKey:
    """A signing key under a new personal key (Argon2id; cheap parameters on a demo home).
    A chosen passphrase must be long (5 words or 24 characters) and not well known; a
    generated one (``custodian.custody.personal.generate_passphrase``) always is."""
    if passphrase is not None:
        from custodian.custody import personal

        try:
            personal.check_passphrase(passphrase, person=name)
        except personal.PersonalKeyError as e:
            raise CustodianError(f"{e} Nothing was saved.") from None
    key, pk = P.new_signing_key(
        name, passphrase, home_id=ctx.config.home_id, kdf=P.kdf_params(ctx.config.demo)
    )
    if pk is not None:
        pk.wipe()
    return key


def store_key(ctx: HomeContext, name: str, key: P.NewKey) -> None:
    """Put a signing key's blob (and its personal key blob) into the keyring."""
    if key.personal_blob is not None:
        ctx.keyring.set(f"personal:{name}:{key.key_id}", key.personal_blob)
    ctx.keyring.set(f"sign:{name}:{key.key_id}", key.blob)
