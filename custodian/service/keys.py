"""``svc.keys``: the KEK lifecycle.

Generation, versions, rotation with its resumable rewrap job
(:mod:`custodian.rotation` holds the job itself), retirement, and destruction
through the approval mechanism (:mod:`custodian.service.approvals` calls
:meth:`Keys.destroy_at_quorum` inside the approving transaction).
"""

from __future__ import annotations

import builtins
import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodian import approvals as A
from custodian import rotation as R
from custodian.backends.base import KekBackend
from custodian.catalog import Kek, KekVersion
from custodian.config import SUITES
from custodian.errors import BackendError, ConflictError, CustodianError
from custodian.people import Actor
from custodian.service.context import HOME, HomeContext, Progress

if TYPE_CHECKING:
    from custodian.service.approvals import Approvals


@dataclass(frozen=True)
class QuorumDraft:
    """A quorum KEK's first version as :meth:`Keys.draft_quorum` made it, not yet signed:
    the manifest to show each holder (its ``fingerprint``), and their new holder keys,
    each sealed to its holder's personal key (no private key in clear here)."""

    name: str
    suite: str
    purpose: str
    holders: tuple[str, ...]
    manifest: Any
    made: tuple[Any, ...] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.fingerprint)

    @property
    def m(self) -> int:
        return int(self.manifest.m)


