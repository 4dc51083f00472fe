"""Quorum custody jobs: a refresh (rotation) or a redistribution (change of holders).

No step of either reconstructs a DEK (DESIGN.md, custody invariant 3). A job moves
every DEK of a quorum KEK under an older version to ``target_version`` in *steps*:

- **sources** make the parts. In a refresh the one source is the dealer: per DEK a
  random polynomial Z of degree M-1 with Z(0) = 0, delta_i = Z(x_i) sealed to holder
  i's *new* key, Z forgotten (:func:`custodian.custody.quorum.deal_refresh`). In a
  redistribution each of M old holders re-shares their own share to the new holders
  (:func:`custodian.custody.quorum.reshare`).
- **targets** are the new version's holders, one step each: holder j opens what was
  sealed to them and seals their new share to their new key (refresh: old share XOR
  delta; redistribution: the Lagrange-weighted sum of the M sub-shares).

Per DEK a *deal row* keeps the new deal id and two bit masks (which sources and
which targets have done their part); the parts in flight and the new shares sit
beside it, each sealed to one new holder key. A DEK's row in ``backups`` changes
(new wrap, new version) only in the transaction where the last target seals their
share, and only if it still holds the wrap that was dealt from; until then it opens
under its old version as before. Each batch of a step is one catalog transaction
with its audit entry, so a kill loses at most the batch in flight, which the next
run does again; a step done twice changes nothing (the bit is set).

This module stores and steps; the rules (who, TOTP, audit) are the service's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from custodian.custody import quorum as Q
from custodian.errors import NotFoundError

KINDS = ("refresh", "redistribute")
DEALER = "*dealer"  # the one source of a refresh: whoever deals (public keys only)

_JOB_COLUMNS = (
    "id, kek, kind, target_version, state, started_by, created_at, updated_at, finished_at, "
    "sources, targets, total, completed, failed, runs"
)


@dataclass(frozen=True)
class CustodyJob:
    id: str
    kek: str
    kind: str  # refresh | redistribute
    target_version: int
    state: str  # running | done | superseded
    started_by: str
    created_at: str
    updated_at: str
    finished_at: str | None
    sources: tuple[str, ...]  # refresh: (DEALER,); redistribution: the M old holders
    targets: tuple[str, ...]  # the new version's holders, in share-index order
    total: int  # DEKs under older versions when the job began
    completed: int  # DEKs moved to the target version
    failed: int
    runs: int

    def index(self, role: str, who: str) -> int:
        names = self.sources if role == "source" else self.targets
        return names.index(who)

    @property
    def sources_mask(self) -> int:
        return (1 << len(self.sources)) - 1

    @property
    def targets_mask(self) -> int:
        return (1 << len(self.targets)) - 1


@dataclass(frozen=True)
class StepState:
    role: str
    who: str
    cursor: int
    done: int


def _job(row: Sequence[object]) -> CustodyJob:
    r = list(row)
    r[9] = tuple(json.loads(str(r[9])))
    r[10] = tuple(json.loads(str(r[10])))
    return CustodyJob(*r)  # type: ignore[arg-type]


def jobs(db: sqlite3.Connection, kek: str | None = None) -> list[CustodyJob]:
    sql = f"SELECT {_JOB_COLUMNS} FROM custody_jobs"
    args: tuple[object, ...] = ()
    if kek is not None:
        sql += " WHERE kek=?"
        args = (kek,)
    return [_job(r) for r in db.execute(sql + " ORDER BY created_at, id", args)]


def job(db: sqlite3.Connection, job_id: str) -> CustodyJob:
    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM custody_jobs WHERE id=?", (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no custody job {job_id} in this home.")
    return _job(row)


def running_job(db: sqlite3.Connection, kek: str) -> CustodyJob | None:
    row = db.execute(
        f"SELECT {_JOB_COLUMNS} FROM custody_jobs WHERE kek=? AND state='running' "
        "ORDER BY created_at DESC LIMIT 1",
        (kek,),
    ).fetchone()
    return None if row is None else _job(row)


def pending_count(db: sqlite3.Connection, kek: str, target: int) -> int:
    (n,) = db.execute(
        "SELECT count(*) FROM backups WHERE kek=? AND kek_version<?", (kek, target)
    ).fetchone()
    return int(n)


def add_job(
    db: sqlite3.Connection,
    kek: str,
    kind: str,
    target: int,
    by: str,
    sources: Sequence[str],
    targets: Sequence[str],
    now: str,
) -> tuple[CustodyJob, str | None]:
    """A new job (inside a transaction); a running job of the same KEK is superseded and
    its parts in flight deleted (they were sealed for a version nothing will use).
    Returns (the job, the id of the job it superseded or None)."""
    if kind not in KINDS:
        raise ValueError(kind)
    old = running_job(db, kek)
    if old is not None:
        db.execute(
            "UPDATE custody_jobs SET state='superseded', finished_at=?, updated_at=? WHERE id=?",
            (now, now, old.id),
        )
        forget(db, old.id)
    jid = str(uuid.uuid4())
    total = pending_count(db, kek, target)
    db.execute(
        f"INSERT INTO custody_jobs({_JOB_COLUMNS}) "
        "VALUES(?,?,?,?,'running',?,?,?,NULL,?,?,?,0,0,0)",
        (jid, kek, kind, target, by, now, now, json.dumps(list(sources)),
         json.dumps(list(targets)), total),
    )  # fmt: skip
    for role, names in (("source", sources), ("target", targets)):
        db.executemany(
            "INSERT INTO custody_job_steps(job, role, idx, who) VALUES(?,?,?,?)",
            [(jid, role, i, n) for i, n in enumerate(names)],
        )
    return job(db, jid), (old.id if old is not None else None)


def forget(db: sqlite3.Connection, job_id: str) -> None:
    """Drop a job's deals, parts and new shares (superseded or done: nothing uses them)."""
    for table in ("custody_parts", "custody_new_shares", "custody_deals"):
        db.execute(f"DELETE FROM {table} WHERE job=?", (job_id,))


