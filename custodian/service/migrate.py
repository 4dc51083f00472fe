"""``svc.migrations``: moving a KEK to another backend (``custodian kek migrate``).

A migration is a rotation whose new version lives elsewhere: the next version of
the KEK is made on the target backend (``quorum``: with its holders present,
each signing the manifest in the log before the ``kek.migrate`` entry that
announces it; any other backend: through its ``create_version``), the KEK's new
DEKs go there from that commit on, and a rewrap job of the usual kind moves
every older DEK (:mod:`custodian.migration` has the rewrapper; the job itself is
:mod:`custodian.rotation`'s, run by ``svc.keys.rewrap``, so ``kek rewrap NAME``
resumes a migration as it resumes a rotation). The census is kept per backend
and version; the old versions then retire and are destroyed through the usual
destroy request (waiting period, quorum), which is what removes the single
private key.

The rules: custodians migrate, with a fresh TOTP code; every holder is an active
custodian, present (unlocked); one share per person, 2 <= M <= N-1; a KEK never
leaves the quorum backend this way (:func:`custodian.migration.refusal_from`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from custodian import rotation as R
from custodian.catalog import Kek
from custodian.errors import ConflictError
from custodian.migration import refusal_from
from custodian.people import Actor
from custodian.service.context import HomeContext

QUORUM = "quorum"


@dataclass(frozen=True)
class CensusRow:
    """DEKs under one version of a KEK, with the backend that holds that version."""

    backend: str
    version: int
    state: str
    deks: int


@dataclass(frozen=True)
class MigrationPreview:
    """What a migration of ``kek`` to ``to`` would do, shown before anyone confirms it."""

    kek: str
    from_backend: str
    to: str
    suite: str
    new_version: int
    census: tuple[CensusRow, ...]
    to_rewrap: int
    unfinished: R.RewrapJob | None  # a job still running, which the migration supersedes


def census_of(k: Kek) -> tuple[CensusRow, ...]:
    return tuple(
        CensusRow(v.backend or k.backend, v.version, v.state, v.dek_count) for v in k.versions
    )


class Migrations:
    """Move a KEK between backends with the rewrap job."""

    def __init__(self, ctx: HomeContext, rewrap: Callable[..., R.RewrapReport]) -> None:
        self._ctx = ctx
        self._rewrap = rewrap

    # ------------------------------------------------------------ reading

    def census(self, name: str) -> tuple[CensusRow, ...]:
        """DEKs per backend and version of KEK ``name``."""
        return census_of(self._ctx.catalog.kek(name))

    def preview(self, name: str, to: str) -> MigrationPreview:
        k = self._ctx.catalog.kek(name)
        return MigrationPreview(
            kek=k.name,
            from_backend=k.backend,
            to=to,
            suite=k.suite,
            new_version=k.current_version + 1,
            census=census_of(k),
            to_rewrap=k.dek_count,
            unfinished=R.running_job(self._ctx.catalog.db, k.name),
        )

    def is_migration(self, j: R.RewrapJob) -> bool:
        """Whether rewrap job ``j`` moves DEKs to another backend (its target version is on
        another backend than the version before it)."""
        k = self._ctx.catalog.kek(j.kek)
        held = {v.version: v.backend for v in k.versions}
        return held.get(j.target_version) != held.get(j.target_version - 1)

    def jobs(self, name: str | None = None) -> builtins.list[R.RewrapJob]:
        """The migration jobs (of KEK ``name``), oldest first."""
        return [j for j in R.jobs(self._ctx.catalog.db, name) if self.is_migration(j)]

    def refusal(self, name: str, to: str, *, by: Actor) -> str | None:
        """Why a migration of ``name`` to ``to`` would be refused now, before anyone types
        a code (None: it would not). Reads only; logs nothing."""
        ctx = self._ctx
        try:
            k = ctx.catalog.kek(name)
        except Exception as e:  # a name that is not there
            return str(e)
        why = refusal_from(k.backend, name) or self._same(k, to)
        if why:
            return why
        if to != QUORUM and to not in ctx.config.backends:
            return (
                f"backend {to!r} is not configured in {ctx.home.config}; add a [backends.{to}] "
                "section first. Nothing was done."
            )
        try:
            p = ctx.catalog.person(by.name)
        except Exception:
            p = None
        if p is None or not p.has("custodian"):
            return f"{by.name} is not a custodian: custodians migrate KEKs. Nothing was done."
        return None

    @staticmethod
    def _same(k: Kek, to: str) -> str:
        if k.backend == to:
            return f"KEK {k.name} is already on the {to} backend. Nothing was done."
        return ""

    # ------------------------------------------------------------ acting

    def to_quorum(
        self,
        name: str,
        holders: Sequence[Actor],
        m: int,
        *,
        by: Actor,
        code: str | None,
    ) -> R.RewrapJob:
        """Start moving KEK ``name`` to quorum custody: version N+1 is a quorum version whose
        ``holders`` (active custodians, present, unlocked) each get a holder key sealed to
        their own personal key, M of N; each signs the manifest before the ``kek.migrate``
        entry announces it; ``by`` confirms with a fresh code. Returns the rewrap job
        (run it with :meth:`run`)."""
        from custodian.custody import holders as H
        from custodian.custody import quorum as Q
        from custodian.service import items, recovery

        ctx = self._ctx
        action, subject = "kek.migrate", f"kek:{name}"
        ctx.require(by, "custodian", action, subject)
        k = ctx.catalog.kek(name)
        self._check_move(k, QUORUM, by)
        rec_public, rec_fp = recovery.seal_target(ctx)
        names = [h.name for h in holders]
        for h in holders:
            try:
                p = ctx.catalog.person(h.name)
            except Exception:
                p = None
            if p is None or p.kind != "person" or not p.active or not p.has("custodian"):
                raise ctx.refused(
                    by, action, subject, f"holder {h.name} is not an active custodian",
                    f"{h.name} is not an active custodian: only custodians hold shares of a "
                    "quorum KEK. Name custodians as holders. Nothing was migrated.",
                )  # fmt: skip
            ctx.require(h, "custodian", action, subject)
        if len(set(names)) != len(names):
            raise ctx.refused(
                by, action, subject, "a holder named twice",
                "one share per person: a holder is named twice. Nothing was migrated.",
            )  # fmt: skip
        if not 2 <= m <= len(holders) - 1:
            raise ctx.refused(
                by, action, subject, f"quorum {m} of {len(holders)}",
                f"a quorum of {m} of {len(holders)} is not allowed: it needs 2 <= M <= N-1 "
                "(one holder alone opens nothing, losing one loses nothing). Nothing was "
                "migrated.",
            )  # fmt: skip
        ctx.check_kek(k, k.current_version, by, action)  # the KEK is the one the log records
        version = k.current_version + 1
        home_id = ctx.config.home_id
        made = [
            H.new_holder_key(
                k.suite,
                home_id=home_id,
                person=h.name,
                kek=name,
                version=version,
                personal_key=h.personal,
                recovery_public=rec_public,
            )
            for h in holders
        ]
        man = Q.Manifest(
            home_id,
            name,
            version,
            k.suite,
            m,
            tuple(
                Q.Holder(h.name, x, nk.key.public_key)
                for x, (h, nk) in enumerate(zip(holders, made, strict=True), start=1)
            ),
            rec_fp,  # "" before the first break-glass split (holders seal theirs then)
        ).check()
        digest = man.digest()
        details: dict[str, Any] = {
            "version": version,
            "from_backend": k.backend,
            "backend": QUORUM,
            "suite": k.suite,
            "custody": QUORUM,
            "manifest": man.details(),
        }
        with ctx.audited(by, action, subject, details) as d:
            d["step"] = ctx.confirm(by, code, action, subject)
            for h in holders:  # each holder signs the manifest before it is announced
                ctx.record(
                    h,
                    "kek.manifest.sign",
                    f"kek:{name}/v{version}",
                    details={"version": version, "digest": digest},
                )
            for h, nk in zip(holders, made, strict=True):
                items.put(ctx, items.holder_entry(h.name, name, version), nk.item)
            recovery.vouch_holder_keys(ctx, by, name, version, made)
            d.update(self._move(k, QUORUM, version, man.fingerprint, man.encode(), by))
        return R.job(ctx.catalog.db, str(d["job"]))

    def to_backend(self, name: str, backend: str, *, by: Actor, code: str | None) -> R.RewrapJob:
        """Start moving KEK ``name`` to ``backend`` (any configured backend but quorum, which
        needs its holders: :meth:`to_quorum`): version N+1 is made there through the
        backend interface; ``by`` confirms with a fresh code. Returns the rewrap job."""
        ctx = self._ctx
        action, subject = "kek.migrate", f"kek:{name}"
        ctx.require(by, "custodian", action, subject)
        k = ctx.catalog.kek(name)
        if backend == QUORUM:
            raise ctx.refused(
                by, action, subject, "quorum without holders",
                "a migration to quorum custody needs its holders present (--holders "
                "NAME,NAME,NAME --quorum M). Nothing was migrated.",
            )  # fmt: skip
        self._check_move(k, backend, by)
        ctx.check_kek(k, k.current_version, by, action)
        be = ctx.backend(backend)  # a backend that is not configured says so
        version = k.current_version + 1
        details: dict[str, Any] = {
            "version": version,
            "from_backend": k.backend,
            "backend": backend,
            "suite": k.suite,
            "custody": "single",
        }
        with ctx.audited(by, action, subject, details) as d:
            d["step"] = ctx.confirm(by, code, action, subject)
            mat = be.create_version(name, k.suite, version)
            d.update(self._move(k, backend, version, mat.fingerprint, mat.public_key, by))
        return R.job(ctx.catalog.db, str(d["job"]))

    def run(self, name: str, *, by: Actor, **kw: Any) -> R.RewrapReport:
        """Run (or resume) the migration's rewrap job: ``svc.keys.rewrap`` (the same job
        family: resumable, idempotent, one signed entry per batch)."""
        return self._rewrap(name, by=by, **kw)

    # ------------------------------------------------------------ inside

    def _check_move(self, k: Kek, to: str, by: Actor) -> None:
        why = refusal_from(k.backend, k.name) or self._same(k, to)
        if why:
            raise self._ctx.refused(
                by, "kek.migrate", f"kek:{k.name}", f"from {k.backend} to {to}", why, ConflictError
            )

    def _move(
        self, k: Kek, backend: str, version: int, fp: str, material: bytes | None, by: Actor
    ) -> dict[str, Any]:
        """Inside the migration's transaction: the new version on ``backend``, the KEK's new
        DEKs go there, and the job over every older DEK. Returns what the entry says."""
        ctx = self._ctx
        db = ctx.catalog.db
        old = R.running_job(db, k.name)
        ctx.catalog.set_kek_backend(k.name, backend)
        ctx.catalog.add_kek_version(k.name, version, fp, material, ctx.now(), backend=backend)
        total = R.pending_count(db, k.name, version)
        j = R.add_job(db, k.name, version, by.name, total, ctx.now())
        return {
            "fingerprint": fp,
            "job": j.id,
            "to_rewrap": total,
            "census": {
                f"{row.backend}/v{row.version}": row.deks for row in census_of(k) if row.deks
            },
            "superseded": old.id if old is not None else None,
        }
