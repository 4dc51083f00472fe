"""The measured side of the streaming benchmark, run in its own process.

Each command times only the call it names (interpreter start-up and imports
are outside the timing; the parent records the whole process's wall time and
peak RSS separately) and prints one JSON line.

    python -m benchmarks._child encrypt SRC DST           core encrypt_stream
    python -m benchmarks._child encrypt-no-hash SRC DST   the same without the container SHA-256
    python -m benchmarks._child decrypt SRC DST           core decrypt_stream
    python -m benchmarks._child approve HOME ID DST       backup-bot asks for a
        restore of backup ID into DST's directory + /restore-target, both bench
        custodians approve with TOTP; prints the request id
    python -m benchmarks._child restore HOME REQUEST DST  svc.restores.run of
        the approved REQUEST by backup-bot; the restored file is renamed to DST
    python -m benchmarks._child rewrap HOME WORKERS BATCH   rotate the default KEK
        (untimed), then svc.keys.rewrap with WORKERS processes, batches of BATCH
    python -m benchmarks._child bare-rewrap SUITE N       the reference: N bare
        hpke decrypt + encrypt pairs with dek_context info, nothing else

The DEK of the core commands comes from $CUSTODIAN_BENCH_DEK (hex), a throwaway
key the parent made for this run; it is never written to disk.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def _dek() -> object:
    from custodian.secret import SecretBytes

    return SecretBytes(bytes.fromhex(os.environ["CUSTODIAN_BENCH_DEK"]), "DEK")


def encrypt(src: str, dst: str, *, hash_container: bool = True) -> dict[str, object]:
    from custodian import container

    dek = _dek()
    with open(src, "rb", buffering=0) as s, open(dst, "xb", buffering=0) as d:
        t0 = time.perf_counter()
        w = container.encrypt_stream(
            s,
            d,
            dek,  # type: ignore[arg-type]
            backup_id=uuid.uuid4(),
            backend="local",
            kek="backups",
            kek_version=1,
            wrapped_dek=bytes(1168),  # the size of a hybrid-suite wrapped DEK
            hash_container=hash_container,
        )
        t = time.perf_counter() - t0
    return {"seconds": t, "plaintext": w.plaintext_size, "container": w.container_size}


def encrypt_no_hash(src: str, dst: str) -> dict[str, object]:
    """The pipeline alone: what encrypting costs without the container's SHA-256."""
    return encrypt(src, dst, hash_container=False)


def decrypt(src: str, dst: str) -> dict[str, object]:
    from custodian import container

    dek = _dek()
    with open(src, "rb", buffering=0) as s, open(dst, "xb", buffering=0) as d:
        t0 = time.perf_counter()
        header = container.read_header(s, src)
        w = container.decrypt_stream(s, d, dek, header, name=src)  # type: ignore[arg-type]
        t = time.perf_counter() - t0
    return {"seconds": t, "plaintext": w.plaintext_size}


def _restore_target(dst: str) -> Path:
    target = Path(dst).parent / "restore-target"
    target.mkdir(mode=0o700, exist_ok=True)
    return target


def approve(home: str, backup_id: str, dst: str) -> dict[str, object]:
    """The custodians' side of a restore: backup-bot asks for backup ID into DST's
    directory + ``/restore-target``, both bench custodians approve with a fresh TOTP
    code (unlocking their keys: scrypt). Prints the request id for ``restore``."""
    from benchmarks._home import open_session
    from custodian.service import Service

    target = _restore_target(dst)
    t0 = time.perf_counter()
    with Service.open(home) as svc:
        rid = open_session(svc, [svc.backups.get(backup_id).id], target)
    return {"request": rid, "seconds": time.perf_counter() - t0}


