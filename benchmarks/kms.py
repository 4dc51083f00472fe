"""aws-kms rewrap (ReEncrypt) through the backend against a bare boto3 loop.

Both run against one ``moto_server`` on 127.0.0.1 started here, with the same
concurrency (the backend's ``workers`` threads; the bare loop a
ThreadPoolExecutor of as many), the same botocore Config (timeouts, no
botocore retry, a connection pool of workers + 2) and the same ciphertexts and
encryption contexts. Custodian is measured as the rewrap job calls it:
``AwsKmsBackend.rewrap(refs, 2)`` inside a decrypt session, which checks both
keys' state and aliases (DescribeKey) once per batch, checks each answer's key
ids and keeps the results in order. The bare loop does only the ReEncrypt
calls. Ratio = bare time / custodian time; target >= 0.80x.

moto's KMS is a Python server on the same two cores, so the absolute rate says
little about AWS (whose quota is thousands of ReEncrypts a second per
account); the ratio is the price of custodian's own work.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._home import custodian, make_home
from benchmarks.common import Report

GROUP = "kms"
GOAL = 0.80
REGION = "eu-west-1"


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/moto-api/")
            c.getresponse().read()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start within 30 s")


def _job(report: Report, svc: Any, be: Any, cred: str, ids: list[str], bare_rate: float) -> None:
    """One run of the rewrap job (``svc.keys.rewrap``) over the same number of DEKs:
    catalogued (rows only, no containers: the job reads none) under v2, rotated to v3."""
    from custodian.backends.aws_kms import DecryptCredential
    from custodian.catalog import Backup
    from custodian.secret import SecretBytes

    by = custodian(svc)
    try:
        wrapped = be.wrap("bench-kms", 2, [(i, SecretBytes.random(32, "DEK")) for i in ids])
        now = svc.ctx.now()
        with svc.catalog.transaction():
            svc.catalog.add_backups(
                Backup(i, "bench", now, 0, 0, "", "/nonexistent", "bench-kms", 2, w, 65536)
                for i, w in zip(ids, wrapped, strict=True)
            )
        svc.keys.add_version("bench-kms", by=by)
        row = report.row(GROUP, "rewrap job (svc.keys.rewrap)", work=len(ids), unit="ops/s")
        t = time.perf_counter()
        with be.decrypt_session(DecryptCredential.from_json(cred)):
            rep = svc.keys.rewrap("bench-kms", by=by)
        row.runs.append(time.perf_counter() - t)
        if not rep.finished or rep.rewrapped != len(ids):
            raise RuntimeError(rep.summary())
        if row.rate and bare_rate:
            row.ratios["bare"] = row.rate / bare_rate
        row.note = f"one run, {rep.batches} batches"
        print(f"  rewrap job {row.rate or 0:,.0f}/s ({row.ratios.get('bare', 0):.2f}x bare)")
    finally:
        by.forget()


def run(report: Report, *, deks: int, repeat: int, workers: int, workdir: Path) -> None:
    print(f"\n[kms] ReEncrypt of {deks:,} DEKs, {workers} at a time, best of {repeat}", flush=True)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(k, "bench")
    proc, url = _moto()
    try:
        _measure(report, url, deks=deks, repeat=repeat, workers=workers, workdir=workdir)
    finally:
        proc.terminate()
        proc.wait(10)


def _measure(
    report: Report, url: str, *, deks: int, repeat: int, workers: int, workdir: Path
) -> None:
    import boto3

    from custodian.backends.aws_kms import AwsKmsBackend, DecryptCredential, context
    from custodian.backends.base import DekRef
    from custodian.secret import SecretBytes

    home = workdir / "home-kms"
    shutil.rmtree(home, ignore_errors=True)
    svc = make_home(home, suite="x25519")
    try:
        h = svc.ctx.home_actor()
        svc.keys.configure_backend(
            "aws-kms", {"region": REGION, "endpoint_url": url, "workers": workers}, by=h
        )
        svc.keys.create("bench-kms", by=h, backend="aws-kms")
        by = custodian(svc)
        svc.keys.add_version("bench-kms", by=by)
        by.forget()
        be = svc.keys.backend("aws-kms")
        assert isinstance(be, AwsKmsBackend)
        home_id = svc.ctx.config.home_id
        ids = [str(uuid.uuid4()) for _ in range(deks)]
        items = [(i, SecretBytes.random(32, "DEK")) for i in ids]
        wrapped = be.wrap("bench-kms", 1, items)
        refs = [DekRef(i, "bench-kms", 1, w) for i, w in zip(ids, wrapped, strict=True)]
        m1, m2 = be.material("bench-kms", 1), be.material("bench-kms", 2)
        c1 = [context(home_id, i, "bench-kms", 1) for i in ids]
        c2 = [context(home_id, i, "bench-kms", 2) for i in ids]
        bare_client: Any = boto3.client(
            "kms", region_name=REGION, endpoint_url=url, config=be._config()
        )
        pool = ThreadPoolExecutor(workers)
        cred = '{"AccessKeyId": "bench-decrypt", "SecretAccessKey": "bench"}'

        def bare() -> None:
            def one(i: int) -> bytes:
                r = bare_client.re_encrypt(
                    CiphertextBlob=wrapped[i],
                    SourceKeyId=m1.arn,
                    SourceEncryptionContext=c1[i],
                    DestinationKeyId=m2.arn,
                    DestinationEncryptionContext=c2[i],
                )
                return bytes(r["CiphertextBlob"])

            list(pool.map(one, range(deks)))

        def cust() -> None:
            with be.decrypt_session(DecryptCredential.from_json(cred)):
                out = be.rewrap(refs, 2)
            bad = [x for x in out if not isinstance(x, bytes)]
            if bad:
                raise RuntimeError(str(bad[0]))

        bare()  # warm both: connections, threads
        cust()
        rc = report.row(GROUP, "ReEncrypt (AwsKmsBackend.rewrap)", work=deks, unit="ops/s")
        rb = report.row(GROUP, "ReEncrypt (bare boto3 loop)", work=deks, unit="ops/s")
        cpu = {"bare": 0.0, "cust": 0.0}
        for _ in range(repeat):  # interleaved: drift on the shared machine hits both
            t, p = time.perf_counter(), time.process_time()
            bare()
            rb.runs.append(time.perf_counter() - t)
            cpu["bare"] += time.process_time() - p
            t, p = time.perf_counter(), time.process_time()
            cust()
            rc.runs.append(time.perf_counter() - t)
            cpu["cust"] += time.process_time() - p
        pool.shutdown()
        # moto (another process) dominates the wall time; this process's CPU per call is
        # custodian's own price, without the server
        per = {k: v / (repeat * deks) * 1e6 for k, v in cpu.items()}
        rc.note = (
            f"client CPU {per['cust']:,.0f} us/call vs bare {per['bare']:,.0f} us/call "
            f"({per['bare'] / per['cust']:.2f}x)"
        )
        ratio = rb.best / rc.best if rc.best and rb.best else None
        if ratio is not None:
            rc.ratios["bare"] = ratio
        report.target(
            GROUP,
            f"ReEncrypt: {rc.rate or 0:,.0f}/s vs bare {rb.rate or 0:,.0f}/s ({workers} at once)",
            f"{ratio:.3f}x" if ratio is not None else "-",
            f">= {GOAL:.2f}x",
            None if ratio is None else ratio >= GOAL,
        )
        print(
            f"  custodian {rc.rate or 0:,.0f}/s   bare {rb.rate or 0:,.0f}/s; {rc.note}", flush=True
        )
        _job(report, svc, be, cred, ids, rb.rate or 0.0)
    finally:
        svc.close()
        shutil.rmtree(home, ignore_errors=True)
