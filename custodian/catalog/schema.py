"""The catalog's schema: numbered migrations, applied in order, the count kept in
``PRAGMA user_version`` (each a script of statements separated by ``;``)."""

from __future__ import annotations

from collections.abc import Sequence

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
    # 9: quorum custody jobs (custodian.custody.jobs): a refresh (rotation of a quorum KEK)
    # or a redistribution (a change of holders), each a resumable job; per DEK a deal
    # row (the new deal id, which sources and targets have done their part), the parts
    # in flight (sealed deltas or sub-shares, each sealed to one new holder key), the
    # new shares as targets seal them; a DEK's row in backups changes only once every
    # new holder sealed theirs. Nothing here is plaintext.
    """
    CREATE TABLE custody_jobs (
        id TEXT PRIMARY KEY,
        kek TEXT NOT NULL REFERENCES keks(name),
        kind TEXT NOT NULL CHECK (kind IN ('refresh', 'redistribute')),
        target_version INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'superseded')),
        started_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        sources TEXT NOT NULL,
        targets TEXT NOT NULL,
        total INTEGER NOT NULL,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        runs INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (kek, target_version) REFERENCES kek_versions(kek, version)
    );
    CREATE INDEX custody_jobs_by_kek ON custody_jobs(kek, state);
    CREATE TABLE custody_job_steps (
        job TEXT NOT NULL REFERENCES custody_jobs(id),
        role TEXT NOT NULL CHECK (role IN ('source', 'target')),
        idx INTEGER NOT NULL,
        who TEXT NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job, role, idx)
    );
    CREATE TABLE custody_deals (
        job TEXT NOT NULL REFERENCES custody_jobs(id),
        row INTEGER NOT NULL,
        backup TEXT NOT NULL,
        from_version INTEGER NOT NULL,
        old_wrap_sha256 TEXT NOT NULL,
        new_deal BLOB NOT NULL,
        sources_done INTEGER NOT NULL DEFAULT 0,
        targets_done INTEGER NOT NULL DEFAULT 0,
        failed TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (job, row)
    );
    CREATE TABLE custody_parts (
        job TEXT NOT NULL,
        row INTEGER NOT NULL,
        source INTEGER NOT NULL,
        target INTEGER NOT NULL,
        blob BLOB NOT NULL,
        PRIMARY KEY (job, row, target, source)
    );
    CREATE TABLE custody_new_shares (
        job TEXT NOT NULL,
        row INTEGER NOT NULL,
        x INTEGER NOT NULL,
        commitment BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (job, row, x)
    );
    """,
    # 10: a KEK can move between backends (custodian kek migrate): each version records
    # the backend that holds it, the KEK's own column names where new versions go. Every
    # existing version is on its KEK's backend.
    """
    ALTER TABLE kek_versions ADD COLUMN backend TEXT NOT NULL DEFAULT '';
    UPDATE kek_versions SET backend=(SELECT backend FROM keks WHERE keks.name=kek_versions.kek);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _split(script: str) -> Sequence[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
