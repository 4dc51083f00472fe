"""The one facade that the CLI and the screens call.

Screens and the CLI never open the catalog, the sealed store or the keyring
themselves; they hold a :class:`Service` and call its methods. Methods that
take time accept plain callbacks (``progress``) so the caller can show
progress in its own way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from custodian import approvals as A
from custodian import people as P
from custodian import rotation as R
from custodian.audit import AuditError, AuditLog, VerifyResult
from custodian.backends.base import DekRef, Health, KekBackend
from custodian.catalog import Backup, Catalog, Kek, KekVersion, Person, utcnow
from custodian.config import DEFAULT_SUITE, SUITES, Config, Policy
from custodian.errors import (
    BackendError,
    CatalogError,
    ConflictError,
    ContainerError,
    CustodianError,
    NotFoundError,
    UnwrapError,
)
from custodian.home import Home
from custodian.keystore import Keyring, SealedStore, ksk_check_value
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes, new_dek

if TYPE_CHECKING:
    from custodian import container

# Cryptographic modules are imported where they are used, so that listing
# commands start fast (``custodian kek list`` needs no cryptography at all).
DEFAULT_CHUNK = 1024 * 1024  # custodian.container.DEFAULT_CHUNK, checked by a test

Progress = Callable[[int, int], None]
HOME = "home"  # the home's own identity: signs init, bootstrap enrolment, refused sign-ins
HOME_KEY = "home/signing-key"


@dataclass
class PendingEnrolment:
    """An enrolment (or TOTP replacement) waiting for its first code.

    Holds the TOTP secret and the new key blob in memory only; nothing is
    stored until :meth:`Service.complete_enrolment` accepts a code.
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


@dataclass(frozen=True)
class Status:
    home: Path
    home_id: str
    demo: bool
    keyring: str
    backends: tuple[Health, ...]
    keks: tuple[Kek, ...]
    backup_count: int
    policy: Policy


