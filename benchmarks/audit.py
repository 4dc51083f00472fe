"""The signed audit log: verifying a long log, and the latency of one durable append.

(a) Verify. A bench home (real ``home.init``, ``kek.create`` and enrolment
entries, written by the real API) is filled to ``entries`` entries signed by
real Ed25519 keys: mostly ``backup.encrypt`` by the service identity
``backup-bot``, every 50th an ``audit.checkpoint`` by the custodian. The bulk
is written with the audit module's own functions (``entry_hash``,
``canonical``, the signature prefix, the segment layout), the way
``AuditLog.append`` builds a line, but with one fsync per segment instead of
one per entry (``append`` has no such switch, and 100,000 fsyncs would make
the set-up, not the benchmark, the slow part). A real checkpoint is then
exported through the service, which appends one more entry with the real API,
so the bulk must chain and verify like a real log or the case fails.

Timed: ``svc.audit.verify`` (chain, hashes, every signature, the
checkpoint), in process, the log in the page cache. Reference, in the same
run: ``Ed25519PublicKey.verify`` in a bare loop over the same signatures and
messages, public key objects and decoded bytes prepared in advance (the price
of the signature checks alone). Ratio = raw time / verify time; target 70%.
The ``custodian audit verify`` command is timed once, whole process, for
information.

(b) Append. ``AuditLog.append`` (lock, read the head, hash, sign, write,
fsync) on a home on a real disk (never tmpfs), ``appends`` times; median and
95th percentile. Reference, interleaved with it: ``os.write`` of 100 bytes +
``os.fsync`` on a file in the same directory.
"""

from __future__ import annotations

import base64
import gc
import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks._home import bot, custodian, make_home
from benchmarks.common import CUSTODIAN_BIN, Report, run_child

GROUP = "audit"
ROOT = Path(__file__).resolve().parent.parent
GOAL_VS_RAW = 0.70
CHECKPOINT_EVERY = 50
NOT_A_DISK = ("tmpfs", "ramfs", "devtmpfs")


# ---------------------------------------------------------------- where


def filesystem(path: Path) -> tuple[str, str]:
    """(mount point, file system type) of ``path``, from /proc/mounts."""
    path = path.resolve()
    best = ("/", "?")
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = path == Path(mnt) or Path(mnt) in path.parents
                if inside and len(mnt) >= len(best[0]):
                    best = (mnt, parts[2])
    except OSError:
        pass
    return best


def disk_dir(workdir: Path) -> Path:
    """``workdir`` if it is on a real disk, else a cache directory under $HOME."""
    workdir.mkdir(parents=True, exist_ok=True)
    if filesystem(workdir)[1] not in NOT_A_DISK:
        return workdir
    alt = Path.home() / ".cache" / "custodian-bench"
    alt.mkdir(parents=True, exist_ok=True)
    return alt


# ---------------------------------------------------------------- the log


def _details(seq: int, home: Path) -> dict[str, Any]:
    """What ``backup.encrypt`` records for a typical nightly dump (no floats)."""
    label = f"pg-orders-{seq:07d}.sql"
    return {
        "label": label,
        "size": 1_000_000 + seq * 37 % 900_000,
        "container_size": 1_000_000 + seq * 37 % 900_000 + 1_290,
        "container_sha256": os.urandom(32).hex(),
        "location": str(home / "backups" / f"{label}.cbk"),
        "kek": "backups",
        "kek_version": 1,
    }


