"""Moving a KEK to another backend (``custodian kek migrate``): the rewrap across backends.

A migration makes the next version of a KEK on the target backend (for ``quorum``,
with its holders present: a manifest they sign) and a rewrap job of the usual
kind (:mod:`custodian.rotation`): resumable from its cursor, idempotent, safe
against a kill at any moment, one signed entry per batch. Only the batch's
rewrapper differs: a DEK is unwrapped by the backend that holds its version and
wrapped by the target's, in this process, one batch at a time, and the plaintext
DEK is wiped as soon as it is wrapped again.

What stays as it was: the container. Its header keeps the DEK as wrapped at
creation (docs/format.md), as after a rotation; the catalog holds the current
wrap, and a restore opens that one. The header's old wrap opens only while the
old version's key material exists: destroying that version (retire, then the
destroy request: waiting period and quorum) is what ends it.

Leaving the ``quorum`` backend is not a migration: it would need every DEK
rebuilt from the holders' shares in one process, which custody version 2 never
does outside a restore session (DESIGN.md, the custody invariant, 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

from custodian.backends.base import DekRef, KekBackend
from custodian.errors import UnwrapError
from custodian.secret import SecretBytes


def refusal_from(backend: str, kek: str) -> str:
    """Why a KEK on ``backend`` does not migrate ('' if it may)."""
    if backend == "quorum":
        return (
            f"KEK {kek} is a quorum KEK: no process can open its DEKs alone, and a migration "
            "would have to rebuild every one of them in one place, which custody v2 never does "
            "outside a restore session. To move its backups elsewhere, restore them in an "
            "approved session and encrypt them again under the other KEK. Nothing was done."
        )
    return ""


class CrossRewrapper:
    """Rewrap batches from the versions' own backends to ``target`` (one at a time)."""

    workers = 1

    def __init__(
        self,
        kek: str,
        to_version: int,
        sources: Mapping[int, str],
        load: Callable[[str], KekBackend],
        target: KekBackend,
    ) -> None:
        self.kek = kek
        self.to_version = to_version
        self._sources = dict(sources)
        self._load = load
        self._target = target

    def _rewrap(self, refs: Sequence[DekRef]) -> list[bytes | UnwrapError]:
        out: list[bytes | UnwrapError] = [UnwrapError("not rewrapped")] * len(refs)
        by_backend: dict[str, list[int]] = {}
        for i, r in enumerate(refs):
            name = self._sources.get(r.version)
            if name is None:
                out[i] = UnwrapError(
                    f"backup {r.backup_id} is under v{r.version} of KEK {r.kek}, which this "
                    "migration does not know; nothing was changed."
                )
                continue
            by_backend.setdefault(name, []).append(i)
        for name, idx in by_backend.items():
            be = self._load(name)
            if be.name == self._target.name:  # already on the target: its own rewrap
                got = be.rewrap([refs[i] for i in idx], self.to_version)
                for i, g in zip(idx, got, strict=True):
                    out[i] = g
                continue
            deks = be.unwrap([refs[i] for i in idx])
            try:
                good = [
                    (i, d) for i, d in zip(idx, deks, strict=True) if isinstance(d, SecretBytes)
                ]
                for i, d in zip(idx, deks, strict=True):
                    if isinstance(d, UnwrapError):
                        out[i] = d
                if good:
                    wrapped = self._target.wrap(
                        self.kek, self.to_version, [(refs[i].backup_id, d) for i, d in good]
                    )
                    for (i, _), w in zip(good, wrapped, strict=True):
                        out[i] = w
            finally:
                for d in deks:
                    if isinstance(d, SecretBytes):
                        d.wipe()
        return out

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        f: Future[list[bytes | UnwrapError]] = Future()
        try:
            f.set_result(self._rewrap(refs))
        except BaseException as e:  # handed to the caller through the future
            f.set_exception(e)
        return f

    def close(self) -> None:
        pass
