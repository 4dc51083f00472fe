"""``python -m benchmarks [GROUP ...]``: run benchmark groups, print, save JSON.

Every figure comes with a reference measured in the same run, so a ratio means
the same thing on a fast and a slow machine. Targets print PASS or MISS; the
exit status is 0 unless the harness itself broke.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import OUT_DIR, GiB, Report, environment

GROUPS = (
    "stream",
    "wrap",
    "startup",
    "audit",
    "rewrap",
    "quorum",
    "breakglass",
    "refresh",
    "vault",
    "kms",
)
ABOUT = {
    "stream": "encrypt and decrypt one large file (--size) vs cat and age",
    "wrap": "LocalBackend wrap/unwrap/rewrap per HPKE suite vs bare hpke.Suite calls",
    "startup": "CLI start-up (--help, kek list), no textual import, TUI first frame",
    "audit": "verify a long signed log (--audit-entries) vs raw Ed25519; fsync append latency",
    "rewrap": "svc.keys.rewrap of --deks DEKs after a rotation, 1 and 2 workers, vs bare HPKE",
    "quorum": "custody v2 core: quorum wrap and holder refresh per suite vs bare HPKE",
    "breakglass": "recovery from two shares to an installed KSK vs its bare cryptography",
    "refresh": "svc.keys.refresh: a holder's part per share, 1 and 2 workers, vs bare HPKE; "
    "peak memory with --refresh-peak-deks rows",
    "vault": "svc.keys.rewrap of --vault-deks DEKs on a bao server -dev vs a bare hvac loop",
    "kms": "aws-kms ReEncrypt through the backend vs a bare boto3 loop (moto_server)",
}
TITLES = {
    "stream": "STREAM: {size} plaintext from the page cache, output on /dev/shm; rate is "
    "plaintext/s at the best of {repeat}",
    "wrap": "WRAP: LocalBackend vs bare hpke.Suite, batches of {batch}, best of "
    "{wrap_repeat}; ratio = custodian/bare",
    "startup": "STARTUP: whole-process wall time; TUI = until the pane shows the app",
    "audit": "AUDIT: verify {entries:,} entries (ratio = raw Ed25519 time / verify time); "
    "append latency with fsync (ratio = append / bare fsync)",
    "rewrap": "REWRAP: rotate, then svc.keys.rewrap of every DEK (child process, one run each); "
    "ratios = rate / bare HPKE loop, 2 workers / 1 process",
    "quorum": "QUORUM: custody v2 core functions, batches of {batch}, best of {wrap_repeat}; "
    "ratio = custody/bare",
    "breakglass": "BREAKGLASS: a keyringless copy recovered from two shares, best of {repeat}; "
    "ratio = recovery / its bare cryptography",
    "refresh": "REFRESH: a holder's part of a quorum KEK's refresh through the service (child "
    "process each); ratios = rate / bare HPKE loop, 2 workers / 1",
    "vault": "VAULT: rotate, then svc.keys.rewrap through transit (one run each) vs a bare "
    "hvac batch-rewrap loop on the same server (best of 3); ratio = rate / bare",
    "kms": "KMS: ReEncrypt of {batch} DEKs on moto_server, best of {repeat}; ratio = bare "
    "time / custodian time, same concurrency",
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1G, 256M)")
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def parse_count(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmM]?)", text.strip().replace(",", "").replace("_", ""))
    if not m:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (try 1M, 100k, 5000)")
    return int(float(m.group(1)) * {"": 1, "K": 1000, "M": 1_000_000}[m.group(2).upper()])


def parse_list(kind: Callable[[str], Any] | None = int) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        parts = [x.strip() for x in text.split(",") if x.strip()]
        if not parts:
            raise argparse.ArgumentTypeError("an empty list")
        return [kind(x) for x in parts] if kind is not None else list(parts)

    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="groups:\n" + "\n".join(f"  {g:<9} {ABOUT[g]}" for g in GROUPS),
    )
    p.add_argument("groups", nargs="*", metavar="GROUP", help=f"{', '.join(GROUPS)} (default: all)")
    p.add_argument("--size", type=parse_size, default=GiB, help="stream file size (default 1G)")
    p.add_argument("--repeat", type=int, default=3, help="stream and audit verify: best of N (3)")
    p.add_argument("--cli-repeat", type=int, default=10, help="CLI start-up: best of N (10)")
    p.add_argument("--frames", type=int, default=5, help="TUI first frame: best of N (5)")
    p.add_argument("--batch", type=int, default=1000, help="wrap: DEKs per batch (1000)")
    p.add_argument(
        "--wrap-repeat", type=int, default=9, help="wrap: best of N batches per case (9)"
    )
    p.add_argument("--audit-entries", type=int, default=100_000, help="audit: log length (100000)")
    p.add_argument("--appends", type=int, default=200, help="audit: timed appends (200)")
    p.add_argument(
        "--deks",
        type=parse_count,
        default=None,
        help="rewrap: DEKs in the catalog (1M; N/10 is measured too)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="rewrap: a quicker look: 100k DEKs (and 10k) unless --deks is given",
    )
    p.add_argument(
        "--rewrap-batch",
        type=parse_list(),
        default=None,
        metavar="B[,B...]",
        help="rewrap: batch sizes to try (default: the core's default batch)",
    )
    p.add_argument(
        "--rewrap-workers",
        type=parse_list(),
        default=[1, 2],
        metavar="W[,W...]",
        help="rewrap: worker counts (1,2)",
    )
    p.add_argument(
        "--vault-deks",
        type=parse_count,
        default=100_000,
        help="vault: DEKs to rewrap (100k)",
    )
    p.add_argument(
        "--suites",
        type=parse_list(None),
        default=None,
        metavar="S[,S...]",
        help="rewrap: local suites (mlkem768-x25519,x25519,p256)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "custodian-bench",
        help="homes, age key, cached plaintext (default /tmp/custodian-bench)",
    )
    p.add_argument("--refresh-deks", type=parse_count, default=3000, help="refresh: DEKs (3000)")
    p.add_argument(
        "--refresh-peak-deks",
        type=parse_count,
        default=0,
        help="refresh: catalog rows for the peak-memory check (e.g. 1M; 0 skips it)",
    )
    p.add_argument(
        "--refresh-peak-real",
        type=parse_count,
        default=20_000,
        help="refresh: rows with wraps of their own in the peak check (20000)",
    )
    p.add_argument(
        "--refresh-seconds",
        type=float,
        default=30.0,
        help="refresh: seconds the dealer and a holder each run in the peak check (30)",
    )
    p.add_argument("--kms-workers", type=int, default=8, help="kms: concurrent ReEncrypt calls (8)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where the JSON goes")
    args = p.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        p.error(f"unknown group {unknown[0]!r}; choose from {', '.join(GROUPS)}")
    groups = [g for g in GROUPS if g in args.groups] if args.groups else list(GROUPS)
    if args.deks is None:
        args.deks = 100_000 if args.quick else 1_000_000
    args.workdir.mkdir(parents=True, exist_ok=True)

    meta = environment()
    core = meta.get("custodian", {})
    print(
        f"custodian benchmarks: {meta.get('cpu', '?')}, {meta.get('cpus')} CPUs, "
        f"Python {meta['python']}, cryptography {meta.get('cryptography', '?')}"
    )
    print(
        f"core: {core.get('file', core.get('error', '?'))} at {str(core.get('commit', '?'))[:10]}"
        + (f" (+{len(core['uncommitted'])} uncommitted files)" if core.get("uncommitted") else "")
    )
    report = Report()
    t0 = time.perf_counter()
    for g in groups:
        try:
            if g == "stream":
                from benchmarks import stream

                stream.run(report, size=args.size, repeat=args.repeat, workdir=args.workdir)
            elif g == "wrap":
                from benchmarks import wrap

                wrap.run(report, batch=args.batch, repeat=args.wrap_repeat, workdir=args.workdir)
            elif g == "startup":
                from benchmarks import startup

                startup.run(
                    report, repeat=args.cli_repeat, frames=args.frames, workdir=args.workdir
                )
            elif g == "rewrap":
                from benchmarks import rewrap
                from custodian.rotation import DEFAULT_BATCH

                rewrap.run(
                    report,
                    deks=args.deks,
                    batches=args.rewrap_batch or [DEFAULT_BATCH],
                    workers=args.rewrap_workers,
                    suites=args.suites or list(rewrap.SUITES),
                    workdir=args.workdir,
                )
            elif g == "breakglass":
                from benchmarks import breakglass

                breakglass.run(report, workdir=args.workdir, repeat=args.repeat)
            elif g == "vault":
                from benchmarks import vault

                vault.run(report, deks=args.vault_deks, workdir=args.workdir)
            elif g == "kms":
                from benchmarks import kms

                kms.run(
                    report,
                    deks=args.batch,
                    repeat=args.repeat,
                    workers=args.kms_workers,
                    workdir=args.workdir,
                )
            elif g == "quorum":
                from benchmarks import quorum

                quorum.run(report, batch=args.batch, repeat=args.wrap_repeat)
                quorum.run_service(report, workdir=args.workdir)
            elif g == "refresh":
                from benchmarks import refresh

                refresh.run(
                    report,
                    deks=args.refresh_deks,
                    peak_deks=args.refresh_peak_deks,
                    peak_real=args.refresh_peak_real,
                    seconds=args.refresh_seconds,
                    workdir=args.workdir,
                )
            else:
                from benchmarks import audit

                audit.run(
                    report,
                    entries=args.audit_entries,
                    appends=args.appends,
                    repeat=args.repeat,
                    workdir=args.workdir,
                )
        except Exception as e:  # one broken group does not hide the others
            report.row(g, f"{g} (whole group)", error=f"{type(e).__name__}: {e}")

    size = f"{args.size / GiB:g} GiB" if args.size >= GiB else f"{args.size / 2**20:g} MiB"
    for g in groups:
        report.print_group(
            g,
            TITLES[g].format(
                size=size,
                repeat=args.repeat,
                batch=args.batch,
                wrap_repeat=args.wrap_repeat,
                entries=args.audit_entries,
            ),
        )
    report.print_targets()
    path = report.write_json(args.out, groups, sys.argv)
    print(f"\n{time.perf_counter() - t0:.0f} s; results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
