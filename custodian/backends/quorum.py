"""The ``quorum`` backend: KEK versions whose DEKs only a quorum of holders opens.

Custody version 2 (docs/custody.md): a version is a **manifest** (M, N, each
holder's share index and holder public key, the recovery key's fingerprint),
kept in the catalog where version 1 kept a public key, and fingerprinted by
SHA-256 over its encoding. The log records it in the version's creation entry,
signed by M of its holders, and the service compares the catalog with the log
before every wrap, so an edited manifest wraps nothing.

Wrapping uses public keys only: each DEK is split M-of-N and each share sealed
to its holder (:func:`custodian.custody.quorum.wrap`). This backend never
unwraps: there is no key here that opens a DEK. A DEK comes back only inside a
restore session, from shares the holders released to it
(:mod:`custodian.service.custody`).
"""

from __future__ import annotations

from collections.abc import Sequence

from custodian.backends.base import DekRef, Health, VersionMaterial
from custodian.catalog import Catalog
from custodian.custody.quorum import Manifest
from custodian.errors import BackendError, UnwrapError
from custodian.secret import SecretBytes

EMBEDDED_QUORUM = "embedded; shares sealed to holders, no key opens a DEK alone"


def never_alone(backup_id: str) -> str:
    return (
        f"the DEK of backup {backup_id} is under a quorum KEK: no key opens it alone. It "
        "opens only inside a restore session, from shares that custodians released to it."
    )


class QuorumBackend:
    name = "quorum"

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._manifests: dict[tuple[str, int, bytes], Manifest] = {}

    def close(self) -> None:
        self._manifests.clear()

    def manifest(self, kek: str, version: int) -> Manifest:
        """The manifest the catalog holds for ``kek`` v``version`` (checked for form; the
        service checks it against the signed log)."""
        v = self._catalog.kek_version(kek, version)
        if v.public_key is None:
            raise BackendError(f"KEK {kek} v{version} has no manifest in the catalog.")
        key = (kek, version, bytes(v.public_key))
        if key not in self._manifests:
            m = Manifest.decode(bytes(v.public_key))
            if (m.kek, m.version) != (kek, version):
                raise BackendError(
                    f"the manifest stored for KEK {kek} v{version} is that of {m.kek} "
                    f"v{m.version}; nothing was wrapped."
                )
            self._manifests[key] = m
        return self._manifests[key]

    def create_version(self, kek: str, suite: str, version: int) -> VersionMaterial:
        raise BackendError(
            f"a version of quorum KEK {kek} is made with its holders present "
            "(custodian kek create/rotate with --custody quorum); nothing was created."
        )

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        from custodian.custody import quorum as Q

        v = self._catalog.kek_version(kek, version)
        if v.state != "active":
            raise BackendError(f"KEK {kek} version {version} is {v.state} and wraps nothing new.")
        m = self.manifest(kek, version)
        return [Q.wrap(dek, m, bid).encode() for bid, dek in items]

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        return [UnwrapError(never_alone(r.backup_id)) for r in refs]

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        return [
            UnwrapError(
                f"backup {r.backup_id} is under a quorum KEK: its shares are refreshed "
                "holder by holder, never rewrapped in one process."
            )
            for r in refs
        ]

    def retire(self, kek: str, version: int) -> None:
        for key in [k for k in self._manifests if k[:2] == (kek, version)]:
            del self._manifests[key]

    def destroy(self, kek: str, version: int) -> None:
        self.retire(kek, version)

    def health(self) -> Health:
        return Health(self.name, True, EMBEDDED_QUORUM)
