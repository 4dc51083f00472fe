"""Rotation and redistribution of quorum KEKs (docs/custody.md section 8), for ``svc.keys``.

- :func:`rotate`: the ceremony with every holder present. Each gets a new holder key
  for the next version, each signs the new manifest (same holders, indices and M),
  ``kek.rotate`` announces it with a *refresh* job; the dealer's step then runs.
- :func:`redistribute`: a change of holders. The new holders, present, get holder
  keys and sign the new manifest; ``kek.redistribute`` announces it with a job whose
  sources are M old holders (each re-shares their own share) and whose targets are
  the new holders (each combines the sub-shares sealed to them).
- :func:`run`: whatever step the person running it has in the job (the dealer's,
  an old holder's re-sharing, a new holder's sealing), batch by batch, resumable.
- :func:`holder_disabled`: what a disabled holder leaves to do, per quorum KEK.

Every batch is one catalog transaction with a signed entry (``kek.refresh.batch``
or ``kek.redistribute.batch``) listing SHA-256 over what it sealed. No step ever
holds a DEK: nothing here calls :func:`custodian.custody.quorum.combine`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from custodian.custody import holders as H
from custodian.custody import jobs as J
from custodian.custody import quorum as Q
from custodian.custody import steps as S
from custodian.errors import ConflictError, CustodianError, NotFoundError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import items, recovery
from custodian.service.context import HomeContext, Progress

DEFAULT_BATCH = 500  # DEKs per batch (one transaction, one entry): ~3 HPKE operations each
KEEP_FAILURES = 1000  # a run's report keeps the first reasons; the job counts every one
ACTIONS = {"refresh": "kek.refresh", "redistribute": "kek.redistribute"}


@dataclass
class StepReport:
    """What one run of one person's steps in a custody job did."""

    job: str
    kek: str
    kind: str
    who: str
    roles: list[str] = field(default_factory=list)
    done: int = 0  # parts made or shares sealed in this run
    moved: int = 0  # DEKs that reached the target version in this run
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    waiting: bool = False  # stopped at DEKs whose sources have not all done their part
    finished: bool = False  # the job is done
    workers: int = 1
    interrupted: str = ""  # the previous run of this person's part ended without a word

    def summary(self) -> str:
        if self.finished:
            state = "the job is done"
        elif self.failed:
            state = "some DEKs failed and stay under their old version"
        elif self.cancelled:
            state = "cancelled; run it again to resume"
        elif self.waiting:
            state = "the rest waits for other holders' parts"
        else:
            state = "your part is done; the job waits for the other holders"
        return (
            f"{self.kind} of KEK {self.kek} ({self.who}: {', '.join(self.roles) or 'nothing'}): "
            f"{self.done:,} done, {len(self.failed):,} failed, {self.moved:,} DEK(s) moved "
            f"to the new version in this run ({self.seconds:.1f} s, {self.workers} worker(s)); "
            f"{state}"
        )


def _manifest(ctx: HomeContext, kek: str, version: int, by: Actor | None, action: str) -> Any:
    from custodian.backends.quorum import QuorumBackend

    k = ctx.catalog.kek(kek)
    ctx.check_kek(k, version, by, action)
    be = ctx.backend(k.backend)
    if not isinstance(be, QuorumBackend):
        raise ConflictError(f"KEK {kek} is not a quorum KEK; rotate it with its rewrap job.")
    return be.manifest(kek, version)


def _old_manifests(ctx: HomeContext, j: J.CustodyJob, by: Actor | None) -> dict[int, Q.Manifest]:
    k = ctx.catalog.kek(j.kek)
    return {
        v.version: _manifest(ctx, j.kek, v.version, by, ACTIONS[j.kind])
        for v in k.versions
        if v.version < j.target_version and v.state == "active" and v.dek_count > 0
    }


def _new_keys(
    ctx: HomeContext, kek: str, version: int, suite: str, holders: Sequence[Actor]
) -> list[H.NewHolderKey]:
    return [
        H.new_holder_key(
            suite,
            home_id=ctx.config.home_id,
            person=h.name,
            kek=kek,
            version=version,
            personal_key=h.personal,
            recovery_public=recovery.seal_target(ctx)[0],
        )
        for h in holders
    ]