def steps(db: sqlite3.Connection, job_id: str) -> list[StepState]:
    return [
        StepState(str(r), str(w), int(c), int(d))
        for r, w, c, d in db.execute(
            "SELECT role, who, cursor, done FROM custody_job_steps WHERE job=? ORDER BY role, idx",
            (job_id,),
        )
    ]


def step(db: sqlite3.Connection, j: CustodyJob, role: str, who: str) -> StepState:
    for s in steps(db, j.id):
        if (s.role, s.who) == (role, who):
            return s
    raise NotFoundError(f"{who} has no {role} step in job {j.id[:8]}.")


def count_run(db: sqlite3.Connection, job_id: str, now: str) -> None:
    db.execute("UPDATE custody_jobs SET runs=runs+1, updated_at=? WHERE id=?", (now, job_id))


def failures(db: sqlite3.Connection, job_id: str) -> list[tuple[str, str]]:
    """(backup id, reason) of the DEKs this job could not move (they stay where they were)."""
    return [
        (str(b), str(f))
        for b, f in db.execute(
            "SELECT backup, failed FROM custody_deals WHERE job=? AND failed<>'' ORDER BY row",
            (job_id,),
        )
    ]


def wrap_sha(wrapped: bytes) -> str:
    return hashlib.sha256(wrapped).hexdigest()


# ---------------------------------------------------------------- a source's batch


@dataclass
class SourceItem:
    row: int
    backup: str
    from_version: int
    wrapped: bytes  # the DEK's current wrap (under from_version)
    new_deal: bytes | None  # set when another source already opened the deal row


@dataclass
class SourceBatch:
    last_row: int  # the cursor after this batch
    items: list[SourceItem]  # what this source still has to do in it


