"""KEK lifecycle: creation, rotation with a resumable rewrap job, retirement, destruction."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from custodian import rotation as R
from custodian.backends.base import DekRef, sealed_name
from custodian.catalog import Backup
from custodian.errors import ConflictError, CustodianError, UnwrapError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from custodian.service.keys import Keys
from tests.conftest import Cast, Clock, enrol, next_code, unlock


def fill(svc: Service, n: int, kek: str = "backups") -> dict[str, str]:
    """``n`` catalog entries with real wrapped DEKs under the KEK's current version (no
    containers: rotation never reads them). Returns backup id -> SHA-256 of its DEK."""
    k = svc.keys.get(kek)
    be = svc.keys.backend(k.backend)
    prints: dict[str, str] = {}
    done = 0
    while done < n:
        batch = []
        for _ in range(min(2000, n - done)):
            bid = str(uuid.uuid4())
            dek = SecretBytes(os.urandom(32), "DEK")
            prints[bid] = hashlib.sha256(dek.reveal()).hexdigest()
            batch.append((bid, dek))
        wrapped = be.wrap(k.name, k.current_version, batch)
        rows = [
            Backup(
                bid,
                f"sample-{bid[:8]}",
                "2026-01-01T00:00:00.000000Z",
                100,
                200,
                "0" * 64,
                f"/nonexistent/{bid}.cbk",
                k.name,
                k.current_version,
                w,
                1 << 20,
            )
            for (bid, _), w in zip(batch, wrapped, strict=True)
        ]
        with svc.catalog.transaction():
            svc.catalog.add_backups(rows)
        done += len(batch)
    return prints


def fingerprints(svc: Service, kek: str = "backups") -> dict[str, str]:
    """Unwrap every DEK of ``kek`` as the catalog holds it now; id -> SHA-256 of the DEK."""
    out: dict[str, str] = {}
    be = svc.keys.backend(svc.keys.get(kek).backend)
    rows = svc.catalog.db.execute(
        "SELECT id, kek_version, wrapped_dek FROM backups WHERE kek=? ORDER BY id", (kek,)
    ).fetchall()
    for i in range(0, len(rows), 1000):
        refs = [DekRef(b, kek, v, bytes(w)) for b, v, w in rows[i : i + 1000]]
        for ref, dek in zip(refs, be.unwrap(refs), strict=True):
            assert not isinstance(dek, UnwrapError), (ref.backup_id, dek)
            with dek:
                out[ref.backup_id] = hashlib.sha256(dek.reveal()).hexdigest()
    return out


def census(svc: Service, kek: str = "backups") -> dict[int, int]:
    return {v.version: v.dek_count for v in svc.keys.get(kek).versions}


def dump(svc: Service) -> list[tuple[object, ...]]:
    return svc.catalog.db.execute(
        "SELECT id, kek_version, wrapped_dek FROM backups ORDER BY id"
    ).fetchall()


@pytest.fixture
def custodians(svc: Service, cast: Cast) -> tuple[Actor, Actor]:
    svc.clock = Clock()
    return unlock(svc, cast.alice), unlock(svc, cast.bob)


# ---------------------------------------------------------------- creation


def _wrong_code(cast: Cast) -> str:
    valid = {cast.alice.code(i) for i in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in valid)


def test_create_kek_needs_a_fresh_totp_code(svc: Service, cast: Cast) -> None:
    svc.clock = Clock()
    alice = unlock(svc, cast.alice)
    with pytest.raises(AuthError, match="needs a fresh TOTP code"):
        svc.keys.create("archive", by=alice)
    with pytest.raises(AuthError, match="not valid now"):
        svc.keys.create("archive", by=alice, code=_wrong_code(cast))
    code = next_code(svc, cast.alice)
    k = svc.keys.create("archive", by=alice, suite="p256", purpose="long-term", code=code)
    assert (k.suite, k.current_version, len(k.versions[0].fingerprint)) == ("p256", 1, 39)
    with pytest.raises(AuthError, match="already used"):
        svc.keys.create("archive2", by=alice, code=code)
    assert [k.name for k in svc.keys.list()] == ["archive", "backups"]
    refused = [e for e in svc.audit.entries(action="kek.create") if e["outcome"] == "refused"]
    assert len(refused) == 3  # one entry per refusal, none twice
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.create("mine", by=oscar, code=next_code(svc, cast.oscar))


# ---------------------------------------------------------------- rotation and rewrap


def test_rotation_rewraps_every_dek_to_the_same_dek(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, _ = custodians
    before = fill(svc, 1200)
    pv = svc.keys.rotate_preview("backups")
    assert (pv.current_version, pv.new_version, pv.to_rewrap, pv.census) == (1, 2, 1200, {1: 1200})
    assert pv.rate > 0 and pv.estimated_seconds > 0
    with pytest.raises(AuthError, match="fresh TOTP"):
        svc.keys.rotate("backups", None, by=alice)
    assert svc.keys.get("backups").current_version == 1 and svc.keys.jobs() == []
    j = svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    assert (j.target_version, j.total, j.state) == (2, 1200, "running")
    assert svc.keys.get("backups").current_version == 2
    seen: list[tuple[int, int]] = []
    report = svc.keys.rewrap(
        "backups", by=alice, workers=1, batch_size=100, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.rewrapped, report.failed, report.finished, report.remaining) == (
        1200,
        [],
        True,
        0,
    )
    assert report.batches == 12 and seen[-1] == (1200, 1200)
    assert census(svc) == {1: 0, 2: 1200}
    assert fingerprints(svc) == before
    job = svc.keys.jobs("backups")[0]
    assert (job.state, job.rewrapped, job.failed, job.runs) == ("done", 1200, 0, 1)
    # running it again changes nothing
    snapshot = dump(svc)
    again = svc.keys.rewrap("backups", by=alice)
    assert (again.job, again.rewrapped, again.finished) == ("", 0, True)
    assert dump(svc) == snapshot and len(svc.keys.jobs()) == 1
    res = svc.audit.verify()
    assert res.ok, res.summary()
    actions = [e["action"] for e in svc.audit.entries(action="kek.")]
    assert actions.count("kek.rewrap.batch") == 12
    assert "kek.rotate" in actions and actions[-1] == "kek.rewrap.done"


def test_new_deks_use_the_new_version_at_once(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor], bot: Actor, tmp_path: Path
) -> None:
    import io

    alice, _ = custodians
    fill(svc, 10)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    b = svc.backups.encrypt(io.BytesIO(b"new"), tmp_path / "n.cbk", by=bot)
    assert b.kek_version == 2
    assert svc.keys.jobs()[0].total == 10  # the new one was never under an old version


def test_cancel_then_resume_from_the_cursor(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, _ = custodians
    before = fill(svc, 1000)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    batches = 0

    def stop() -> bool:
        return batches >= 3

    def count(done: int, total: int) -> None:
        nonlocal batches
        batches += 1 if done else 0

    r1 = svc.keys.rewrap(
        "backups", by=alice, workers=1, batch_size=100, progress=count, cancelled=stop
    )
    assert r1.cancelled and not r1.finished and r1.rewrapped == 300 and r1.remaining == 700
    j = svc.keys.jobs("backups")[0]
    assert j.state == "running" and j.rewrapped == 300
    (at,) = svc.catalog.db.execute("SELECT id FROM backups WHERE rowid=?", (int(j.cursor),))
    assert at[0] == list(before)[299]  # catalogue order
    assert census(svc) == {1: 700, 2: 300}
    assert svc.audit.entries()[-1]["action"] == "kek.rewrap.pause"
    r2 = svc.keys.rewrap("backups", by=alice, workers=1, batch_size=100)
    assert r2.finished and r2.rewrapped == 700 and r2.job == r1.job
    assert svc.keys.jobs("backups")[0].runs == 2
    assert fingerprints(svc) == before and census(svc) == {1: 0, 2: 1000}


def test_worker_processes_give_the_same_result(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, _ = custodians
    before = fill(svc, 3000)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    r = svc.keys.rewrap("backups", by=alice, workers=2, batch_size=200)
    assert (r.workers, r.rewrapped, r.remaining, r.batches) == (2, 3000, 0, 15)
    assert fingerprints(svc) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dek_that_fails_is_recorded_and_nothing_is_dropped(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor], workers: int
) -> None:
    alice, _ = custodians
    before = fill(svc, 2500)
    bad = sorted(before)[1234]
    (w,) = svc.catalog.db.execute("SELECT wrapped_dek FROM backups WHERE id=?", (bad,)).fetchone()
    tampered = bytes(w[:-1]) + bytes([w[-1] ^ 1])
    svc.catalog.db.execute("UPDATE backups SET wrapped_dek=? WHERE id=?", (tampered, bad))
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    failed: list[R.RewrapFailure] = []
    r = svc.keys.rewrap(
        "backups", by=alice, workers=workers, batch_size=200, on_failure=failed.append
    )
    assert r.finished and r.rewrapped == 2499 and r.remaining == 1
    assert [f.backup for f in r.failed] == [bad] == [f.backup for f in failed]
    assert "does not open under KEK backups version 1" in r.failed[0].reason
    assert census(svc) == {1: 1, 2: 2499}
    row = svc.catalog.db.execute("SELECT kek_version, wrapped_dek FROM backups WHERE id=?", (bad,))
    assert row.fetchone() == (1, tampered)  # kept as it was
    assert [f.backup for f in svc.keys.failures()] == [bad]
    last = svc.audit.entries(action="kek.rewrap.done")[-1]
    assert last["outcome"] == "partial" and last["details"]["remaining"] == 1
    # retiring v1 is refused with the count; a second run retries the one DEK only
    with pytest.raises(ConflictError, match="still wraps 1 DEK"):
        svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    snapshot = dump(svc)
    r2 = svc.keys.rewrap("backups", by=alice, workers=workers)
    assert (r2.rewrapped, len(r2.failed), r2.remaining) == (0, 1, 1)
    assert dump(svc) == snapshot
    assert svc.audit.verify().ok


def test_a_second_rotation_supersedes_an_unfinished_job(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, _ = custodians
    before = fill(svc, 600)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    calls = 0

    def after_two() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2

    r = svc.keys.rewrap("backups", by=alice, workers=1, batch_size=100, cancelled=after_two)
    assert r.cancelled and census(svc) == {1: 400, 2: 200}
    pv = svc.keys.rotate_preview("backups", measure=False)
    assert pv.unfinished is not None and pv.unfinished.target_version == 2
    j3 = svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    states = {j.target_version: j.state for j in svc.keys.jobs("backups")}
    assert states == {2: "superseded", 3: "running"}
    assert j3.total == 600  # the v1 and the v2 ones
    svc.keys.rewrap("backups", by=alice)
    assert census(svc) == {1: 0, 2: 0, 3: 600} and fingerprints(svc) == before


def test_only_custodians_rotate_or_rewrap(svc: Service, cast: Cast, custodians: object) -> None:
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.rotate("backups", next_code(svc, cast.oscar), by=oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.keys.rewrap("backups", by=oscar)
    assert svc.keys.get("backups").current_version == 1


# ---------------------------------------------------------------- retirement and destruction


def test_retire_then_destroy_after_the_wait_with_two_other_custodians(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, bob = custodians
    carol_e = enrol(svc, "carol", ("custodian",), alice)
    carol = unlock(svc, carol_e)
    before = fill(svc, 300)
    with pytest.raises(ConflictError, match="current version"):
        svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    with pytest.raises(ConflictError, match="still wraps 300 DEK"):
        svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    with pytest.raises(ConflictError, match="only a retired version"):
        svc.keys.request_destroy("backups", 1, "old", by=alice)
    svc.keys.rewrap("backups", by=alice)
    with pytest.raises(AuthError, match="fresh TOTP"):
        svc.keys.retire("backups", 1, "", by=alice)
    v1 = svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    assert v1.state == "retired" and v1.retired_at is not None
    with pytest.raises(ConflictError, match="already retired"):
        svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    # a retired version unwraps nothing, even in a new Service
    with Service.open(svc.home.path) as other:
        ref = DekRef(str(uuid.uuid4()), "backups", 1, b"x" * 80)
        (res,) = other.keys.backend("local").unwrap([ref])
        assert isinstance(res, UnwrapError) and "retired" in str(res)
    # destruction waits for the policy's period
    with pytest.raises(ConflictError, match="waiting period of 7 day"):
        svc.keys.request_destroy("backups", 1, "quarterly clean-up", by=alice)
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(7 * 86400 + 1)
    with pytest.raises(CustodianError, match="needs a reason"):
        svc.keys.request_destroy("backups", 1, "  ", by=alice)
    r = svc.keys.request_destroy("backups", 1, "quarterly clean-up", by=alice)
    assert (r.kind, r.state, r.payload["version"]) == ("kek.destroy", "open", 1)
    with pytest.raises(AuthError, match="cannot approve"):
        svc.approvals.approve(r.id, next_code(svc, cast.alice), by=alice)
    r = svc.approvals.approve(r.id, next_code(svc, cast.bob), by=bob)
    assert r.state == "open" and svc.catalog.kek_version("backups", 1).state == "retired"
    assert svc.sealed.exists(sealed_name("backups", 1))
    r = svc.approvals.approve(r.id, next_code(svc, carol_e), by=carol)
    assert r.state == "done"
    v = svc.catalog.kek_version("backups", 1)
    assert v.state == "destroyed" and v.destroyed_at is not None
    assert not svc.sealed.exists(sealed_name("backups", 1))
    assert fingerprints(svc) == before  # v2 still opens everything
    res = svc.audit.verify()
    assert res.ok, res.summary()
    last = svc.audit.entries(action="request.approve")[-1]
    assert last["details"]["destroyed"] == "backups/v1" and last["actor"] == "carol"


def test_destroy_is_checked_again_at_quorum(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    alice, bob = custodians
    carol_e = enrol(svc, "carol", ("custodian",), alice)
    fill(svc, 5)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    svc.keys.rewrap("backups", by=alice)
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(8 * 86400)
    r = svc.keys.request_destroy("backups", 1, "clean-up", by=alice)
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=bob)
    # a DEK turns up under v1 meanwhile (an import of an old container, say)
    svc.catalog.db.execute(
        "UPDATE backups SET kek_version=1 WHERE id=(SELECT id FROM backups LIMIT 1)"
    )
    with pytest.raises(ConflictError, match="still wraps 1 DEK"):
        svc.approvals.approve(r.id, next_code(svc, carol_e), by=unlock(svc, carol_e))
    assert svc.catalog.kek_version("backups", 1).state == "retired"
    assert svc.sealed.exists(sealed_name("backups", 1))
    assert svc.approvals.get(r.id).state == "open"


def test_an_erasure_cut_short_is_finished_later(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    """The process ends between the approving commit and the erasure: the next read of
    the requests erases the key material that the catalog says is destroyed."""
    alice, _ = custodians
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    with svc.catalog.transaction():
        svc.catalog.set_version_state("backups", 1, "destroyed", "2026-12-01T00:00:00.000000Z")
    assert svc.sealed.exists(sealed_name("backups", 1))
    svc.approvals.requests()
    assert not svc.sealed.exists(sealed_name("backups", 1))
    assert svc.sealed.exists(sealed_name("backups", 2))


# ---------------------------------------------------------------- kill -9, twenty times


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    """SIGKILL the rewrap (and its worker processes) at 20+ random moments over 20,000
    DEKs, resume each time; then every DEK opens to the same DEK as before, the old
    version's census is zero, and the audit log verifies."""
    alice, _ = custodians
    n = 20_000
    before = fill(svc, n)
    j = svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    home = svc.home.path
    rng = random.Random(os.environ.get("PYTEST_XDIST_WORKER", "") + str(time.time()))
    watch = sqlite3.connect(f"file:{svc.home.catalog}?mode=ro", uri=True)

    def progress() -> int:
        (d,) = watch.execute("SELECT rewrapped + failed FROM rotation_jobs WHERE id=?", (j.id,))
        return int(d[0])

    def start() -> subprocess.Popen[bytes]:
        r, w = os.pipe()
        os.write(w, cast.alice.passphrase.encode() + b"\n")
        os.close(w)
        cmd = [
            sys.executable,
            "-m",
            "custodian.cli",
            "--home",
            str(home),
            "kek",
            "rewrap",
            "backups",
            "--as",
            "alice",
            "--passphrase-fd",
            str(r),
            "--batch",
            "100",
            "--workers",
            "2",
        ]
        p = subprocess.Popen(
            cmd,
            pass_fds=(r,),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(r)
        return p

    # Kill points spread over the first 80% of the job: after a run has committed past
    # the next threshold, wait a random moment (inside the batch loop, perhaps
    # mid-commit) and SIGKILL the whole process group; once the thresholds are used up,
    # right after the run's next commit. Three of them during start-up instead.
    # After 24 kills the last run finishes the job.
    thresholds = sorted(rng.sample(range(100, int(n * 0.8)), 30))
    kills = mid_job = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        p = start()
        at_start = progress()
        want_kill = kills < 24
        early = want_kill and kills in (3, 11, 19)  # three kills during start-up
        goal = thresholds[0] if thresholds else at_start + 1
        killed = False
        t0 = time.monotonic()
        while want_kill and p.poll() is None:
            if early and time.monotonic() - t0 > rng.uniform(0.05, 0.6):
                killed = True
            elif not early and progress() >= max(goal, at_start + 1):
                time.sleep(rng.uniform(0, 0.02))
                killed = True
            if killed:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                break
            time.sleep(0.002)
        if not killed:
            p.wait(timeout=120)
        out = p.stdout.read().decode() if p.stdout else ""
        if killed:
            kills += 1
            if not early:
                mid_job += 1
                while thresholds and thresholds[0] <= progress():
                    thresholds.pop(0)
            continue
        assert p.returncode == 0, out
        break
    progress_at_end = progress()
    watch.close()
    print(f"SIGKILLs: {kills} ({mid_job} inside the batch loop)")
    assert kills >= 20 and mid_job >= 18, (kills, mid_job, progress_at_end)
    with Service.open(home) as fresh:
        assert census(fresh) == {1: 0, 2: n}
        assert fingerprints(fresh) == before
        job = fresh.keys.jobs("backups")[0]
        assert (job.state, job.rewrapped, job.failed) == ("done", n, 0)
        assert job.runs >= mid_job  # each run that got past start-up counted itself
        res = fresh.audit.verify()
        assert res.ok, res.summary()


def test_destroy_needs_enough_other_custodians(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    """Two custodians and a quorum of two: the requester's one colleague cannot make a
    quorum, so the request is refused up front with what to do."""
    alice, _ = custodians
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(8 * 86400)
    with pytest.raises(ConflictError, match=r"needs 2 custodians other than alice.*has 1 \(bob\)"):
        svc.keys.request_destroy("backups", 1, "clean-up", by=alice)
    assert svc.approvals.requests() == []
    enrol(svc, "carol", ("custodian",), alice)
    assert svc.keys.request_destroy("backups", 1, "clean-up", by=alice).state == "open"


def test_preview_estimate_counts_batches_and_workers(svc: Service, cast: Cast) -> None:
    fill(svc, 3000)
    pv = svc.keys.rotate_preview("backups", batch_size=500)
    assert pv.workers == Keys.rewrap_workers("local")  # 3,000 DEKs: the pool
    assert pv.batch_seconds > 0 and pv.rate > 0
    bare = pv.to_rewrap / pv.rate
    assert pv.estimated_seconds >= bare + 6 * pv.batch_seconds + pv.start_seconds - 1e-9
    small = svc.keys.rotate_preview("backups", batch_size=1000)
    assert small.workers == 1 and small.start_seconds == 0  # 3,000 < 4 batches: no pool


def test_the_cli_batch_default_is_the_core_default() -> None:
    from custodian import cli
    from custodian.cli import kek

    assert kek.REWRAP_BATCH == R.DEFAULT_BATCH
    args = cli.build_parser().parse_args(["kek", "rewrap", "backups", "--as", "alice"])
    assert args.batch is None  # the core's choice: DEFAULT_BATCH, fewer for a small job
    assert R.batch_for(10**9) == R.DEFAULT_BATCH


def test_a_worker_that_dies_fails_its_batch_clearly_and_the_job_resumes(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor]
) -> None:
    from custodian.backends.local import LocalBackend, ProcessRewrapper
    from custodian.errors import BackendError

    alice, _ = custodians
    before = fill(svc, 300)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    be = svc.keys.backend("local")
    assert isinstance(be, LocalBackend)
    pool = ProcessRewrapper(be, "backups", 2, 2)
    batch = R.read_batch(svc.catalog.db, "backups", 2, "", 100)
    assert all(isinstance(x, bytes) for x in pool.submit(batch.refs).result(timeout=30))
    for w in pool._pool.workers:
        w.proc.kill()
        w.proc.wait()
    with pytest.raises(BackendError, match="ended early"):
        pool.submit(batch.refs).result(timeout=30)
    pool.close()
    assert census(svc) == {1: 300, 2: 0}  # nothing was written
    svc.keys.rewrap("backups", by=alice)
    assert fingerprints(svc) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_an_old_key_that_does_not_unseal_stops_the_job_with_the_reason(
    svc: Service, cast: Cast, custodians: tuple[Actor, Actor], workers: int
) -> None:
    from custodian.errors import SealError

    alice, _ = custodians
    fill(svc, 1000)
    svc.keys.rotate("backups", next_code(svc, cast.alice), by=alice)
    path = svc.sealed._path(sealed_name("backups", 1))
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    svc.keys.backend("local").retire("backups", 1)  # drop the cached key: read it again
    with pytest.raises(SealError, match="failed authentication"):
        svc.keys.rewrap("backups", by=alice, workers=workers, batch_size=100)
    assert census(svc) == {1: 1000, 2: 0}  # nothing written, nothing recorded as failed
    assert svc.keys.failures() == []
