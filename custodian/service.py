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
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from custodian import people as P
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
    ) -> Kek:
        suite = suite or self.config.default_suite
        self._require(by, "custodian", "kek.create", f"kek:{name}", allow_home=True)
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
            self.catalog.add_kek(name, backend, suite, purpose)
            mat = be.create_version(name, suite, 1)
            self.catalog.add_kek_version(name, 1, mat.fingerprint, mat.public_key)
            d.update(version=1, fingerprint=mat.fingerprint)
        return self.catalog.kek(name)

    def add_kek_version(self, name: str, *, by: Actor) -> KekVersion:
        """Create the next version of a KEK; from now on it wraps every new DEK.

        Rewrapping the DEKs under older versions is the rotation job's work.
        """
        self._require(by, "custodian", "kek.version.create", f"kek:{name}")
        kek = self.catalog.kek(name)
        be = self.backend(kek.backend)
        version = kek.current_version + 1
        with self._audited(by, "kek.version.create", f"kek:{name}", {"version": version}) as d:
            mat = be.create_version(name, kek.suite, version)
            self.catalog.add_kek_version(name, version, mat.fingerprint, mat.public_key)
            d["fingerprint"] = mat.fingerprint
        return self.catalog.kek_version(name, version)

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
                                f, out, dek, backup_id, be, k, version, wrapped, chunk_size, step
                            )
                        )
                else:
                    result.append(
                        self._encrypt(
                            src, out, dek, backup_id, be, k, version, wrapped, chunk_size, step
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
        import hashlib

        with open(path, "rb") as f:
            header = container.read_header(f, str(path))
            h = hashlib.sha256()
            f.seek(0)
            while chunk := f.read(1 << 20):
                h.update(chunk)
            size = f.tell()
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
            container_sha256=h.hexdigest(),
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

    def check_totp(self, actor: Actor, code: str, action: str = "totp.check") -> int:
        """Accept ``code`` for ``actor`` once: current step or one either side, never reused.

        Call inside the transaction of the action it confirms, or on its own
        (the step is then burned at once).
        """
        p = self.catalog.person(actor.name)
        if p.totp_generation == 0:
            raise AuthError(f"{actor.name} has no TOTP secret (a service identity cannot confirm).")
        with self.sealed.unseal(self._load_ksk(), _totp_name(actor.name, p.totp_generation)) as s:
            step = P.match_step(s, code)
        if step is None:
            self._record_refusal(actor, action, f"person:{actor.name}", "TOTP code did not match")
            raise AuthError(
                "that code is not valid now (mistyped, or older than 30 seconds); nothing was "
                "done. Type the code your authenticator shows now."
            )
        if not self.catalog.use_totp_step(actor.name, step):
            self._record_refusal(
                actor, action, f"person:{actor.name}", "TOTP code replayed", {"step": step}
            )
            wait = P.TOTP_PERIOD - int(__import__("time").time()) % P.TOTP_PERIOD
            raise AuthError(
                "that code was already used (a code counts once); nothing was done. Wait "
                f"about {wait} s for the next code and try again."
            )
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

    # ------------------------------------------------------------ decryption (core only)

    def _unwrap(self, b: Backup) -> SecretBytes:
        kek = self.catalog.kek(b.kek)
        res = self.backend(kek.backend).unwrap([DekRef(b.id, b.kek, b.kek_version, b.wrapped_dek)])[
            0
        ]
        if isinstance(res, UnwrapError):
            raise res
        return res

    def _decrypt_backup(
        self, b: Backup, target: Path, *, force: bool = False, progress: Progress | None = None
    ) -> container.Written:
        """Decrypt one catalogued backup to ``target``.

        Plaintext goes to a temporary file that is renamed into place only after
        the last chunk authenticated and the container hash matched the catalog.
        Not exposed by the CLI or screens: restores go through approved sessions.
        """
        from custodian import container

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
            with self._unwrap(b) as dek:

                def fill(dst: BinaryIO) -> None:
                    def step(done: int) -> None:
                        if progress is not None:
                            progress(done, max(b.size, done))

                    w = container.decrypt_stream(
                        f, dst, dek, header, name=str(src_path), progress=step
                    )
                    if w.sha256 != b.container_sha256:
                        raise ContainerError(
                            f"{src_path} authenticated but its hash differs from the catalog's: "
                            "it is not the container that was catalogued. No plaintext was kept."
                        )
                    out.append(w)

                container.write_new_file(Path(target), force, fill)
        return out[0]


def _totp_name(person: str, generation: int) -> str:
    return f"totp/{person}/g{generation}"


def _policy_dict(p: Policy) -> dict[str, int]:
    return {k: int(getattr(p, k)) for k in Policy.__dataclass_fields__}


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
