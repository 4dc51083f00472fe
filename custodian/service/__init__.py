"""The one facade that the CLI and the screens call.

Screens and the CLI never open the catalog, the sealed store or the keyring
themselves; they hold a :class:`Service` and call its capabilities, each a
namespace in a module of its own, as hvac's ``client.secrets.transit`` is:

===================  ==========================================================
``svc.keys``         KEK lifecycle: create, rotate, rewrap, retire, destroy (keys.py)
``svc.backups``      encrypt, import, the inventory (backups.py)
``svc.people``       enrolment, key and TOTP replacement, disabling (people.py)
``svc.auth``         unlock, TOTP checks, sign in and out (auth.py)
``svc.approvals``    requests, approve, deny, cancel, expiry (approvals.py)
``svc.restores``     restore requests, sessions, runs (restores.py)
``svc.audit``        entries, verify, checkpoint, reconcile (audit.py)
``svc.policy``       the policy the signed log records; set, loosen by quorum (policy.py)
``svc.custody``      the break-glass set: split, drill, recover (custody.py)
``svc.migrations``   move a KEK to another backend, quorum included (migrate.py)
``svc.backends``     backend health, configuration, credentials (backends.py)
``svc.setup``        which step of the first set-up comes next (setup.py)
===================  ==========================================================

They share one :class:`~custodian.service.context.HomeContext` (``svc.ctx``):
catalog, sealed store, keyring, audit log, clock, policy, and the audited
transaction and refusal plumbing. Methods that take time accept plain
callbacks (``progress``) so the caller can show progress in its own way.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from custodian import people as P
from custodian.audit import AuditLog
from custodian.backends.base import Health
from custodian.catalog import Catalog, Kek, utcnow
from custodian.config import DEFAULT_SUITE, Config, Policy
from custodian.errors import CatalogError
from custodian.home import Home
from custodian.keystore import Keyring, SealedStore, ksk_check_value
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service.approvals import Approvals
from custodian.service.audit import Audit
from custodian.service.auth import Auth
from custodian.service.backends import CHECKING, Backends
from custodian.service.backups import DEFAULT_CHUNK, Backups
from custodian.service.context import (
    HOME,
    HOME_KEY,
    HomeContext,
    Progress,
    policy_dict,
    totp_name,
)
from custodian.service.custody import Custody
from custodian.service.keys import Keys
from custodian.service.migrate import Migrations
from custodian.service.people import PendingEnrolment, People
from custodian.service.restores import Restores
from custodian.service.setup import Setup

if TYPE_CHECKING:
    from custodian.service.policy import PolicySettings

__all__ = [
    "DEFAULT_CHUNK",
    "HOME",
    "HOME_KEY",
    "PendingEnrolment",
    "Progress",
    "Service",
    "Status",
    "totp_name",
]


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
        self.ctx = HomeContext(home, config, catalog)
        self.approvals = Approvals(self.ctx)
        self.keys = Keys(self.ctx, self.approvals)
        self.backups = Backups(self.ctx)
        self.people = People(self.ctx, self.approvals)
        self.auth = Auth(self.ctx)
        self.restores = Restores(self.ctx, self.approvals)
        self.audit = Audit(self.ctx)
        self.custody = Custody(self.ctx)
        self.migrations = Migrations(self.ctx, rewrap=self.keys.rewrap)
        self.backends = Backends(self.ctx)  # health, configuration, credentials
        self.setup = Setup(self.ctx)
        self._policy: PolicySettings | None = None
        # policy.change requests are decided like any other: their hooks are known from
        # the start, and svc.policy is made when first asked for (a listing never is)
        self.approvals.register(
            "policy.change",
            at_quorum=lambda r, by, d: self.policy.change_at_quorum(r, by, d),
            after_commit=lambda r: self.policy.write_config(r),
        )

    @property
    def policy(self) -> PolicySettings:
        """The policy the signed log records, and changing it (policy.py)."""
        if self._policy is None:
            from custodian.service.policy import PolicySettings

            self._policy = PolicySettings(self.ctx, self.approvals)
        return self._policy

    # The home's parts, for callers that show or check them (tests, the demo builder).
    @property
    def home(self) -> Home:
        return self.ctx.home

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def catalog(self) -> Catalog:
        return self.ctx.catalog

    @property
    def keyring(self) -> Keyring:
        return self.ctx.keyring

    @property
    def sealed(self) -> SealedStore:
        return self.ctx.sealed

    @property
    def log(self) -> AuditLog:
        """The raw audit log (segments, append); read it through ``svc.audit``."""
        return self.ctx.log

    @property
    def clock(self) -> Callable[[], float]:
        """Seconds since the epoch for TOTP steps and expiry; tests replace it."""
        return self.ctx.clock

    @clock.setter
    def clock(self, fn: Callable[[], float]) -> None:
        self.ctx.clock = fn

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Service:
        """Open an existing home after checking it is there and private."""
        h = Home.resolve(home)
        h.check()
        cfg = Config.load(h.config)
        svc = cls(h, cfg, Catalog(h.catalog))
        try:
            # the catalog is this home's, and the configuration's policy and demo flag
            # are the ones the signed log records (docs/audit-format.md, section 7)
            svc.ctx.check_open()
        except BaseException:
            svc.close()
            raise
        return svc

    @classmethod
    def init(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        kek: str = "backups",
        suite: str = DEFAULT_SUITE,
        keyring_backend: str = "system",
        demo: bool = False,
        custody: str = "single",
    ) -> Service:
        """Create a home: configuration, catalog, sealed store, KSK in the keyring, and with
        ``custody="single"`` a first KEK ``kek`` (one key pair sealed by the KSK).

        With ``custody="quorum"`` (the CLI's default) no KEK is made yet: a quorum KEK
        needs its holders present, and a new home has no custodians. The first set-up
        ceremony enrols them (bootstrap: the home key signs their enrolment) and then
        creates the quorum KEK named ``kek``, which ends bootstrap.

        The keyring is checked before anything is written, so a machine without
        a usable keyring is told so and left with no half-made home. ``svc.setup``
        says which step of the first set-up comes next.
        """
        if custody not in ("single", "quorum"):
            raise ValueError(f"custody is single or quorum, not {custody!r}")
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
            svc.ctx._ksk = ksk
            svc._genesis()
            if custody == "single":
                svc.keys.create(
                    kek, by=svc.ctx.home_actor(), suite=suite, purpose="default KEK for backups"
                )
            cfg.save(h.config)  # written last: its presence marks a complete home
        except BaseException:
            _remove_partial_home(h)
            raise
        return svc

    def _genesis(self) -> None:
        """Make the home's own signing key and write the first audit entry."""
        from cryptography.hazmat.primitives.asymmetric import ed25519

        ctx = self.ctx
        key = ed25519.Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes_raw()
        kid = P.key_id(pub)
        with SecretBytes(key.private_bytes_raw(), "home key") as raw:
            ctx.sealed.seal(ctx.load_ksk(), HOME_KEY, raw)
        ctx._home = Actor(HOME, (), kid, key)
        with ctx.catalog.transaction():
            ctx.catalog.add_person(HOME, (), "home")
            ctx.catalog.add_signing_key(HOME, kid, pub, "sealed")
            ctx.record(
                ctx._home,
                "home.init",
                f"home:{ctx.config.home_id}",
                details={
                    "home_id": ctx.config.home_id,
                    "key_id": kid,
                    "public_key": base64.b64encode(pub).decode(),
                    "keyring": ctx.config.keyring_backend,
                    "policy": policy_dict(ctx.config.policy),
                    "demo": ctx.config.demo,  # fixed for good: never switched on later
                },
            )

    def close(self) -> None:
        self.ctx.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the dashboard

    def status(self, *, servers: bool = True) -> Status:
        """The home at a glance. ``servers=False`` leaves server backends unchecked (their
        health says "checking"): the dashboard checks them in a worker, so a slow or hung
        server never holds its first frame."""
        import sqlite3

        ctx = self.ctx
        try:
            keks = tuple(ctx.catalog.keks())
            return Status(
                home=ctx.home.path,
                home_id=ctx.config.home_id,
                demo=ctx.config.demo,
                keyring=ctx.keyring.description,
                backends=tuple(self._health(n, servers) for n in _backends_in_use(ctx, keks)),
                keks=keks,
                backup_count=ctx.catalog.backup_count(),
                policy=ctx.config.policy,
            )
        except sqlite3.Error as e:
            raise CatalogError(
                f"the catalog {ctx.home.catalog} could not be read ({e}); nothing was "
                "changed. Check the disk, or restore the catalog from its last copy."
            ) from None

    def _health(self, name: str, servers: bool = True) -> Health:
        if not servers and self.backends.kind(name) not in ("local", "quorum"):
            return Health(name, False, CHECKING)
        if name == "local" and not self.ctx.backend_loaded(name):
            # Nothing can be down in the embedded backend; saying so without loading
            # it keeps cryptography out of the dashboard's first frame.
            from custodian.backends.base import EMBEDDED

            return Health(name, True, EMBEDDED)
        return self.backends.check(name)  # a server backend: bounded by its timeout


def _remove_partial_home(h: Home) -> None:
    import shutil

    if h.path.is_dir() and not h.config.exists():
        shutil.rmtree(h.path, ignore_errors=True)


def _backends_in_use(ctx: HomeContext, keks: tuple[Kek, ...]) -> list[str]:
    """The configured backends, and the embedded quorum backend when a version is on it."""
    names = list(ctx.config.backends)
    if "quorum" not in names and any(v.backend == "quorum" for k in keks for v in k.versions):
        names.append("quorum")
    return names
