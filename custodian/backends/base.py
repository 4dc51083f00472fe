"""The interface every KEK backend implements.

Every wrap binds its context (backup id, KEK name, KEK version) so that a
wrapped DEK cannot be moved onto another backup or read as another version.
Batch calls take and return lists in the same order; one bad item in an
unwrap or rewrap batch comes back as an :class:`UnwrapError` in its slot
instead of failing the batch, so a job can record it and carry on.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from custodian.errors import UnwrapError
from custodian.secret import SecretBytes


@dataclass(frozen=True)
class DekRef:
    """A wrapped DEK and what it is bound to."""

    backup_id: str
    kek: str
    version: int
    wrapped: bytes


@dataclass(frozen=True)
class VersionMaterial:
    """What the catalog records of a new KEK version."""

    version: int
    fingerprint: str
    public_key: bytes | None


EMBEDDED = "embedded; no server"  # the local backend's health: nothing can be down


@dataclass(frozen=True)
class Check:
    """One line of a backend's health: what was checked, whether it passed, and why."""

    name: str  # reachable | authenticated | key | permissions | ...
    ok: bool
    detail: str


@dataclass(frozen=True)
class Health:
    backend: str
    ok: bool
    detail: str
    checks: tuple[Check, ...] = ()  # the detailed checks, when the backend makes them


def dek_context(backup_id: str, kek: str, version: int) -> bytes:
    """The bytes every wrap of a DEK is bound to (HPKE ``info``; docs/format.md)."""
    return (
        b"custodian/v1/dek\0"
        + uuid.UUID(backup_id).bytes
        + kek.encode("utf-8")
        + b"\0"
        + struct.pack(">I", version)
    )


def sealed_name(kek: str, version: int) -> str:
    """The sealed-store name of a local KEK version's private key (lowercase: one file
    per name whatever its case, which is why KEK names may not differ in case only)."""
    return f"kek/{kek.lower()}/v{version}"


class KekBackend(Protocol):
    """A place where KEKs live. Implementations: local (here), vault, aws-kms."""

    name: str

    def create_version(self, kek: str, suite: str, version: int) -> VersionMaterial:
        """Make key material for ``version`` of ``kek`` (version 1 creates the KEK)."""
        ...

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        """Wrap DEKs (backup id, DEK) under one version. Needs no secret on local."""
        ...

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        """Unwrap DEKs; a failed item comes back as an error in its slot."""
        ...

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        """Wrap the same DEKs under ``to_version``; plaintext stays inside the backend."""
        ...

    def retire(self, kek: str, version: int) -> None:
        """Stop ``version`` from unwrapping."""
        ...

    def destroy(self, kek: str, version: int) -> None:
        """Destroy ``version``'s key material for good."""
        ...

    def health(self) -> Health: ...
