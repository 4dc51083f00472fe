"""The catalog: SQLite, the system of record.

It holds no plaintext secret and may be copied anywhere: backups (id, size,
container hash, KEK reference, the current wrapped DEK), KEKs and their
versions with states, and (from later issues on) people, approvals, sessions
and rotation jobs. WAL mode, foreign keys on, and schema migrations numbered
in ``PRAGMA user_version``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from custodian.catalog.blobs import BlobsMixin
from custodian.catalog.people import PeopleMixin
from custodian.catalog.records import (
    BACKUP_COLUMNS,
    SORTABLE,
    Backup,
    Kek,
    KekVersion,
    Person,
    SigningKey,
    utcnow,
)
from custodian.catalog.schema import MIGRATIONS, SCHEMA_VERSION, _split
from custodian.errors import CatalogError, ConflictError, NotFoundError

__all__ = [
    "BACKUP_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SORTABLE",
    "Backup",
    "Catalog",
    "Kek",
    "KekVersion",
    "Person",
    "SigningKey",
    "utcnow",
]


class Catalog(PeopleMixin, BlobsMixin):
    """A connection to the catalog. One per thread; not shared across threads."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        # One connection serves every thread of the process (the TUI runs long jobs
        # in thread workers): transactions take this lock so that a second thread's
        # BEGIN waits instead of failing, or running inside the first one's.
        self._lock = threading.RLock()
        self._after: list[Callable[[], None]] = []
        self._owner: int | None = None  # the thread whose transaction is open
        if not create and not path.exists():
            raise CatalogError(
                f"the catalog {path} is missing. Restore it from a copy (it holds no secret), "
                "or rebuild it by importing the backup containers."
            )
        if create:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        elif path.stat().st_size == 0:
            raise CatalogError(
                f"the catalog {path} is empty (0 bytes), not this home's catalog; nothing was "
                "read or changed. Restore it from a copy (it holds no secret)."
            )
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if not create:
                self._check_is_catalog(path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise CatalogError(f"cannot open the catalog {path}: {e}") from None

    def close(self) -> None:
        self.db.close()

    def _check_is_catalog(self, path: Path) -> None:
        """Refuse a file that is SQLite but not a custodian catalog (an empty database,
        another program's): migrating it would make an empty home out of it."""
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        if version < 1 or not {"meta", "keks", "backups"} <= tables:
            self.db.close()
            raise CatalogError(
                f"{path} is not a custodian catalog (schema {version}, tables: "
                f"{', '.join(sorted(tables)[:5]) or 'none'}); nothing was read or changed. "
                "Restore this home's catalog from a copy (it holds no secret)."
            )
        if self.db.execute("SELECT value FROM meta WHERE key='home_id'").fetchone() is None:
            self.db.close()
            raise CatalogError(
                f"the catalog {path} names no home; nothing was read or changed. Restore "
                "this home's catalog from a copy."
            )

    def _migrate(self) -> None:
        (current,) = self.db.execute("PRAGMA user_version").fetchone()
        if current > SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog has schema {current}, newer than this custodian knows "
                f"({SCHEMA_VERSION}); nothing was changed. Upgrade custodian."
            )
        for n in range(current, SCHEMA_VERSION):
            with self.transaction():
                for stmt in _split(MIGRATIONS[n]):
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version={n + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("SAVEPOINT body")
            outer, self._owner = self._owner, threading.get_ident()
            try:
                yield self.db
            except BaseException:
                # Undo the body, then keep what must outlast it (after_transaction), all
                # under the write lock taken at BEGIN: no other writer comes in between.
                try:
                    self.db.execute("ROLLBACK TO body")
                    self.db.execute("RELEASE body")
                    self._run_after()
                    self.db.execute("COMMIT")
                except BaseException:
                    self._after.clear()
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
                finally:
                    self._owner = outer
                raise
            try:
                self.db.execute("RELEASE body")
                self._run_after()
                self.db.execute("COMMIT")
            finally:
                self._owner = outer

    def in_transaction(self) -> bool:
        """Whether the calling thread has a transaction open on this catalog."""
        return self._owner == threading.get_ident()

    def after_transaction(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the end of the transaction this thread is in, whether its body
        committed or rolled back, inside the same write lock (in a transaction of its
        own if there is none). For what must outlast a refusal that undoes the rest: a
        failed attempt's count."""
        if self.in_transaction():
            self._after.append(fn)
            return
        with self.transaction():
            fn()

    def _run_after(self) -> None:
        todo, self._after = self._after, []
        for fn in todo:
            fn()

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------ KEKs

    def add_kek(self, name: str, backend: str, suite: str, purpose: str) -> None:
        try:
            self.db.execute(
                "INSERT INTO keks(name, backend, suite, purpose, created_at, current_version) "
                "VALUES(?, ?, ?, ?, ?, 0)",
                (name, backend, suite, purpose, utcnow()),
            )
        except sqlite3.IntegrityError:
            raise ConflictError(
                f"a KEK named {name!r} already exists; nothing was created."
            ) from None

    def add_kek_version(
        self,
        kek: str,
        version: int,
        fingerprint: str,
        public_key: bytes | None,
        created_at: str | None = None,
        backend: str | None = None,
    ) -> None:
        """A new current version of ``kek``, held by ``backend`` (default: the KEK's)."""
        self.db.execute(
            "INSERT INTO kek_versions(kek, version, state, created_at, public_key, fingerprint, "
            "backend) VALUES(?, ?, 'active', ?, ?, ?, "
            "coalesce(?, (SELECT backend FROM keks WHERE name=?)))",
            (kek, version, created_at or utcnow(), public_key, fingerprint, backend, kek),
        )
        self.db.execute("UPDATE keks SET current_version=? WHERE name=?", (version, kek))

    def set_kek_backend(self, kek: str, backend: str) -> None:
        """Where the new versions of ``kek`` go from now on (a migration; older versions keep
        theirs)."""
        self.db.execute("UPDATE keks SET backend=? WHERE name=?", (backend, kek))

    def census(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute(
            "SELECT kek, kek_version, count(*) FROM backups GROUP BY kek, kek_version"
        )
        return {(k, v): n for k, v, n in rows}

    def keks(self) -> list[Kek]:
        census = self.census()
        versions: dict[str, list[KekVersion]] = {}
        for kek, ver, state, created, fp, pub, retired, destroyed, be in self.db.execute(
            "SELECT kek, version, state, created_at, fingerprint, public_key, retired_at, "
            "destroyed_at, backend FROM kek_versions ORDER BY kek, version"
        ):
            versions.setdefault(kek, []).append(
                KekVersion(
                    kek,
                    ver,
                    state,
                    created,
                    fp,
                    pub,
                    census.get((kek, ver), 0),
                    retired,
                    destroyed,
                    be,
                )
            )
        return [
            Kek(name, backend, suite, purpose, created, cur, tuple(versions.get(name, ())))
            for name, backend, suite, purpose, created, cur in self.db.execute(
                "SELECT name, backend, suite, purpose, created_at, current_version FROM keks "
                "ORDER BY name"
            )
        ]

    def kek(self, name: str) -> Kek:
        for k in self.keks():
            if k.name == name:
                return k
        raise NotFoundError(
            f"no KEK named {name!r} in this home. 'custodian kek list' shows the KEKs there are."
        )

    def kek_version(self, kek: str, version: int) -> KekVersion:
        row = self.db.execute(
            "SELECT state, created_at, fingerprint, public_key, retired_at, destroyed_at, "
            "backend FROM kek_versions WHERE kek=? AND version=?",
            (kek, version),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"KEK {kek!r} has no version {version} in this home.")
        (n,) = self.db.execute(
            "SELECT count(*) FROM backups WHERE kek=? AND kek_version=?", (kek, version)
        ).fetchone()
        return KekVersion(
            kek, version, row[0], row[1], row[2], row[3], int(n), row[4], row[5], row[6]
        )

    def set_version_state(self, kek: str, version: int, state: str, at: str) -> None:
        column = {"retired": "retired_at", "destroyed": "destroyed_at"}[state]
        self.db.execute(
            f"UPDATE kek_versions SET state=?, {column}=? WHERE kek=? AND version=?",
            (state, at, kek, version),
        )

    # ------------------------------------------------------------ backups

    def add_backups(self, backups: Iterable[Backup]) -> None:
        try:
            self.db.executemany(
                f"INSERT INTO backups({BACKUP_COLUMNS}) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        b.id,
                        b.label,
                        b.created_at,
                        b.size,
                        b.container_size,
                        b.container_sha256,
                        b.location,
                        b.kek,
                        b.kek_version,
                        b.wrapped_dek,
                        b.chunk_size,
                    )
                    for b in backups
                ],
            )
        except sqlite3.IntegrityError as e:
            raise ConflictError(
                f"the backup is already in the catalog ({e}); nothing was added."
            ) from None

    def backup(self, backup_id: str) -> Backup:
        row = self.db.execute(
            f"SELECT {BACKUP_COLUMNS} FROM backups WHERE id=?", (backup_id,)
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no backup {backup_id} in the catalog. 'custodian backup list' shows them; "
                "a container made elsewhere can be registered with 'custodian backup import'."
            )
        return Backup(*row)

    def find_backup(self, prefix: str) -> Backup:
        rows = self.db.execute(
            f"SELECT {BACKUP_COLUMNS} FROM backups WHERE id LIKE ? || '%' LIMIT 2",
            (prefix.lower(),),
        ).fetchall()
        if len(rows) == 1:
            return Backup(*rows[0])
        if not rows:
            return self.backup(prefix)  # raises NotFoundError with the full message
        raise NotFoundError(f"{prefix!r} matches more than one backup; give more of the id.")

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
        if order not in SORTABLE:
            raise ValueError(f"cannot sort by {order}")
        where, args = self._filter(text, kek, version)
        sql = f"SELECT {BACKUP_COLUMNS} FROM backups{where} ORDER BY {order} "
        direction = "DESC" if descending else "ASC"
        tie = "rowid" if order == "kek_version" else "id"  # as the indexes hold them
        sql += direction if order == "id" else f"{direction}, {tie} {direction}"
        if limit is not None or offset:
            sql += f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(offset)}"
        return [Backup(*r) for r in self.db.execute(sql, args)]

    def count_backups(
        self, *, text: str = "", kek: str | None = None, version: int | None = None
    ) -> int:
        where, args = self._filter(text, kek, version)
        (n,) = self.db.execute(f"SELECT count(*) FROM backups{where}", args).fetchone()
        return int(n)

    @staticmethod
    def _filter(text: str, kek: str | None, version: int | None) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        if text:
            clauses.append("(label LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\')")
            pat = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pat, pat]
        if kek is not None:
            clauses.append("kek = ?")
            args.append(kek)
        if version is not None:
            clauses.append("kek_version = ?")
            args.append(version)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def backup_count(self) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM backups").fetchone()
        return int(n)

    def backups_under(
        self, kek: str, version: int, after_id: str = "", limit: int = 500
    ) -> list[Backup]:
        return [
            Backup(*r)
            for r in self.db.execute(
                f"SELECT {BACKUP_COLUMNS} FROM backups WHERE kek=? AND kek_version=? AND id>? "
                "ORDER BY id LIMIT ?",
                (kek, version, after_id, limit),
            )
        ]