def restore(home: str, request: str, dst: str) -> dict[str, object]:
    """The operator's side: backup-bot runs the approved REQUEST with
    ``svc.restores.run`` (the timed call), as a restore job would, in a process
    of its own; the restored file is then renamed to DST (untimed) for the
    parent's check."""
    from benchmarks._home import bot
    from custodian import container
    from custodian.service import Service

    out = Path(dst)
    _restore_target(dst)
    with Service.open(home) as svc:
        rid = request
        by = bot(svc)
        # how long the decryption itself took inside run_restore (session check,
        # unwrap, decrypt_stream, hash check, fsync and rename); the rest of the
        # call is bookkeeping: result row and audit entries (each fsynced), session close
        inner: list[float] = []
        decrypt_backup = svc.restores._decrypt_backup

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return decrypt_backup(*a, **kw)
            finally:
                inner.append(time.perf_counter() - t)

        svc.restores._decrypt_backup = timed  # type: ignore[method-assign]
        # and the decrypt_stream call within it: the same call as the decrypt
        # command's, so restore's own overhead shows without the noise between processes
        stream: list[float] = []
        decrypt_stream = container.decrypt_stream

        def timed_stream(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return decrypt_stream(*a, **kw)
            finally:
                stream.append(time.perf_counter() - t)

        container.decrypt_stream = timed_stream
        t1 = time.perf_counter()
        try:
            rep = svc.restores.run(rid, by=by)
        finally:
            container.decrypt_stream = decrypt_stream
        t2 = time.perf_counter()
        by.forget()
    bad = [x for x in rep.results if x.outcome != "ok"]
    if bad or len(rep.results) != 1 or rep.results[0].path is None:
        raise RuntimeError(f"the restore failed: {bad[0].reason if bad else rep}")
    Path(rep.results[0].path).rename(out)
    return {
        "seconds": t2 - t1,
        "decrypt_backup": sum(inner),
        "decrypt_stream": sum(stream),
        "plaintext": rep.results[0].plaintext_size,
        "session": rep.session_state,
    }


def _rss_mb() -> tuple[float, float]:
    """(this process's peak RSS, the largest peak of its finished children), in MB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own * 1024 / 1e6, kids * 1024 / 1e6


def rewrap(home: str, workers: str, batch: str) -> dict[str, object]:
    """Rotate the bench KEK (the bench custodian, a fresh TOTP code; untimed), then
    ``svc.keys.rewrap`` every DEK with ``workers`` processes in batches of ``batch``."""
    from benchmarks._home import CUSTODIAN, code_for, custodian, fresh_steps
    from custodian.service import Service

    with Service.open(home) as svc:
        kek = svc.config.default_kek
        by = custodian(svc)
        step = fresh_steps(svc, (CUSTODIAN,))[CUSTODIAN]
        t0 = time.perf_counter()
        svc.keys.rotate(kek, code_for(svc, CUSTODIAN, step), by=by)
        t1 = time.perf_counter()
        c1 = os.times()
        rep = svc.keys.rewrap(kek, by=by, workers=int(workers), batch_size=int(batch))
        t2 = time.perf_counter()
        c2 = os.times()
        by.forget()
    own, kids = _rss_mb()
    return {
        "seconds": t2 - t1,
        "rotate": t1 - t0,
        "rewrapped": rep.rewrapped,
        "failed": len(rep.failed),
        "remaining": rep.remaining,
        "batches": rep.batches,
        "workers": rep.workers,
        "self_mb": own,
        "children_mb": kids,
        "cpu_main": (c2.user - c1.user) + (c2.system - c1.system),
        "cpu_workers": (c2.children_user - c1.children_user)
        + (c2.children_system - c1.children_system),
    }


def bare_rewrap(suite: str, n: str) -> dict[str, object]:
    """The HPKE calls of ``n`` rewraps and nothing else: ``decrypt`` under the old key,
    ``encrypt`` to the new one, ``info`` built by ``dek_context`` for each (as a rewrap
    must), keys made directly, the old wraps made in advance (untimed)."""
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

    from custodian.backends.base import dek_context

    def keypair() -> tuple[Any, Any]:
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

    kem = {
        "mlkem768-x25519": hpke.KEM.MLKEM768_X25519,
        "x25519": hpke.KEM.X25519,
        "p256": hpke.KEM.P256,
    }[suite]
    hs = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    priv1, pub1 = keypair()
    _, pub2 = keypair()
    kek = "backups"
    ids = [str(uuid.uuid4()) for _ in range(int(n))]
    items = [(i, hs.encrypt(os.urandom(32), pub1, info=dek_context(i, kek, 1))) for i in ids]
    dec, enc = hs.decrypt, hs.encrypt
    c0, t0 = os.times(), time.perf_counter()
    for bid, ct in items:
        enc(dec(ct, priv1, info=dek_context(bid, kek, 1)), pub2, info=dek_context(bid, kek, 2))
    t, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {"seconds": t, "cpu": cpu, "n": len(items), "self_mb": _rss_mb()[0]}


def main(argv: list[str]) -> int:
    cmds = {
        "encrypt": encrypt,
        "encrypt-no-hash": encrypt_no_hash,
        "decrypt": decrypt,
        "approve": approve,
        "restore": restore,
        "rewrap": rewrap,
        "bare-rewrap": bare_rewrap,
    }
    if not argv or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    result = cmds[argv[0]](*argv[1:])  # type: ignore[operator]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