def _announce(
    ctx: HomeContext,
    action: str,
    kind: str,
    name: str,
    man: Q.Manifest,
    holders: Sequence[Actor],
    made: Sequence[H.NewHolderKey],
    sources: Sequence[str],
    code: str | None,
    by: Actor,
    extra: dict[str, Any],
) -> J.CustodyJob:
    """The new version, its holder keys, the manifest signatures and the job, in one
    transaction whose entry (``action``) announces the manifest."""
    k = ctx.catalog.kek(name)
    subject = f"kek:{name}"
    digest = man.digest()
    with ctx.audited(
        by,
        action,
        subject,
        {"version": man.version, "suite": man.suite, "custody": "quorum", **extra},
    ) as d:
        d["step"] = ctx.confirm(by, code, action, subject)
        for h in holders:  # each new holder signs the manifest before it is announced
            ctx.record(
                h,
                "kek.manifest.sign",
                f"kek:{name}/v{man.version}",
                details={"version": man.version, "digest": digest},
            )
        for h, nk in zip(holders, made, strict=True):
            items.put(ctx, items.holder_entry(h.name, name, man.version), nk.item)
        recovery.vouch_holder_keys(ctx, by, name, man.version, list(made))
        ctx.catalog.add_kek_version(name, man.version, man.fingerprint, man.encode(), ctx.now())
        j, superseded = J.add_job(
            ctx.catalog.db, name, kind, man.version, by.name, sources,
            [h.name for h in man.holders], ctx.now(),
        )  # fmt: skip
        d.update(
            fingerprint=man.fingerprint,
            manifest=man.details(),
            job=j.id,
            kind=kind,
            sources=list(sources),
            to_move=j.total,
            census={str(v.version): v.dek_count for v in k.versions},
            superseded=superseded,
        )
    return j


def _present(
    ctx: HomeContext, holders: Sequence[Actor], action: str, subject: str, by: Actor
) -> None:
    names = [h.name for h in holders]
    for h in holders:
        ctx.require(h, "custodian", action, subject)
        _ = h.personal  # each present holder is unlocked with their own passphrase
    if len(set(names)) != len(names):
        raise ctx.refused(
            by, action, subject, "a holder named twice",
            "one share per person: a holder is named twice. Nothing was changed.",
        )  # fmt: skip


def rotate(
    ctx: HomeContext, name: str, holders: Sequence[Actor], code: str | None, *, by: Actor
) -> J.CustodyJob:
    """The rotation ceremony of quorum KEK ``name``: every holder present gets a new
    holder key; the new version's manifest (same holders, indices, M) is signed by
    each of them and announced with a refresh job. Deal with :func:`run`."""
    subject = f"kek:{name}"
    action = "kek.rotate"
    ctx.require(by, "custodian", action, subject)
    k = ctx.catalog.kek(name)
    cur = _manifest(ctx, name, k.current_version, by, action)
    _present(ctx, holders, action, subject, by)
    have = {h.name: h for h in holders}
    missing = [h.name for h in cur.holders if h.name not in have]
    extra = sorted(set(have) - {h.name for h in cur.holders})
    if missing or extra:
        why = (
            f"the holders of v{cur.version} are {', '.join(h.name for h in cur.holders)}; "
            + (f"{', '.join(missing)} not present" if missing else "")
            + ("; " if missing and extra else "")
            + (f"{', '.join(extra)} hold no share" if extra else "")
        )
        raise ctx.refused(
            by, action, subject, why,
            f"a rotation refreshes every holder's share, so every holder of v{cur.version} "
            f"takes part ({why}). A change of holders is 'custodian kek redistribute'. "
            "Nothing was changed.",
            ConflictError,
        )  # fmt: skip
    for v in k.versions:  # DEKs still under older versions are refreshed too
        if v.version < k.current_version and v.state == "active" and v.dek_count > 0:
            om = _manifest(ctx, name, v.version, by, action)
            if [(h.name, h.x) for h in om.holders] != [(h.name, h.x) for h in cur.holders] or (
                om.m != cur.m
            ):
                raise ctx.refused(
                    by, action, subject, f"v{v.version} has other holders",
                    f"{v.dek_count:,} DEK(s) are still under v{v.version}, whose holders "
                    f"differ from v{cur.version}'s; finish its job first ('custodian kek "
                    f"jobs {name}'). Nothing was changed.",
                    ConflictError,
                )  # fmt: skip
    ordered = [have[h.name] for h in cur.holders]
    version = k.current_version + 1
    made = _new_keys(ctx, name, version, k.suite, ordered)
    man = Q.Manifest(
        cur.home_id, name, version, cur.suite, cur.m,
        tuple(Q.Holder(h.name, h.x, nk.key.public_key)
              for h, nk in zip(cur.holders, made, strict=True)),
        recovery.seal_target(ctx)[1],  # the current recovery key, not the old version's
    ).check()  # fmt: skip
    return _announce(ctx, action, "refresh", name, man, ordered, made, [J.DEALER], code, by, {})