class Service:
    """Everything custodian does, for one home."""

    def __init__(self, home: Home, config: Config, catalog: Catalog) -> None:
        self.home = home
        self.config = config
        self.catalog = catalog
        self.keyring = Keyring(config.keyring_backend, home.keyring_dir, config.home_id)
        self.sealed = SealedStore(home.sealed)
        self.audit = AuditLog(home.audit)
        self._ksk: SecretBytes | None = None
        self._backends: dict[str, KekBackend] = {}
        self._home: Actor | None = None
        # Seconds since the epoch: TOTP steps and request/session expiry follow it.
        # Tests replace it to move time on; nothing else should.
        self.clock: Callable[[], float] = time.time

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Service:
        """Open an existing home after checking it is there and private."""
        h = Home.resolve(home)
        h.check()
        cfg = Config.load(h.config)
        return cls(h, cfg, Catalog(h.catalog))

    @classmethod
    def init(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        kek: str = "backups",
        suite: str = DEFAULT_SUITE,
        keyring_backend: str = "system",
        demo: bool = False,
    ) -> Service:
        """Create a home: configuration, catalog, sealed store, KSK in the keyring, a first KEK.

        The keyring is checked before anything is written, so a machine without
        a usable keyring is told so and left with no half-made home.
        """
        h = Home.resolve(home)
        cfg = Config.new(keyring_backend=keyring_backend, default_kek=kek, suite=suite, demo=demo)
        if keyring_backend == "system":
            Keyring("system", h.keyring_dir, cfg.home_id)._get()  # raises a clear KeyringError
        h.create()
        try:
            catalog = Catalog(h.catalog, create=True)
            svc = cls(h, cfg, catalog)
            ksk = SecretBytes.random(32, "KSK")
            svc.keyring.store_ksk(ksk)
            with catalog.transaction():
                catalog.set_meta("home_id", cfg.home_id)
                catalog.set_meta("ksk_check", ksk_check_value(ksk))
                catalog.set_meta("created_at", utcnow())
            svc._ksk = ksk
            svc._genesis()
            svc.create_kek(
                kek, by=svc._home_actor(), suite=suite, purpose="default KEK for backups"
            )
            cfg.save(h.config)  # written last: its presence marks a complete home
        except BaseException:
            _remove_partial_home(h)
            raise
        return svc

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

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ keys

    def _load_ksk(self) -> SecretBytes:
        if self._ksk is None:
            check = self.catalog.get_meta("ksk_check")
            if check is None:
                raise CustodianError("the catalog has no root-key check value; it is damaged.")
            self._ksk = self.keyring.load_ksk(check)
        return self._ksk

    # ------------------------------------------------------------ audit plumbing

    def _genesis(self) -> None:
        """Make the home's own signing key and write the first audit entry."""
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes_raw()
        kid = P.key_id(pub)
        with SecretBytes(key.private_bytes_raw(), "home key") as raw:
            self.sealed.seal(self._load_ksk(), HOME_KEY, raw)
        self._home = Actor(HOME, (), kid, key)
        with self.catalog.transaction():
            self.catalog.add_person(HOME, (), "home")
            self.catalog.add_signing_key(HOME, kid, pub, "sealed")
            self._record(
                self._home,
                "home.init",
                f"home:{self.config.home_id}",
                details={
                    "home_id": self.config.home_id,
                    "key_id": kid,
                    "public_key": base64.b64encode(pub).decode(),
                    "keyring": self.config.keyring_backend,
                    "policy": _policy_dict(self.config.policy),
                },
            )

    def _home_actor(self) -> Actor:
        """The home's identity (needs the KSK): init, bootstrap, refusals of unknown people."""
        if self._home is None:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            p = self.catalog.person(HOME)
            k = p.key
            if k is None:
                raise AuditError("the home's signing key is missing from the catalog.")
            with self.sealed.unseal(self._load_ksk(), HOME_KEY) as raw:
                key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(raw.reveal()))
            self._home = Actor(HOME, (), k.key_id, key)
        return self._home

    def _record(
        self,
        actor: Actor,
        action: str,
        subject: str,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.audit.append(
            actor=actor.name,
            key_id=actor.key_id,
            sign=actor.sign,
            action=action,
            subject=subject,
            outcome=outcome,
            details=details,
        )

    def _record_refusal(
        self,
        actor: Actor | None,
        action: str,
        subject: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Best effort: a refusal changes nothing, so failing to log it must not hide it."""
        try:
            signer = actor if actor is not None and actor._key is not None else self._home_actor()
            self._record(signer, action, subject, "refused", {**(details or {}), "reason": reason})
        except CustodianError:
            pass

    @contextmanager
    def _audited(
        self, actor: Actor, action: str, subject: str, details: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """One catalog transaction whose audit entry is fsynced before it commits.

        If the body raises a CustodianError the transaction rolls back and a
        refusal is logged; if the audit entry cannot be written, the action
        rolls back and the caller gets an AuditError.
        """
        d: dict[str, Any] = dict(details or {})
        try:
            with self.catalog.transaction():
                yield d
                self._record(actor, action, subject, "ok", d)
        except AuditError:
            raise
        except CustodianError as e:
            if not getattr(e, "logged", False):
                self._record_refusal(actor, action, subject, str(e), d)
            raise

    def _require(
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
            elif role is not None and not p.has(role):
                reason = f"{actor.name} does not hold the {role} role"
                signer = actor
            else:
                return
            self._record_refusal(signer, action, subject, reason, {"claimed_actor": actor.name})
            raise AuthError(f"{reason}; nothing was done.")
        self._record_refusal(None, action, subject, reason)
        raise AuthError(f"{reason}; nothing was done.")

    def _hmac(self, value: str) -> str:
        """A keyed HMAC standing in the log for a value that is itself sensitive."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"custodian audit hmac v1"
        ).derive(bytes(self._load_ksk().reveal()))
        kid = hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:16]
        return f"hmac-sha256:{kid}:{hmac.new(key, value.encode(), hashlib.sha256).hexdigest()}"

    def backend(self, name: str) -> KekBackend:
        if name not in self._backends:
            if name not in self.config.backends:
                raise BackendError(
                    f"backend {name!r} is not configured in {self.home.config}; add a "
                    f"[backends.{name}] section."
                )
            if name != "local":
                raise BackendError(
                    f"backend {name!r} is not available in this version of custodian."
                )
            from custodian.backends.local import LocalBackend

            self._backends[name] = LocalBackend(self.catalog, self.sealed, self._load_ksk)
        return self._backends[name]

    def status(self) -> Status:
        import sqlite3

        try:
            return Status(
                home=self.home.path,
                home_id=self.config.home_id,
                demo=self.config.demo,
                keyring=self.keyring.description,
                backends=tuple(self._health(n) for n in self.config.backends),
                keks=tuple(self.catalog.keks()),
                backup_count=self.catalog.backup_count(),
                policy=self.config.policy,
            )
        except sqlite3.Error as e:
            raise CatalogError(
                f"the catalog {self.home.catalog} could not be read ({e}); nothing was "
                "changed. Check the disk, or restore the catalog from its last copy."
            ) from None

    def _health(self, name: str) -> Health:
        if name == "local" and name not in self._backends:
            # Nothing can be down in the embedded backend; saying so without loading
            # it keeps cryptography out of the dashboard's first frame.
            from custodian.backends.base import EMBEDDED

            return Health(name, True, EMBEDDED)
        return self.backend(name).health()

    def keks(self) -> list[Kek]:
        return self.catalog.keks()

    def kek(self, name: str) -> Kek:
        return self.catalog.kek(name)

    def create_kek(
        self,
        name: str,
        *,
        by: Actor,
        backend: str = "local",
        suite: str | None = None,
        purpose: str = "",
        code: str | None = None,
    ) -> Kek:
        """A new KEK with its first version. A custodian confirms with a fresh TOTP code
        (``code``); only the home identity, at ``init``, creates one without."""
        suite = suite or self.config.default_suite
        self._require(by, "custodian", "kek.create", f"kek:{name}", allow_home=True)
        purpose = " ".join(purpose.split())
        if len(purpose) > 200:
            raise CustodianError("the purpose is longer than 200 characters; shorten it.")
        from custodian.container import KEK_NAME_RE

        if not KEK_NAME_RE.fullmatch(name):
            raise CustodianError(
                f"{name!r} is not a valid KEK name: use 1 to 64 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit."
            )
        if suite not in SUITES:
            raise CustodianError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}.")
        # Names that differ only in case would name the same sealed key file on
        # the local backend (and confuse people): one spelling per name.
        clash = [k.name for k in self.catalog.keks() if k.name.lower() == name.lower()]
        if clash:
            raise ConflictError(
                f"a KEK named {clash[0]!r} exists; KEK names must differ in more than case. "
                "Nothing was created."
            )
        be = self.backend(backend)
        with self._audited(
            by,
            "kek.create",
            f"kek:{name}",
            {"backend": backend, "suite": suite, "purpose": purpose},
        ) as d:
            if by.name != HOME:
                d["step"] = self._confirm(by, code, "kek.create", f"kek:{name}")
            self.catalog.add_kek(name, backend, suite, purpose)
            mat = be.create_version(name, suite, 1)
            self.catalog.add_kek_version(name, 1, mat.fingerprint, mat.public_key, self._now())
            d.update(version=1, fingerprint=mat.fingerprint)
        return self.catalog.kek(name)

    def _confirm(self, by: Actor, code: str | None, action: str, subject: str) -> int:
        """The fresh TOTP code that confirms a key ceremony step (inside its transaction)."""
        if not code:
            raise AuthError(
                f"{action} needs a fresh TOTP code from {by.name}'s authenticator; nothing "
                "was done."
            )
        return self.check_totp(by, code, action, subject)

    def add_kek_version(self, name: str, *, by: Actor) -> KekVersion:
        """Create the next version of a KEK without a rewrap job (demo builder, tests).

        People rotate with :meth:`rotate`, which asks a TOTP code and starts the
        rewrap job; this lower step exists for sample data.
        """
        self._require(by, "custodian", "kek.version.create", f"kek:{name}")
        kek = self.catalog.kek(name)
        be = self.backend(kek.backend)
        version = kek.current_version + 1
        with self._audited(by, "kek.version.create", f"kek:{name}", {"version": version}) as d:
            mat = be.create_version(name, kek.suite, version)
            self.catalog.add_kek_version(
                name, version, mat.fingerprint, mat.public_key, self._now()
            )
            d["fingerprint"] = mat.fingerprint
        return self.catalog.kek_version(name, version)

    # ------------------------------------------------------------ rotation

    def rotate_preview(
        self, name: str, *, measure: bool = True, batch_size: int = R.DEFAULT_BATCH
    ) -> R.RotationPreview:
        """What :meth:`rotate` would do: census per version, DEKs to rewrap, and a time
        estimate from what is measured here and now: the suite's rate with throwaway
        keys, one fsync in the audit directory (each batch commits one), and the start
        of the worker processes when the job would use them."""
        k = self.catalog.kek(name)
        rate = batch_s = start_s = 0.0
        workers = self._workers_for(k.backend, k.dek_count, batch_size)
        if measure and k.backend == "local":
            from custodian.backends.local import measure_rewrap_rate

            rate = measure_rewrap_rate(k.suite) * workers * (0.8 if workers > 1 else 1.0)
            batch_s = 2 * _fsync_seconds(self.home.audit) + 0.002
            start_s = 0.4 if workers > 1 else 0.0
        return R.RotationPreview(
            kek=k.name,
            backend=k.backend,
            suite=k.suite,
            current_version=k.current_version,
            new_version=k.current_version + 1,
            census={v.version: v.dek_count for v in k.versions},
            to_rewrap=k.dek_count,
            rate=rate,
            workers=workers,
            unfinished=R.running_job(self.catalog.db, k.name),
            batch_size=batch_size,
            batch_seconds=batch_s,
            start_seconds=start_s,
        )

    @staticmethod
    def rewrap_workers(backend: str) -> int:
        """Worker processes a rewrap on ``backend`` uses by default (one per CPU, at most 8;
        one for backends without a pool)."""
        if backend == "local":
            return max(1, min(len(os.sched_getaffinity(0)), 8))
        return 1

    def _workers_for(
        self, backend: str, pending: int, batch_size: int, asked: int | None = None
    ) -> int:
        """How many workers a job of ``pending`` DEKs gets: a pool costs more to start than
        a few batches take, so under four batches it runs in this process."""
        n = asked if asked is not None else self.rewrap_workers(backend)
        return 1 if pending < 4 * batch_size or backend != "local" else max(1, n)

    def rotate(self, name: str, code: str | None, *, by: Actor) -> R.RewrapJob:
        """Rotate KEK ``name``: a new version that wraps every new DEK from now on, and a
        rewrap job over every DEK under older versions (run it with :meth:`rewrap`).

        A custodian confirms with a fresh TOTP code. A job still running for this
        KEK is superseded: the new one covers its DEKs too.
        """
        subject = f"kek:{name}"
        self._require(by, "custodian", "kek.rotate", subject)
        k = self.catalog.kek(name)
        be = self.backend(k.backend)
        version = k.current_version + 1
        db = self.catalog.db
        with self._audited(by, "kek.rotate", subject, {"version": version}) as d:
            d["step"] = self._confirm(by, code, "kek.rotate", subject)
            old = R.running_job(db, name)
            mat = be.create_version(name, k.suite, version)
            self.catalog.add_kek_version(
                name, version, mat.fingerprint, mat.public_key, self._now()
            )
            total = R.pending_count(db, name, version)
            j = R.add_job(db, name, version, by.name, total, self._now())
            d.update(
                fingerprint=mat.fingerprint,
                job=j.id,
                to_rewrap=total,
                census={str(v.version): v.dek_count for v in k.versions},
                superseded=old.id if old is not None else None,
            )
        return j

    def rewrap_jobs(self, name: str | None = None) -> list[R.RewrapJob]:
        """Every rewrap job (of KEK ``name``), oldest first: the rotation history."""
        return R.jobs(self.catalog.db, name)

    def rewrap_failures(self, job_id: str | None = None) -> list[R.RewrapFailure]:
        return R.failures(self.catalog.db, job_id)

    def rewrap(
        self,
        name: str,
        *,
        by: Actor,
        workers: int | None = None,
        batch_size: int = R.DEFAULT_BATCH,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_failure: Callable[[R.RewrapFailure], None] | None = None,
    ) -> R.RewrapReport:
        """Run (or resume) the rewrap job of KEK ``name`` until every DEK under an older
        version is rewrapped to the current one, or ``cancelled()`` says stop.

        Resumes from the job's cursor after a crash, a kill or a cancel; with no
        running job and DEKs still under older versions (failures of an earlier
        job, imports), a new job starts; with nothing to do it changes nothing.
        A DEK that fails is recorded with its reason and the job carries on.
        Custodians run it (it unwraps with the old versions' private keys).
        """
        subject = f"kek:{name}"
        self._require(by, "custodian", "kek.rewrap", subject)
        k = self.catalog.kek(name)
        db = self.catalog.db
        target = k.current_version
        j = R.running_job(db, name)
        if j is not None and j.target_version != target:
            j = None  # cannot happen through rotate(), which supersedes; be safe
        if j is None:
            total = R.pending_count(db, name, target)
            if total == 0:
                return R.RewrapReport("", name, target, 0, finished=True)
            with self._audited(by, "kek.rewrap.start", subject, {"version": target}) as d:
                j = R.add_job(db, name, target, by.name, total, self._now())
                d.update(job=j.id, to_rewrap=total)
        be = self.backend(k.backend)
        n = self._workers_for(
            k.backend, R.pending_count(db, name, target, j.cursor), batch_size, workers
        )
        rewrapper: R.Rewrapper
        if n > 1:
            from custodian.backends.local import LocalBackend, ProcessRewrapper

            assert isinstance(be, LocalBackend)
            rewrapper = ProcessRewrapper(be, name, target, n)
        else:
            rewrapper = R.InlineRewrapper(be, target)
        with self.catalog.transaction():
            R.count_run(db, j.id, self._now())
            self._record(
                by,
                "kek.rewrap.run",
                subject,
                details={"job": j.id, "version": target, "cursor": j.cursor, "workers": n},
            )

        def record_batch(
            job: R.RewrapJob, first: str, last: str, done: int, fails: list[R.RewrapFailure]
        ) -> None:
            self._record(
                by,
                "kek.rewrap.batch",
                subject,
                "ok" if not fails else "partial",
                {
                    "job": job.id,
                    "version": job.target_version,
                    "first": first,
                    "last": last,
                    "rewrapped": done,
                    "failed": [{"backup": f.backup, "reason": f.reason} for f in fails],
                },
            )

        try:
            report = R.run_job(
                db,
                self.catalog.transaction,
                R.job(db, j.id),
                rewrapper,
                record_batch=record_batch,
                now=self._now,
                batch_size=batch_size,
                progress=progress,
                cancelled=cancelled,
                on_failure=on_failure,
            )
        finally:
            rewrapper.close()
        report.remaining = R.pending_count(db, name, target)
        failed_left = R.failures_remaining(db, j.id, target)
        if not report.cancelled:
            with self.catalog.transaction():
                R.finish_job(db, j.id, self._now())
                cur = R.job(db, j.id)
                self._record(
                    by,
                    "kek.rewrap.done",
                    subject,
                    "ok" if report.remaining == 0 else "partial",
                    {
                        "job": j.id,
                        "version": target,
                        "rewrapped": cur.rewrapped,
                        "failed": cur.failed,
                        "remaining": report.remaining,
                        "failed_remaining": failed_left,
                    },
                )
            report.finished = True
        else:
            with self.catalog.transaction():
                cur = R.job(db, j.id)
                self._record(
                    by,
                    "kek.rewrap.pause",
                    subject,
                    details={"job": j.id, "cursor": cur.cursor, "remaining": report.remaining},
                )
        return report

    def retire_version(self, name: str, version: int, code: str | None, *, by: Actor) -> KekVersion:
        """Retire a version: it unwraps nothing from now on. Refused while its census is
        above zero, for the current version, and for a version not active."""
        subject = f"kek:{name}/v{version}"
        action = "kek.version.retire"
        self._require(by, "custodian", action, subject)
        k = self.catalog.kek(name)
        with self._audited(by, action, subject, {"version": version}) as d:
            v = self.catalog.kek_version(name, version)  # under the write lock
            if v.state != "active":
                raise ConflictError(
                    f"KEK {name} v{version} is already {v.state}; nothing was done."
                )
            if version == k.current_version:
                raise ConflictError(
                    f"v{version} is the current version of KEK {name} and wraps every new DEK; "
                    "rotate first, then retire it once its census is zero. Nothing was done."
                )
            if v.dek_count > 0:
                raise ConflictError(
                    f"KEK {name} v{version} still wraps {v.dek_count:,} DEK(s); retiring it "
                    f"would make them unreadable. Run 'custodian kek rewrap {name}' (and look "
                    "at its failures) until the census is zero. Nothing was done."
                )
            d["step"] = self._confirm(by, code, action, subject)
            self.catalog.set_version_state(name, version, "retired", self._now())
            d.update(fingerprint=v.fingerprint, census=0)
            self.backend(k.backend).retire(name, version)
        return self.catalog.kek_version(name, version)

    def request_destroy(self, name: str, version: int, reason: str, *, by: Actor) -> A.Request:
        """Ask for a retired version's key material to be destroyed (custodians).

        Allowed once the version has been retired for the policy's waiting period;
        two other custodians approve with TOTP (:meth:`approve`), and at quorum the
        key material is destroyed. Refused while any DEK is under the version.
        """
        action = "kek.destroy.request"
        subject = f"kek:{name}/v{version}"
        self._require(by, "custodian", action, subject)
        reason = " ".join(reason.split())
        if not reason:
            raise self._refused(
                by,
                action,
                subject,
                "no reason given",
                "a destruction request needs a reason (--reason TEXT); nothing was done.",
            )
        self._destroy_allowed(name, version, by, action, subject)
        q = self.config.policy.approval_quorum
        others = [
            p.name for p in self.people() if p.active and p.has("custodian") and p.name != by.name
        ]
        if len(others) < q:
            raise self._refused(
                by,
                action,
                subject,
                f"only {len(others)} other active custodian(s), the quorum is {q}",
                f"destroying a key needs {q} custodians other than {by.name} to approve, and "
                f"this home has {len(others)} ({', '.join(others) or 'none'}); enrol another "
                "custodian first. Nothing was done.",
                ConflictError,
            )
        now = self.clock()
        expires = A.stamp(now + 3600 * self.config.policy.request_hours)
        rid = A.new_id()
        v = self.catalog.kek_version(name, version)
        payload = {"kek": name, "version": version, "reason": reason, "fingerprint": v.fingerprint}
        with self._audited(
            by,
            action,
            f"request:{rid}",
            {
                "kind": "kek.destroy",
                **payload,
                "expires_at": expires,
                "quorum": self.config.policy.approval_quorum,
            },
        ):
            A.add_request(
                self.catalog.db, rid, "kek.destroy", by.name, A.stamp(now), expires, payload
            )
        return self.request(rid)

    def _destroy_allowed(
        self, name: str, version: int, by: Actor | None, action: str, subject: str
    ) -> KekVersion:
        v = self.catalog.kek_version(name, version)
        why = ""
        if v.state != "retired":
            why = f"KEK {name} v{version} is {v.state}; only a retired version can be destroyed" + (
                " (retire it first)" if v.state == "active" else ""
            )
        elif v.dek_count > 0:
            why = f"KEK {name} v{version} still wraps {v.dek_count:,} DEK(s)"
        else:
            from datetime import datetime

            wait = self.config.policy.retirement_wait_days
            retired = (
                datetime.strptime(v.retired_at or "", "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=UTC)
                .timestamp()
            )
            ready = retired + 86400 * wait
            if self.clock() < ready:
                why = (
                    f"KEK {name} v{version} was retired at {(v.retired_at or '')[:19]}Z; the "
                    f"waiting period of {wait} day(s) ends {A.stamp(ready)[:19]}Z"
                )
        if why:
            err = self._refused(
                by, action, subject, why, f"{why}. Nothing was done.", ConflictError
            )
            err.logged = True
            raise err
        return v

    def _destroy_at_quorum(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """Inside the approving transaction: check again, mark destroyed, say so in the entry.
        The key material itself goes after the commit (:meth:`_destroy_material`)."""
        name, version = str(r.payload["kek"]), int(r.payload["version"])
        self._destroy_allowed(name, version, by, "kek.destroy", f"kek:{name}/v{version}")
        self.catalog.set_version_state(name, version, "destroyed", self._now())
        A.set_request_state(self.catalog.db, r.id, "done", self._now())
        details.update(state="done", destroyed=f"{name}/v{version}")

    def _destroy_material(self, r: A.Request) -> None:
        name, version = str(r.payload["kek"]), int(r.payload["version"])
        k = self.catalog.kek(name)
        try:
            self.backend(k.backend).destroy(name, version)
        except (CustodianError, OSError) as e:
            raise BackendError(
                f"KEK {name} v{version} is recorded as destroyed, but its key material could "
                f"not be removed yet ({e}); custodian erases it at the next read of the "
                "requests (custodian restore list), or remove it by hand."
            ) from None

    # ------------------------------------------------------------ backups

    def encrypt_backup(
        self,
        src: Path | BinaryIO,
        dst: Path,
        *,
        by: Actor,
        kek: str | None = None,
        label: str | None = None,
        force: bool = False,
        chunk_size: int = DEFAULT_CHUNK,
        progress: Progress | None = None,
        created_at: str | None = None,
    ) -> Backup:
        """Encrypt ``src`` into a new container at ``dst`` under a fresh DEK.

        The DEK is wrapped under the KEK's current version (no secret needed on
        the local backend) and the backup is recorded in the catalog only after
        the container is complete and fsynced.
        """
        from custodian import container

        self._require(by, "operator", "backup.encrypt", f"file:{Path(dst).name}")
        k = self.catalog.kek(kek or self.config.default_kek)
        version = k.current_version
        be = self.backend(k.backend)
        backup_id = uuid.uuid4()
        dst = Path(dst).absolute()
        if isinstance(src, Path):
            if not src.is_file():
                raise NotFoundError(f"{src} is not a readable file; nothing was written.")
            total = src.stat().st_size
            name = label or src.name
        else:
            total = 0
            name = label or "stdin"
        result: list[container.Written] = []
        with new_dek() as dek:
            wrapped = be.wrap(k.name, version, [(str(backup_id), dek)])[0]

            def fill(out: BinaryIO) -> None:
                def step(done: int) -> None:
                    if progress is not None:
                        progress(done, max(total, done))

                if isinstance(src, Path):
                    with open(src, "rb", buffering=0) as f:
                        result.append(
                            self._encrypt(
                                f,
                                out,
                                dek,
                                backup_id,
                                be,
                                k,
                                version,
                                wrapped,
                                chunk_size,
                                step,
                                self.config.container_digest,
                            )
                        )
                else:
                    result.append(
                        self._encrypt(
                            src,
                            out,
                            dek,
                            backup_id,
                            be,
                            k,
                            version,
                            wrapped,
                            chunk_size,
                            step,
                            self.config.container_digest,
                        )
                    )

            # a file that --force replaces keeps a second name until the entry is written
            kept = _link_aside(dst) if force else None
            try:
                container.write_new_file(dst, force, fill)
            except BaseException:
                _unlink(kept)
                raise
        w = result[0]
        b = Backup(
            id=str(backup_id),
            label=name,
            created_at=created_at or utcnow(),
            size=w.plaintext_size,
            container_size=w.container_size,
            container_sha256=w.sha256,
            location=str(dst),
            kek=k.name,
            kek_version=version,
            wrapped_dek=wrapped,
            chunk_size=chunk_size,
        )
        try:
            with self._audited(by, "backup.encrypt", f"backup:{b.id}", _backup_details(b)):
                self.catalog.add_backups([b])
        except BaseException:
            if kept is not None:
                os.replace(kept, dst)  # the action did not happen: the replaced file is back
            else:
                dst.unlink(missing_ok=True)  # never leave a container the catalog does not know
            raise
        _unlink(kept)
        return b

    @staticmethod
    def _encrypt(
        src: BinaryIO,
        out: BinaryIO,
        dek: SecretBytes,
        backup_id: uuid.UUID,
        be: KekBackend,
        k: Kek,
        version: int,
        wrapped: bytes,
        chunk_size: int,
        step: Callable[[int], None],
        digest: str,
    ) -> container.Written:
        from custodian import container

        return container.encrypt_stream(
            src,
            out,
            dek,
            backup_id=backup_id,
            backend=be.name,
            kek=k.name,
            kek_version=version,
            wrapped_dek=wrapped,
            chunk_size=chunk_size,
            progress=step,
            digest=digest,
        )

    def import_backup(self, path: Path, *, by: Actor, label: str | None = None) -> Backup:
        """Register a container made elsewhere (or a catalog rebuilt from containers).

        The header is parsed and its KEK reference must name a version this home
        has; the container's hash and size are recorded. The header's wrapped
        DEK becomes the catalog's wrapped DEK.
        """
        from custodian import container

        path = Path(path).absolute()
        self._require(by, "operator", "backup.import", f"file:{path.name}")
        if not path.is_file():
            raise NotFoundError(f"{path} is not a readable file; nothing was imported.")

        with open(path, "rb") as f:
            header = container.read_header(f, str(path))
            digest = container.file_digest(f, header, self.config.container_digest, str(path))
            size = f.seek(0, os.SEEK_END)
        try:
            kek = self.catalog.kek(header.kek)
        except NotFoundError:
            raise NotFoundError(
                f"{path} is under KEK {header.kek!r}, which this home does not have; "
                "nothing was imported."
            ) from None
        if kek.backend != header.backend:
            raise ContainerError(
                f"{path} names backend {header.backend!r} but KEK {kek.name} lives in "
                f"{kek.backend!r}; nothing was imported."
            )
        self.catalog.kek_version(kek.name, header.kek_version)  # raises if unknown
        bid = str(header.backup_id)
        try:
            existing = self.catalog.backup(bid)
        except NotFoundError:
            existing = None
        if existing is not None:
            raise ConflictError(
                f"backup {bid} is already in the catalog (at {existing.location}); "
                "nothing was imported."
            )
        b = Backup(
            id=bid,
            label=label or path.name,
            created_at=utcnow(),
            size=-1,
            container_size=size,
            container_sha256=digest,
            location=str(path),
            kek=kek.name,
            kek_version=header.kek_version,
            wrapped_dek=header.wrapped_dek,
            chunk_size=header.chunk_size,
        )
        with self._audited(by, "backup.import", f"backup:{b.id}", _backup_details(b)):
            self.catalog.add_backups([b])
        return b

    def backups(
        self,
        *,
        text: str = "",
        kek: str | None = None,
        version: int | None = None,
        order: str = "created_at",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Backup]:
        """Backups matching a filter, sorted in SQL, one page at a time if asked."""
        return self.catalog.backups(
            text=text,
            kek=kek,
            version=version,
            order=order,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    def count_backups(
        self, *, text: str = "", kek: str | None = None, version: int | None = None
    ) -> int:
        return self.catalog.count_backups(text=text, kek=kek, version=version)

    def backup(self, id_or_prefix: str) -> Backup:
        return self.catalog.find_backup(id_or_prefix)

    def backup_count(self) -> int:
        return self.catalog.backup_count()

    # ------------------------------------------------------------ people

    def people(self, *, include_home: bool = False) -> list[Person]:
        return [p for p in self.catalog.people() if include_home or p.kind != "home"]

    def person(self, name: str) -> Person:
        return self.catalog.person(name)

    def needs_bootstrap(self) -> bool:
        """True while no active custodian exists: the home identity may enrol the first."""
        return not any(p.active and p.has("custodian") for p in self.people())

    def begin_enrolment(
        self,
        name: str,
        roles: list[str] | tuple[str, ...],
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
        if name == HOME:
            raise CustodianError(f"{HOME!r} is reserved for the home's own identity.")
        if any(p.name == name for p in self.catalog.people()):
            raise ConflictError(f"{name} is already enrolled; nothing was changed.")
        if service:
            if roles != ("operator",):
                raise CustodianError("a service identity holds the operator role only.")
        elif passphrase is None:
            raise CustodianError("a person needs a passphrase; only service identities may not.")
        key = P.new_signing_key(name, passphrase)
        totp = None if service else P.new_totp_secret()
        return PendingEnrolment(
            name, roles, "service" if service else "person", actor.name, key, totp
        )

    def _enroller(self, by: Actor | None, subject: str) -> Actor:
        if by is None:
            if not self.needs_bootstrap():
                raise AuthError(
                    "this home has custodians: enrolment needs one of them (--as NAME); "
                    "nothing was done."
                )
            return self._home_actor()
        self._require(by, "custodian", "person.enrol", subject)
        return by

    def complete_enrolment(
        self, pending: PendingEnrolment, code: str | None, *, by: Actor | None
    ) -> Person:
        """Check the first code, then store everything and record the enrolment."""
        actor = self._enroller(by, f"person:{pending.name}")
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
        self.keyring.set(f"sign:{pending.name}:{key.key_id}", key.blob)
        with self._audited(
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
            self.catalog.add_person(pending.name, pending.roles, pending.kind)
            self.catalog.add_signing_key(
                pending.name,
                key.key_id,
                key.public_raw,
                "passphrase" if key.blob_protected else "none",
            )
            if pending.totp is not None:
                self.sealed.seal(self._load_ksk(), _totp_name(pending.name, 1), pending.totp)
                self.catalog.set_totp(pending.name, 1)
                if step is not None:
                    self.catalog.use_totp_step(pending.name, step)
        pending.discard()
        return self.catalog.person(pending.name)

    def replace_signing_key(
        self, name: str, passphrase: SecretBytes | None, *, by: Actor
    ) -> Person:
        """A new signing key for ``name`` (lost passphrase, suspected compromise).

        Done by the person themselves or by a custodian. The old public key
        stays known so old entries still verify.
        """
        subject = f"person:{name}"
        self._require(by, None if by.name == name else "custodian", "person.key.replace", subject)
        p = self.catalog.person(name)
        if p.kind == "person" and passphrase is None:
            raise CustodianError("a person's signing key needs a passphrase.")
        old = p.key
        key = P.new_signing_key(name, passphrase)
        self.keyring.set(f"sign:{name}:{key.key_id}", key.blob)
        prot = "passphrase" if key.blob_protected else "none"
        with self._audited(
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
            self.catalog.add_signing_key(name, key.key_id, key.public_raw, prot)
        if by.name == name:
            by.forget()  # the old key signs nothing more
        return self.catalog.person(name)

    def begin_totp_replacement(self, name: str, *, by: Actor) -> PendingEnrolment:
        self._require(
            by, None if by.name == name else "custodian", "person.totp.replace", f"person:{name}"
        )
        p = self.catalog.person(name)
        if p.kind != "person":
            raise CustodianError(f"{name} is a service identity and has no TOTP.")
        return PendingEnrolment(
            name, p.roles, p.kind, by.name, None, P.new_totp_secret(), replace_totp=True
        )

    def complete_totp_replacement(
        self, pending: PendingEnrolment, code: str, *, by: Actor
    ) -> Person:
        subject = f"person:{pending.name}"
        self._require(
            by, None if by.name == pending.name else "custodian", "person.totp.replace", subject
        )
        step = P.match_step(pending.totp, code) if pending.totp else None
        if step is None or pending.totp is None:
            raise AuthError(
                "that code does not match the new authenticator entry; the old "
                "TOTP secret stays in force. Type the code now shown."
            )
        gen = self.catalog.person(pending.name).totp_generation + 1
        with self._audited(by, "person.totp.replace", subject, {"generation": gen}):
            self.sealed.seal(self._load_ksk(), _totp_name(pending.name, gen), pending.totp)
            self.catalog.set_totp(pending.name, gen)
            self.catalog.use_totp_step(pending.name, step)
        old = _totp_name(pending.name, gen - 1)
        if self.sealed.exists(old):
            self.sealed.destroy(old)
        pending.discard()
        return self.catalog.person(pending.name)

    def disable_person(self, name: str, *, by: Actor, reason: str = "") -> Person:
        subject = f"person:{name}"
        self._require(by, "custodian", "person.disable", subject)
        p = self.catalog.person(name)
        if not p.active:
            raise ConflictError(f"{name} is already disabled.")
        others = [q for q in self.people() if q.active and q.has("custodian") and q.name != name]
        if p.has("custodian") and not others:
            self._record_refusal(by, "person.disable", subject, "last active custodian")
            raise CustodianError(
                f"{name} is the last active custodian; enrol another custodian first."
            )
        with self._audited(by, "person.disable", subject, {"reason": reason}):
            self.catalog.set_person_state(name, "disabled")
        return self.catalog.person(name)

    # ------------------------------------------------------------ signing in

    def unlock(self, name: str, passphrase: SecretBytes | None) -> Actor:
        """Unlock a person's signing key (the CLI's --as). Failures are logged."""
        try:
            p = self.catalog.person(name)
        except NotFoundError:
            self._record_refusal(
                None, "person.unlock", f"person:{self._hmac(name)}", "no such person"
            )
            raise AuthError(f"nobody named {name!r} is enrolled; nothing was done.") from None
        subject = f"person:{name}"
        if not p.active or p.kind == "home":
            self._record_refusal(None, "person.unlock", subject, "person is disabled")
            raise AuthError(f"{name} is disabled and cannot act; nothing was done.")
        k = p.key
        blob = self.keyring.get(f"sign:{name}:{k.key_id}") if k else None
        if k is None or blob is None:
            raise AuthError(
                f"{name}'s signing key is not in this keyring ({self.keyring.description}); "
                "use the workstation where they enrolled, or have a custodian replace the key."
            )
        try:
            key = P.open_signing_key(name, k.key_id, blob, passphrase)
        except AuthError as e:
            self._record_refusal(None, "person.unlock", subject, "wrong passphrase")
            raise e from None
        return Actor(name, p.roles, k.key_id, key)

    def check_totp(
        self, actor: Actor, code: str, action: str = "totp.check", subject: str | None = None
    ) -> int:
        """Accept ``code`` for ``actor`` once: current step or one either side, never reused.

        Call inside the transaction of the action it confirms, or on its own
        (the step is then burned at once). A refusal is logged under ``action``
        and ``subject`` (default ``person:<name>``).
        """
        p = self.catalog.person(actor.name)
        if p.totp_generation == 0:
            raise AuthError(f"{actor.name} has no TOTP secret (a service identity cannot confirm).")
        with self.sealed.unseal(self._load_ksk(), _totp_name(actor.name, p.totp_generation)) as s:
            step = P.match_step(s, code, self.clock())
        subject = subject or f"person:{actor.name}"
        if step is None:
            self._record_refusal(actor, action, subject, "TOTP code did not match")
            err = AuthError(
                "that code is not valid now (mistyped, or older than 30 seconds); nothing was "
                "done. Type the code your authenticator shows now."
            )
            err.logged = True
            raise err
        if not self.catalog.use_totp_step(actor.name, step):
            self._record_refusal(actor, action, subject, "TOTP code replayed", {"step": step})
            wait = P.TOTP_PERIOD - int(self.clock()) % P.TOTP_PERIOD
            err = AuthError(
                "that code was already used (a code counts once); nothing was done. Wait "
                f"about {wait} s for the next code and try again."
            )
            err.logged = True
            raise err
        return step

    def sign_in(self, name: str, passphrase: SecretBytes, code: str) -> Actor:
        """TUI sign-in: passphrase unlocks the key, then a fresh TOTP code."""
        actor = self.unlock(name, passphrase)
        if actor.roles == ("operator",) and self.catalog.person(name).kind == "service":
            raise AuthError(f"{name} is a service identity and cannot sign in.")
        try:
            with self.catalog.transaction():
                step = self.check_totp(actor, code, "person.sign_in")
                self._record(actor, "person.sign_in", f"person:{name}", details={"step": step})
        except CustodianError:
            actor.forget()
            raise
        return actor

    def sign_out(self, actor: Actor) -> None:
        """End a session. A key that was replaced, or a person disabled, while
        signed in signs nothing more: the home key records the sign-out then."""
        subject = f"person:{actor.name}"
        try:
            try:
                p = self.catalog.person(actor.name)
                current = p.active and p.key is not None and p.key.key_id == actor.key_id
            except NotFoundError:
                current = False
            if current:
                self._record(actor, "person.sign_out", subject)
            else:
                self._record(
                    self._home_actor(),
                    "person.sign_out",
                    subject,
                    details={"note": "key replaced or person disabled during the session"},
                )
        finally:
            actor.forget()

    def demo_codes(self) -> list[tuple[str, str, int]]:
        """Current TOTP codes of every person, on a demo home only: (name, code, seconds left)."""
        if not self.config.demo:
            raise AuthError("demo codes exist only on a demo home (custodian demo); refused.")
        import time

        now = time.time()
        left = P.TOTP_PERIOD - int(now) % P.TOTP_PERIOD
        out = []
        for p in self.people():
            if p.totp_generation and p.active:
                with self.sealed.unseal(
                    self._load_ksk(), _totp_name(p.name, p.totp_generation)
                ) as s:
                    out.append((p.name, P.hotp(s, P.current_step(now)), left))
        return out

    # ------------------------------------------------------------ audit

    def audit_entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        text: str = "",
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        out = []
        for e in self.audit.entries():
            if "_malformed" in e:
                continue
            if actor and e.get("actor") != actor:
                continue
            if action and not str(e.get("action", "")).startswith(action):
                continue
            if outcome and e.get("outcome") != outcome:
                continue
            if (
                text
                and text.lower()
                not in (str(e.get("subject", "")) + " " + str(e.get("details", ""))).lower()
            ):
                continue
            out.append(e)
        return out[-last:] if last else out

    def audit_verify(
        self,
        *,
        checkpoint: dict[str, Any] | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> VerifyResult:
        from custodian.audit import verify

        return verify(self.audit, checkpoint=checkpoint, progress=progress, cancelled=cancelled)

    def audit_checkpoint(self, *, by: Actor) -> dict[str, Any]:
        """A signed statement of the log's head, to keep outside the home."""
        from custodian.audit import checkpoint_body, sign_checkpoint

        self._require(by, None, "audit.checkpoint", "audit")
        seq, head = self.audit.head()
        cp = sign_checkpoint(
            checkpoint_body(self.config.home_id, seq, head, by.name, by.key_id), by.sign
        )
        self._record(by, "audit.checkpoint", "audit", details={"seq": seq, "head": head})
        return cp

    # ------------------------------------------------------------ dual control

    def _now(self) -> str:
        return A.stamp(self.clock())

    def _refused(
        self,
        by: Actor | None,
        action: str,
        subject: str,
        why: str,
        message: str,
        error: type[CustodianError] = CustodianError,
        details: dict[str, Any] | None = None,
    ) -> CustodianError:
        """Log a refusal and return the error to raise (``raise self._refused(...)``)."""
        self._record_refusal(by, action, subject, why, details)
        return error(message)

    def _find_request(self, id_or_prefix: str, by: Actor | None, action: str) -> A.Request:
        try:
            return A.find_request(self.catalog.db, self.config.policy.approval_quorum, id_or_prefix)
        except NotFoundError as e:
            self._record_refusal(by, action, f"request:{id_or_prefix[:64]}", "no such request")
            raise e from None

    def _housekeep(self) -> None:
        """Expire what is due before a read; a read still works if that cannot be logged."""
        import contextlib

        with contextlib.suppress(CustodianError):
            self.expire_due()
        with contextlib.suppress(CustodianError, OSError):
            self._finish_destructions()

    def _finish_destructions(self) -> None:
        """Erase the key material of versions recorded as destroyed whose erasure did not
        happen (the process ended between the approving commit and the erasure)."""
        from custodian.backends.base import sealed_name

        for k in self.catalog.keks():
            if k.backend != "local":
                continue
            for v in k.versions:
                if v.state == "destroyed" and self.sealed.exists(sealed_name(k.name, v.version)):
                    self.backend("local").destroy(k.name, v.version)

    def expire_due(self) -> list[str]:
        """Mark open requests and open sessions past their expiry as expired (logged by the
        home identity). Returns the ids of the requests that expired. Called at the start
        of every dual-control call; safe to call any time."""
        now = self._now()
        reqs, sessions = A.due(self.catalog.db, now)
        if not reqs and not sessions:
            return []
        home = self._home_actor()
        db = self.catalog.db
        out: list[str] = []
        for rid in reqs:
            with self.catalog.transaction():
                row = db.execute(
                    "SELECT state, expires_at, kind FROM requests WHERE id=?", (rid,)
                ).fetchone()
                if row is None or row[0] != "open" or row[1] > now:
                    continue  # another process got there first
                A.set_request_state(db, rid, "expired", now)
                self._record(
                    home,
                    "request.expire",
                    f"request:{rid}",
                    details={"kind": row[2], "expires_at": row[1]},
                )
            out.append(rid)
        for sid, rid in sessions:
            with self.catalog.transaction():
                s = A.session(db, sid)
                if s is None or s.state != "open" or s.expires_at > now:
                    continue
                A.set_session_state(db, sid, "expired", now)
                A.set_request_state(db, rid, "expired", now)
                self._record(
                    home,
                    "restore.session.expire",
                    f"session:{sid}",
                    details={"request": rid, "expires_at": s.expires_at},
                )
            out.append(rid)
        return out

    def requests(self, state: str | None = None) -> list[A.Request]:
        """Every request (oldest first), or those in ``state``, with decisions, session, results."""
        if state is not None and state not in A.REQUEST_STATES:
            raise CustodianError(
                f"{state!r} is not a request state; use one of {', '.join(A.REQUEST_STATES)}."
            )
        self._housekeep()
        return A.requests(self.catalog.db, self.config.policy.approval_quorum, state)

    def request(self, id_or_prefix: str) -> A.Request:
        """One request by id, unambiguous id prefix, or the id of its session."""
        self._housekeep()
        return A.find_request(self.catalog.db, self.config.policy.approval_quorum, id_or_prefix)

    def inbox(self, name: str) -> list[A.Request]:
        """Open requests that ``name`` (a custodian) may still decide: not theirs, not decided."""
        return [
            r
            for r in self.requests("open")
            if r.requester != name and all(d.custodian != name for d in r.decisions)
        ]

    def request_restore(
        self,
        backups: Sequence[str],
        reason: str,
        target: str | os.PathLike[str],
        *,
        by: Actor,
    ) -> A.Request:
        """Ask for a restore of ``backups`` (ids or unambiguous prefixes) into ``target``.

        Operators and custodians may ask; auditors may not. ``target`` must be an
        existing directory outside the home; it need not be empty, but a file
        already there under a backup's restore name is never replaced (that backup
        fails when the session runs). Each backup must be in the catalog. The file
        name of each backup (its label made safe, else its id) is fixed here, so
        custodians approve exactly what will be written.
        """
        action = "restore.request"
        self._require(by, None, action, "request:new")
        p = self.catalog.person(by.name)
        if not (p.has("operator") or p.has("custodian")):
            raise self._refused(
                by,
                action,
                "request:new",
                f"{by.name} holds neither the operator nor the custodian role",
                f"{by.name} may not request a restore (operators and custodians may); "
                "nothing was done.",
                AuthError,
            )
        reason = " ".join(reason.split())
        given = [str(x).strip() for x in backups if str(x).strip()]
        details: dict[str, Any] = {"kind": "restore", "reason": reason, "target": str(target)}
        if not reason:
            raise self._refused(
                by,
                action,
                "request:new",
                "no reason given",
                "a restore request needs a reason (--reason TEXT): custodians decide on it. "
                "Nothing was done.",
                details=details,
            )
        if len(reason) > 2000:
            raise self._refused(
                by,
                action,
                "request:new",
                "reason too long",
                "the reason is longer than 2,000 characters; shorten it. Nothing was done.",
            )
        if not given:
            raise self._refused(
                by,
                action,
                "request:new",
                "no backup named",
                "name at least one backup to restore; nothing was done.",
                details=details,
            )
        t = Path(target).expanduser()
        if not t.is_dir():
            raise self._refused(
                by,
                action,
                "request:new",
                "target is not an existing directory",
                f"the target {t} is not an existing directory; create it (mode 0700) first. "
                "Nothing was done.",
                NotFoundError,
                details,
            )
        t = t.resolve()
        home = self.home.path.resolve()
        if t == home or home in t.parents:
            raise self._refused(
                by,
                action,
                "request:new",
                "target inside the home",
                f"the target {t} is inside the custodian home; plaintext never goes there. "
                "Choose another directory. Nothing was done.",
                details=details,
            )
        details["target"] = str(t)
        found: list[Backup] = []
        for x in given:
            try:
                b = self.catalog.find_backup(x)
            except NotFoundError as e:
                raise self._refused(
                    by,
                    action,
                    "request:new",
                    f"backup {x[:64]} is not in the catalog",
                    f"{e} Nothing was requested.",
                    NotFoundError,
                    details,
                ) from None
            if all(b.id != f.id for f in found):
                found.append(b)
        files = _restore_names(found)
        ids = [b.id for b in found]
        now = self.clock()
        expires = A.stamp(now + 3600 * self.config.policy.request_hours)
        rid = A.new_id()
        payload = {"backups": ids, "files": files, "reason": reason, "target": str(t)}
        with self._audited(
            by,
            action,
            f"request:{rid}",
            {
                "kind": "restore",
                **payload,
                "expires_at": expires,
                "quorum": self.config.policy.approval_quorum,
            },
        ):
            A.add_request(self.catalog.db, rid, "restore", by.name, A.stamp(now), expires, payload)
        return self.request(rid)

    def approve(self, request_id: str, code: str, *, by: Actor) -> A.Request:
        """A custodian approves, confirmed by a fresh TOTP code. At quorum the request is
        approved and, for a restore, a session opens (for ``session_minutes``)."""
        return self._decide(request_id, code, "approve", "", by)

    def deny(self, request_id: str, code: str, reason: str, *, by: Actor) -> A.Request:
        """A custodian denies, with a reason and a fresh TOTP code. Denial is final."""
        reason = " ".join(reason.split())
        if not reason:
            raise self._refused(
                by,
                "request.deny",
                f"request:{request_id[:64]}",
                "no reason given",
                "a denial needs a reason (--reason TEXT); nothing was done.",
            )
        return self._decide(request_id, code, "deny", reason, by)

    def _decide(
        self, request_id: str, code: str, decision: str, reason: str, by: Actor
    ) -> A.Request:
        action = f"request.{decision}"
        self._require(by, "custodian", action, f"request:{request_id[:64]}")
        self.expire_due()
        rid = self._find_request(request_id, by, action).id
        subject = f"request:{rid}"
        q = self.config.policy.approval_quorum
        db = self.catalog.db
        with self.catalog.transaction():
            r = A.find_request(db, q, rid)  # again, under the write lock
            if r.state != "open":
                raise self._refused(
                    by,
                    action,
                    subject,
                    f"request is {r.state}",
                    f"request {rid[:8]} is {r.state}{_final_note(r)}; nothing was done.",
                    ConflictError,
                )
            if r.requester == by.name:
                raise self._refused(
                    by,
                    action,
                    subject,
                    "the requester cannot decide their own request",
                    f"{by.name} asked for request {rid[:8]} and so cannot {decision} it; "
                    "two other custodians must. Nothing was done.",
                    AuthError,
                )
            earlier = [d for d in r.decisions if d.custodian == by.name]
            if earlier:
                raise self._refused(
                    by,
                    action,
                    subject,
                    f"{by.name} already decided this request",
                    f"{by.name} already {earlier[0].decision}d request {rid[:8]}; a quorum "
                    "needs distinct custodians. Nothing was done.",
                    ConflictError,
                )
            step = self.check_totp(by, code, action, subject)
            now = self._now()
            A.add_decision(db, rid, A.Decision(by.name, decision, now, step, reason))
            details: dict[str, Any] = {"kind": r.kind, "step": step}
            if decision == "deny":
                A.set_request_state(db, rid, "denied", now)
                details.update(reason=reason, state="denied")
            else:
                n = len(r.approvals) + 1
                details.update(approvals=n, quorum=q, state="open")
                if n >= q:
                    A.set_request_state(db, rid, "approved", now)
                    details["state"] = "approved"
                    if r.kind == "kek.destroy":
                        self._destroy_at_quorum(r, by, details)
                    if r.kind == "restore":
                        sid = A.new_id()
                        exp = A.stamp(self.clock() + 60 * self.config.policy.session_minutes)
                        A.add_session(db, A.Session(sid, rid, now, exp, "open", None))
                        details.update(session=sid, session_expires_at=exp)
            self._record(by, action, subject, "ok", details)
        done = A.find_request(db, q, rid)
        if done.kind == "kek.destroy" and done.state == "done":
            self._destroy_material(done)
        return done

    def cancel(self, request_id: str, *, by: Actor, reason: str = "") -> A.Request:
        """The requester or a custodian cancels a request (an open session closes). Final."""
        action = "request.cancel"
        self._require(by, None, action, f"request:{request_id[:64]}")
        self.expire_due()
        rid = self._find_request(request_id, by, action).id
        subject = f"request:{rid}"
        db = self.catalog.db
        with self.catalog.transaction():
            r = A.find_request(db, self.config.policy.approval_quorum, rid)
            if r.final:
                raise self._refused(
                    by,
                    action,
                    subject,
                    f"request is {r.state}",
                    f"request {rid[:8]} is already {r.state}{_final_note(r)}; nothing was done.",
                    ConflictError,
                )
            if by.name != r.requester and not self.catalog.person(by.name).has("custodian"):
                raise self._refused(
                    by,
                    action,
                    subject,
                    f"{by.name} is neither the requester nor a custodian",
                    f"only {r.requester}, who asked, or a custodian may cancel request "
                    f"{rid[:8]}; nothing was done.",
                    AuthError,
                )
            now = self._now()
            details: dict[str, Any] = {
                "kind": r.kind,
                "reason": " ".join(reason.split()),
                "state_before": r.state,
            }
            A.set_request_state(db, rid, "cancelled", now)
            if r.session is not None and r.session.state == "open":
                A.set_session_state(db, r.session.id, "closed", now)
                details["session"] = r.session.id
            self._record(by, action, subject, "ok", details)
        return A.find_request(db, self.config.policy.approval_quorum, rid)

    def run_restore(
        self,
        request_or_session_id: str,
        *,
        by: Actor,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_result: Callable[[A.RestoreResult], None] | None = None,
    ) -> A.RestoreReport:
        """Restore every backup of an approved request into its target, in its open session.

        Only the requester runs it. Each backup is decrypted to a temporary file
        that is renamed into place only after its last chunk authenticated and
        its container hash matched the catalog; a backup that fails leaves
        nothing at the target and the others carry on. Each outcome is recorded
        (catalog and audit log). ``progress(done, total)`` counts plaintext bytes
        over the whole run; ``cancelled()`` is checked between backups (a cancelled
        run keeps the session open, and running again does the rest); ``on_result``
        gets each backup's result as it is recorded. When every backup has been
        tried the session closes and the request is done.
        """
        action = "restore.run"
        self._require(by, None, action, f"request:{request_or_session_id[:64]}")
        self.expire_due()
        r = self._find_request(request_or_session_id, by, action)
        subject = f"request:{r.id}"
        if r.kind != "restore":
            raise self._refused(
                by, action, subject, "not a restore", f"request {r.id[:8]} is not a restore."
            )
        if by.name != r.requester:
            raise self._refused(
                by,
                action,
                subject,
                f"{by.name} is not the requester",
                f"only {r.requester}, who asked for this restore, may run it; nothing was done.",
                AuthError,
            )
        s = r.session
        if s is None or s.state != "open":
            if r.state == "open":
                why = f"not approved yet ({len(r.approvals)} of {r.quorum} approvals)"
            elif s is not None and s.state == "expired":
                why = "its session expired"
            elif r.state == "done":
                why = "its session already ran and closed"
            else:
                why = f"the request is {r.state}"
            raise self._refused(
                by,
                action,
                subject,
                f"no open session: {why}",
                f"request {r.id[:8]} has no open session ({why}); nothing was decrypted. "
                "Ask for a new restore if it is still needed.",
                AuthError,
            )
        target = Path(r.target)
        if not target.is_dir():
            raise self._refused(
                by,
                action,
                subject,
                "target directory missing",
                f"the target {target} no longer exists; nothing was decrypted. Create it "
                "again and run the session before it expires.",
                NotFoundError,
            )
        done_ok = {x.backup for x in r.results if x.outcome == "ok"}
        todo = [b for b in r.backups if b not in done_ok]
        report = A.RestoreReport(
            r.id, s.id, str(target), skipped=[b for b in r.backups if b in done_ok]
        )
        sizes = {bid: self._expected_size(bid) for bid in todo}
        total = sum(sizes.values())
        base = 0
        for bid in todo:
            if cancelled is not None and cancelled():
                report.cancelled = True
                break

            def step(done: int, _total: int, base: int = base) -> None:
                if progress is not None:
                    progress(min(base + done, total), total)

            res = self._restore_one(s, r, bid, target, by, step)
            report.results.append(res)
            if on_result is not None:
                on_result(res)
            base += sizes[bid]
            if progress is not None:
                progress(base, total)
        if not report.cancelled:
            report.session_state = self._close_session(s, r, report, by)
        return report

    def _expected_size(self, backup_id: str) -> int:
        try:
            b = self.catalog.backup(backup_id)
        except NotFoundError:
            return 0
        return b.size if b.size >= 0 else b.container_size

    def _restore_one(
        self,
        s: A.Session,
        r: A.Request,
        bid: str,
        target: Path,
        by: Actor,
        progress: Progress,
    ) -> A.RestoreResult:
        dst = target / str(r.payload.get("files", {}).get(bid, bid))
        size: int | None = None
        reason = ""
        try:
            b = self.catalog.backup(bid)
            if dst.exists() or dst.is_symlink():
                raise ConflictError(
                    f"{dst} already exists; it was left as it is and this backup was not "
                    "restored. Move that file away and ask for a new restore of this backup."
                )
            size = self._decrypt_backup(b, dst, session=s, progress=progress).plaintext_size
        except (CustodianError, OSError) as e:
            reason = str(e) if isinstance(e, CustodianError) else f"{e.strerror or e} ({dst})"
        ok = not reason
        res = A.RestoreResult(
            s.id, bid, "ok" if ok else "failed", reason, size, str(dst) if ok else None, self._now()
        )
        details: dict[str, Any] = {"request": r.id, "session": s.id, "file": str(dst)}
        if ok:
            details["plaintext_size"] = size
        else:
            details["reason"] = reason
        try:
            with self.catalog.transaction():
                A.add_result(self.catalog.db, res)
                self._record(by, "restore.backup", f"backup:{bid}", res.outcome, details)
        except BaseException:
            if ok:
                dst.unlink(missing_ok=True)  # not recorded, so not restored (fail-closed)
            raise
        return res

    def _close_session(self, s: A.Session, r: A.Request, report: A.RestoreReport, by: Actor) -> str:
        db = self.catalog.db
        with self.catalog.transaction():
            cur = A.session(db, s.id)
            if cur is None or cur.state != "open":
                return cur.state if cur is not None else "closed"
            now = self._now()
            expired = cur.expires_at <= now
            if not expired:
                A.set_session_state(db, s.id, "closed", now)
                A.set_request_state(db, r.id, "done", now)
                self._record(
                    by,
                    "restore.session.close",
                    f"session:{s.id}",
                    details={
                        "request": r.id,
                        "restored": [x.backup for x in report.ok],
                        "failed": [x.backup for x in report.failed],
                        "earlier": report.skipped,
                    },
                )
        if expired:
            self.expire_due()  # ran out during the run: recorded as expired, not done
            return "expired"
        return "closed"

    # ------------------------------------------------------------ decryption (core only)

    def _check_session(self, session: A.Session, b: Backup, target: Path | None) -> None:
        """Refuse (and log) unless the catalog says ``session`` is open, unexpired, and
        covers backup ``b`` (and, when given, a file ``target`` in its directory).

        Everything is read again from the catalog: the object passed in only names
        the session, so a made-up or stale one unwraps nothing.
        """
        row = A.session(self.catalog.db, session.id)
        why = ""
        if row is None:
            why = "no such restore session"
        elif row.state != "open":
            why = f"the restore session is {row.state}"
        elif row.expires_at <= self._now():
            why = "the restore session has expired"
        else:
            req = A.find_request(self.catalog.db, self.config.policy.approval_quorum, row.request)
            if b.id not in req.backups:
                why = "the backup is outside the restore session's scope"
            elif target is not None and Path(target).absolute().parent.resolve() != Path(
                req.target
            ):
                why = "the target is outside the restore session's scope"
        if why:
            self._record_refusal(
                None, "restore.unwrap", f"backup:{b.id}", why, {"session": session.id}
            )
            raise AuthError(
                f"{why}: no data key was unwrapped and nothing was written. A restore needs "
                "a session that custodians approved for this backup and target."
            )

    def _unwrap(self, b: Backup, *, session: A.Session) -> SecretBytes:
        """The DEK of ``b``, only inside an open restore session that covers it."""
        self._check_session(session, b, None)
        kek = self.catalog.kek(b.kek)
        res = self.backend(kek.backend).unwrap([DekRef(b.id, b.kek, b.kek_version, b.wrapped_dek)])[
            0
        ]
        if isinstance(res, UnwrapError):
            raise res
        return res

    def _decrypt_backup(
        self,
        b: Backup,
        target: Path,
        *,
        session: A.Session,
        progress: Progress | None = None,
    ) -> container.Written:
        """Decrypt one catalogued backup to ``target``, inside an open restore session.

        The session must be open, unexpired and cover ``b`` and ``target``'s
        directory (checked against the catalog, whoever calls). Plaintext goes to
        a temporary file that is renamed into place only after the last chunk
        authenticated and the container hash matched the catalog; an existing
        ``target`` is never replaced. Restores go through :meth:`run_restore`.
        """
        from custodian import container

        self._check_session(session, b, Path(target))
        src_path = Path(b.location)
        if not src_path.is_file():
            raise NotFoundError(f"the container of backup {b.id} is missing at {src_path}.")
        out: list[container.Written] = []
        with open(src_path, "rb", buffering=0) as f:
            header = container.read_header(f, str(src_path))
            if str(header.backup_id) != b.id:
                raise ContainerError(
                    f"{src_path} holds backup {header.backup_id}, not {b.id}: the header "
                    "belongs to another backup. No plaintext was written."
                )
            with self._unwrap(b, session=session) as dek:

                def fill(dst: BinaryIO) -> None:
                    def step(done: int) -> None:
                        if progress is not None:
                            progress(done, max(b.size, done))

                    w = container.decrypt_stream(
                        f,
                        dst,
                        dek,
                        header,
                        name=str(src_path),
                        progress=step,
                        digest=container.digest_kind(b.container_sha256),
                    )
                    if w.sha256 != b.container_sha256:
                        raise ContainerError(
                            f"{src_path} authenticated but its digest differs from the "
                            "catalog's: it is not the container that was catalogued. No "
                            "plaintext was kept."
                        )
                    out.append(w)

                container.write_new_file(Path(target), False, fill)
        return out[0]


def _fsync_seconds(directory: Path) -> float:
    """How long one small write and fsync takes in ``directory`` (0 if it cannot tell)."""
    path = directory / f".fsync-probe-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return 0.0
    try:
        start = time.perf_counter()
        os.write(fd, b"x" * 512)
        os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def _final_note(r: A.Request) -> str:
    return " (denial, expiry and cancellation are final)" if r.final and r.state != "done" else ""


def _safe_name(label: str) -> str:
    """A label as a plain file name: letters, digits, dot, dash, underscore; no leading dot."""
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).lstrip("._-")[:120]
    return name


def _restore_names(backups: list[Backup]) -> dict[str, str]:
    """The file each backup restores to: its label made safe, else its id; made unique."""
    names: dict[str, str] = {}
    seen: set[str] = set()
    for b in backups:
        name = _safe_name(b.label) or b.id
        if name.lower() in seen:
            name = f"{name}.{b.id[:8]}"
        if name.lower() in seen:
            name = b.id
        seen.add(name.lower())
        names[b.id] = name
    return names


def _totp_name(person: str, generation: int) -> str:
    return f"totp/{person}/g{generation}"


def _policy_dict(p: Policy) -> dict[str, int]:
    # requester_may_approve is always false once loaded (check() refuses true): not recorded
    return {
        k: int(getattr(p, k)) for k in Policy.__dataclass_fields__ if k != "requester_may_approve"
    }


def _backup_details(b: Backup) -> dict[str, Any]:
    return {
        "label": b.label,
        "size": b.size,
        "container_size": b.container_size,
        "container_sha256": b.container_sha256,
        "location": b.location,
        "kek": b.kek,
        "kek_version": b.kek_version,
    }


def _link_aside(path: Path) -> Path | None:
    """A second, hidden name for an existing file, so that it can be put back."""
    if not path.is_file():
        return None
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.replaced")
    os.link(path, aside)
    return aside


def _unlink(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _remove_partial_home(h: Home) -> None:
    import shutil

    if h.path.is_dir() and not h.config.exists():
        shutil.rmtree(h.path, ignore_errors=True)
