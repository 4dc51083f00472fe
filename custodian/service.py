"""The one facade that the CLI and the screens call.

Screens and the CLI never open the catalog, the sealed store or the keyring
themselves; they hold a :class:`Service` and call its methods. Methods that
take time accept plain callbacks (``progress``) so the caller can show
progress in its own way.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from custodian.backends.base import DekRef, Health, KekBackend
from custodian.catalog import Backup, Catalog, Kek, KekVersion, utcnow
from custodian.config import DEFAULT_SUITE, SUITES, Config, Policy
from custodian.errors import (
    BackendError,
    ConflictError,
    ContainerError,
    CustodianError,
    NotFoundError,
    UnwrapError,
)
from custodian.home import Home
from custodian.keystore import Keyring, SealedStore, ksk_check_value
from custodian.secret import SecretBytes, new_dek

if TYPE_CHECKING:
    from custodian import container

# Cryptographic modules are imported where they are used, so that listing
# commands start fast (``custodian kek list`` needs no cryptography at all).
DEFAULT_CHUNK = 1024 * 1024  # custodian.container.DEFAULT_CHUNK, checked by a test

Progress = Callable[[int, int], None]


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
        self._ksk: SecretBytes | None = None
        self._backends: dict[str, KekBackend] = {}

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
            svc.create_kek(kek, suite=suite, purpose="default KEK for backups")
            cfg.save(h.config)  # written last: its presence marks a complete home
        except BaseException:
            _remove_partial_home(h)
            raise
        return svc

    def close(self) -> None:
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
        return Status(
            home=self.home.path,
            home_id=self.config.home_id,
            demo=self.config.demo,
            keyring=self.keyring.description,
            backends=tuple(self.backend(n).health() for n in self.config.backends),
            keks=tuple(self.catalog.keks()),
            backup_count=self.catalog.backup_count(),
            policy=self.config.policy,
        )

    def keks(self) -> list[Kek]:
        return self.catalog.keks()

    def kek(self, name: str) -> Kek:
        return self.catalog.kek(name)

    def create_kek(
        self, name: str, *, backend: str = "local", suite: str | None = None, purpose: str = ""
    ) -> Kek:
        suite = suite or self.config.default_suite
        from custodian.container import KEK_NAME_RE

        if not KEK_NAME_RE.match(name):
            raise CustodianError(
                f"{name!r} is not a valid KEK name: use 1 to 64 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit."
            )
        if suite not in SUITES:
            raise CustodianError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}.")
        be = self.backend(backend)
        with self.catalog.transaction():
            self.catalog.add_kek(name, backend, suite, purpose)
            mat = be.create_version(name, suite, 1)
            self.catalog.add_kek_version(name, 1, mat.fingerprint, mat.public_key)
        return self.catalog.kek(name)

    def add_kek_version(self, name: str) -> KekVersion:
        """Create the next version of a KEK; from now on it wraps every new DEK.

        Rewrapping the DEKs under older versions is the rotation job's work.
        """
        kek = self.catalog.kek(name)
        be = self.backend(kek.backend)
        version = kek.current_version + 1
        with self.catalog.transaction():
            mat = be.create_version(name, kek.suite, version)
            self.catalog.add_kek_version(name, version, mat.fingerprint, mat.public_key)
        return self.catalog.kek_version(name, version)

    # ------------------------------------------------------------ backups

    def encrypt_backup(
        self,
        src: Path | BinaryIO,
        dst: Path,
        *,
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

            container.write_new_file(dst, force, fill)
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
            with self.catalog.transaction():
                self.catalog.add_backups([b])
        except BaseException:
            dst.unlink(missing_ok=True)  # never leave a container the catalog does not know
            raise
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

    def import_backup(self, path: Path, *, label: str | None = None) -> Backup:
        """Register a container made elsewhere (or a catalog rebuilt from containers).

        The header is parsed and its KEK reference must name a version this home
        has; the container's hash and size are recorded. The header's wrapped
        DEK becomes the catalog's wrapped DEK.
        """
        from custodian import container

        path = Path(path).absolute()
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
        with self.catalog.transaction():
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


def _remove_partial_home(h: Home) -> None:
    import shutil

    if h.path.is_dir() and not h.config.exists():
        shutil.rmtree(h.path, ignore_errors=True)
