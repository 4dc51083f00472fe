"""Rewrap of a large catalog after a rotation: ``svc.keys.rewrap`` against bare HPKE.

For each local suite a home is built with ``--deks`` N catalogued DEKs (rows
with real wrapped DEKs under version 1, no containers: the rewrap reads only
the catalog) and another with N/10. Building is not timed and is cached in the
workdir (keyed by suite, N and catalog schema), so a second run starts at once.
Each timed run works on a fresh copy of the cached home, in a child process:

    rotate (a custodian, fresh TOTP code; untimed)  ->  svc.keys.rewrap(workers=W)

timed around ``rewrap`` alone, for W = 1 (everything in one process) and
W = 2 (worker processes for the HPKE work, both cores). The child's peak
resident memory comes from GNU time as in the other groups (the largest of
the child and its worker processes; the child's own and the workers' figures
are in the note). The catalog's size on disk (database + WAL) is taken before
and after.

Reference in the same run: a bare loop, in a child process of its own, of the
HPKE calls a rewrap must make: ``suite.decrypt`` then ``suite.encrypt`` with
the ``info`` built by ``dek_context`` for the old and the new version, over
``min(N, 100,000)`` DEKs; it runs before, between and after the suite's rewrap
runs and the best run counts.

Targets (issue 5): one process at least 80% of the bare loop's rate; two
workers at least 1.6x one process; peak under 300 MB and independent of N
(peak at N within 10% of the peak at N/10, same W).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._home import make_home
from benchmarks.common import Report, Row, run_child

GROUP = "rewrap"
ROOT = Path(__file__).resolve().parent.parent
SUITES = ("mlkem768-x25519", "x25519", "p256")
KEK = "backups"
GOAL_VS_BARE = 0.80
GOAL_SCALING = 1.6
GOAL_PEAK_MB = 300.0
GOAL_PEAK_GROWTH = 1.10  # peak at N / peak at N/10
BARE_MAX = 100_000
BUILD_CHUNK = 5_000  # DEKs wrapped per builder task
BUILD_COMMIT = 50_000  # catalog rows per build transaction
MARKER = ".bench-complete"


# ---------------------------------------------------------------- building homes (untimed)

_B: dict[str, Any] = {}


def _build_init(home: str) -> None:
    from custodian.service import Service

    svc = Service.open(home)
    _B["svc"] = svc
    _B["be"] = svc.keys.backend("local")


def _build_wrap(ids: list[str]) -> list[bytes]:
    """Wrap a fresh random DEK for each id under version 1 (in a builder process)."""
    from custodian.secret import SecretBytes

    deks = [SecretBytes.random(32, "DEK") for _ in ids]
    try:
        wrapped: list[bytes] = _B["be"].wrap(KEK, 1, list(zip(ids, deks, strict=True)))
    finally:
        for d in deks:
            d.wipe()
    return wrapped


def build_home(workdir: Path, suite: str, n: int) -> Path:
    """A home with ``n`` catalogued DEKs of KEK ``backups`` v1, built once and cached.

    Rows are what ``encrypt_backup`` records (random backup ids, so the id order
    the job walks is not the insertion order, as in a real catalog) with a real
    wrap of a random DEK from the local backend; the containers do not exist.
    Rows go in through ``Catalog.add_backups`` in transactions of 50,000; two
    builder processes wrap (the public key is all they need).
    """
    import multiprocessing

    from custodian.catalog import SCHEMA_VERSION, Backup, utcnow

    home = workdir / f"rewrap-home-{suite}-{n}-s{SCHEMA_VERSION}"
    if (home / MARKER).exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"  building {home.name} ({n:,} DEKs; cached for later runs)", flush=True)
    make_home(home, suite=suite, kek=KEK).close()
    from custodian.service import Service

    svc = Service.open(home)
    try:
        now = utcnow()
        pending: list[Backup] = []
        window: deque[tuple[list[str], Future[list[bytes]]]] = deque()
        made = 0
        with ProcessPoolExecutor(
            min(2, os.cpu_count() or 1),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_build_init,
            initargs=(str(home),),
        ) as pool:
            while made < n or window:
                while made < n and len(window) < 8:  # a few chunks ahead, not all of them
                    ids = [str(uuid.uuid4()) for _ in range(min(BUILD_CHUNK, n - made))]
                    window.append((ids, pool.submit(_build_wrap, ids)))
                    made += len(ids)
                ids, fut = window.popleft()
                for bid, w in zip(ids, fut.result(), strict=True):
                    pending.append(
                        Backup(
                            id=bid,
                            label=f"nightly-{bid[:8]}.tar.zst",
                            created_at=now,
                            size=10 * 2**30,
                            container_size=10 * 2**30 + 2**20,
                            container_sha256="0" * 64,
                            location=f"/srv/backups/{bid}.cbk",
                            kek=KEK,
                            kek_version=1,
                            wrapped_dek=w,
                            chunk_size=2**20,
                        )
                    )
                if len(pending) >= BUILD_COMMIT or not window:
                    with svc.catalog.transaction():
                        svc.catalog.add_backups(pending)
                    pending = []
    finally:
        svc.close()
    (home / MARKER).write_text(f"{n}\n")
    print(f"  built {home.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return home


def catalog_bytes(home: Path) -> int:
    """The catalog's size on disk: the database and its WAL (if any)."""
    return sum(
        p.stat().st_size for p in (home / "catalog.db", home / "catalog.db-wal") if p.exists()
    )


