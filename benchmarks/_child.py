"""The measured side of the streaming benchmark, run in its own process.

Each command times only the call it names (interpreter start-up and imports
are outside the timing; the parent records the whole process's wall time and
peak RSS separately) and prints one JSON line.

    python -m benchmarks._child encrypt SRC DST           core encrypt_stream
    python -m benchmarks._child encrypt-no-hash SRC DST   the same without the container SHA-256
    python -m benchmarks._child decrypt SRC DST           core decrypt_stream
    python -m benchmarks._child service-decrypt HOME ID DST   Service._decrypt_backup
        in a restore session for ID whose target is DST's directory (made on the
        first call, kept in DST's directory as .bench-session; one call per DST)

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


def service_decrypt(home: str, backup_id: str, dst: str) -> dict[str, object]:
    from benchmarks._home import open_session
    from custodian.service import Service

    out = Path(dst)
    t0 = time.perf_counter()
    with Service.open(home) as svc:
        b = svc.backup(backup_id)
        # one session serves every round: approving again within a TOTP step would be a replay
        note = out.parent / f".bench-session-{b.id}"
        sid = note.read_text().strip() if note.exists() else ""
        s = svc.request(sid).session if sid else None
        if s is None or s.state != "open":
            sid = open_session(svc, [b.id], out.parent)
            note.write_text(sid)
            s = svc.request(sid).session
        assert s is not None
        t1 = time.perf_counter()
        w = svc._decrypt_backup(b, out, session=s)
        t2 = time.perf_counter()
    return {"seconds": t2 - t1, "open": t1 - t0, "plaintext": w.plaintext_size}


def main(argv: list[str]) -> int:
    cmds = {
        "encrypt": encrypt,
        "encrypt-no-hash": encrypt_no_hash,
        "decrypt": decrypt,
        "service-decrypt": service_decrypt,
    }
    if not argv or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    result = cmds[argv[0]](*argv[1:])  # type: ignore[operator]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
