"""Custody v2 building blocks: quorum wrap and holder refresh, per HPKE suite.

- **Quorum wrap** (``custodian.custody.quorum.wrap``: split the DEK M-of-N, build
  each holder's ``info`` from the manifest, seal ``x || share`` to each holder,
  one commitment per share) against a bare loop of the same work the wrap cannot
  avoid: the GF(256) split (the same ``gf256.split``) and N ``hpke.Suite.encrypt``
  calls with the ``info`` strings computed in advance. Target (issue 11): >= 0.80x.
- **Holder refresh per share** (``apply_refresh``: open the sealed delta, XOR,
  seal the new share to the new key with its commitment) against a bare HPKE
  open + seal pair. Target (issue 11): >= 0.80x in one process.

Not yet through the service (the wiring is still to come): these time the core
functions on keys made in the benchmark itself.
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import Report

GROUP = "quorum"
SUITES = ("mlkem768-x25519", "x25519")
GOAL = 0.80


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(report: Report, *, batch: int, repeat: int, m: int = 2, n: int = 3) -> None:
    print(f"\n[quorum] {m}-of-{n}, batches of {batch} DEKs, best of {repeat}", flush=True)
    for suite in SUITES:
        try:
            _suite(report, suite, batch=batch, repeat=repeat, m=m, n=n)
        except Exception as e:
            report.row(GROUP, f"{suite}: set-up", error=f"{type(e).__name__}: {e}")


def _pair(
    report: Report,
    label: str,
    batch: int,
    repeat: int,
    cust: Callable[[], object],
    bare: Callable[[], object],
    bare_label: str,
) -> None:
    rc = report.row(GROUP, f"{label} (custody)", work=batch, unit="ops/s")
    rb = report.row(GROUP, f"{label} ({bare_label})", work=batch, unit="ops/s")
    for _ in range(repeat):  # interleaved, so drift hits both alike
        rb.runs.append(_timed(bare))
        rc.runs.append(_timed(cust))
    ratio = rb.best / rc.best if rc.best and rb.best else None
    if ratio is not None:
        rc.ratios["bare"] = ratio
    report.target(
        GROUP,
        f"{label}: {rc.rate or 0:,.0f}/s vs bare {rb.rate or 0:,.0f}/s",
        f"{ratio:.3f}x" if ratio is not None else "-",
        f">= {GOAL:.2f}x",
        None if ratio is None else ratio >= GOAL,
    )
    print(f"  {label:<40} custody {rc.rate or 0:>8,.0f}/s   bare {rb.rate or 0:>8,.0f}/s")


def _suite(report: Report, suite: str, *, batch: int, repeat: int, m: int, n: int) -> None:
    from custodian.backends.local import generate, load_private, load_public
    from custodian.backends.local import suite as hpke_suite
    from custodian.custody import gf256
    from custodian.custody import quorum as Q
    from custodian.secret import SecretBytes

    names = [f"holder{i}" for i in range(1, n + 1)]
    old_priv, new_priv, old_h, new_h = {}, {}, [], []
    for x, name in enumerate(names, start=1):
        p, pub = generate(suite)
        old_priv[name] = load_private(suite, p)
        old_h.append(Q.Holder(name, x, pub))
        p, pub = generate(suite)
        new_priv[name] = load_private(suite, p)
        new_h.append(Q.Holder(name, x, pub))
    old = Q.Manifest("bench-home", "bench", 1, suite, m, tuple(old_h), "").check()
    new = Q.Manifest("bench-home", "bench", 2, suite, m, tuple(new_h), "").check()
    ids = [str(uuid.uuid4()) for _ in range(batch)]
    deks = [SecretBytes.random(32, "DEK") for _ in range(batch)]
    hs = hpke_suite(suite)
    pubs = [load_public(suite, h.public_key) for h in old.holders]
    deal = os.urandom(16)
    infos = [[Q.share_info(old, b, deal, h) for h in old.holders] for b in ids]
    xs = [h.x for h in old.holders]

    def cust_wrap() -> None:
        for b, d in zip(ids, deks, strict=True):
            Q.wrap(d, old, b)

    def bare_wrap() -> None:
        for d, inf in zip(deks, infos, strict=True):
            for x, sh, pk, i in zip(
                xs, gf256.split(bytes(d.reveal()), m, xs), pubs, inf, strict=True
            ):
                hs.encrypt(bytes([x]) + sh, pk, info=i)

    _pair(report, f"{suite}: quorum wrap {m} of {n}", batch, repeat, cust_wrap, bare_wrap,
          f"split + {n} bare seals")  # fmt: skip
    wraps = [Q.wrap(d, old, b) for b, d in zip(ids, deks, strict=True)]
    w0 = wraps[0].encode()
    report.row(GROUP, f"{suite}: quorum wrap size", note=f"{len(w0)} bytes per DEK at N={n}")

    # refresh, as holder 1 applies it to every DEK of the batch
    who = names[0]
    deals = [Q.deal_refresh(old, new, b, w.deal_id) for b, w in zip(ids, wraps, strict=True)]
    shares = [Q.open_share(w, old, b, who, old_priv[who]) for b, w in zip(ids, wraps, strict=True)]
    new_pub = load_public(suite, new.holder(who).public_key)
    dinfos = [
        Q.delta_info(old, new, b, w.deal_id, nd, new.holder(who))
        for b, w, (nd, _) in zip(ids, wraps, deals, strict=True)
    ]

    def cust_refresh() -> None:
        for b, w, s, (nd, sealed) in zip(ids, wraps, shares, deals, strict=True):
            Q.apply_refresh(s, sealed[1], old, new, b, w.deal_id, nd, who, new_priv[who])

    def bare_refresh() -> None:
        for (_, sealed), inf in zip(deals, dinfos, strict=True):
            hs.encrypt(hs.decrypt(sealed[1], new_priv[who], info=inf), new_pub, info=inf)

    _pair(report, f"{suite}: holder refresh per share", batch, repeat, cust_refresh,
          bare_refresh, "bare open + seal")  # fmt: skip


# ---------------------------------------------------------------- through the service


def run_service(report: Report, *, workdir: Path, size: int = 256 * 2**20, repeat: int = 3) -> None:
    """Issue 11's service figures, on a home with the real Argon2id parameters:

    - approval of a 10-backup restore, end to end (unlock with the passphrase, open the
      approver's 10 shares and seal each to the session key, TOTP, signed entries; the
      first approval locks its releases, the second lifts the lock): target < 1.5 s each;
    - restore of one ``size`` backup (and nine small ones) through a quorum session (the
      runner's unlock not counted: ``svc.restores.run``) against
      ``container.decrypt_stream`` of the big container with its DEK into a file on the
      same file system, fsynced: target >= 0.90x.
    """
    import io
    import shutil

    from benchmarks._home import code_for, fresh_steps
    from custodian import container
    from custodian import people as P
    from custodian.secret import SecretBytes
    from custodian.service import Service

    print(f"\n[quorum] service: real KDF ({P.KDF.label}), 2 of 3, 10 backups", flush=True)
    home = workdir / "home-quorum"
    shutil.rmtree(home, ignore_errors=True)
    svc = Service.init(home, suite="mlkem768-x25519", keyring_backend="home-file")
    try:
        pw = {n: SecretBytes(f"{n} bench-only passphrase, not a secret".encode()) for n in
              ("h1", "h2", "h3", "op")}  # fmt: skip

        def enrol(name: str, roles: tuple[str, ...], by: object) -> None:
            p = svc.people.begin_enrolment(name, roles, passphrase=pw[name], by=by)  # type: ignore[arg-type]
            svc.people.complete_enrolment(p, P.hotp(p.totp, P.current_step()), by=by)  # type: ignore[arg-type]

        def unlock(name: str) -> Any:
            return svc.auth.unlock(name, pw[name])

        enrol("h1", ("custodian",), None)
        h1 = unlock("h1")
        enrol("h2", ("custodian",), h1)
        enrol("h3", ("custodian",), h1)
        enrol("op", ("operator",), h1)
        p = svc.people.begin_enrolment("bot", ("operator",), passphrase=None, by=h1, service=True)
        svc.people.complete_enrolment(p, None, by=h1)
        names = ("h1", "h2", "h3")
        steps = fresh_steps(svc, names)
        svc.keys.create_quorum(
            "vault", [h1, unlock("h2"), unlock("h3")], 2, by=h1,
            code=code_for(svc, "h1", steps["h1"]),
        )  # fmt: skip
        bot = svc.auth.unlock("bot", None)
        src = workdir / "quorum-plain.bin"
        if not src.exists() or src.stat().st_size != size:
            with open(src, "wb") as f:
                for _ in range(size // 2**20):
                    f.write(os.urandom(2**20))
        ids = [svc.backups.encrypt(src, workdir / "q-big.cbk", by=bot, kek="vault", force=True).id]
        for i in range(9):
            ids.append(
                svc.backups.encrypt(io.BytesIO(os.urandom(4096)), workdir / f"q{i}.cbk",
                                    by=bot, kek="vault", force=True).id
            )  # fmt: skip
        big = svc.backups.get(ids[0])

        r_lock = report.row(GROUP, "approve 10 backups, first (locks)", unit="s")
        r_lift = report.row(GROUP, "approve 10 backups, at quorum (lifts, releases)", unit="s")
        r_run = report.row(GROUP, f"restore {size >> 20} MiB via quorum session", work=size)
        r_bare = report.row(GROUP, f"decrypt_stream {size >> 20} MiB (bare)", work=size)
        for i in range(repeat):
            target = workdir / f"q-restore-{i}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            r = svc.restores.request(ids, "benchmark", target, by=unlock("op"))
            steps = fresh_steps(svc, ("h2", "h3"))
            t0 = time.perf_counter()
            by = unlock("h2")
            svc.approvals.approve(r.id, code_for(svc, "h2", steps["h2"]), by=by)
            r_lock.runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            by = unlock("h3")
            svc.approvals.approve(r.id, code_for(svc, "h3", steps["h3"]), by=by)
            r_lift.runs.append(time.perf_counter() - t0)
            op = unlock("op")
            t0 = time.perf_counter()
            rep = svc.restores.run(r.id, by=op)
            r_run.runs.append(time.perf_counter() - t0)
            assert all(x.outcome == "ok" for x in rep.results), rep.results
            # the bare reference: the same container, its DEK given
            with open(big.location, "rb", buffering=0) as f:
                hdr = container.read_header(f)
                # the DEK the session combined, computed again for the reference only
                dek = _dek_for_reference(svc, big, h2=unlock("h2"), h3=unlock("h3"))
                ref = target / "reference.out"  # same file system as the restore, fsynced
                with open(ref, "wb") as out:
                    t0 = time.perf_counter()
                    container.decrypt_stream(f, out, dek, hdr)
                    out.flush()
                    os.fsync(out.fileno())
                    r_bare.runs.append(time.perf_counter() - t0)
                ref.unlink()
            shutil.rmtree(target, ignore_errors=True)
        for row, goal in ((r_lock, 1.5), (r_lift, 1.5)):
            report.target(GROUP, row.name, f"{row.best:.2f} s", f"< {goal} s", row.best < goal)
        ratio = r_bare.best / r_run.best if r_run.best else None
        if ratio is not None:
            r_run.ratios["decrypt_stream"] = ratio
        report.target(
            GROUP, "restore via quorum session vs decrypt_stream",
            f"{ratio:.2f}x" if ratio else "-", ">= 0.90x", None if ratio is None else ratio >= 0.9,
        )  # fmt: skip
        print(f"  approvals {r_lock.best:.2f} s / {r_lift.best:.2f} s; restore {ratio or 0:.2f}x")
    finally:
        svc.close()
        shutil.rmtree(home, ignore_errors=True)


def _dek_for_reference(svc: Any, b: Any, *, h2: Any, h3: Any) -> Any:
    """The DEK of ``b`` from two holders' own shares (the reference needs it; the real
    path never combines outside a session)."""
    from custodian.custody import quorum as Q
    from custodian.service import items

    man = svc.keys.manifest(b.kek, b.kek_version)
    qw = Q.QuorumWrap.decode(b.wrapped_dek)
    s = [
        Q.open_share(qw, man, b.id, h.name, items.holder_private(svc.ctx, h, man)) for h in (h2, h3)
    ]
    return Q.combine(qw, man, b.id, s)