def redistribute(
    ctx: HomeContext,
    name: str,
    holders: Sequence[Actor],
    m: int,
    sources: Sequence[str],
    code: str | None,
    *,
    by: Actor,
) -> J.CustodyJob:
    """A change of holders of quorum KEK ``name``: the new holders (present, unlocked)
    get holder keys for the next version, signed and announced with a redistribution
    job whose sources are ``sources`` (M holders of the current version, who each
    re-share their own share with :func:`run`)."""
    subject = f"kek:{name}"
    action = "kek.redistribute"
    ctx.require(by, "custodian", action, subject)
    k = ctx.catalog.kek(name)
    cur = _manifest(ctx, name, k.current_version, by, action)
    _present(ctx, holders, action, subject, by)
    if not 2 <= m <= len(holders) - 1:
        raise ctx.refused(
            by, action, subject, f"quorum {m} of {len(holders)}",
            f"a quorum of {m} of {len(holders)} is not allowed: it needs 2 <= M <= N-1 (one "
            "holder alone opens nothing, losing one loses nothing). Nothing was changed.",
        )  # fmt: skip
    srcs = list(dict.fromkeys(sources))
    old_names = {h.name for h in cur.holders}
    bad = [s for s in srcs if s not in old_names]
    if bad or len(srcs) != cur.m:
        raise ctx.refused(
            by, action, subject, f"sources {', '.join(srcs) or 'none'}",
            f"a redistribution needs exactly {cur.m} holders of v{cur.version} to re-share "
            f"their shares ({', '.join(sorted(old_names))}); "
            + (f"{', '.join(bad)} hold no share. " if bad else "")
            + "Nothing was changed.",
            ConflictError,
        )  # fmt: skip
    for v in k.versions:  # DEKs still under older versions must be re-shareable too
        if v.version < k.current_version and v.state == "active" and v.dek_count > 0:
            om = _manifest(ctx, name, v.version, by, action)
            if om.m != cur.m or not set(srcs) <= {h.name for h in om.holders}:
                raise ctx.refused(
                    by, action, subject, f"v{v.version} has other holders",
                    f"{v.dek_count:,} DEK(s) are still under v{v.version}, whose holders "
                    f"differ; finish its job first ('custodian kek jobs {name}'). Nothing "
                    "was changed.",
                    ConflictError,
                )  # fmt: skip
    for s in srcs:
        p = ctx.catalog.person(s)
        if not p.active:
            raise ctx.refused(
                by, action, subject, f"{s} is disabled",
                f"{s} is disabled and cannot re-share; name {cur.m} active holders of "
                f"v{cur.version} with --sources. Nothing was changed.",
                ConflictError,
            )  # fmt: skip
    version = k.current_version + 1
    made = _new_keys(ctx, name, version, k.suite, holders)
    man = Q.Manifest(
        cur.home_id, name, version, cur.suite, m,
        tuple(Q.Holder(h.name, x, nk.key.public_key)
              for x, (h, nk) in enumerate(zip(holders, made, strict=True), start=1)),
        recovery.seal_target(ctx)[1],  # the current recovery key, not the old version's
    ).check()  # fmt: skip
    return _announce(
        ctx, action, "redistribute", name, man, holders, made, srcs, code, by,
        {"from_holders": [h.name for h in cur.holders], "from_m": cur.m},
    )  # fmt: skip


# ---------------------------------------------------------------- running a step