def source_batch(db: sqlite3.Connection, j: CustodyJob, who: str, limit: int) -> SourceBatch | None:
    """The next DEKs for source ``who`` (None when none are left after its cursor)."""
    st = step(db, j, "source", who)
    bit = 1 << j.index("source", who)
    rows = db.execute(
        "SELECT rowid, id, kek_version, wrapped_dek FROM backups "
        "WHERE rowid>? AND +kek=? AND +kek_version<? ORDER BY rowid LIMIT ?",
        (st.cursor, j.kek, j.target_version, limit),
    ).fetchall()
    if not rows:
        return None
    deals = {
        int(r): (bytes(d), int(s), str(f))
        for r, d, s, f in db.execute(
            "SELECT row, new_deal, sources_done, failed FROM custody_deals "
            "WHERE job=? AND row BETWEEN ? AND ?",
            (j.id, int(rows[0][0]), int(rows[-1][0])),
        )
    }
    items = []
    for row, bid, ver, w in rows:
        d = deals.get(int(row))
        if d is not None and (d[1] & bit or d[2]):
            continue  # done already (a batch run twice), or failed: nothing to do
        items.append(SourceItem(int(row), str(bid), int(ver), bytes(w), d[0] if d else None))
    return SourceBatch(int(rows[-1][0]), items)


@dataclass
class SourceResult:
    item: SourceItem
    new_deal: bytes
    parts: dict[int, bytes]  # target index -> sealed delta / sub-share
    error: str = ""


def commit_source(
    db: sqlite3.Connection,
    j: CustodyJob,
    who: str,
    batch: SourceBatch,
    results: Sequence[SourceResult],
    now: str,
) -> tuple[int, list[tuple[str, str]], str]:
    """Write a source's batch (inside a transaction): (parts made for how many DEKs,
    failures as (backup, reason), SHA-256 over the parts in order, for the entry)."""
    src = j.index("source", who)
    bit = 1 << src
    done, fails = 0, []
    digest = hashlib.sha256()
    for res in results:
        it = res.item
        cur = db.execute(
            "SELECT kek_version, wrapped_dek FROM backups WHERE rowid=? AND id=?",
            (it.row, it.backup),
        ).fetchone()
        if cur is None or int(cur[0]) != it.from_version or bytes(cur[1]) != it.wrapped:
            continue  # changed since it was read: whatever changed it wins; redone later
        db.execute(
            "INSERT OR IGNORE INTO custody_deals(job, row, backup, from_version, "
            "old_wrap_sha256, new_deal) VALUES(?,?,?,?,?,?)",
            (j.id, it.row, it.backup, it.from_version, wrap_sha(it.wrapped), res.new_deal),
        )
        deal, sdone, failed, sha = db.execute(
            "SELECT new_deal, sources_done, failed, old_wrap_sha256 FROM custody_deals "
            "WHERE job=? AND row=?",
            (j.id, it.row),
        ).fetchone()
        if bytes(deal) != res.new_deal or int(sdone) & bit or failed:
            continue  # another process opened this deal first: this result is dropped
        if sha != wrap_sha(it.wrapped):
            continue
        if res.error:
            db.execute(
                "UPDATE custody_deals SET failed=? WHERE job=? AND row=?",
                (f"{who}: {res.error}", j.id, it.row),
            )
            db.execute("UPDATE custody_jobs SET failed=failed+1 WHERE id=?", (j.id,))
            fails.append((it.backup, res.error))
            continue
        db.executemany(
            "INSERT OR REPLACE INTO custody_parts(job, row, source, target, blob) "
            "VALUES(?,?,?,?,?)",
            [(j.id, it.row, src, t, blob) for t, blob in sorted(res.parts.items())],
        )
        for _, blob in sorted(res.parts.items()):
            digest.update(hashlib.sha256(blob).digest())
        db.execute(
            "UPDATE custody_deals SET sources_done=sources_done|? WHERE job=? AND row=?",
            (bit, j.id, it.row),
        )
        done += 1
    db.execute(
        "UPDATE custody_job_steps SET cursor=?, done=done+? WHERE job=? AND role='source' "
        "AND idx=?",
        (batch.last_row, done, j.id, src),
    )
    db.execute("UPDATE custody_jobs SET updated_at=? WHERE id=?", (now, j.id))
    return done, fails, digest.hexdigest()


# ---------------------------------------------------------------- a target's batch