class Keys:
    """KEKs and their versions: create, rotate, rewrap, retire, destroy."""

    def __init__(self, ctx: HomeContext, approvals: Approvals) -> None:
        self._ctx = ctx
        self._approvals = approvals
        approvals.register(
            "kek.destroy",
            at_quorum=self.destroy_at_quorum,
            after_commit=self._destroy_material,
        )
        approvals.on_housekeeping(self._finish_destructions)

    def backend(self, name: str) -> KekBackend:
        """The backend named ``name`` in the configuration, loaded on first use."""
        return self._ctx.backend(name)

    def configure_backend(self, name: str, options: dict[str, Any], *, by: Actor) -> None:
        """Set ``[backends.NAME]`` options in the configuration (aws-kms: region,
        endpoint_url, ...), checked by the backend before they are saved. Custodians only;
        audited. Existing versions keep where their keys are (the signed material); the
        options say where new keys are made and how calls behave."""
        from dataclasses import replace

        ctx = self._ctx
        subject = f"backend:{name}"
        ctx.require(by, "custodian", "backend.configure", subject, allow_home=True)
        merged = {**ctx.config.backends.get(name, {}), **options}
        if name == "aws-kms":
            from custodian.backends.aws_kms_types import Settings

            Settings.from_config(merged)  # refuses credentials and bad values
        elif name != "local":
            raise BackendError(f"backend {name!r} is not available in this version of custodian.")
        details = {"options": {k: str(v) for k, v in merged.items()}}
        with ctx.audited(by, "backend.configure", subject, details):
            cfg = replace(ctx.config, backends={**ctx.config.backends, name: merged})
            cfg.save(ctx.home.config)
            ctx.config = cfg
            old = ctx._backends.pop(name, None)
            if old is not None and hasattr(old, "close"):
                old.close()

    def list(self) -> builtins.list[Kek]:
        return self._ctx.catalog.keks()

    def get(self, name: str) -> Kek:
        return self._ctx.catalog.kek(name)

    # ------------------------------------------------------------ generation

    def create(
        self,
        name: str,
        *,
        by: Actor,
        backend: str = "local",
        suite: str | None = None,
        purpose: str = "",
        code: str | None = None,
    ) -> Kek:
        """A new KEK with its first version. A custodian confirms with a fresh TOTP code
        (``code``); only the home identity, at ``init``, creates one without."""
        ctx = self._ctx
        ctx.require(by, "custodian", "kek.create", f"kek:{name}", allow_home=True)
        be = ctx.backend(backend)
        own = getattr(be, "suite", None)  # a server backend's one algorithm (aws-kms)
        if own is not None and suite not in (None, own):
            raise CustodianError(
                f"KEKs on backend {backend} are {own}; --suite {suite} does not apply. "
                "Nothing was created."
            )
        suite, purpose = self._check_new(name, suite or own, purpose, own)
        with ctx.audited(
            by,
            "kek.create",
            f"kek:{name}",
            {"backend": backend, "suite": suite, "purpose": purpose},
        ) as d:
            if by.name != HOME:
                d["step"] = ctx.confirm(by, code, "kek.create", f"kek:{name}")
            ctx.catalog.add_kek(name, backend, suite, purpose)
            mat = be.create_version(name, suite, 1)
            ctx.catalog.add_kek_version(name, 1, mat.fingerprint, mat.public_key, ctx.now())
            d.update(version=1, fingerprint=mat.fingerprint, **_material(backend, mat))
        return ctx.catalog.kek(name)

    def _check_new(
        self, name: str, suite: str | None, purpose: str, own_suite: str | None = None
    ) -> tuple[str, str]:
        """A new KEK's name, suite and purpose, checked: (suite, purpose) as they will be kept."""
        ctx = self._ctx
        suite = suite or ctx.config.default_suite
        purpose = " ".join(purpose.split())
        if len(purpose) > 200:
            raise CustodianError("the purpose is longer than 200 characters; shorten it.")
        from custodian.container import KEK_NAME_RE

        if not KEK_NAME_RE.fullmatch(name):
            raise CustodianError(
                f"{name!r} is not a valid KEK name: use 1 to 64 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit."
            )
        if suite not in SUITES and suite != own_suite:
            raise CustodianError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}.")
        # Names that differ only in case would name the same sealed key file on
        # the local backend (and confuse people): one spelling per name.
        clash = [k.name for k in ctx.catalog.keks() if k.name.lower() == name.lower()]
        if clash:
            raise ConflictError(
                f"a KEK named {clash[0]!r} exists; KEK names must differ in more than case. "
                "Nothing was created."
            )
        return suite, purpose

    def draft_quorum(
        self,
        name: str,
        holders: Sequence[Actor],
        m: int,
        *,
        by: Actor,
        suite: str | None = None,
        purpose: str = "",
    ) -> QuorumDraft:
        """The first half of :meth:`create_quorum`, for a ceremony that shows the manifest
        to each holder before anyone signs it: the checks, each holder's new key (sealed to
        their own personal key) and the manifest. Nothing is stored or recorded but a
        refusal; hand the draft to :meth:`create_quorum` (``draft=``) to sign and keep it."""
        from custodian.custody import holders as H
        from custodian.custody import quorum as Q
        from custodian.service import recovery

        ctx = self._ctx
        subject = f"kek:{name}"
        ctx.require(by, "custodian", "kek.create", subject)
        suite, purpose = self._check_new(name, suite, purpose)
        bg = recovery.target(ctx)  # the recovery key as the verified log announced it
        names = [h.name for h in holders]
        for h in holders:
            ctx.require(h, "custodian", "kek.create", subject)
        if len(set(names)) != len(names):
            raise ctx.refused(
                by, "kek.create", subject, "a holder named twice",
                "one share per person: a holder is named twice. Nothing was created.",
            )  # fmt: skip
        if not 2 <= m <= len(holders) - 1:
            raise ctx.refused(
                by, "kek.create", subject, f"quorum {m} of {len(holders)}",
                f"a quorum of {m} of {len(holders)} is not allowed: it needs 2 <= M <= N-1 "
                "(one holder alone opens nothing, losing one loses nothing). Nothing was "
                "created.",
            )  # fmt: skip
        home_id = ctx.config.home_id
        made = [
            H.new_holder_key(
                suite,
                home_id=home_id,
                person=h.name,
                kek=name,
                version=1,
                personal_key=h.personal,
                recovery_public=bg.public_key if bg is not None else None,
            )
            for h in holders
        ]
        man = Q.Manifest(
            home_id,
            name,
            1,
            suite,
            m,
            tuple(
                Q.Holder(h.name, x, k.key.public_key)
                for x, (h, k) in enumerate(zip(holders, made, strict=True), start=1)
            ),
            bg.fingerprint if bg is not None else "",  # none yet: sealed at the next split
        ).check()
        return QuorumDraft(name, suite, purpose, tuple(names), man, tuple(made))

    def create_quorum(
        self,
        name: str,
        holders: Sequence[Actor],
        m: int,
        *,
        by: Actor,
        code: str | None,
        suite: str | None = None,
        purpose: str = "",
        draft: QuorumDraft | None = None,
    ) -> Kek:
        """A quorum KEK (custody v2): each of ``holders`` (unlocked, present) gets a holder
        key for version 1, sealed to their own personal key; the manifest (M of N, share
        index x = 1..N in the order given) is signed by every holder in the log before the
        ``kek.create`` entry that announces it, and ``by`` confirms with a fresh code. No
        key that opens a DEK exists anywhere but in the holders' hands.

        ``draft`` is what :meth:`draft_quorum` made for these holders (the manifest each of
        them saw); without one, it is made here."""
        from custodian.custody import holders as H
        from custodian.service import items, recovery

        ctx = self._ctx
        subject = f"kek:{name}"
        if draft is None:
            draft = self.draft_quorum(name, holders, m, by=by, suite=suite, purpose=purpose)
        else:
            ctx.require(by, "custodian", "kek.create", subject)
            for h in holders:
                ctx.require(h, "custodian", "kek.create", subject)
            if (draft.name, draft.holders, draft.manifest.m) != (
                name,
                tuple(h.name for h in holders),
                m,
            ):
                raise ctx.refused(
                    by, "kek.create", subject, "the draft is of another KEK or holders",
                    "the manifest the holders saw is not of this KEK, these holders or this "
                    "quorum; start again. Nothing was created.",
                )  # fmt: skip
            self._check_new(name, draft.suite, draft.purpose)  # no KEK of the name meanwhile
        man, made = draft.manifest, draft.made
        suite, purpose = draft.suite, draft.purpose
        bg = recovery.target(ctx)
        if (bg.fingerprint if bg is not None else "") != man.recovery_fingerprint:
            raise ctx.refused(
                by, "kek.create", subject, "the recovery key changed since the draft",
                "the break-glass recovery key changed after the manifest was drafted; start "
                "again so that the holder keys are sealed to the current one. Nothing was "
                "created.",
            )  # fmt: skip
        digest = man.digest()
        with ctx.audited(
            by,
            "kek.create",
            subject,
            {
                "backend": "quorum",
                "suite": suite,
                "purpose": purpose,
                "custody": "quorum",
                "manifest": man.details(),
            },
        ) as d:
            d["step"] = ctx.confirm(by, code, "kek.create", subject)
            for h in holders:  # each holder signs the manifest, before it is announced
                ctx.record(
                    h,
                    "kek.manifest.sign",
                    f"kek:{name}/v1",
                    details={"version": 1, "digest": digest},
                )
            for h, k in zip(holders, made, strict=True):
                items.put(ctx, items.holder_entry(h.name, name, 1), k.item)
            if bg is not None:  # each holder key sealed to the recovery key, vouched for
                sealed = {H.recovery_name(k.key.person, name, 1): k.recovery_blob for k in made}
                recovery.vouch(ctx, by, bg.fingerprint, {n: b for n, b in sealed.items() if b})
            ctx.catalog.add_kek(name, "quorum", suite, purpose)
            ctx.catalog.add_kek_version(name, 1, man.fingerprint, man.encode(), ctx.now())
            d.update(version=1, fingerprint=man.fingerprint)
        return ctx.catalog.kek(name)

    def manifest(self, name: str, version: int, by: Actor | None = None) -> Any:
        """The manifest of a quorum KEK version, checked against the signed log."""
        from custodian.backends.quorum import QuorumBackend

        ctx = self._ctx
        k = ctx.catalog.kek(name)
        ctx.check_kek(k, version, by, "kek.manifest")
        be = ctx.backend(ctx.catalog.kek_version(name, version).backend)
        if not isinstance(be, QuorumBackend):
            raise ConflictError(f"KEK {name} is not a quorum KEK; it has no manifest.")
        return be.manifest(name, version)

    def add_version(self, name: str, *, by: Actor) -> KekVersion:
        """Create the next version of a KEK without a rewrap job (demo builder, tests).

        People rotate with :meth:`rotate`, which asks a TOTP code and starts the
        rewrap job; this lower step exists for sample data.
        """
        ctx = self._ctx
        ctx.require(by, "custodian", "kek.version.create", f"kek:{name}")
        kek = ctx.catalog.kek(name)
        be = ctx.backend(kek.backend)
        version = kek.current_version + 1
        with ctx.audited(by, "kek.version.create", f"kek:{name}", {"version": version}) as d:
            mat = be.create_version(name, kek.suite, version)
            ctx.catalog.add_kek_version(name, version, mat.fingerprint, mat.public_key, ctx.now())
            d.update(fingerprint=mat.fingerprint, **_material(kek.backend, mat))
        return ctx.catalog.kek_version(name, version)

    # ------------------------------------------------------------ rotation

    def rotate_preview(
        self, name: str, *, measure: bool = True, batch_size: int | None = None
    ) -> R.RotationPreview:
        """What :meth:`rotate` would do: census per version, DEKs to rewrap, and a time
        estimate from what is measured here and now: the suite's rate with throwaway
        keys (one unwrap and one wrap a DEK), the catalog's cost of a DEK (reading a
        sample of the job's rows, read-only; writing one back costs about as much), one
        fsync in the audit directory and the commit for each batch, and the start of
        the worker processes when the job would use them. Checked against the rate the
        job's first batches then measure (tests/unit/test_rotation.py, benchmarks)."""
        ctx = self._ctx
        k = ctx.catalog.kek(name)
        batch = batch_size if batch_size is not None else R.batch_for(k.dek_count)
        rate = batch_s = start_s = dek_s = 0.0
        workers = self._workers_for(k.backend, k.dek_count, max(batch, R.DEFAULT_BATCH))
        if batch_size is not None:
            workers = self._workers_for(k.backend, k.dek_count, batch_size)
        if measure and k.backend == "local":
            from custodian.backends.local import measure_rewrap_rate

            rate = measure_rewrap_rate(k.suite) * workers * (0.8 if workers > 1 else 1.0)
            batch_s = 2 * _fsync_seconds(ctx.home.audit) + 0.004
            start_s = 0.4 if workers > 1 else 0.0
            dek_s = 2 * _row_seconds(ctx.catalog.db, k.name, k.current_version + 1)
        return R.RotationPreview(
            kek=k.name,
            backend=k.backend,
            suite=k.suite,
            current_version=k.current_version,
            new_version=k.current_version + 1,
            census={v.version: v.dek_count for v in k.versions},
            to_rewrap=k.dek_count,
            rate=rate,
            workers=workers,
            unfinished=R.running_job(ctx.catalog.db, k.name),
            batch_size=batch,
            batch_seconds=batch_s,
            start_seconds=start_s,
            dek_seconds=dek_s,
        )

    @staticmethod
    def rewrap_workers(backend: str) -> int:
        """Worker processes a rewrap on ``backend`` uses by default (one per CPU, at most 8;
        one for backends without a pool)."""
        if backend == "local":
            return max(1, min(len(os.sched_getaffinity(0)), 8))
        return 1

    def _workers_for(
        self, backend: str, pending: int, batch_size: int, asked: int | None = None
    ) -> int:
        """How many workers a job of ``pending`` DEKs gets: a pool costs more to start than
        a few batches take, so under four batches it runs in this process."""
        n = asked if asked is not None else self.rewrap_workers(backend)
        return 1 if pending < 4 * batch_size or backend != "local" else max(1, n)

    def rotate(
        self, name: str, code: str | None, *, by: Actor, holders: Sequence[Actor] = ()
    ) -> Any:
        """Rotate KEK ``name``: a new version that wraps every new DEK from now on, and a
        rewrap job over every DEK under older versions (run it with :meth:`rewrap`).

        A custodian confirms with a fresh TOTP code. A job still running for this
        KEK is superseded: the new one covers its DEKs too. A quorum KEK rotates by
        refresh instead, with every holder present (``holders``, unlocked): it returns
        the refresh job (:mod:`custodian.custody.jobs`), which :meth:`refresh` runs.
        """
        ctx = self._ctx
        subject = f"kek:{name}"
        ctx.require(by, "custodian", "kek.rotate", subject)
        k = ctx.catalog.kek(name)
        if k.backend == "quorum":
            from custodian.service import quorum_jobs as QJ

            return QJ.rotate(ctx, name, holders, code, by=by)
        be = ctx.backend(k.backend)
        version = k.current_version + 1
        db = ctx.catalog.db
        with ctx.audited(by, "kek.rotate", subject, {"version": version}) as d:
            d["step"] = ctx.confirm(by, code, "kek.rotate", subject)
            old = R.running_job(db, name)
            mat = be.create_version(name, k.suite, version)
            ctx.catalog.add_kek_version(name, version, mat.fingerprint, mat.public_key, ctx.now())
            total = R.pending_count(db, name, version)
            j = R.add_job(db, name, version, by.name, total, ctx.now())
            d.update(
                fingerprint=mat.fingerprint,
                **_material(k.backend, mat),
                job=j.id,
                to_rewrap=total,
                census={str(v.version): v.dek_count for v in k.versions},
                superseded=old.id if old is not None else None,
            )
        return j

    # ------------------------------------------------------------ quorum KEKs: refresh

    def refresh(
        self,
        name: str,
        *,
        by: Actor,
        workers: int | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        deal: bool = True,
    ) -> Any:
        """Run (or resume) ``by``'s part of the refresh or redistribution of quorum KEK
        ``name``: the dealing (any custodian), their re-sharing (an old holder named as a
        source), their new shares (a holder of the new version). Resumable after a kill;
        a part done twice changes nothing. Returns a ``quorum_jobs.StepReport``."""
        from custodian.service import quorum_jobs as QJ

        return QJ.run(
            self._ctx, name, by=by, workers=workers, batch_size=batch_size,
            progress=progress, cancelled=cancelled, deal=deal,
        )  # fmt: skip

    def redistribute(
        self,
        name: str,
        holders: Sequence[Actor],
        m: int,
        sources: Sequence[str],
        code: str | None,
        *,
        by: Actor,
    ) -> Any:
        """A change of holders of quorum KEK ``name`` (add, remove, or replace a disabled
        one): the new holders, present, get keys for the next version and sign its
        manifest; ``sources`` (M current holders) each re-share their own share with
        :meth:`refresh`, and each new holder then combines what was sealed to them."""
        from custodian.service import quorum_jobs as QJ

        return QJ.redistribute(self._ctx, name, holders, m, sources, code, by=by)

    def holder_disabled(self, person: str) -> builtins.list[Any]:
        """What disabling holder ``person`` leaves to do: per quorum KEK whose current
        version they hold a share of, a ``quorum_jobs.NeededJob`` (the redistribution to
        start, with its command). Reads only; for the people capability to show."""
        from custodian.service import quorum_jobs as QJ

        return QJ.holder_disabled(self._ctx, person)

    def custody_jobs(self, name: str | None = None) -> builtins.list[Any]:
        """Refresh and redistribution jobs (of KEK ``name``), oldest first, each as a
        ``quorum_jobs.JobView``: census by version and each holder's progress."""
        from custodian.custody import jobs as J
        from custodian.service import quorum_jobs as QJ

        return [QJ.view(self._ctx, j) for j in J.jobs(self._ctx.catalog.db, name)]

    def jobs(self, name: str | None = None) -> builtins.list[R.RewrapJob]:
        """Every rewrap job (of KEK ``name``), oldest first: the rotation history."""
        return R.jobs(self._ctx.catalog.db, name)

    def job_states(self, jobs: builtins.list[R.RewrapJob]) -> dict[str, str]:
        """How each job stands (job id -> one of :data:`custodian.rotation.SHOWN_STATES`):
        an unfinished job is running (in a live process), paused, interrupted or not
        started, not just "running" as its row says."""
        db = self._ctx.catalog.db
        return {j.id: R.shown_state(db, j) for j in jobs}

    def failures(self, job_id: str | None = None) -> builtins.list[R.RewrapFailure]:
        return R.failures(self._ctx.catalog.db, job_id)

    def rewrap(
        self,
        name: str,
        *,
        by: Actor,
        workers: int | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None,
        on_failure: Callable[[R.RewrapFailure], None] | None = None,
    ) -> R.RewrapReport:
        """Run (or resume) the rewrap job of KEK ``name`` until every DEK under an older
        version is rewrapped to the current one, or ``cancelled()`` says stop.

        Resumes from the job's cursor after a crash, a kill or a cancel; with no
        running job and DEKs still under older versions (failures of an earlier
        job, imports), a new job starts; with nothing to do it changes nothing.
        A DEK that fails is recorded with its reason and the job carries on.
        Custodians run it (it unwraps with the old versions' private keys).
        """
        ctx = self._ctx
        subject = f"kek:{name}"
        ctx.require(by, "custodian", "kek.rewrap", subject)
        k = ctx.catalog.kek(name)
        migrating = any(  # DEKs still under versions on another backend: a migration's job
            v.backend != k.backend
            for v in k.versions
            if v.version < k.current_version and v.dek_count
        )
        if k.backend == "quorum" and not migrating:
            raise ConflictError(
                f"KEK {name} is a quorum KEK: no process rewraps its DEKs. Its holders "
                f"refresh their shares: 'custodian kek refresh {name} --as HOLDER'. Nothing "
                "was changed."
            )
        db = ctx.catalog.db
        target = k.current_version
        ctx.check_kek(k, target, by, "kek.rewrap")  # rewraps to a signed public key only
        j = R.running_job(db, name)
        if j is not None and j.target_version != target:
            j = None  # cannot happen through rotate(), which supersedes; be safe
        if j is None:
            total = R.pending_count(db, name, target)
            if total == 0:
                return R.RewrapReport("", name, target, 0, finished=True)
            with ctx.audited(by, "kek.rewrap.start", subject, {"version": target}) as d:
                j = R.add_job(db, name, target, by.name, total, ctx.now())
                d.update(job=j.id, to_rewrap=total)
        be = ctx.backend(k.backend)
        left = R.pending_count(db, name, target, j.cursor)
        if batch_size is None:  # small jobs get small batches: progress moves, cancel acts
            batch_size = R.batch_for(left)
            n = self._workers_for(k.backend, left, max(batch_size, R.DEFAULT_BATCH), workers)
        else:
            n = self._workers_for(k.backend, left, batch_size, workers)
        per_call = int(getattr(be, "batch_items", 0))
        if per_call > 1:  # a server's batches: whole ones per job batch, none left half-full
            batch_size = max(per_call, round(batch_size / per_call) * per_call)
        rewrapper: R.Rewrapper
        sources = {v.version: v.backend for v in k.versions if v.version < target}
        # a migration's job: DEKs wait under versions on another backend (a version left
        # behind empty, destroyed say, does not make a later rotation one)
        if any(v.backend != k.backend for v in k.versions if v.version < target and v.dek_count):
            from custodian.migration import CrossRewrapper

            n = 1
            rewrapper = CrossRewrapper(name, target, sources, ctx.backend, be)
        elif n > 1:
            from custodian.backends.local import LocalBackend, ProcessRewrapper

            assert isinstance(be, LocalBackend)
            rewrapper = ProcessRewrapper(be, name, target, n)
        elif getattr(be, "rewrap_threads", 0) > 1:  # a server backend: batches overlap
            rewrapper = R.ThreadRewrapper(be, target, int(getattr(be, "rewrap_threads", 1)))
        else:
            rewrapper = R.InlineRewrapper(be, target)
        with ctx.catalog.transaction():
            R.count_run(db, j.id, ctx.now())
            R.mark_running(db, j.id, R.process_tag(os.getpid()))
            ctx.record(
                by,
                "kek.rewrap.run",
                subject,
                details={"job": j.id, "version": target, "cursor": j.cursor, "workers": n},
            )

        def record_batch(
            job: R.RewrapJob,
            first: str,
            last: str,
            done: int,
            fails: builtins.list[R.RewrapFailure],
        ) -> None:
            ctx.record(
                by,
                "kek.rewrap.batch",
                subject,
                "ok" if not fails else "partial",
                {
                    "job": job.id,
                    "version": job.target_version,
                    "first": first,
                    "last": last,
                    "rewrapped": done,
                    "failed": [{"backup": f.backup, "reason": f.reason} for f in fails],
                },
            )

        try:
            report = R.run_job(
                db,
                ctx.catalog.transaction,
                R.job(db, j.id),
                rewrapper,
                record_batch=record_batch,
                now=ctx.now,
                batch_size=batch_size,
                progress=progress,
                cancelled=cancelled,
                on_failure=on_failure,
            )
        except BaseException as e:
            with suppress(Exception), ctx.catalog.transaction():
                R.mark_stopped(db, j.id)  # interrupted: the job resumes from its cursor
                if isinstance(e, CustodianError):  # a backend down, refusing, timing out
                    cur = R.job(db, j.id)
                    ctx.record(
                        by,
                        "kek.rewrap.stop",
                        subject,
                        "error",
                        {"job": j.id, "cursor": cur.cursor, "reason": str(e)[:400]},
                    )
            if isinstance(e, CustodianError) and not e.logged:  # a backend down, throttling
                ctx.record_refusal(by, "kek.rewrap.run", subject, str(e), {"job": j.id})
                e.logged = True
            raise
        finally:
            rewrapper.close()
        report.remaining = R.pending_count(db, name, target)
        failed_left = R.failures_remaining(db, j.id, target)
        if not report.cancelled:
            with ctx.catalog.transaction():
                R.finish_job(db, j.id, ctx.now())
                R.mark_stopped(db, j.id)
                cur = R.job(db, j.id)
                ctx.record(
                    by,
                    "kek.rewrap.done",
                    subject,
                    "ok" if report.remaining == 0 else "partial",
                    {
                        "job": j.id,
                        "version": target,
                        "rewrapped": cur.rewrapped,
                        "failed": cur.failed,
                        "remaining": report.remaining,
                        "failed_remaining": failed_left,
                    },
                )
            report.finished = True
        else:
            with ctx.catalog.transaction():
                cur = R.job(db, j.id)
                R.mark_stopped(db, j.id, paused_at=ctx.now())
                ctx.record(
                    by,
                    "kek.rewrap.pause",
                    subject,
                    details={"job": j.id, "cursor": cur.cursor, "remaining": report.remaining},
                )
        return report

    # ------------------------------------------------------------ retirement, destruction

    def retire(self, name: str, version: int, code: str | None, *, by: Actor) -> KekVersion:
        """Retire a version: it unwraps nothing from now on. Refused while its census is
        above zero, for the current version, and for a version not active."""
        ctx = self._ctx
        subject = f"kek:{name}/v{version}"
        action = "kek.version.retire"
        ctx.require(by, "custodian", action, subject)
        k = ctx.catalog.kek(name)
        with ctx.audited(by, action, subject, {"version": version}) as d:
            v = ctx.catalog.kek_version(name, version)  # under the write lock
            if v.state != "active":
                raise ConflictError(
                    f"KEK {name} v{version} is already {v.state}; nothing was done."
                )
            if version == k.current_version:
                raise ConflictError(
                    f"v{version} is the current version of KEK {name} and wraps every new DEK; "
                    "rotate first, then retire it once its census is zero. Nothing was done."
                )
            if v.dek_count > 0:
                raise ConflictError(
                    f"KEK {name} v{version} still wraps {v.dek_count:,} DEK(s); retiring it "
                    f"would make them unreadable. Run 'custodian kek rewrap {name}' (and look "
                    "at its failures) until the census is zero. Nothing was done."
                )
            d["step"] = ctx.confirm(by, code, action, subject)
            ctx.catalog.set_version_state(name, version, "retired", ctx.now())
            d.update(fingerprint=v.fingerprint, census=0)
            ctx.backend(v.backend or k.backend).retire(name, version)
        return ctx.catalog.kek_version(name, version)

    def request_destroy(self, name: str, version: int, reason: str, *, by: Actor) -> A.Request:
        """Ask for a retired version's key material to be destroyed (custodians).

        Allowed once the version has been retired for the policy's waiting period;
        two other custodians approve with TOTP (``svc.approvals.approve``), and at
        quorum the key material is destroyed. Refused while any DEK is under the version.
        """
        ctx = self._ctx
        action = "kek.destroy.request"
        subject = f"kek:{name}/v{version}"
        ctx.require(by, "custodian", action, subject)
        reason = " ".join(reason.split())
        if not reason:
            raise ctx.refused(
                by,
                action,
                subject,
                "no reason given",
                "a destruction request needs a reason (--reason TEXT); nothing was done.",
            )
        self._destroy_allowed(name, version, by, action, subject)
        short = self._approvers_missing(by)
        if short:
            raise ctx.refused(by, action, subject, short[0], short[1], ConflictError)
        v = ctx.catalog.kek_version(name, version)
        payload = {"kek": name, "version": version, "reason": reason, "fingerprint": v.fingerprint}
        return self._approvals.open_request("kek.destroy", payload, by=by, action=action)

    def destroy_refusal(self, name: str, version: int, *, by: Actor) -> str | None:
        """Why :meth:`request_destroy` would refuse this now, before anyone types a reason
        (None: it would not). Reads only; logs nothing (the request, if made, does)."""
        why = self._destroy_blocker(name, version)
        if why:
            return f"{why}. Nothing was done."
        short = self._approvers_missing(by)
        return short[1] if short else None

    def _approvers_missing(self, by: Actor) -> tuple[str, str] | None:
        """(logged reason, message) when fewer than a quorum of other custodians exist."""
        ctx = self._ctx
        q = ctx.policy.approval_quorum
        others = [
            p.name
            for p in ctx.catalog.people()
            if p.kind != "home" and p.active and p.has("custodian") and p.name != by.name
        ]
        if len(others) >= q:
            return None
        return (
            f"only {len(others)} other active custodian(s), the quorum is {q}",
            f"destroying a key needs {q} custodians other than {by.name} to approve, and "
            f"this home has {len(others)} ({', '.join(others) or 'none'}); enrol another "
            "custodian first. Nothing was done.",
        )

    def _destroy_allowed(
        self, name: str, version: int, by: Actor | None, action: str, subject: str
    ) -> KekVersion:
        ctx = self._ctx
        v = ctx.catalog.kek_version(name, version)
        why = self._destroy_blocker(name, version)
        if why:
            err = ctx.refused(by, action, subject, why, f"{why}. Nothing was done.", ConflictError)
            err.logged = True
            raise err
        return v

    def _destroy_blocker(self, name: str, version: int) -> str:
        """What stands in the way of destroying this version's key material ('' if nothing)."""
        ctx = self._ctx
        v = ctx.catalog.kek_version(name, version)
        why = ""
        if v.state != "retired":
            why = f"KEK {name} v{version} is {v.state}; only a retired version can be destroyed" + (
                " (retire it first)" if v.state == "active" else ""
            )
        elif v.dek_count > 0:
            why = f"KEK {name} v{version} still wraps {v.dek_count:,} DEK(s)"
        else:
            from datetime import datetime

            wait = ctx.policy.retirement_wait_days
            retired = (
                datetime.strptime(v.retired_at or "", "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=UTC)
                .timestamp()
            )
            ready = retired + 86400 * wait
            if ctx.clock() < ready:
                why = (
                    f"KEK {name} v{version} was retired at {(v.retired_at or '')[:19]}Z; the "
                    f"waiting period of {wait} day(s) ends {A.stamp(ready)[:19]}Z"
                )
        return why

    def destroy_at_quorum(self, r: A.Request, by: Actor, details: dict[str, Any]) -> None:
        """Inside the approving transaction: check again, mark destroyed, say so in the entry.
        The key material itself goes after the commit (:meth:`_destroy_material`)."""
        ctx = self._ctx
        name, version = str(r.payload["kek"]), int(r.payload["version"])
        self._destroy_allowed(name, version, by, "kek.destroy", f"kek:{name}/v{version}")
        ctx.catalog.set_version_state(name, version, "destroyed", ctx.now())
        A.set_request_state(ctx.catalog.db, r.id, "done", ctx.now())
        details.update(state="done", destroyed=f"{name}/v{version}")

    def _destroy_material(self, r: A.Request) -> None:
        if r.state != "done":
            return
        name, version = str(r.payload["kek"]), int(r.payload["version"])
        held = self._ctx.catalog.kek_version(name, version).backend  # a migrated KEK's own
        if held == "quorum":  # the old holder keys are what kept the old shares
            from custodian.custody.quorum import Manifest
            from custodian.service import quorum_jobs as QJ

            v = self._ctx.catalog.kek_version(name, version)
            if v.public_key is not None:
                QJ.forget_holder_keys(
                    self._ctx, name, version, Manifest.decode(bytes(v.public_key))
                )
        try:
            self._ctx.backend(held).destroy(name, version)
            if held == "aws-kms":
                self._scheduled(name, version)
        except (CustodianError, OSError) as e:
            raise BackendError(
                f"KEK {name} v{version} is recorded as destroyed, but its key material could "
                f"not be removed yet ({e}); custodian erases it at the next read of the "
                "requests (custodian restore list), or remove it by hand."
            ) from None

    def _finish_destructions(self) -> None:
        """Erase the key material of versions recorded as destroyed whose erasure did not
        happen (the process ended between the approving commit and the erasure)."""
        from custodian.backends.base import sealed_name

        ctx = self._ctx
        for k in ctx.catalog.keks():
            if any(v.backend == "quorum" for v in k.versions):
                self._finish_quorum_destructions(k)
            for v in k.versions:  # ScheduleKeyDeletion that did not happen (server down)
                key = f"aws-kms.deletion.{k.name}/v{v.version}"
                if (
                    v.backend == "aws-kms"
                    and v.state == "destroyed"
                    and (ctx.catalog.get_meta(key) is None)
                ):
                    with suppress(CustodianError):
                        ctx.backend("aws-kms").destroy(k.name, v.version)
                        self._scheduled(k.name, v.version)
            for v in k.versions:
                if v.backend != "local":
                    continue
                if v.state == "destroyed" and ctx.sealed.exists(sealed_name(k.name, v.version)):
                    ctx.backend("local").destroy(k.name, v.version)

    def _finish_quorum_destructions(self, k: Kek) -> None:
        """Holder keys of destroyed quorum versions still in the keyring (the process ended
        between the approving commit and their deletion) go now."""
        from custodian.custody.quorum import Manifest
        from custodian.service import items
        from custodian.service import quorum_jobs as QJ

        for v in k.versions:
            if v.state != "destroyed" or v.public_key is None:
                continue
            man = Manifest.decode(bytes(v.public_key))
            if any(
                items.get(self._ctx, items.holder_entry(h.name, k.name, v.version)) is not None
                for h in man.holders
            ):
                QJ.forget_holder_keys(self._ctx, k.name, v.version, man)

    def _scheduled(self, name: str, version: int) -> None:
        """Note that KMS has scheduled the deletion of an aws-kms version's key."""
        with self._ctx.catalog.transaction():
            self._ctx.catalog.set_meta(f"aws-kms.deletion.{name}/v{version}", self._ctx.now())


def _material(backend: str, mat: Any) -> dict[str, str]:
    """A server backend's version material in its creation entry (aws-kms: the key's ARN,
    region, endpoint and alias), so that an auditor reads where the key is and recomputes
    the fingerprint from the log alone (docs/backends.md)."""
    if backend != "aws-kms" or mat.public_key is None:
        return {}
    return {"material": bytes(mat.public_key).decode("utf-8")}


def _row_seconds(db: Any, kek: str, target: int, sample: int = 200) -> float:
    """Seconds the catalog takes to read one DEK's row as a job reads them (a sample of
    the first rows it would read; nothing written, no key material)."""
    start = time.perf_counter()
    batch = R.read_batch(db, kek, target, "", sample)
    return (time.perf_counter() - start) / max(1, len(batch.refs))


def _fsync_seconds(directory: Path) -> float:
    """How long one small write and fsync takes in ``directory`` (0 if it cannot tell)."""
    path = directory / f".fsync-probe-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return 0.0
    try:
        start = time.perf_counter()
        os.write(fd, b"x" * 512)
        os.fsync(fd)
        return time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