def fill_log(svc: Any, total: int, signers: tuple[Any, Any]) -> int:
    """Append entries until the log holds ``total``; return how many were added.

    Mirrors ``AuditLog.append`` (same fields in the same order, same hash,
    signature and line encoding, same segment numbering) but fsyncs once per
    segment. Only for a bench home nobody else is writing to.
    """
    import uuid

    from custodian import audit as A
    from custodian.catalog import utcnow

    log = svc.audit
    the_bot, the_custodian = signers
    seq, prev = log.head()
    added = 0
    while seq < total:
        path = log._segment_path((seq // A.SEGMENT_ENTRIES) + 1)
        new = not path.exists()
        stop = min(total, (seq // A.SEGMENT_ENTRIES + 1) * A.SEGMENT_ENTRIES)
        lines = []
        while seq < stop:
            n = seq + 1
            if n % CHECKPOINT_EVERY == 0:
                who, action, subject = the_custodian, "audit.checkpoint", "audit"
                details: dict[str, Any] = {"seq": seq, "head": prev}
            else:
                who, action = the_bot, "backup.encrypt"
                subject = f"backup:{uuid.uuid4()}"
                details = _details(n, svc.home.path)
            entry: dict[str, Any] = {
                "seq": n,
                "time": utcnow(),
                "actor": who.name,
                "action": action,
                "subject": subject,
                "outcome": "ok",
                "details": details,
                "prev": prev,
                "key_id": who.key_id,
            }
            entry["hash"] = A.entry_hash(entry)
            entry["sig"] = base64.b64encode(
                who.sign(A.SIG_PREFIX + bytes.fromhex(entry["hash"]))
            ).decode()
            lines.append(A.canonical(entry) + b"\n")
            seq, prev = n, entry["hash"]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            dfd = os.open(log.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        added += len(lines)
    return added


def raw_material(log: Any) -> list[tuple[Any, bytes, bytes]]:
    """(public key object, signature, signed message) of every entry, decoded in advance."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from custodian import audit as A

    pubs: dict[str, Any] = {}
    out = []
    for e in log.entries():
        d = e["details"]
        if e["action"] in A.KEY_ANNOUNCING:
            pubs[d["key_id"]] = ed25519.Ed25519PublicKey.from_public_bytes(
                base64.b64decode(d["public_key"])
            )
        out.append(
            (
                pubs[e["key_id"]],
                base64.b64decode(e["sig"]),
                A.SIG_PREFIX + bytes.fromhex(e["hash"]),
            )
        )
    return out


def _timed_raw(material: list[tuple[Any, bytes, bytes]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for pub, sig, msg in material:
        pub.verify(sig, msg)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- the group


def run(report: Report, *, entries: int, appends: int, repeat: int, workdir: Path) -> None:
    base = disk_dir(workdir)
    mnt, fstype = filesystem(base)
    print(
        f"\n[audit] {entries:,} entries, verify best of {repeat}; {appends} appends "
        f"in {base} ({fstype} on {mnt})",
        flush=True,
    )
    home = base / "home-audit"
    shutil.rmtree(home, ignore_errors=True)
    svc = make_home(home)
    try:
        _verify(report, svc, home, entries=entries, repeat=repeat)
        _append(report, svc, appends=appends, where=f"{fstype} on {mnt}")
    finally:
        svc.close()
        shutil.rmtree(home, ignore_errors=True)


def _verify(report: Report, svc: Any, home: Path, *, entries: int, repeat: int) -> None:
    from custodian.audit import AuditLog

    row = report.row
    build = row(GROUP, f"set-up: write {entries:,} signed entries", work=entries, unit="ops/s")
    cust, the_bot = custodian(svc), bot(svc)
    t0 = time.perf_counter()
    added = fill_log(svc, entries - 1, (the_bot, cust))
    build.runs.append(time.perf_counter() - t0)
    cp = svc.audit.checkpoint(by=cust)  # the real append, on top of the bulk
    cust.forget()
    the_bot.forget()
    n = svc.log.count()
    build.note = (
        f"{added:,} written in bulk (fsync per segment), the rest by the real API; "
        f"{len(svc.log.segments())} segments, "
        f"{sum(p.stat().st_size for p in svc.log.segments()) / 2**20:.1f} MiB"
    )

    ver = row(GROUP, "svc.audit.verify (with checkpoint)", work=n, unit="ops/s")
    raw = row(GROUP, "bare Ed25519PublicKey.verify loop (ref.)", work=n, unit="ops/s")
    material = raw_material(AuditLog(svc.home.audit))
    if len(material) != n:
        raw.error = f"read {len(material)} signatures, the log holds {n}"
    for _ in range(repeat):  # interleaved, so drift hits both alike
        if not raw.error:
            raw.runs.append(_timed_raw(material))
        if ver.error:
            continue
        gc.collect()
        t0 = time.perf_counter()
        res = svc.audit.verify(checkpoint=cp)
        t = time.perf_counter() - t0
        if not res.ok or res.entries != n:
            ver.error = f"the log did not verify: {res.summary()}"
        else:
            ver.runs.append(t)
            ver.note = res.summary()
    del material
    ratio = raw.best / ver.best if raw.best and ver.best else None
    if ratio is not None:
        ver.ratios["raw"] = ratio
    report.target(
        GROUP,
        f"audit verify, {n:,} entries: rate vs raw Ed25519",
        f"{ratio:.0%}" if ratio is not None else "-",
        f">= {GOAL_VS_RAW:.0%}",
        None if ratio is None else ratio >= GOAL_VS_RAW,
    )
    print(
        f"  verify {ver.rate or 0:,.0f} entries/s ({_s(ver.best)}), "
        f"raw Ed25519 {raw.rate or 0:,.0f}/s ({_s(raw.best)})",
        flush=True,
    )

    # the command an auditor runs, once, whole process
    cli = row(GROUP, "custodian audit verify (CLI, whole process)", work=n, unit="ops/s")
    c = run_child(
        [CUSTODIAN_BIN, "--home", home, "audit", "verify", "--json"], cwd=ROOT, timeout=900
    )
    try:
        out = c.json()
        if c.returncode != 0 or not out.get("ok"):
            cli.error = f"exit {c.returncode}: {out.get('reason') or c.stderr.strip()[-200:]}"
        else:
            cli.runs.append(c.wall)
            cli.add_peak(c.peak_mb)
            if raw.best:
                cli.ratios["raw"] = raw.best / c.wall
    except (RuntimeError, ValueError):
        cli.error = (c.stderr.strip().splitlines() or [f"exit {c.returncode}"])[-1]


def _append(report: Report, svc: Any, *, appends: int, where: str) -> None:
    from custodian.errors import CustodianError

    app = report.row(GROUP, "AuditLog.append (fsync), one entry", unit="ops/s", work=1)
    ref = report.row(GROUP, "os.write 100 B + os.fsync (ref.)", unit="ops/s", work=1)
    the_bot = bot(svc)
    log = svc.audit
    probe = log.dir / ".bench-fsync-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    blob = os.urandom(50).hex().encode()[:100]
    try:
        log.append(  # warm-up, not timed: opens the next segment after the bulk ones
            actor=the_bot.name,
            key_id=the_bot.key_id,
            sign=the_bot.sign,
            action="backup.encrypt",
            subject="backup:warm-up",
            details=_details(0, svc.home.path),
        )
        for i in range(appends):
            d = _details(i, svc.home.path)
            t0 = time.perf_counter()
            log.append(
                actor=the_bot.name,
                key_id=the_bot.key_id,
                sign=the_bot.sign,
                action="backup.encrypt",
                subject=f"backup:bench-{i}",
                details=d,
            )
            app.runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            os.write(fd, blob)
            os.fsync(fd)
            ref.runs.append(time.perf_counter() - t0)
    except CustodianError as e:
        app.error = f"{type(e).__name__}: {e}"
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
        the_bot.forget()
    for r in (app, ref):
        if r.runs:
            r.note = f"p95 {_s(p95(r.runs))}, max {_s(max(r.runs))}, n={len(r.runs)}; {where}"
    a95, r95 = p95(app.runs), p95(ref.runs)
    if app.median and ref.median and a95 and r95:
        app.ratios["fsync (median)"] = app.median / ref.median
        app.ratios["fsync (p95)"] = a95 / r95
    res = svc.audit.verify()  # the real appends must chain onto the bulk ones
    if not res.ok:
        app.error = f"the log no longer verifies: {res.summary()}"
    print(
        f"  append median {_s(app.median)} p95 {_s(a95)}; "
        f"fsync median {_s(ref.median)} p95 {_s(r95)}",
        flush=True,
    )


def p95(xs: list[float]) -> float | None:
    """95th percentile, nearest rank."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, -(-95 * len(s) // 100) - 1))]


def _s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.2f} ms" if x < 1 else f"{x:.3f} s"