@dataclass
class TargetItem:
    row: int
    backup: str
    from_version: int
    wrapped: bytes  # the DEK's current wrap (refresh: the holder opens their old share)
    new_deal: bytes
    parts: dict[int, bytes]  # source index -> what was sealed to this target


@dataclass
class TargetBatch:
    last_row: int
    items: list[TargetItem]
    waiting: bool  # stopped at a DEK whose sources have not all done their part


def target_batch(
    db: sqlite3.Connection, j: CustodyJob, who: str, limit: int, after: int | None = None
) -> TargetBatch | None:
    """The next DEKs for target ``who``: deal rows after its cursor (or ``after``, for a
    batch read while earlier ones are in flight) whose sources are done, in row order,
    up to the first that still waits for a source. None: nothing to do now."""
    st = step(db, j, "target", who)
    start = st.cursor if after is None else after
    t = j.index("target", who)
    bit = 1 << t
    rows = db.execute(
        "SELECT d.row, d.backup, d.from_version, d.old_wrap_sha256, d.new_deal, "
        "d.sources_done, d.targets_done, d.failed, b.id, b.kek_version, b.wrapped_dek "
        "FROM custody_deals d LEFT JOIN backups b ON b.rowid = d.row "
        "WHERE d.job=? AND d.row>? ORDER BY d.row LIMIT ?",
        (j.id, start, limit),
    ).fetchall()
    parts: dict[int, dict[int, bytes]] = {}
    if rows:
        for r, s, b in db.execute(
            "SELECT row, source, blob FROM custody_parts WHERE job=? AND row BETWEEN ? AND ? "
            "AND target=?",
            (j.id, int(rows[0][0]), int(rows[-1][0]), t),
        ):
            parts.setdefault(int(r), {})[int(s)] = bytes(b)
    items: list[TargetItem] = []
    last, waiting = start, False
    for row, bid, ver, sha, deal, sdone, tdone, failed, cur_id, cur_ver, cur_w in rows:
        if not failed and int(sdone) != j.sources_mask:
            waiting = True
            break
        last = int(row)
        if failed or int(tdone) & bit:
            continue
        wrapped = bytes(cur_w) if cur_w is not None else b""
        if cur_id != bid or cur_ver != ver or wrap_sha(wrapped) != sha:
            wrapped = b""  # changed since dealt: commit_target fails it, nothing is sealed
        items.append(
            TargetItem(int(row), str(bid), int(ver), wrapped, bytes(deal), parts.get(int(row), {}))
        )
    if not items and last == start:
        return TargetBatch(last, [], True) if waiting else None
    return TargetBatch(last, items, waiting)


@dataclass
class TargetResult:
    item: TargetItem
    share: Q.SealedShare | None
    error: str = ""


