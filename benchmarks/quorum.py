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