# ---------------------------------------------------------------- the measured runs


def _rewrap_run(row: Row, cached: Path, run_dir: Path, workers: int, batch: int, n: int) -> float:
    """One timed rewrap on a fresh copy of ``cached``; returns the main process's CPU
    seconds a DEK."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(cached, run_dir)
    before = catalog_bytes(run_dir)
    try:
        c = run_child(
            [sys.executable, "-m", "benchmarks._child", "rewrap", run_dir, workers, batch],
            cwd=ROOT,
            timeout=max(900.0, n / 200),
            poll=0.05,
        ).check()
        r = c.json()
        after = catalog_bytes(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if r["rewrapped"] != n or r["failed"] or r["remaining"]:
        raise RuntimeError(
            f"rewrap did {r['rewrapped']:,} of {n:,} ({r['failed']} failed, {r['remaining']} left)"
        )
    cpu_main, cpu_workers = float(r["cpu_main"]), float(r["cpu_workers"])
    row.runs.append(float(r["seconds"]))
    row.add_peak(c.peak_mb)
    row.note = (
        f"catalog {before / 1e6:,.0f} -> {after / 1e6:,.0f} MB; {r['batches']:,} batches; "
        f"rotate {float(r['rotate']):.2f} s; CPU a DEK: main {cpu_main / n * 1e6:.1f} us"
        + (f", workers {cpu_workers / n * 1e6:.1f} us" if workers > 1 else "")
        + f"; peak RSS main {r['self_mb']:.0f} MB"
        + (f", largest worker {r['children_mb']:.0f} MB" if workers > 1 else "")
    )
    print(
        f"  {row.name:<44} {row.runs[-1]:8.1f} s  {n / row.runs[-1]:>8,.0f} DEKs/s  "
        f"peak {c.peak_mb:.0f} MB  CPU main {cpu_main:.1f} s"
        + (f" workers {cpu_workers:.1f} s" if workers > 1 else ""),
        flush=True,
    )
    return cpu_main / n


def _bare_run(row: Row, suite: str, n: int) -> float:
    """One run of the bare loop; returns its CPU seconds a DEK."""
    c = run_child(
        [sys.executable, "-m", "benchmarks._child", "bare-rewrap", suite, n],
        cwd=ROOT,
        timeout=900,
        poll=0.05,
    ).check()
    r = c.json()
    row.runs.append(float(r["seconds"]))
    row.add_peak(c.peak_mb)
    print(f"  {row.name:<44} {row.runs[-1]:8.1f} s  {n / row.runs[-1]:>8,.0f} DEKs/s", flush=True)
    return float(r["cpu"]) / n


def run(
    report: Report,
    *,
    deks: int,
    batches: Sequence[int],
    workers: Sequence[int],
    suites: Sequence[str],
    workdir: Path,
) -> None:
    print(
        f"\n[rewrap] {deks:,} and {deks // 10:,} DEKs, batches {list(batches)}, "
        f"workers {list(workers)}",
        flush=True,
    )
    for suite in suites:
        try:
            _suite(report, suite, deks=deks, batches=batches, workers=workers, workdir=workdir)
        except Exception as e:
            report.row(GROUP, f"{suite}: set-up", error=f"{type(e).__name__}: {e}")


def _suite(
    report: Report,
    suite: str,
    *,
    deks: int,
    batches: Sequence[int],
    workers: Sequence[int],
    workdir: Path,
) -> None:
    sizes = [deks] + ([deks // 10] if deks // 10 >= 1000 else [])
    homes = {n: build_home(workdir, suite, n) for n in sizes}
    run_dir = workdir / "rewrap-run"
    bare_n = min(deks, BARE_MAX)
    bare = report.row(GROUP, f"{suite}: bare decrypt+encrypt loop", work=bare_n, unit="DEKs/s")
    rows: dict[tuple[int, int, int], Row] = {}
    for n in sizes:
        for b in batches:
            for w in workers:
                rows[(n, b, w)] = report.row(
                    GROUP,
                    f"{suite} N={_count(n)} w={w} b={b}",
                    work=n,
                    unit="DEKs/s",
                )
    # bare loop before, between and after the rewraps: drift hits both alike
    bare_cpu = [_bare_run(bare, suite, bare_n)]
    cpu: dict[tuple[int, int, int], float] = {}
    for i, n in enumerate(sizes):
        if i:
            bare_cpu.append(_bare_run(bare, suite, bare_n))
        for b in batches:
            for w in workers:
                row = rows[(n, b, w)]
                try:
                    cpu[(n, b, w)] = _rewrap_run(row, homes[n], run_dir, w, b, n)
                except Exception as e:
                    row.error = f"{type(e).__name__}: {e}"
    bare_cpu.append(_bare_run(bare, suite, bare_n))
    bare.note = f"CPU {min(bare_cpu) * 1e6:.1f} us a DEK (best run)"

    # ---------------------------------------------------------------- ratios, targets
    for (n, b, w), row in rows.items():
        if not row.rate:
            continue
        if w == 1 and bare.rate:
            row.ratios["bare"] = row.rate / bare.rate
            if (n, b, w) in cpu:  # the same on CPU time: what other load on the VM cannot skew
                row.ratios["bare CPU"] = min(bare_cpu) / cpu[(n, b, w)]
        one = rows.get((n, b, 1))
        if w > 1 and one is not None and one.rate:
            row.ratios["1 proc"] = row.rate / one.rate
    n = deks
    for b in batches:
        one, two = rows.get((n, b, 1)), rows.get((n, b, 2))
        tag = f"{suite} N={_count(n)} b={b}"
        if one is not None:
            r = one.ratios.get("bare")
            report.target(
                GROUP,
                f"{tag}: 1 proc {one.rate or 0:,.0f}/s vs bare {bare.rate or 0:,.0f}/s",
                f"{r:.3f}x" if r is not None else "-",
                f">= {GOAL_VS_BARE:.2f}x",
                None if r is None else r >= GOAL_VS_BARE,
            )
        if two is not None:
            r = two.ratios.get("1 proc")
            report.target(
                GROUP,
                f"{tag}: 2 workers vs 1 process",
                f"{r:.2f}x" if r is not None else "-",
                f">= {GOAL_SCALING}x",
                None if r is None else r >= GOAL_SCALING,
            )
        for w in workers:
            big = rows.get((n, b, w))
            if big is None:
                continue
            report.target(
                GROUP,
                f"{tag} workers={w}: peak RSS",
                f"{big.peak_mb:.0f} MB" if big.peak_mb is not None else "-",
                f"< {GOAL_PEAK_MB:.0f} MB",
                None if big.peak_mb is None else big.peak_mb < GOAL_PEAK_MB,
            )
            small = rows.get((n // 10, b, w))
            if small is not None and len(sizes) > 1:
                g = big.peak_mb / small.peak_mb if big.peak_mb and small.peak_mb else None
                report.target(
                    GROUP,
                    f"{tag} workers={w}: peak at N / at N/10",
                    (f"{g:.2f}x ({small.peak_mb:.0f}->{big.peak_mb:.0f})" if g else "-"),
                    f"<= {GOAL_PEAK_GROWTH:.2f}x",
                    None if g is None else g <= GOAL_PEAK_GROWTH,
                )


def _count(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"
