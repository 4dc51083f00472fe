"""The home context that every capability of the facade shares.

One :class:`HomeContext` per open home holds the catalog, the sealed store,
the keyring, the audit log, the clock and the policy, and the plumbing every
acting call goes through: :meth:`HomeContext.audited` (one catalog transaction
whose signed audit entry is fsynced before it commits), :meth:`HomeContext.require`
(refuse and log an actor who may not act), :meth:`HomeContext.refused`, and the
TOTP check that confirms a ceremony step. Capability modules
(:mod:`custodian.service.keys`, ``.backups``, ``.people`` ...) hold a context
and contain only their own domain logic.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from custodian import approvals as A
from custodian import people as P
from custodian.audit import AuditError, AuditLog, Recorded
from custodian.backends.base import KekBackend
from custodian.catalog import Catalog, Kek, Person
from custodian.config import Config, Policy
from custodian.errors import BackendError, CustodianError, MismatchError, NotFoundError
from custodian.home import Home
from custodian.keystore import Keyring, SealedStore
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes

if TYPE_CHECKING:
    from custodian.ledger import Ledger, LogState
    from custodian.service.attempts import Attempts

Progress = Callable[[int, int], None]
HOME = "home"  # the home's own identity: signs init, bootstrap enrolment, refused sign-ins
HOME_KEY = "home/signing-key"


class HomeContext:
    """What one open home is made of, and the audited way to change it."""

    def __init__(self, home: Home, config: Config, catalog: Catalog) -> None:
        self.home = home
        self.config = config
        self.catalog = catalog
        self.keyring = Keyring(config.keyring_backend, home.keyring_dir, config.home_id)
        self.sealed = SealedStore(home.sealed)
        self.log = AuditLog(home.audit)
        self._ledger: Ledger | None = None
        self._attempts: Attempts | None = None
        self._recorded: Recorded | None = None
        self._ksk: SecretBytes | None = None
        self._backends: dict[str, KekBackend] = {}
        self._home: Actor | None = None
        # Seconds since the epoch: TOTP steps and request/session expiry follow it.
        # Tests replace it (through Service.clock) to move time on; nothing else should.
        self.clock: Callable[[], float] = time.time

    @property
    def ledger(self) -> Ledger:
        """What the signed log says (people, keys, KEK versions, policy, requests): the
        catalog and the configuration are compared with it before each decision. Made on
        first use: a listing never needs it (nor the cryptography that checks it)."""
        if self._ledger is None:
            from custodian.ledger import Ledger

            self._ledger = Ledger(self.log)
        return self._ledger

    @property
    def attempts(self) -> Attempts:
        """The per-person counter of failed passphrases and codes."""
        if self._attempts is None:
            from custodian.service.attempts import Attempts

            self._attempts = Attempts(self)
        return self._attempts

    def recorded(self) -> Recorded:
        """What the log records about the home id, its key, demo and the policy (read
        once per process, without signatures)."""
        if self._recorded is None:
            from custodian.audit import recorded_settings

            self._recorded = recorded_settings(self.log)
        return self._recorded

    @property
    def policy(self) -> Policy:
        return self.config.policy

    def close(self) -> None:
        if self._home is not None:
            self._home.forget()
            self._home = None
        for b in self._backends.values():
            close = getattr(b, "close", None)
            if close is not None:
                close()
        if self._ksk is not None:
            self._ksk.wipe()
            self._ksk = None
        self.catalog.close()

    # ------------------------------------------------------------ keys of the home

    def load_ksk(self) -> SecretBytes:
        if self._ksk is None:
            check = self.catalog.get_meta("ksk_check")
            if check is None:
                raise CustodianError("the catalog has no root-key check value; it is damaged.")
            self._ksk = self.keyring.load_ksk(check)
        return self._ksk

    def home_actor(self) -> Actor:
        """The home's identity (needs the KSK): init, bootstrap, refusals of unknown people."""
        if self._home is None:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            p = self.catalog.person(HOME)
            k = p.key
            if k is None:
                raise AuditError("the home's signing key is missing from the catalog.")
            with self.sealed.unseal(self.load_ksk(), HOME_KEY) as raw:
                key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw.reveal()))
            logged = self.recorded().home_key_id
            kid = P.key_id(key.public_key().public_bytes_raw())
            if logged and not (kid == k.key_id == logged):
                raise MismatchError(
                    f"the home's signing key in the catalog ({k.key_id[:12]}…) or the sealed "
                    f"store ({kid[:12]}…) is not the one home.init announced "
                    f"({logged[:12]}…); nothing was done. Run 'custodian audit "
                    "reconcile', and restore the catalog and the sealed store from a copy."
                )
            self._home = Actor(HOME, (), k.key_id, key)
        return self._home

    def backend(self, name: str) -> KekBackend:
        if name == "quorum" and name not in self._backends:
            # embedded, like local: a quorum KEK's versions are manifests in the catalog
            from custodian.backends.quorum import QuorumBackend

            self._backends[name] = QuorumBackend(self.catalog)
        if name not in self._backends:
            if name not in self.config.backends:
                raise BackendError(
                    f"backend {name!r} is not configured in {self.home.config}; add a "
                    f"[backends.{name}] section."
                )
            if name == "aws-kms":  # issue 14 (the lead may move this to a registry)
                from custodian.backends import aws_kms

                opts = self.config.backends[name]
                self._backends[name] = aws_kms.from_config(self.catalog, self.config.home_id, opts)
            elif name != "local":
                raise BackendError(
                    f"backend {name!r} is not available in this version of custodian."
                )
            else:
                from custodian.backends.local import LocalBackend

                self._backends[name] = LocalBackend(self.catalog, self.sealed, self.load_ksk)
        return self._backends[name]

    def backend_loaded(self, name: str) -> bool:
        return name in self._backends

    def hmac(self, value: str) -> str:
        """A keyed HMAC standing in the log for a value that is itself sensitive."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"custodian audit hmac v1"
        ).derive(bytes(self.load_ksk().reveal()))
        kid = hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:16]
        return f"hmac-sha256:{kid}:{hmac.new(key, value.encode(), hashlib.sha256).hexdigest()}"

    def now(self) -> str:
        """The service clock as an audit/catalog timestamp."""
        return A.stamp(self.clock())

    # ------------------------------------------------------------ audit plumbing

    def record(
        self,
        actor: Actor,
        action: str,
        subject: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.log.append(
            actor=actor.name,
            key_id=actor.key_id,
            sign=actor.sign,
            action=action,
            subject=subject,
            outcome=outcome,
            details=details,
        )

    def record_refusal(
        self,
        actor: Actor | None,
        action: str,
        subject: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Best effort: a refusal changes nothing, so failing to log it must not hide it."""
        try:
            signer = actor if actor is not None and actor._key is not None else self.home_actor()
            self.record(signer, action, subject, "refused", {**(details or {}), "reason": reason})
        except CustodianError:
            pass

    def refused(
        self,
        by: Actor | None,
        action: str,
        subject: str,
        why: str,
        message: str,
        error: type[CustodianError] = CustodianError,
        details: dict[str, Any] | None = None,
    ) -> CustodianError:
        """Log a refusal and return the error to raise (``raise ctx.refused(...)``)."""
        self.record_refusal(by, action, subject, why, details)
        return error(message)

    @contextmanager
    def audited(
        self, actor: Actor, action: str, subject: str, details: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """One catalog transaction whose audit entry is fsynced before it commits.

        If the body raises a CustodianError the transaction rolls back and a
        refusal is logged; if the audit entry cannot be written, the action
        rolls back and the caller gets an AuditError. If the commit fails after
        the entry was written (a full disk), a compensating entry cancels it and
        the caller gets a CatalogError (:mod:`custodian.service.aborts`).
        """
        d: dict[str, Any] = dict(details or {})
        entry: dict[str, Any] | None = None
        try:
            with self.catalog.transaction():
                yield d
                entry = self.record(actor, action, subject, "ok", d)
        except AuditError:
            raise
        except CustodianError as e:
            if not getattr(e, "logged", False):
                self.record_refusal(actor, action, subject, str(e), d)
            raise
        except Exception as e:
            if entry is None:
                raise
            from custodian.service.aborts import commit_failed

            raise commit_failed(self, actor, entry, e) from None

    def require(
        self, actor: Actor, role: str | None, action: str, subject: str, *, allow_home: bool = False
    ) -> None:
        """Refuse (and log) an actor who is disabled, replaced, or lacks the role."""
        if actor.name == HOME:
            if allow_home:
                return
            reason = "the home identity cannot do this"
        else:
            try:
                p = self.catalog.person(actor.name)
            except NotFoundError:
                p = None
            cur = p.key if p is not None else None
            signer: Actor | None = None  # a stale key must not sign: the home key does
            if p is None or not p.active:
                reason = f"{actor.name} is not an active person in this home"
            elif cur is None or cur.key_id != actor.key_id:
                reason = f"{actor.name}'s signing key was replaced; sign in again"
            elif self._differs_from_log(p, actor, action, subject):
                pass  # raised
            elif role is not None and not p.has(role):
                reason = f"{actor.name} does not hold the {role} role"
                signer = actor
            else:
                return
            self.record_refusal(signer, action, subject, reason, {"claimed_actor": actor.name})
            raise AuthError(f"{reason}; nothing was done.")
        self.record_refusal(None, action, subject, reason)
        raise AuthError(f"{reason}; nothing was done.")

    # ------------------------------------------------------------ the signed log

    def log_state(self) -> LogState:
        """The home as the signed log says it is (signatures checked), with the
        configuration held to it: a policy changed by another process is read again."""
        from custodian.service.reconcile import config_refusal

        st = self.ledger.verified()
        if config_refusal(self.config, st, self.home.config) is not None:
            fresh = Config.load(self.home.config)
            refusal = config_refusal(fresh, st, self.home.config)
            if refusal is not None:
                raise refusal
            self.config = fresh
        return st

    def check_open(self) -> None:
        """At open: the catalog belongs to this home, and the configuration's policy and
        demo flag are the ones the log records (read without signatures: no cryptography
        for a listing; each decision checks them again with signatures)."""
        meta = self.catalog.get_meta("home_id")
        if meta != self.config.home_id:
            raise MismatchError(
                f"the catalog {self.home.catalog} belongs to home {meta or '(none)'}, not to "
                f"this one ({self.config.home_id}); nothing was read or changed. Restore this "
                "home's catalog from a copy."
            )
        rec = self.recorded()
        if not rec.readable or not rec.home_id:
            return  # verify names what is wrong; every decision refuses until it is fixed
        msg = self.config.recorded_mismatch(
            rec.home_id, rec.demo, rec.policy, rec.policy_at, self.home.config
        )
        if msg:
            raise MismatchError(msg)

    def _differs_from_log(self, p: Person, actor: Actor, action: str, subject: str) -> bool:
        """Refuse (raise) when the catalog's record of ``p`` is not the signed log's."""
        from custodian.service.reconcile import person_differences, refuse

        st = self.log_state()
        diffs = person_differences(p, st.people.get(p.name), st)
        if not diffs:
            return False
        self.record_refusal(
            None,
            action,
            subject,
            "the catalog differs from the signed log",
            {"claimed_actor": actor.name, "differences": [str(d) for d in diffs[:10]]},
        )
        raise refuse(diffs, f"{action} by {actor.name}")

    def check_kek(self, kek: Kek, version: int, by: Actor | None, action: str) -> None:
        """Before a wrap to (or a rewrap under) ``kek`` ``version``: its public key,
        fingerprint, suite and state are the ones signed entries recorded."""
        from custodian.service.reconcile import kek_differences, refuse

        st = self.log_state()
        diffs = kek_differences(kek, st, version)
        if diffs:
            self.record_refusal(
                by,
                action,
                f"kek:{kek.name}/v{version}",
                "the catalog differs from the signed log",
                {"differences": [str(d) for d in diffs[:10]]},
            )
            raise refuse(diffs, f"{action} under KEK {kek.name} v{version}")

    def check_request(self, r: A.Request, by: Actor | None, action: str) -> None:
        """Before a decision on ``r``: the catalog's request and its decisions are the
        log's (a decision added to the catalog would count towards a quorum)."""
        from custodian.service.reconcile import refuse, request_differences

        st = self.log_state()
        diffs = request_differences(r, st.requests.get(r.id))
        if diffs:
            self.record_refusal(
                by,
                action,
                f"request:{r.id}",
                "the catalog differs from the signed log",
                {"differences": [str(d) for d in diffs[:10]]},
            )
            raise refuse(diffs, f"{action} on request {r.id[:8]}")

    def session_differs(self, s: A.Session) -> str:
        """Why the catalog's restore session is not one a quorum opened ('' if it is)."""
        from custodian.service.reconcile import session_differences

        st = self.log_state()
        diffs = session_differences(s, st.requests.get(s.request))
        return f"the catalog differs from the signed log ({diffs[0]})" if diffs else ""

    # ------------------------------------------------------------ TOTP

    def check_totp(
        self, actor: Actor, code: str, action: str = "totp.check", subject: str | None = None
    ) -> int:
        """Accept ``code`` for ``actor`` once: current step or one either side, never reused.

        Call inside the transaction of the action it confirms, or on its own (the step
        is then burned at once). A refusal is logged under ``action`` and ``subject``
        (default ``person:<name>``). Every check counts against the person's attempts
        (:mod:`custodian.service.attempts`): while they must wait, no code is even
        looked at, and a wrong code counts even though the action rolls back.
        """
        if self.catalog.in_transaction():
            return self._check_totp(actor, code, action, subject or f"person:{actor.name}")
        with self.catalog.transaction():  # attempts of one person queue on its lock
            return self._check_totp(actor, code, action, subject or f"person:{actor.name}")

    def _check_totp(self, actor: Actor, code: str, action: str, subject: str) -> int:
        p = self.catalog.person(actor.name)
        if p.totp_generation == 0:
            raise AuthError(f"{actor.name} has no TOTP secret (a service identity cannot confirm).")
        self.attempts.gate(actor.name, action, subject, actor)
        with self.sealed.unseal(self.load_ksk(), totp_name(actor.name, p.totp_generation)) as s:
            step = P.match_step(s, code, self.clock())
        if step is None:
            more = self.attempts.count_failure(actor.name, "totp")
            self.record_refusal(actor, action, subject, "TOTP code did not match")
            err = AuthError(
                "that code is not valid now (mistyped, or older than 30 seconds); nothing was "
                "done. Type the code your authenticator shows now." + more
            )
            err.logged = True
            raise err
        if not self.catalog.use_totp_step(actor.name, step):
            # a code that was right a moment ago is not a guess: not counted
            self.record_refusal(actor, action, subject, "TOTP code replayed", {"step": step})
            wait = P.TOTP_PERIOD - int(self.clock()) % P.TOTP_PERIOD
            err = AuthError(
                "that code was already used (a code counts once); nothing was done. Wait "
                f"about {wait} s for the next code and try again."
            )
            err.logged = True
            raise err
        self.attempts.succeeded(actor.name, "totp")
        return step

    def confirm(self, by: Actor, code: str | None, action: str, subject: str) -> int:
        """The fresh TOTP code that confirms a key ceremony step (inside its transaction)."""
        if not code:
            raise AuthError(
                f"{action} needs a fresh TOTP code from {by.name}'s authenticator; nothing "
                "was done."
            )
        return self.check_totp(by, code, action, subject)


def totp_name(person: str, generation: int) -> str:
    """The sealed-store name of a person's TOTP secret of one generation."""
    return f"totp/{person}/g{generation}"


def policy_dict(p: Policy) -> dict[str, int]:
    """The policy as the ``home.init`` entry records it (every setting, as integers)."""
    return p.values()
