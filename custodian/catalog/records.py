"""What the catalog hands out: frozen records of KEKs, versions, people, signing keys
and backups, and the columns the backups table may be sorted by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


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
    backend: str = ""  # the backend holding this version (a migrated KEK's older ones differ)


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
