"""Sealed custody blobs (migration 8): recovery seals, locks and releases."""

from __future__ import annotations

import hashlib
import sqlite3

from custodian.catalog.records import utcnow


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
