"""Local-backend wrap, unwrap and rewrap throughput, per HPKE suite.

Custodian is measured through ``LocalBackend`` (taken from a Service home, so
keys come from the catalog and the sealed store as in real use) in batches of
``batch`` DEKs. The reference is a bare loop over cryptography's
``hpke.Suite.encrypt`` / ``decrypt`` with keys made directly and the ``info``
strings computed in advance: the price of the HPKE operations alone. The
ratio is custodian's rate over the bare rate (1.00 means no overhead).

Target: at least 0.80x the bare rate for each operation and suite (custodian's
own work, context strings, key look-up and error handling, at most a fifth on
top of HPKE). No figure was given for this one; 0.80 is ours.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._home import custodian, make_home
from benchmarks.common import Report

GROUP = "wrap"
SUITES = ("mlkem768-x25519", "x25519", "p256")
OPS = ("wrap", "unwrap", "rewrap")
GOAL_VS_BARE = 0.80


def _keypair(suite: str) -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

    priv: Any
    if suite == "mlkem768-x25519":
        priv = hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
        )
    elif suite == "x25519":
        priv = x25519.X25519PrivateKey.generate()
    else:
        priv = ec.generate_private_key(ec.SECP256R1())
    return priv, priv.public_key()


def _bare_suite(suite: str) -> Any:
    from cryptography.hazmat.primitives import hpke

    kem = {
        "mlkem768-x25519": hpke.KEM.MLKEM768_X25519,
        "x25519": hpke.KEM.X25519,
        "p256": hpke.KEM.P256,
    }[suite]
    return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(report: Report, *, batch: int, repeat: int, workdir: Path) -> None:
    print(f"\n[wrap] batches of {batch} DEKs, best of {repeat}", flush=True)
    for suite in SUITES:
        try:
            _suite(report, suite, batch=batch, repeat=repeat, workdir=workdir)
        except Exception as e:
            report.row(GROUP, f"{suite}: set-up", error=f"{type(e).__name__}: {e}")
            for op in OPS:
                report.target(GROUP, f"{suite} {op}: rate vs bare", "-", _goal(), None)


def _goal() -> str:
    return f">= {GOAL_VS_BARE:.2f}x"


def _suite(report: Report, suite: str, *, batch: int, repeat: int, workdir: Path) -> None:
    from custodian.backends.base import DekRef, dek_context
    from custodian.secret import SecretBytes

    home = workdir / f"home-wrap-{suite}"
    shutil.rmtree(home, ignore_errors=True)
    kek = f"bench-{suite}"
    svc = make_home(home, suite=suite, kek=kek)
    try:
        by = custodian(svc)
        svc.keys.add_version(kek, by=by)  # v2: the rewrap target
        by.forget()
        be: Any = svc.keys.backend("local")
        ids = [str(uuid.uuid4()) for _ in range(batch)]
        deks = [SecretBytes.random(32, "DEK") for _ in range(batch)]
        items = list(zip(ids, deks, strict=True))
        wrapped = be.wrap(kek, 1, items)
        refs = [DekRef(i, kek, 1, w) for i, w in zip(ids, wrapped, strict=True)]
        be.unwrap(refs[:1])  # load (unseal) the private key once, as a batch job would
        be.rewrap(refs[:1], 2)

        # the bare reference: same sizes, keys made directly, info computed in advance
        hs = _bare_suite(suite)
        priv1, pub1 = _keypair(suite)
        _, pub2 = _keypair(suite)
        raw = [os.urandom(32) for _ in range(batch)]
        info1 = [dek_context(i, kek, 1) for i in ids]
        info2 = [dek_context(i, kek, 2) for i in ids]
        cts = [hs.encrypt(d, pub1, info=c) for d, c in zip(raw, info1, strict=True)]

        def bare_wrap() -> None:
            for d, c in zip(raw, info1, strict=True):
                hs.encrypt(d, pub1, info=c)

        def bare_unwrap() -> None:
            for ct, c in zip(cts, info1, strict=True):
                hs.decrypt(ct, priv1, info=c)

        def bare_rewrap() -> None:
            for ct, c1, c2 in zip(cts, info1, info2, strict=True):
                hs.encrypt(hs.decrypt(ct, priv1, info=c1), pub2, info=c2)

        def cust_unwrap() -> None:
            for d in be.unwrap(refs):
                if isinstance(d, Exception):
                    raise d
                d.wipe()

        def cust_rewrap() -> None:
            for w in be.rewrap(refs, 2):
                if isinstance(w, Exception):
                    raise w

        pairs: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("wrap", lambda: be.wrap(kek, 1, items), bare_wrap),
            ("unwrap", cust_unwrap, bare_unwrap),
            ("rewrap", cust_rewrap, bare_rewrap),
        ]
        for op, cust, bare in pairs:
            rc = report.row(GROUP, f"{suite}: {op} (LocalBackend)", work=batch, unit="ops/s")
            rb = report.row(GROUP, f"{suite}: {op} (bare hpke.Suite)", work=batch, unit="ops/s")
            for _ in range(repeat):  # interleaved, so drift hits both alike
                rb.runs.append(_timed(bare))
                rc.runs.append(_timed(cust))
            ratio = rb.best / rc.best if rc.best and rb.best else None
            if ratio is not None:
                rc.ratios["bare"] = ratio
            report.target(
                GROUP,
                f"{suite} {op}: {rc.rate or 0:,.0f}/s vs bare {rb.rate or 0:,.0f}/s",
                f"{ratio:.3f}x" if ratio is not None else "-",
                _goal(),
                None if ratio is None else ratio >= GOAL_VS_BARE,
            )
            print(
                f"  {suite:<16} {op:<7} custodian {rc.rate or 0:>9,.0f}/s   "
                f"bare {rb.rate or 0:>9,.0f}/s",
                flush=True,
            )
        report.row(
            GROUP,
            f"{suite}: wrapped DEK size",
            note=f"{len(wrapped[0])} bytes per wrapped DEK",
        )
        for d in deks:
            d.wipe()
    finally:
        svc.close()
        shutil.rmtree(home, ignore_errors=True)