def commit_target(
    db: sqlite3.Connection,
    j: CustodyJob,
    who: str,
    batch: TargetBatch,
    results: Sequence[TargetResult],
    new_manifest: Q.Manifest,
    now: str,
) -> tuple[int, int, list[tuple[str, str]], str]:
    """Write a target's batch (inside a transaction). Returns (shares sealed, DEKs that
    moved to the target version, failures, SHA-256 over the new shares in order)."""
    t = j.index("target", who)
    bit = 1 << t
    fails: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    current: dict[int, tuple[int, str]] = {}
    if results:
        current = {
            int(r): (int(d), str(f))
            for r, d, f in db.execute(
                "SELECT row, targets_done, failed FROM custody_deals WHERE job=? AND row "
                "BETWEEN ? AND ?",
                (j.id, results[0].item.row, results[-1].item.row),
            )
        }
    ok: list[TargetResult] = []
    failed: list[tuple[str, str, int]] = []
    for res in results:
        cur = current.get(res.item.row)
        if cur is None or cur[0] & bit or cur[1]:
            continue  # done already (a batch committed twice), or failed meanwhile
        error = res.error or (
            "" if res.item.wrapped else "the DEK's wrap changed since it was dealt"
        )
        if error or res.share is None:
            failed.append((f"{who}: {error}", j.id, res.item.row))
            fails.append((res.item.backup, error))
        else:
            ok.append(res)
    db.executemany("UPDATE custody_deals SET failed=? WHERE job=? AND row=?", failed)
    db.executemany(
        "INSERT OR REPLACE INTO custody_new_shares(job, row, x, commitment, ciphertext) "
        "VALUES(?,?,?,?,?)",
        [(j.id, r.item.row, r.share.x, r.share.commitment, r.share.ciphertext)
         for r in ok if r.share is not None],
    )  # fmt: skip
    db.executemany(
        "DELETE FROM custody_parts WHERE job=? AND row=? AND target=?",
        [(j.id, r.item.row, t) for r in ok],
    )
    db.executemany(
        "UPDATE custody_deals SET targets_done=targets_done|? WHERE job=? AND row=?",
        [(bit, j.id, r.item.row) for r in ok],
    )
    moved = 0
    for r in ok:
        assert r.share is not None
        digest.update(r.share.commitment + hashlib.sha256(r.share.ciphertext).digest())
        if current[r.item.row][0] | bit == j.targets_mask:
            moved += _complete(db, j, r.item, new_manifest)
    db.execute(
        "UPDATE custody_job_steps SET cursor=?, done=done+? WHERE job=? AND role='target' "
        "AND idx=?",
        (batch.last_row, len(ok), j.id, t),
    )
    db.execute(
        "UPDATE custody_jobs SET completed=completed+?, failed=failed+?, updated_at=? WHERE id=?",
        (moved, len(failed), now, j.id),
    )
    return len(ok), moved, fails, digest.hexdigest()


def _complete(db: sqlite3.Connection, j: CustodyJob, it: TargetItem, man: Q.Manifest) -> int:
    """Every new holder sealed their share: the DEK's row takes the new wrap (1), unless
    it changed since it was dealt (0: the deal is marked failed, nothing lost)."""
    shares = tuple(
        Q.SealedShare(int(x), man.at(int(x)).name, bytes(c), bytes(ct))
        for x, c, ct in db.execute(
            "SELECT x, commitment, ciphertext FROM custody_new_shares WHERE job=? AND row=? "
            "ORDER BY x",
            (j.id, it.row),
        )
    )
    qw = Q.QuorumWrap(man.m, man.n, it.new_deal, shares)
    before = db.total_changes
    db.execute(
        "UPDATE backups SET wrapped_dek=?, kek_version=? WHERE rowid=? AND id=? AND "
        "kek_version=? AND wrapped_dek=?",
        (qw.encode(), j.target_version, it.row, it.backup, it.from_version, it.wrapped),
    )
    if db.total_changes == before:
        db.execute(
            "UPDATE custody_deals SET failed='the DEK changed while it was refreshed' "
            "WHERE job=? AND row=?",
            (j.id, it.row),
        )
        db.execute("UPDATE custody_jobs SET failed=failed+1 WHERE id=?", (j.id,))
        return 0
    db.execute("DELETE FROM custody_new_shares WHERE job=? AND row=?", (j.id, it.row))
    db.execute("DELETE FROM custody_parts WHERE job=? AND row=?", (j.id, it.row))
    db.execute("DELETE FROM custody_deals WHERE job=? AND row=?", (j.id, it.row))
    return 1


def finished(db: sqlite3.Connection, j: CustodyJob) -> bool:
    """Nothing left under older versions but the DEKs this job failed."""
    (failed,) = db.execute(
        "SELECT count(*) FROM custody_deals WHERE job=? AND failed<>''", (j.id,)
    ).fetchone()
    return pending_count(db, j.kek, j.target_version) <= int(failed)


def finish_job(db: sqlite3.Connection, job_id: str, now: str) -> None:
    """Done: the parts and shares of failed DEKs go (their deal rows keep the reasons)."""
    db.execute("DELETE FROM custody_parts WHERE job=?", (job_id,))
    db.execute("DELETE FROM custody_new_shares WHERE job=?", (job_id,))
    db.execute(
        "UPDATE custody_jobs SET state='done', finished_at=?, updated_at=? WHERE id=?",
        (now, now, job_id),
    )
