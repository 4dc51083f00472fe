"""The catalog: SQLite, the system of record.

It holds no plaintext secret and may be copied anywhere: backups (id, size,
container hash, KEK reference, the current wrapped DEK), KEKs and their
versions with states, and (from later issues on) people, approvals, sessions
and rotation jobs. WAL mode, foreign keys on, and schema migrations numbered
in ``PRAGMA user_version``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from custodian.errors import CatalogError, ConflictError, NotFoundError

MIGRATIONS: list[str] = [
    # 1: KEKs, versions, backups
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keks (
        name TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        suite TEXT NOT NULL,
        purpose TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        current_version INTEGER NOT NULL
    );
    CREATE TABLE kek_versions (
        kek TEXT NOT NULL REFERENCES keks(name),
        version INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
        created_at TEXT NOT NULL,
        public_key BLOB,
        fingerprint TEXT NOT NULL,
        retired_at TEXT,
        destroyed_at TEXT,
        PRIMARY KEY (kek, version)
    );
    CREATE TABLE backups (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        size INTEGER NOT NULL,
        container_size INTEGER NOT NULL,
        container_sha256 TEXT NOT NULL,
        location TEXT NOT NULL,
        kek TEXT NOT NULL,
        kek_version INTEGER NOT NULL,
        wrapped_dek BLOB NOT NULL,
        chunk_size INTEGER NOT NULL,
        FOREIGN KEY (kek, kek_version) REFERENCES kek_versions(kek, version)
    );
    CREATE INDEX backups_by_version ON backups(kek, kek_version);
    CREATE INDEX backups_by_created ON backups(created_at);
    """,
    # 2: people, their signing keys (public halves) and TOTP replay counters
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY,
        roles TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('person', 'service', 'home')),
        state TEXT NOT NULL CHECK (state IN ('active', 'disabled')),
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE signing_keys (
        key_id TEXT PRIMARY KEY,
        person TEXT NOT NULL REFERENCES people(name),
        public_key BLOB NOT NULL,
        protection TEXT NOT NULL CHECK (protection IN ('passphrase', 'none', 'sealed')),
        created_at TEXT NOT NULL,
        replaced_at TEXT
    );
    CREATE INDEX signing_keys_by_person ON signing_keys(person);
    CREATE TABLE totp (
        person TEXT PRIMARY KEY REFERENCES people(name),
        generation INTEGER NOT NULL,
        last_step INTEGER NOT NULL DEFAULT -1,
        created_at TEXT NOT NULL
    );
    """,
    # 3: every sortable column of the backups table with id as the tie-break, so
    # a page of any order is an index walk, not a sort of the whole table
    """
    DROP INDEX backups_by_created;
    CREATE INDEX backups_by_created ON backups(created_at, id);
    CREATE INDEX backups_by_label ON backups(label, id);
    CREATE INDEX backups_by_size ON backups(size, id);
    CREATE INDEX backups_by_kek_version ON backups(kek_version, id);
    """,
    # 4: dual control (custodian.approvals): requests of any kind (restore,
    # kek.destroy, ...), one decision per custodian per request with the TOTP step
    # that confirmed it, restore sessions, and the outcome of each restored backup
    # (the restore test record). restore_results.backup has no foreign key: the
    # record outlives a backup's catalog entry.
    """
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        requester TEXT NOT NULL REFERENCES people(name),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('open', 'approved', 'denied', 'expired', 'cancelled', 'done')),
        payload TEXT NOT NULL,
        closed_at TEXT
    );
    CREATE INDEX requests_by_state ON requests(state, expires_at);
    CREATE TABLE approvals (
        request TEXT NOT NULL REFERENCES requests(id),
        custodian TEXT NOT NULL REFERENCES people(name),
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
        at TEXT NOT NULL,
        totp_step INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (request, custodian)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        request TEXT NOT NULL UNIQUE REFERENCES requests(id),
        opened_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
        closed_at TEXT
    );
    CREATE INDEX sessions_by_state ON sessions(state, expires_at);
    CREATE TABLE restore_results (
        session TEXT NOT NULL REFERENCES sessions(id),
        backup TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
        reason TEXT NOT NULL DEFAULT '',
        plaintext_size INTEGER,
        path TEXT,
        at TEXT NOT NULL
    );
    CREATE INDEX restore_results_by_session ON restore_results(session);
    """,
    # 5: KEK rotation (custodian.rotation): rewrap jobs with their cursor (the last
    # backup id whose batch committed) and counts, and the DEKs that failed to
    # rewrap with the reason (they stay under their old version: nothing dropped)
    """
    CREATE TABLE rotation_jobs (
        id TEXT PRIMARY KEY,
        kek TEXT NOT NULL REFERENCES keks(name),
        target_version INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'superseded')),
        started_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        cursor TEXT NOT NULL DEFAULT '',
        total INTEGER NOT NULL,
        rewrapped INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        runs INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (kek, target_version) REFERENCES kek_versions(kek, version)
    );
    CREATE INDEX rotation_jobs_by_kek ON rotation_jobs(kek, state);
    CREATE TABLE rewrap_failures (
        job TEXT NOT NULL REFERENCES rotation_jobs(id),
        backup TEXT NOT NULL,
        from_version INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (job, backup)
    );
    """,
    # 6: the version index keeps rows in catalogue order within a version (SQLite
    # appends the rowid to every index), so a rewrap walking rows in that order
    # writes neighbouring index pages; sorting the backups table by version then
    # breaks ties by row (catalogue order) instead of id. Cursors of jobs still
    # running held backup ids; they restart from the first row (idempotent).
    """
    DROP INDEX backups_by_kek_version;
    CREATE INDEX backups_by_kek_version ON backups(kek_version);
    UPDATE rotation_jobs SET cursor='' WHERE state='running';
    """,
    # 7: online guessing (custodian.service.attempts): per person and kind of secret
    # (passphrase, totp), the failures in a row and the time before which no attempt of
    # that person is even tried (a backoff or a lockout). Times are service-clock stamps.
    """
    CREATE TABLE auth_failures (
        person TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('passphrase', 'totp')),
        failures INTEGER NOT NULL CHECK (failures >= 0),
        last_at TEXT NOT NULL,
        wait_until TEXT NOT NULL,
        PRIMARY KEY (person, kind)
    );
    """,
    # 8: custody v2 (docs/custody.md). Blobs that are sealed (never plaintext) but belong
    # to no one person's keyring: holder keys sealed to the recovery key, an early
    # approver's lock, the releases of a request sealed to its session key. Each with
    # its SHA-256, which the signed entry that made it lists.
    """
    CREATE TABLE custody_blobs (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('recovery', 'lock', 'release')),
        request TEXT,
        blob BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX custody_blobs_by_request ON custody_blobs(request, kind);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class KekVersion:
    kek: str
    version: int
    state: str
    created_at: str
    fingerprint: str
    public_key: bytes | None
    dek_count: int = 0
    retired_at: str | None = None
    destroyed_at: str | None = None


