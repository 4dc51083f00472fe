"""KEK rotation: the rewrap job and what the catalog keeps of it.

A rotation makes a new KEK version and a *job* that walks every DEK of that
KEK still under an older version, in the catalog's row order (the order the
backups were catalogued in, which is also the order of their table pages and
of the version indexes, so a batch writes neighbouring pages), one batch at a
time. Each batch is one catalog transaction: the batch's new wraps replace the
old ones (a row is changed only if it still holds the wrap that was read, so a
stale result changes nothing), failures are recorded with their reason, the
job's cursor moves to the batch's last row, and the audit entry is fsynced
before the commit. A crash, a kill or a cancel therefore loses at most the
batches in flight, which the next run does again; a DEK is never without a
committed wrap that opens, and running a finished job again changes nothing.

The unwrap and wrap work can run in worker processes (the local backend's
HPKE costs about 100 µs a DEK) while this process, the one writer, commits in
order. The rules (who may rotate, TOTP, audit) live in
:mod:`custodian.service`; this module stores and runs.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from custodian.backends.base import DekRef, KekBackend
from custodian.errors import NotFoundError, UnwrapError

# DEKs a batch (one transaction, one audit entry). Measured at 200,000 DEKs (benchmarks,
# group rewrap): 2,000 is 10-20% faster than 500; 5,000 a few % more again but
# doubles the peak memory with workers (2 * workers batches in flight).
DEFAULT_BATCH = 2000
MIN_BATCH = 50
BATCHES_AT_LEAST = 20  # a small job still commits (and shows progress, and stops) often
CACHE_KIB_PER_DEK = 12  # catalog page cache during a job: ~3 pages of 4 KiB a DEK


def batch_for(pending: int) -> int:
    """The batch size for a job of ``pending`` DEKs: :data:`DEFAULT_BATCH`, or less, so
    that even a small job (the demo's 1,000 DEKs) takes about :data:`BATCHES_AT_LEAST`
    batches: its progress moves and a cancel takes effect within a fraction of it."""
    return max(MIN_BATCH, min(DEFAULT_BATCH, -(-pending // BATCHES_AT_LEAST)))


@dataclass(frozen=True)
class RewrapJob:
    """A rewrap job: every DEK of ``kek`` under a version below ``target_version``."""

    id: str
    kek: str
    target_version: int
    state: str  # running | done | superseded
    started_by: str
    created_at: str
    updated_at: str
    finished_at: str | None
    cursor: str  # the catalog row number of the last DEK whose batch committed ('' at first)
    total: int  # DEKs under older versions when the job began
    rewrapped: int
    failed: int
    runs: int

    @property
    def done(self) -> int:
        return self.rewrapped + self.failed


@dataclass(frozen=True)
class RewrapFailure:
    job: str
    backup: str
    from_version: int
    reason: str
    at: str


@dataclass(frozen=True)
class RotationPreview:
    """What a rotation of ``kek`` would do, shown before anyone confirms it."""

    kek: str
    backend: str
    suite: str
    current_version: int
    new_version: int
    census: dict[int, int]  # DEKs per existing version
    to_rewrap: int  # every DEK now: all will be under an older version
    rate: float  # DEKs per second, measured here a moment ago (0 if unknown)
    workers: int
    unfinished: RewrapJob | None  # a job still running, which the rotation supersedes
    batch_size: int = DEFAULT_BATCH
    batch_seconds: float = 0.0  # measured cost of committing one batch (sign, fsync, commit)
    start_seconds: float = 0.0  # starting the worker processes, when the job uses them
    dek_seconds: float = 0.0  # measured catalog cost of one DEK (read its row, write it back)

    @property
    def estimated_seconds(self) -> float:
        if self.rate <= 0:
            return 0.0
        batches = -(-self.to_rewrap // self.batch_size)
        return (
            self.start_seconds
            + self.to_rewrap * (1 / self.rate + self.dek_seconds)
            + batches * self.batch_seconds
        )

    @property
    def estimated_rate(self) -> float:
        """DEKs per second the whole job is expected to run at (what its batches measure)."""
        s = self.estimated_seconds
        return self.to_rewrap / s if s > 0 else 0.0


@dataclass
class RewrapReport:
    """What one run of a rewrap job did."""

    job: str
    kek: str
    target_version: int
    total: int
    rewrapped: int = 0  # in this run
    failed: list[RewrapFailure] = field(default_factory=list)  # in this run
    batches: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    finished: bool = False  # the job is done: nothing left under older versions but failures
    remaining: int = 0  # DEKs still under older versions after this run (failures included)
    workers: int = 1

    @property
    def rate(self) -> float:
        n = self.rewrapped + len(self.failed)
        return n / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        state = (
            "cancelled; run it again to resume"
            if self.cancelled
            else ("finished" if self.finished else "stopped")
        )
        s = (
            f"rewrap of KEK {self.kek} to v{self.target_version}: {self.rewrapped:,} rewrapped, "
            f"{len(self.failed):,} failed in this run ({self.seconds:.1f} s, "
            f"{self.rate:,.0f} DEKs/s, {self.workers} worker(s)); {state}; "
            f"{self.remaining:,} DEK(s) left under older versions"
        )
        return s


# ---------------------------------------------------------------- catalog queries

_JOB_COLUMNS = (
    "id, kek, target_version, state, started_by, created_at, updated_at, finished_at, "
    "cursor, total, rewrapped, failed, runs"
)


def _job(row: Sequence[object]) -> RewrapJob:
    return RewrapJob(*row)  # type: ignore[arg-type]


def jobs(db: sqlite3.Connection, kek: str | None = None) -> list[RewrapJob]:
    sql = f"SELECT {_JOB_COLUMNS} FROM rotation_jobs"
    args: tuple[object, ...] = ()
    if kek is not None:
        sql += " WHERE kek=?"
        args = (kek,)
    return [_job(r) for r in db.execute(sql + " ORDER BY created_at, id", args)]


def job(db: sqlite3.Connection, job_id: str) -> RewrapJob:
    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM rotation_jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no rewrap job {job_id} in this home.")
    return _job(row)


def running_job(db: sqlite3.Connection, kek: str) -> RewrapJob | None:
    row = db.execute(
        f"SELECT {_JOB_COLUMNS} FROM rotation_jobs WHERE kek=? AND state='running' "
        "ORDER BY created_at DESC LIMIT 1",
        (kek,),
    ).fetchone()
    return None if row is None else _job(row)


def add_job(
    db: sqlite3.Connection, kek: str, target: int, by: str, total: int, now: str
) -> RewrapJob:
    jid = str(uuid.uuid4())
    db.execute(
        "UPDATE rotation_jobs SET state='superseded', finished_at=?, updated_at=? "
        "WHERE kek=? AND state='running'",
        (now, now, kek),
    )
    db.execute(
        f"INSERT INTO rotation_jobs({_JOB_COLUMNS}) VALUES(?,?,?,'running',?,?,?,NULL,'',?,0,0,0)",
        (jid, kek, target, by, now, now, total),
    )
    return job(db, jid)


def failures(db: sqlite3.Connection, job_id: str | None = None) -> list[RewrapFailure]:
    sql = "SELECT job, backup, from_version, reason, at FROM rewrap_failures"
    args: tuple[object, ...] = ()
    if job_id is not None:
        sql += " WHERE job=?"
        args = (job_id,)
    return [RewrapFailure(*r) for r in db.execute(sql + " ORDER BY at, backup", args)]


def failures_remaining(db: sqlite3.Connection, job_id: str, target: int) -> int:
    """Failures of ``job_id`` whose DEK is still under an older version."""
    (n,) = db.execute(
        "SELECT count(*) FROM rewrap_failures f JOIN backups b ON b.id = f.backup "
        "WHERE f.job=? AND b.kek=(SELECT kek FROM rotation_jobs WHERE id=?) AND b.kek_version<?",
        (job_id, job_id, target),
    ).fetchone()
    return int(n)


def _row(cursor: str) -> int:
    return int(cursor) if cursor.isdigit() else 0


def pending_count(db: sqlite3.Connection, kek: str, target: int, after: str = "") -> int:
    (n,) = db.execute(
        "SELECT count(*) FROM backups WHERE kek=? AND kek_version<? AND rowid>?",
        (kek, target, _row(after)),
    ).fetchone()
    return int(n)


@dataclass
class Batch:
    rows: list[int]  # catalog row numbers, ascending
    refs: list[DekRef]


def read_batch(db: sqlite3.Connection, kek: str, target: int, after: str, limit: int) -> Batch:
    """The next DEKs to rewrap: under an older version of ``kek``, rows after ``after``.

    The unary ``+`` keeps SQLite off the (kek, kek_version) index, so it walks
    the table from the cursor and reads only the batch. Row order, not id
    order: ids are random, so a batch in id order touched a different table
    page and index page for every DEK (about 8 KiB written per DEK at 1M).
    """
    rows: list[int] = []
    refs: list[DekRef] = []
    for row, bid, ver, w in db.execute(
        "SELECT rowid, id, kek_version, wrapped_dek FROM backups "
        "WHERE rowid>? AND +kek=? AND +kek_version<? ORDER BY rowid LIMIT ?",
        (_row(after), kek, target, limit),
    ):
        rows.append(int(row))
        refs.append(DekRef(bid, kek, int(ver), bytes(w)))
    return Batch(rows, refs)


def commit_batch(
    db: sqlite3.Connection,
    j: RewrapJob,
    batch: Batch,
    results: Sequence[bytes | UnwrapError],
    now: str,
) -> tuple[int, list[RewrapFailure]]:
    """Write one batch's outcome (call inside a transaction). Returns (rewrapped, failures).

    A row changes only if it still holds the wrap that was read: whatever
    changed it meanwhile wins, and this result is dropped (and counted as not
    done, so the census stays exact)."""
    refs = batch.refs
    ok = [
        (new, row, r.backup_id, r.kek, r.version, r.wrapped)
        for row, r, new in zip(batch.rows, refs, results, strict=True)
        if not isinstance(new, UnwrapError)
    ]
    before = db.total_changes
    db.executemany(
        f"UPDATE backups SET wrapped_dek=?, kek_version={int(j.target_version)} "
        "WHERE rowid=? AND id=? AND kek=? AND kek_version=? AND wrapped_dek=?",
        ok,
    )
    rewrapped = db.total_changes - before
    fails = [
        RewrapFailure(j.id, r.backup_id, r.version, str(e), now)
        for r, e in zip(refs, results, strict=True)
        if isinstance(e, UnwrapError)
    ]
    db.executemany(
        "INSERT OR REPLACE INTO rewrap_failures(job, backup, from_version, reason, at) "
        "VALUES(?,?,?,?,?)",
        [(f.job, f.backup, f.from_version, f.reason, f.at) for f in fails],
    )
    db.execute(
        "UPDATE rotation_jobs SET cursor=?, rewrapped=rewrapped+?, failed=failed+?, "
        "updated_at=? WHERE id=?",
        (str(batch.rows[-1]), rewrapped, len(fails), now, j.id),
    )
    return rewrapped, fails


def finish_job(db: sqlite3.Connection, job_id: str, now: str) -> None:
    db.execute(
        "UPDATE rotation_jobs SET state='done', finished_at=?, updated_at=? WHERE id=?",
        (now, now, job_id),
    )


def count_run(db: sqlite3.Connection, job_id: str, now: str) -> None:
    db.execute("UPDATE rotation_jobs SET runs=runs+1, updated_at=? WHERE id=?", (now, job_id))


# ---------------------------------------------------------------- how an unfinished job stands
#
# A job's row says running until it is done or superseded. Whether it is running now,
# paused (cancelled between batches), interrupted (its process died or failed) or never
# run is kept beside it in the catalog's meta table (no migration): the process running
# it records itself there, and a pause is recorded with its audit entry.

SHOWN_STATES = ("running", "paused", "interrupted", "not started", "done", "superseded")


def _run_key(job_id: str) -> str:
    return f"rewrap.run.{job_id}"


def _pause_key(job_id: str) -> str:
    return f"rewrap.paused.{job_id}"


def process_tag(pid: int) -> str:
    """``pid`` with its start time (Linux): a pid reused after the run died is not it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return f"{pid}:{stat.rsplit(b')', 1)[1].split()[19].decode()}"
    except (OSError, IndexError):
        return str(pid)


def _alive(tag: str) -> bool:
    pid = int(tag.split(":")[0]) if tag.split(":")[0].isdigit() else 0
    if pid <= 0:
        return False
    if ":" in tag:  # a start time to compare: the same process, not a reused pid
        return process_tag(pid) == tag
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_running(db: sqlite3.Connection, job_id: str, tag: str) -> None:
    """This process runs ``job_id`` now (call inside the transaction that counts the run)."""
    _set(db, _run_key(job_id), tag)
    _set(db, _pause_key(job_id), "")


def mark_stopped(db: sqlite3.Connection, job_id: str, *, paused_at: str = "") -> None:
    """The run of ``job_id`` is over: paused at ``paused_at``, or else ended (done or
    stopped by an error: interrupted)."""
    _set(db, _run_key(job_id), "")
    _set(db, _pause_key(job_id), paused_at)


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta(key, value) VALUES(?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (key, value),
    )


def _get(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return "" if row is None else str(row[0])


def shown_state(db: sqlite3.Connection, j: RewrapJob) -> str:
    """How ``j`` stands, in one of :data:`SHOWN_STATES`."""
    if j.state != "running":
        return j.state
    tag = _get(db, _run_key(j.id))
    if tag and _alive(tag):
        return "running"
    if _get(db, _pause_key(j.id)):
        return "paused"
    if j.runs == 0:
        return "not started"
    return "interrupted"


# ---------------------------------------------------------------- doing the work


class Rewrapper(Protocol):
    """Runs rewrap batches, possibly several at once; results come back per batch."""

    workers: int

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]: ...

    def close(self) -> None: ...


class InlineRewrapper:
    """One batch at a time, in this process (the backend's own ``rewrap``)."""

    workers = 1

    def __init__(self, backend: KekBackend, to_version: int) -> None:
        self.backend = backend
        self.to_version = to_version

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        f: Future[list[bytes | UnwrapError]] = Future()
        try:
            f.set_result(self.backend.rewrap(refs, self.to_version))
        except BaseException as e:  # handed to the caller through the future
            f.set_exception(e)
        return f

    def close(self) -> None:
        pass


class ThreadRewrapper:
    """Batches in ``threads`` threads of this process: for server backends, whose work is
    waiting on the server, so the next batches are on the wire while this process
    commits the last (the backend's ``rewrap`` must be thread-safe)."""

    def __init__(self, backend: KekBackend, to_version: int, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.backend = backend
        self.to_version = to_version
        self.workers = max(1, threads)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rewrap")

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        return self._pool.submit(self.backend.rewrap, list(refs), self.to_version)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


Progress = Callable[[int, int], None]


def run_job(
    db: sqlite3.Connection,
    transaction: Callable[[], object],
    j: RewrapJob,
    rewrapper: Rewrapper,
    *,
    record_batch: Callable[[RewrapJob, str, str, int, list[RewrapFailure]], None],
    now: Callable[[], str],
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_failure: Callable[[RewrapFailure], None] | None = None,
) -> RewrapReport:
    """Run job ``j`` from its cursor to the end (or until ``cancelled()``).

    ``transaction()`` is a context manager for one catalog transaction;
    ``record_batch(job, first_id, last_id, rewrapped, failures)`` writes the
    batch's audit entry inside it. Up to ``2 * workers`` batches are in
    flight; they commit in row order, so the cursor only moves forward past
    committed work. ``progress(done, total)`` counts DEKs of the whole job.
    """
    report = RewrapReport(j.id, j.kek, j.target_version, j.total, workers=rewrapper.workers)
    start = time.perf_counter()
    depth = max(2, 2 * rewrapper.workers)
    inflight: deque[tuple[Batch, Future[list[bytes | UnwrapError]]]] = deque()
    read_after = j.cursor
    exhausted = False
    done = j.done
    total = max(j.total, done + pending_count(db, j.kek, j.target_version, j.cursor))
    if progress is not None:
        progress(done, total)
    # A batch dirties about one table page per DEK (ids are random, so a batch's
    # rows sit on different pages) plus index pages. SQLite's default 2 MB page
    # cache spills them mid-transaction and reads them back: a third of the
    # job's CPU at 200,000 DEKs. Room for a batch's pages while the job runs,
    # and a WAL of a few batches before a checkpoint (the default, 1,000 pages,
    # is less than one batch): index pages that every batch touches are then
    # copied into the database once every few batches, not after each one.
    (cache_was,) = db.execute("PRAGMA cache_size").fetchone()
    (checkpoint_was,) = db.execute("PRAGMA wal_autocheckpoint").fetchone()
    db.execute(f"PRAGMA cache_size={-max(2000, CACHE_KIB_PER_DEK * batch_size)}")
    db.execute(f"PRAGMA wal_autocheckpoint={max(1000, 4 * batch_size)}")
    try:
        while True:
            stop = cancelled is not None and cancelled()
            while not stop and not exhausted and len(inflight) < depth:
                batch = read_batch(db, j.kek, j.target_version, read_after, batch_size)
                if not batch.refs:
                    exhausted = True
                    break
                read_after = str(batch.rows[-1])
                inflight.append((batch, rewrapper.submit(batch.refs)))
            if stop or not inflight:
                report.cancelled = stop and bool(inflight or not exhausted)
                break
            batch, fut = inflight.popleft()
            results = fut.result()
            refs = batch.refs
            with transaction():  # type: ignore[attr-defined]
                n, fails = commit_batch(db, j, batch, results, now())
                record_batch(j, refs[0].backup_id, refs[-1].backup_id, n, fails)
            report.batches += 1
            report.rewrapped += n
            report.failed.extend(fails)
            done += len(refs)
            if on_failure is not None:
                for f in fails:
                    on_failure(f)
            if progress is not None:
                progress(min(done, total), total)
    finally:
        for _, fut in inflight:
            fut.cancel()
        db.execute(f"PRAGMA cache_size={int(cache_was)}")
        db.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_was)}")
        report.seconds = time.perf_counter() - start
    return report