def _raw_holder_key(ctx: HomeContext, by: Actor, man: Q.Manifest) -> SecretBytes:
    raw = items.holder_private_raw(ctx, by, man)
    if H.public_of(man.suite, raw) != man.holder(by.name).public_key:
        raw.wipe()
        raise AuthError(
            f"{by.name}'s holder key of KEK {man.kek} v{man.version} does not match the "
            "public key its manifest names; it was not used. Nothing was changed."
        )
    return raw


def _load(suite: str, raw: SecretBytes) -> Any:
    from custodian.backends.local import load_private

    return load_private(suite, raw)


def run(
    ctx: HomeContext,
    name: str,
    *,
    by: Actor,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    deal: bool = True,
) -> StepReport:
    """Run (or resume) ``by``'s part of the running custody job of KEK ``name`` (first
    the dealing of a refresh, if unfinished, unless ``deal`` is False)."""
    db = ctx.catalog.db
    subject = f"kek:{name}"
    ctx.require(by, "custodian", "kek.refresh", subject)
    j = J.running_job(db, name)
    if j is None:
        raise NotFoundError(
            f"KEK {name} has no refresh or redistribution under way ('custodian kek jobs "
            f"{name}' lists what was done); nothing was changed."
        )
    action = ACTIONS[j.kind]
    # small jobs get small batches (progress moves, a cancel acts, workers share them)
    bs = batch_size or max(50, min(DEFAULT_BATCH, -(-j.total // 10)))
    new = _manifest(ctx, name, j.target_version, by, action)
    old = _old_manifests(ctx, j, by)
    report = StepReport(j.id, name, j.kind, by.name)
    start = time.perf_counter()
    roles: list[tuple[str, str]] = []
    if deal and j.kind == "refresh" and J.source_batch(db, j, J.DEALER, 1) is not None:
        roles.append(("source", J.DEALER))  # the dealer's step: public keys only
    if by.name in j.sources:
        roles.append(("source", by.name))
    if by.name in j.targets:
        roles.append(("target", by.name))
    if not any(r == "target" or w == by.name for r, w in roles) and not roles:
        raise ctx.refused(
            by, f"{action}.run", subject, f"{by.name} has no part in job {j.id[:8]}",
            f"{by.name} has no part in the {j.kind} of KEK {name} (job {j.id[:8]}): its "
            f"holders are {', '.join(j.targets)}"
            + (f", its sources {', '.join(j.sources)}" if j.kind == "redistribute" else "")
            + ". Nothing was changed.",
            ConflictError,
        )  # fmt: skip
    from custodian import rotation as R

    run_key = f"custody.run.{j.id}.{by.name}"
    was = ctx.catalog.get_meta(run_key) or ""
    if was and not R._alive(was):
        report.interrupted = (
            f"the previous run of {by.name}'s part of job {j.id[:8]} was interrupted (killed, "
            "or its process died); every batch it committed is kept and this run resumes "
            "after the last one. Nothing was lost."
        )
    with ctx.catalog.transaction():
        J.count_run(db, j.id, ctx.now())
        ctx.catalog.set_meta(run_key, R.process_tag(os.getpid()))
        ctx.record(
            by, f"{action}.run", subject,
            details={"job": j.id, "version": j.target_version,
                     "steps": [f"{r}:{w}" for r, w in roles],
                     "resumes_interrupted_run": bool(report.interrupted)},
        )  # fmt: skip
    try:
        for role, who in roles:
            if cancelled is not None and cancelled():
                report.cancelled = True
                break
            report.roles.append("deal" if who == J.DEALER else role)
            if role == "source":
                _run_source(ctx, j, who, by, new, old, bs, report, progress, cancelled)
            else:
                _run_target(ctx, j, by, new, old, bs, workers, report, progress, cancelled)
    except BaseException:
        with suppress(Exception), ctx.catalog.transaction():
            ctx.catalog.set_meta(run_key, "")  # stopped by an error: resumes from its cursor
        raise
    finally:
        report.seconds = time.perf_counter() - start
    with ctx.catalog.transaction():
        ctx.catalog.set_meta(run_key, "")
    j = J.job(db, j.id)
    if j.state == "running" and J.finished(db, j):
        with ctx.catalog.transaction():
            J.finish_job(db, j.id, ctx.now())
            j = J.job(db, j.id)
            ctx.record(
                by, f"{action}.done", subject, "ok" if j.failed == 0 else "partial",
                {"job": j.id, "version": j.target_version, "moved": j.completed,
                 "failed": j.failed, "remaining": J.pending_count(db, name, j.target_version)},
            )  # fmt: skip
        report.finished = True
    elif report.cancelled:
        with ctx.catalog.transaction():
            ctx.record(by, f"{action}.pause", subject, details={"job": j.id})
    return report


def _run_source(
    ctx: HomeContext,
    j: J.CustodyJob,
    who: str,
    by: Actor,
    new: Q.Manifest,
    old: dict[int, Q.Manifest],
    bs: int,
    report: StepReport,
    progress: Progress | None,
    cancelled: Callable[[], bool] | None,
) -> None:
    db = ctx.catalog.db
    action = ACTIONS[j.kind]
    privs: dict[int, Any] = {}
    if who != J.DEALER:
        for v, m in old.items():
            with _raw_holder_key(ctx, by, m) as raw:
                privs[v] = _load(m.suite, raw)
    keys = S.StepKeys(j.kind, "source", who, new, old, j.sources, None, privs)
    total = max(1, J.pending_count(db, j.kek, j.target_version))
    done = J.step(db, j, "source", who).done
    while True:
        if cancelled is not None and cancelled():
            report.cancelled = True
            return
        batch = J.source_batch(db, j, who, bs)
        if batch is None:
            return
        results = [S.source_one(keys, it) for it in batch.items]
        with ctx.catalog.transaction():
            n, fails, digest = J.commit_source(db, j, who, batch, results, ctx.now())
            ctx.record(
                by, f"{action}.batch", f"kek:{j.kek}", "ok" if not fails else "partial",
                {"job": j.id, "step": "deal" if who == J.DEALER else f"source:{who}",
                 "version": j.target_version, "last_row": batch.last_row, "made": n,
                 "failed": [{"backup": b, "reason": r} for b, r in fails],
                 "parts_sha256": digest},
            )  # fmt: skip
        report.done += n
        report.failed.extend(fails[: max(0, KEEP_FAILURES - len(report.failed))])
        done += n
        if progress is not None:
            progress(min(done, total), total)


def _run_target(
    ctx: HomeContext,
    j: J.CustodyJob,
    by: Actor,
    new: Q.Manifest,
    old: dict[int, Q.Manifest],
    bs: int,
    workers: int | None,
    report: StepReport,
    progress: Progress | None,
    cancelled: Callable[[], bool] | None,
) -> None:
    db = ctx.catalog.db
    action = ACTIONS[j.kind]
    left = J.pending_count(db, j.kek, j.target_version)
    n = workers if workers is not None else (os.cpu_count() or 1)
    n = max(1, min(n, 8, -(-left // bs)))
    raws: dict[int, SecretBytes] = {}
    new_raw = _raw_holder_key(ctx, by, new)
    try:
        if j.kind == "refresh":
            for v, m in old.items():
                raws[v] = _raw_holder_key(ctx, by, m)
        keys = S.StepKeys(
            j.kind, "target", by.name, new, old, j.sources, _load(new.suite, new_raw),
            {v: _load(old[v].suite, r) for v, r in raws.items()},
        )  # fmt: skip
        runner: Any = S.ProcessSteps(n, keys, new_raw, raws) if n > 1 else S.InlineSteps(keys)
    finally:
        new_raw.wipe()
        for r in raws.values():
            r.wipe()
    report.workers = runner.workers
    total = max(1, J.job(db, j.id).total)
    done = J.step(db, j, "target", by.name).done
    depth = max(2, 2 * runner.workers)
    inflight: deque[tuple[J.TargetBatch, Future[list[J.TargetResult]]]] = deque()
    after: int | None = None
    exhausted = False
    try:
        while True:
            stop = cancelled is not None and cancelled()
            while not stop and not exhausted and len(inflight) < depth:
                batch = J.target_batch(db, j, by.name, bs, after=after)
                if batch is None:
                    exhausted = True
                    break
                if batch.waiting:
                    report.waiting = True
                    exhausted = True
                    if not batch.items:
                        break  # nothing of theirs before the DEK that waits
                after = batch.last_row
                inflight.append((batch, runner.submit(batch.items)))
            if stop or not inflight:
                report.cancelled = stop and bool(inflight or not exhausted)
                return
            batch, fut = inflight.popleft()
            results = fut.result()
            with ctx.catalog.transaction():
                sealed, moved, fails, digest = J.commit_target(
                    db, j, by.name, batch, results, new, ctx.now()
                )
                ctx.record(
                    by, f"{action}.batch", f"kek:{j.kek}", "ok" if not fails else "partial",
                    {"job": j.id, "step": f"target:{by.name}", "version": j.target_version,
                     "last_row": batch.last_row, "sealed": sealed, "moved": moved,
                     "failed": [{"backup": b, "reason": r} for b, r in fails],
                     "shares_sha256": digest},
                )  # fmt: skip
            report.done += sealed
            report.moved += moved
            report.failed.extend(fails[: max(0, KEEP_FAILURES - len(report.failed))])
            done += sealed
            if progress is not None:
                progress(min(done, total), total)
    finally:
        for _, fut in inflight:
            fut.cancel()
        runner.close()


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class JobView:
    """A custody job as the CLI and the TUI show it."""

    job: J.CustodyJob
    census: dict[int, int]  # DEKs per version of the KEK now
    steps: list[J.StepState]
    failures: list[tuple[str, str]]

    def step_line(self, s: J.StepState) -> str:
        who = "dealer" if s.who == J.DEALER else s.who
        verb = ("dealt" if s.who == J.DEALER else "re-shared") if s.role == "source" else "sealed"
        return f"{who} {verb} {s.done:,} of {self.job.total:,}"


def view(ctx: HomeContext, j: J.CustodyJob) -> JobView:
    k = ctx.catalog.kek(j.kek)
    db = ctx.catalog.db
    return JobView(
        j, {v.version: v.dek_count for v in k.versions}, J.steps(db, j.id), J.failures(db, j.id)
    )


@dataclass(frozen=True)
class NeededJob:
    """What a disabled holder leaves to do for one quorum KEK."""

    kek: str
    version: int
    holders: tuple[str, ...]  # the active holders who remain
    m: int
    can_start: bool  # enough remain for a redistribution among themselves (M <= N-1)
    running_job: str | None  # a job of this KEK the disabled holder has a part in
    command: str

    def summary(self) -> str:
        what = (
            f"redistribute among {', '.join(self.holders)} ({self.m} of {len(self.holders)})"
            if self.can_start
            else f"only {', '.join(self.holders) or 'nobody'} remain: add a holder and redistribute"
        )
        return f"KEK {self.kek} v{self.version}: {what}: {self.command}"


def holder_disabled(ctx: HomeContext, person: str) -> list[NeededJob]:
    """Per quorum KEK whose current version ``person`` holds a share of: the
    redistribution (which deals fresh shares to new keys, so it is a refresh too) that
    must follow, then the destruction of the old version's keys. Reads only."""
    out: list[NeededJob] = []
    db = ctx.catalog.db
    for k in ctx.catalog.keks():
        if k.backend != "quorum":
            continue
        man = _manifest(ctx, k.name, k.current_version, None, "kek.redistribute")
        if person not in {h.name for h in man.holders}:
            continue
        remaining = []
        for h in man.holders:
            with suppress(NotFoundError):
                if h.name != person and ctx.catalog.person(h.name).active:
                    remaining.append(h.name)
        j = J.running_job(db, k.name)
        running = j.id if j is not None and person in (*j.sources, *j.targets) else None
        can = len(remaining) >= man.m + 1
        m = man.m if can else max(2, man.m)
        holders = ",".join(remaining) if can else ",".join([*remaining, "NEW"])
        sources = ",".join(remaining[: man.m])
        cmd = (
            f"custodian kek redistribute {k.name} --holders {holders} --quorum {m} "
            f"--sources {sources} --as NAME"
        )
        out.append(NeededJob(k.name, man.version, tuple(remaining), m, can, running, cmd))
    return out


def forget_holder_keys(ctx: HomeContext, kek: str, version: int, manifest: Any) -> None:
    """The destroyed version's holder keys leave every holder's keyring entry."""
    for h in manifest.holders:
        with suppress(CustodianError, OSError):
            ctx.keyring.delete(items.holder_entry(h.name, kek, version))