@dataclass(frozen=True)
class Kek:
    name: str
    backend: str
    suite: str
    purpose: str
    created_at: str
    current_version: int
    versions: tuple[KekVersion, ...]

    @property
    def dek_count(self) -> int:
        return sum(v.dek_count for v in self.versions)


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    person: str
    public_key: bytes
    protection: str
    created_at: str
    replaced_at: str | None


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[str, ...]
    kind: str
    state: str
    created_at: str
    disabled_at: str | None
    keys: tuple[SigningKey, ...] = ()
    totp_generation: int = 0

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def key(self) -> SigningKey | None:
        """The current (not replaced) signing key."""
        for k in self.keys:
            if k.replaced_at is None:
                return k
        return None

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Backup:
    id: str
    label: str
    created_at: str
    size: int
    container_size: int
    container_sha256: str
    location: str
    kek: str
    kek_version: int
    wrapped_dek: bytes
    chunk_size: int


BACKUP_COLUMNS = (
    "id, label, created_at, size, container_size, container_sha256, location, "
    "kek, kek_version, wrapped_dek, chunk_size"
)
SORTABLE = {"created_at", "label", "size", "kek_version", "id", "kek"}


class PeopleMixin:
    db: sqlite3.Connection

    def add_person(self, name: str, roles: tuple[str, ...], kind: str) -> None:
        try:
            self.db.execute(
                "INSERT INTO people(name, roles, kind, state, created_at) "
                "VALUES(?, ?, ?, 'active', ?)",
                (name, ",".join(roles), kind, utcnow()),
            )
        except sqlite3.IntegrityError:
            raise ConflictError(f"{name} is already enrolled; nothing was changed.") from None

    def add_signing_key(self, person: str, key_id: str, public: bytes, protection: str) -> None:
        now = utcnow()
        self.db.execute(
            "UPDATE signing_keys SET replaced_at=? WHERE person=? AND replaced_at IS NULL",
            (now, person),
        )
        self.db.execute(
            "INSERT INTO signing_keys(key_id, person, public_key, protection, created_at) "
            "VALUES(?, ?, ?, ?, ?)",
            (key_id, person, public, protection, now),
        )

    def set_totp(self, person: str, generation: int) -> None:
        self.db.execute(
            "INSERT INTO totp(person, generation, last_step, created_at) VALUES(?, ?, -1, ?) "
            "ON CONFLICT(person) DO UPDATE SET generation=excluded.generation, last_step=-1, "
            "created_at=excluded.created_at",
            (person, generation, utcnow()),
        )

    def totp_last_step(self, person: str) -> int:
        row = self.db.execute("SELECT last_step FROM totp WHERE person=?", (person,)).fetchone()
        return -1 if row is None else int(row[0])

    def use_totp_step(self, person: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already."""
        cur = self.db.execute(
            "UPDATE totp SET last_step=? WHERE person=? AND last_step < ?", (step, person, step)
        )
        return cur.rowcount == 1

    def auth_failures(self, person: str) -> dict[str, tuple[int, str]]:
        """Per kind of secret: (failures in a row, no attempt before this stamp)."""
        return {
            kind: (int(n), str(until))
            for kind, n, until in self.db.execute(
                "SELECT kind, failures, wait_until FROM auth_failures WHERE person=?", (person,)
            )
        }

    def add_auth_failure(self, person: str, kind: str, at: str) -> int:
        """Count one more failure in a row; returns the new count (call in a transaction)."""
        self.db.execute(
            "INSERT INTO auth_failures(person, kind, failures, last_at, wait_until) "
            "VALUES(?, ?, 1, ?, ?) ON CONFLICT(person, kind) DO UPDATE SET "
            "failures=failures + 1, last_at=excluded.last_at",
            (person, kind, at, at),
        )
        row = self.db.execute(
            "SELECT failures FROM auth_failures WHERE person=? AND kind=?", (person, kind)
        ).fetchone()
        return int(row[0])

    def set_auth_wait(self, person: str, kind: str, wait_until: str) -> None:
        self.db.execute(
            "UPDATE auth_failures SET wait_until=? WHERE person=? AND kind=?",
            (wait_until, person, kind),
        )

    def clear_auth_failures(self, person: str, kind: str | None = None) -> None:
        if kind is None:
            self.db.execute("DELETE FROM auth_failures WHERE person=?", (person,))
        else:
            self.db.execute("DELETE FROM auth_failures WHERE person=? AND kind=?", (person, kind))

    def set_person_state(self, name: str, state: str) -> None:
        self.db.execute(
            "UPDATE people SET state=?, disabled_at=? WHERE name=?",
            (state, utcnow() if state == "disabled" else None, name),
        )

    def people(self) -> list[Person]:
        keys: dict[str, list[SigningKey]] = {}
        for row in self.db.execute(
            "SELECT key_id, person, public_key, protection, created_at, replaced_at "
            "FROM signing_keys ORDER BY created_at"
        ):
            keys.setdefault(row[1], []).append(SigningKey(*row))
        gens = dict(self.db.execute("SELECT person, generation FROM totp").fetchall())
        return [
            Person(
                n,
                tuple(r.split(",")) if r else (),
                kind,
                state,
                created,
                dis,
                tuple(keys.get(n, ())),
                int(gens.get(n, 0)),
            )
            for n, r, kind, state, created, dis in self.db.execute(
                "SELECT name, roles, kind, state, created_at, disabled_at FROM people ORDER BY name"
            )
        ]

    def person(self, name: str) -> Person:
        for p in self.people():
            if p.name == name:
                return p
        raise NotFoundError(
            f"nobody named {name!r} is enrolled in this home; 'custodian people list' shows who is."
        )


class BlobsMixin:
    """Sealed custody blobs (migration 8)."""

    db: sqlite3.Connection

    def put_blob(self, name: str, kind: str, blob: bytes, request: str | None = None) -> str:
        digest = hashlib.sha256(blob).hexdigest()
        self.db.execute(
            "INSERT OR REPLACE INTO custody_blobs(name, kind, request, blob, sha256, created_at) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            (name, kind, request, blob, digest, utcnow()),
        )
        return digest

    def blob(self, name: str) -> tuple[bytes, str] | None:
        row = self.db.execute(
            "SELECT blob, sha256 FROM custody_blobs WHERE name=?", (name,)
        ).fetchone()
        return (bytes(row[0]), str(row[1])) if row else None

    def blobs(self, request: str, kind: str) -> dict[str, bytes]:
        return {
            str(n): bytes(b)
            for n, b in self.db.execute(
                "SELECT name, blob FROM custody_blobs WHERE request=? AND kind=? ORDER BY name",
                (request, kind),
            )
        }

    def delete_blobs(self, request: str) -> None:
        self.db.execute("DELETE FROM custody_blobs WHERE request=?", (request,))


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
    ) -> None:
        self.db.execute(
            "INSERT INTO kek_versions(kek, version, state, created_at, public_key, fingerprint) "
            "VALUES(?, ?, 'active', ?, ?, ?)",
            (kek, version, created_at or utcnow(), public_key, fingerprint),
        )
        self.db.execute("UPDATE keks SET current_version=? WHERE name=?", (version, kek))

    def census(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute(
            "SELECT kek, kek_version, count(*) FROM backups GROUP BY kek, kek_version"
        )
        return {(k, v): n for k, v, n in rows}

    def keks(self) -> list[Kek]:
        census = self.census()
        versions: dict[str, list[KekVersion]] = {}
        for kek, ver, state, created, fp, pub, retired, destroyed in self.db.execute(
            "SELECT kek, version, state, created_at, fingerprint, public_key, retired_at, "
            "destroyed_at FROM kek_versions ORDER BY kek, version"
        ):
            versions.setdefault(kek, []).append(
                KekVersion(
                    kek, ver, state, created, fp, pub, census.get((kek, ver), 0), retired, destroyed
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
            "SELECT state, created_at, fingerprint, public_key, retired_at, destroyed_at "
            "FROM kek_versions WHERE kek=? AND version=?",
            (kek, version),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"KEK {kek!r} has no version {version} in this home.")
        (n,) = self.db.execute(
            "SELECT count(*) FROM backups WHERE kek=? AND kek_version=?", (kek, version)
        ).fetchone()
        return KekVersion(kek, version, row[0], row[1], row[2], row[3], int(n), row[4], row[5])

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


def _split(script: str) -> Sequence[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
