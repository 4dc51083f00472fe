"""``svc.backups``: encrypting backups, importing containers, and the inventory.

Encryption needs no secret: the fresh DEK is wrapped under the KEK's current
version and the backup is recorded only once its container is complete and
fsynced. Decryption is not here: it happens only inside a restore session
(:mod:`custodian.service.restores`).
"""

from __future__ import annotations

import builtins
import io
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from custodian.backends.base import KekBackend
from custodian.catalog import Backup, Kek, utcnow
from custodian.errors import BackendError, ConflictError, ContainerError, NotFoundError
from custodian.people import Actor
from custodian.secret import SecretBytes, new_dek
from custodian.service.aborts import CommitFailed, abort_unrecorded
from custodian.service.context import HomeContext, Progress
from custodian.text import check_label, default_label

if TYPE_CHECKING:
    from custodian import container

# Cryptographic modules are imported where they are used, so that listing
# commands start fast (``custodian kek list`` needs no cryptography at all).
DEFAULT_CHUNK = 1024 * 1024  # custodian.container.DEFAULT_CHUNK, checked by a test
SAMPLE_CHUNK = 64 * 1024  # demo samples are a few KiB: no 1 MiB buffers for each


class Backups:
    """Backups in the catalog, and the two ways one gets there."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def list(
        self,
        *,
        text: str = "",
        kek: str | None = None,
        version: int | None = None,
        order: str = "created_at",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Backup]:
        """Backups matching a filter, sorted in SQL, one page at a time if asked."""
        return self._ctx.catalog.backups(
            text=text,
            kek=kek,
            version=version,
            order=order,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    def count(self, *, text: str = "", kek: str | None = None, version: int | None = None) -> int:
        """How many backups match a filter."""
        return self._ctx.catalog.count_backups(text=text, kek=kek, version=version)

    def get(self, id_or_prefix: str) -> Backup:
        return self._ctx.catalog.find_backup(id_or_prefix)

    def total(self) -> int:
        """How many backups the catalog holds."""
        return self._ctx.catalog.backup_count()

    def encrypt(
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
        the local backend). The container has no name while it is written
        (:mod:`custodian.safefile`); once complete and fsynced it takes ``dst``
        (keeping a private second name) and the backup is recorded; only then
        does the private name go. With ``force`` an existing ``dst`` is replaced
        only after the backup is recorded. Whatever a killed run left in the
        destination directory is swept first (:meth:`_sweep`).
        """
        from custodian import safefile

        ctx = self._ctx
        ctx.require(by, "operator", "backup.encrypt", f"file:{Path(dst).name}")
        k = ctx.catalog.kek(kek or ctx.config.default_kek)
        version = k.current_version
        ctx.check_kek(k, version, by, "backup.encrypt")  # wraps to signed public keys only
        be = ctx.backend(k.backend)
        backup_id = uuid.uuid4()
        dst = Path(dst).absolute()
        if isinstance(src, Path):
            if not src.is_file():
                raise NotFoundError(f"{src} is not a readable file; nothing was written.")
            total = src.stat().st_size
            name = check_label(label) if label else default_label(src.name)
        else:
            total = 0
            name = check_label(label) if label else "stdin"
        self._sweep(dst.parent, by)
        hf = safefile.open_new_file(dst, force)
        committed = False
        try:
            with new_dek() as dek:
                try:
                    wrapped = be.wrap(k.name, version, [(str(backup_id), dek)])[0]
                except BackendError as e:  # a server backend down or refusing: in the log
                    ctx.record_refusal(by, "backup.encrypt", f"backup:{backup_id}", str(e))
                    e.logged = True
                    raise

                def step(done: int) -> None:
                    if progress is not None:
                        progress(done, max(total, done))

                def encrypt(f: BinaryIO) -> container.Written:
                    return _encrypt(
                        f,
                        hf.file,
                        dek,
                        backup_id,
                        be,
                        k,
                        version,
                        wrapped,
                        chunk_size,
                        step,
                        ctx.config.container_digest,
                    )

                if isinstance(src, Path):
                    with open(src, "rb", buffering=0) as f:
                        w = encrypt(f)
                else:
                    w = encrypt(src)
            hf.keep()
            if not force:
                hf.publish(False)  # takes dst; the private name says "not recorded yet"
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
            with ctx.audited(by, "backup.encrypt", f"backup:{b.id}", _backup_details(b)):
                ctx.catalog.add_backups([b])
            committed = True
            if force:
                hf.publish(True)
        except BaseException as e:
            if committed:
                hf.abandon()  # recorded: the next run in this directory puts it in place
            else:
                hf.discard()  # never leave a container the catalog does not know
                if isinstance(e, CommitFailed) and not e.marked:
                    e.mark()  # the container's space is free again: try the log once more
            raise
        hf.done()
        return b

    def encrypt_samples(
        self,
        samples: Iterable[tuple[bytes, str, str]],
        directory: Path,
        *,
        by: Actor,
        progress: Progress | None = None,
        kek: str | None = None,
    ) -> int:
        """Demo homes only: sample backups, recorded together (a group commit).

        Each ``(data, label, created_at)`` becomes a container ``directory/label.cbk``
        under a fresh DEK and the current version of ``kek`` (the default KEK), and a backup
        with its own signed ``backup.encrypt`` entry, as :meth:`encrypt` makes them.
        The entries are written without an fsync each and made durable together
        before the one catalog commit that records every backup: the fail-closed
        rule, grouped (no backup is recorded before its entry is on disk), for
        about a fiftieth of the fsyncs. The containers are written in place and
        synced once, without :meth:`encrypt`'s crash-safe naming: a demo home that
        a crash cut short is deleted and built again. Refused on any other home.
        Returns how many backups were recorded.
        """
        from custodian import container

        ctx = self._ctx
        action = "backup.encrypt"
        if not ctx.config.demo:
            raise ctx.refused(
                by,
                action,
                "file:samples",
                "sample backups on a home that is not a demo",
                "sample backups are for demo homes only; use 'custodian backup encrypt'. "
                "Nothing was done.",
                ConflictError,
            )
        ctx.require(by, "operator", action, "file:samples")
        k = ctx.catalog.kek(kek or ctx.config.default_kek)
        version = k.current_version
        ctx.check_kek(k, version, by, action)
        be = ctx.backend(k.backend)
        todo = list(samples)
        made: builtins.list[Backup] = []
        written: builtins.list[Path] = []
        try:
            for i, (data, label, created_at) in enumerate(todo):
                backup_id = uuid.uuid4()
                dst = (Path(directory) / f"{check_label(label)}.cbk").absolute()
                with new_dek() as dek, open(dst, "xb") as out:
                    written.append(dst)
                    os.fchmod(out.fileno(), 0o600)
                    wrapped = be.wrap(k.name, version, [(str(backup_id), dek)])[0]
                    w = container.encrypt_stream(
                        io.BytesIO(data),
                        out,
                        dek,
                        backup_id=backup_id,
                        backend=be.name,
                        kek=k.name,
                        kek_version=version,
                        wrapped_dek=wrapped,
                        chunk_size=SAMPLE_CHUNK,
                        digest=ctx.config.container_digest,
                    )
                made.append(
                    Backup(
                        id=str(backup_id),
                        label=label,
                        created_at=created_at,
                        size=w.plaintext_size,
                        container_size=w.container_size,
                        container_sha256=w.sha256,
                        location=str(dst),
                        kek=k.name,
                        kek_version=version,
                        wrapped_dek=wrapped,
                        chunk_size=SAMPLE_CHUNK,
                    )
                )
                if progress is not None:
                    progress(i + 1, len(todo))
            os.sync()  # every container is on disk before any is recorded
            with ctx.catalog.transaction():
                ctx.catalog.add_backups(made)
                for b in made:
                    ctx.log.append(
                        actor=by.name,
                        key_id=by.key_id,
                        sign=by.sign,
                        action=action,
                        subject=f"backup:{b.id}",
                        details=_backup_details(b),
                        sync=False,
                    )
                ctx.log.sync()  # the group's entries are durable before the commit
        except BaseException:
            for p in written:  # nothing recorded: no container stays behind
                p.unlink(missing_ok=True)
            raise
        return len(made)

    def _sweep(self, directory: Path, by: Actor) -> None:
        """Finish or undo what a killed ``backup encrypt`` left in ``directory``.

        A dead writer's private file is a complete container once it has its
        private name (O_TMPFILE), or a partial one (file systems without it).
        If the catalog has its backup, the run was killed after recording it:
        the container is put at the catalogued location if it is not there
        yet, and the private name goes. Otherwise it goes, with the public name
        it shares an inode with (published, never recorded), and if the log
        says that backup was made, a compensating entry says it was not.
        """
        from custodian import container, safefile

        ctx = self._ctx
        for lo in safefile.leftovers(directory):
            try:
                try:
                    with os.fdopen(os.dup(lo.fd), "rb") as f:
                        bid = str(container.read_header(f, str(lo.path)).backup_id)
                except (ContainerError, OSError):
                    bid = ""
                b: Backup | None = None
                if bid:
                    try:
                        b = ctx.catalog.backup(bid)
                    except NotFoundError:
                        b = None
                if b is None:
                    lo.remove(linked=True)
                    if bid:
                        abort_unrecorded(
                            ctx,
                            by,
                            "backup.encrypt",
                            f"backup:{bid}",
                            "the run was killed before its catalog commit; the next run in "
                            "the directory removed its container",
                            since=os.fstat(lo.fd).st_ctime,
                        )
                elif lo.linked is None and Path(b.location).parent == directory:
                    os.replace(lo.path, b.location)  # killed between commit and --force's rename
                else:
                    lo.remove(linked=False)
            finally:
                lo.close()

    def import_file(self, path: Path, *, by: Actor, label: str | None = None) -> Backup:
        """Register a container made elsewhere (or a catalog rebuilt from containers).

        The header is parsed and its KEK reference must name a version this home
        has; the container's hash and size are recorded. The header's wrapped
        DEK becomes the catalog's wrapped DEK.
        """
        from custodian import container

        ctx = self._ctx
        path = Path(path).absolute()
        ctx.require(by, "operator", "backup.import", f"file:{path.name}")
        name = check_label(label) if label else default_label(path.name)
        if not path.is_file():
            raise NotFoundError(f"{path} is not a readable file; nothing was imported.")

        with open(path, "rb") as f:
            header = container.read_header(f, str(path))
            digest = container.file_digest(f, header, ctx.config.container_digest, str(path))
            size = f.seek(0, os.SEEK_END)
        try:
            kek = ctx.catalog.kek(header.kek)
        except NotFoundError:
            raise NotFoundError(
                f"{path} is under KEK {header.kek!r}, which this home does not have; "
                "nothing was imported."
            ) from None
        held = ctx.catalog.kek_version(kek.name, header.kek_version).backend  # raises if unknown
        if held != header.backend:
            raise ContainerError(
                f"{path} names backend {header.backend!r} but KEK {kek.name} "
                f"v{header.kek_version} lives in {held!r}; nothing was imported."
            )
        bid = str(header.backup_id)
        try:
            existing = ctx.catalog.backup(bid)
        except NotFoundError:
            existing = None
        if existing is not None:
            raise ConflictError(
                f"backup {bid} is already in the catalog (at {existing.location}); "
                "nothing was imported."
            )
        b = Backup(
            id=bid,
            label=name,
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
        with ctx.audited(by, "backup.import", f"backup:{b.id}", _backup_details(b)):
            ctx.catalog.add_backups([b])
        return b


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
