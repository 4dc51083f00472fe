"""``custodian kek``: key-encryption keys and their lifecycle.

list, create, rotate (a new version, then a rewrap of every older DEK; a quorum KEK
refreshes instead, :mod:`custodian.cli.kek_quorum`), rewrap (run or resume a job),
refresh and redistribute (quorum KEKs), retire, destroy (a request custodians
approve), jobs, and migrate (to another backend, quorum included:
:mod:`custodian.cli.kek_migrate`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from custodian.cli import backend as B
from custodian.cli.common import (
    PROG,
    Subparsers,
    add_acting,
    add_totp_fd,
    code_input,
    open_service,
    say,
    secret_input,
    unlock_actor,
    usage_error,
)

if TYPE_CHECKING:
    from custodian.people import Actor
    from custodian.service import Service

REWRAP_BATCH = 2000  # custodian.rotation.DEFAULT_BATCH (a test keeps them equal)
REWRAP_INCOMPLETE = 10  # the rewrap ran, and DEKs stay under older versions (failures)


def cmd_kek_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        keks = svc.keys.list()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "name": k.name,
                            "backend": k.backend,
                            "suite": k.suite,
                            "purpose": k.purpose,
                            "current_version": k.current_version,
                            "created_at": k.created_at,
                            "versions": [
                                {
                                    "version": v.version,
                                    "backend": v.backend or k.backend,
                                    "state": v.state,
                                    "created_at": v.created_at,
                                    "fingerprint": v.fingerprint,
                                    "deks": v.dek_count,
                                }
                                for v in k.versions
                            ],
                        }
                        for k in keks
                    ],
                    indent=2,
                )
            )
            return 0
        say(f"{'KEK':<20} {'VER':>4} {'STATE':<10} {'DEKS':>8}  {'CREATED':<20} FINGERPRINT")
        for k in keks:
            for v in reversed(k.versions):
                cur = "*" if v.version == k.current_version else " "
                held = v.backend or k.backend
                say(
                    f"{k.name:<20} {cur}{v.version:>3} {v.state:<10} {v.dek_count:>8,}  "
                    f"{v.created_at[:19]:<20} {v.fingerprint}"
                    + (f"  (on {held})" if held != k.backend else "")
                )
            say(f"{'':<20} backend {k.backend}, suite {k.suite}, {k.dek_count:,} DEKs")
    return 0


def _code(args: argparse.Namespace, by: Actor) -> str:
    return code_input(getattr(args, "totp_fd", None), by.name)


def _holders(svc: Service, args: argparse.Namespace, by: Actor) -> list[Actor]:
    """Each holder present, unlocked with their own passphrase (a terminal, or the file
    descriptor given as --holder-passphrase-fd NAME=FD)."""
    fds: dict[str, int] = {}
    for item in args.holder_passphrase_fd or []:
        name, _, fd = item.partition("=")
        if not fd.isdigit():
            raise usage_error(f"--holder-passphrase-fd takes NAME=FD, not {item!r}.")
        fds[name] = int(fd)
    names = [n.strip() for n in args.holders.split(",") if n.strip()]
    out: list[Actor] = []
    for name in names:
        if name == by.name:
            out.append(by)
            continue
        with secret_input(f"passphrase of {name} (holder): ", fds.get(name), "passphrase") as pw:
            out.append(svc.auth.unlock(name, pw))
    return out


def kms_options(args: argparse.Namespace) -> dict[str, str]:
    """``[backends.aws-kms]`` settings given on the command line (kek create)."""
    opts = {"region": args.kms_region, "endpoint_url": args.kms_endpoint_url}
    return {k: v for k, v in opts.items() if v}


@contextlib.contextmanager
def kms_session(svc: Service, args: argparse.Namespace, backends: set[str]) -> Iterator[None]:
    """With ``--kms-credentials-fd``: the aws-kms decrypt credential (JSON, as 'aws sts
    assume-role' prints it) read from that descriptor and held for this command only."""
    fd = getattr(args, "kms_credentials_fd", None)
    if fd is None:
        yield
        return
    if "aws-kms" not in backends:
        raise usage_error("--kms-credentials-fd is for KEKs on the aws-kms backend only.")
    from custodian.backends.aws_kms_types import DecryptCredential
    from custodian.cli.common import read_fd

    cred = DecryptCredential.from_json(read_fd(fd))
    be = svc.keys.backend("aws-kms")
    with be.decrypt_session(cred):  # type: ignore[attr-defined]
        yield


def add_kms_credentials_fd(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--kms-credentials-fd",
        type=int,
        metavar="FD",
        help="aws-kms: read the decrypt role's credential (JSON from 'aws sts assume-role') "
        "from file descriptor FD, for this command only; never an argument or a file",
    )


def cmd_kek_create(args: argparse.Namespace) -> int:
    if kms_options(args) and args.backend != "aws-kms":
        raise usage_error("--kms-region and --kms-endpoint-url are for --backend aws-kms.")
    if args.custody is None:  # quorum is the default kind of a new local KEK
        args.custody = "single" if args.backend != "local" and not args.holders else "quorum"
    if args.custody == "quorum" and not args.holders:
        raise usage_error(
            "a new local KEK is a quorum KEK by default: name its holders, present, with "
            "--holders NAME,NAME,NAME (--quorum M), or choose --custody single (its private "
            "key sealed by the root key: code running as this account can open its DEKs)."
        )
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        if args.custody == "quorum":
            holders = _holders(svc, args, by)
            code = _code(args, by)
            k = svc.keys.create_quorum(
                args.name,
                holders,
                args.quorum,
                by=by,
                code=code,
                suite=args.suite,
                purpose=args.purpose,
            )
            m = svc.keys.manifest(k.name, 1)
            say(f"created quorum KEK {k.name} v1 ({m.m} of {m.n}: "
                f"{', '.join(h.name for h in m.holders)}; {k.suite})")  # fmt: skip
            say(f"manifest fingerprint {k.versions[0].fingerprint}")
            return 0
        if args.backend == "aws-kms" or kms_options(args):
            opts = kms_options(args)
            if opts or "aws-kms" not in svc.config.backends:
                svc.keys.configure_backend("aws-kms", opts, by=by)
        else:
            B.prepare_new_kek_backend(svc, args, by)
        code = _code(args, by)
        with B.custody_for(svc, args, args.backend):
            k = svc.keys.create(
                args.name,
                by=by,
                backend=args.backend,
                suite=args.suite,
                purpose=args.purpose,
                code=code,
            )
        v = k.versions[0]
        say(f"created KEK {k.name} v1 on {k.backend} ({k.suite})")
        say(f"fingerprint {v.fingerprint}")
    return 0


class _RewrapProgress:
    """Rewrap progress: a bar on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, every: float = 5.0, verb: str = "rewrapped") -> None:
        import time

        self.verb = verb
        self.tty = sys.stderr.isatty()
        self.every = every
        self.start = time.monotonic()
        self.last = 0.0
        self.first: int | None = None

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if self.first is None:
            self.first = done
            self.start = now
        rate = (done - self.first) / (now - self.start) if now > self.start else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        text = f"{self.verb} {done:,} of {total:,} ({pct:5.1f}%), {rate:,.0f} DEKs/s"
        if rate > 0 and done < total:
            text += f", about {eta:,.0f} s left"
        if self.tty:
            width = 24
            fill = int(width * done / total) if total else width
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {text}   ")
            sys.stderr.flush()
        elif now - self.last >= self.every or done >= total:
            self.last = now
            say(text, flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _run_rewrap(svc: Service, args: argparse.Namespace, by: Actor) -> int:
    import signal

    prog = _RewrapProgress()
    resume = f"{PROG} kek rewrap {args.name} --as {by.name}"
    stop: list[bool] = []

    def failed(f: Any) -> None:
        if prog.tty:
            sys.stderr.write("\n")
        say(f"FAILED  {f.backup}  (v{f.from_version}) {f.reason}", flush=True)

    def interrupt(signum: int, frame: object) -> None:
        if stop:  # a second Ctrl+C: at once (the batch in flight is not committed)
            raise KeyboardInterrupt
        stop.append(True)
        if prog.tty:
            sys.stderr.write("\n")
        print(
            "stopping after the batch in flight (Ctrl+C again stops at once); every "
            f"committed batch is kept. Resume with: {resume}",
            file=sys.stderr,
            flush=True,
        )

    old = signal.signal(signal.SIGINT, interrupt)
    try:
        with kms_session(svc, args, {svc.keys.get(args.name).backend}):
            report = svc.keys.rewrap(
                args.name,
                by=by,
                workers=args.workers,
                batch_size=args.batch,
                progress=prog,
                cancelled=lambda: bool(stop),
                on_failure=failed,
            )
    except KeyboardInterrupt:
        prog.done()
        say(f"interrupted: every committed batch is kept; resume with: {resume}")
        raise
    finally:
        signal.signal(signal.SIGINT, old)
    prog.done()
    if not report.job:
        say(f"nothing to rewrap: every DEK of KEK {args.name} is under its current version")
        return 0
    say(report.summary())
    if report.cancelled:
        say(f"paused with {report.remaining:,} DEK(s) left; resume with: {resume}")
        return 130
    if report.remaining:
        say(
            f"{report.remaining:,} DEK(s) stay under older versions (see 'custodian kek jobs "
            f"{args.name}'); the old versions cannot be retired until they are rewrapped"
        )
    return REWRAP_INCOMPLETE if report.remaining else 0


def cmd_kek_rotate(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        if svc.keys.get(args.name).backend == "quorum":
            from custodian.cli import kek_quorum

            return kek_quorum.rotate(svc, args, by)
        pv = svc.keys.rotate_preview(args.name, batch_size=args.batch)
        say(
            f"rotate KEK {pv.kek} ({pv.backend}, {pv.suite}): v{pv.current_version} -> "
            f"v{pv.new_version}"
        )
        for v, n in sorted(pv.census.items()):
            say(f"  v{v}: {n:,} DEK(s)")
        est = (
            f"about {pv.estimated_seconds:,.1f} s ({pv.estimated_rate:,.0f} DEKs/s, measured "
            "here just now)"
            if pv.rate
            else "unknown"
        )
        say(
            f"DEKs to rewrap: {pv.to_rewrap:,}; estimated time {est}; {pv.workers} worker(s), "
            f"batches of {pv.batch_size:,}"
        )
        if pv.unfinished is not None:
            say(
                f"the unfinished job {pv.unfinished.id[:8]} to v{pv.unfinished.target_version} "
                "is superseded: the new job covers its DEKs"
            )
        code = _code(args, by)
        with B.custody_for(svc, args, pv.backend):
            j = svc.keys.rotate(args.name, code, by=by)
            nv = svc.keys.get(args.name).versions[-1]
            say(
                f"KEK {args.name} v{j.target_version} created, fingerprint {nv.fingerprint}; "
                "it wraps every new DEK from now on"
            )
            if args.no_rewrap:
                say(
                    f"rewrap job {j.id} waits; run it with: {PROG} kek rewrap {args.name} --as NAME"
                )
                return 0
            return _run_rewrap(svc, args, by)


def cmd_kek_rewrap(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        with B.custody_for(svc, args, svc.keys.get(args.name).backend):
            return _run_rewrap(svc, args, by)


def cmd_kek_retire(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        code = _code(args, by)
        with B.custody_for(svc, args, svc.keys.get(args.name).backend):
            v = svc.keys.retire(args.name, args.version, code, by=by)
        wait = svc.config.policy.retirement_wait_days
        after = "from now on" if wait == 0 else f"after {wait:,} day(s)"
        say(
            f"KEK {args.name} v{v.version} retired; it unwraps nothing from now on. Its key "
            f"material can be destroyed {after} "
            f"with: {PROG} kek destroy {args.name} {v.version} --reason TEXT --as NAME"
        )
    return 0


def cmd_kek_destroy(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        r = svc.keys.request_destroy(args.name, args.version, args.reason, by=by)
        say(
            f"request {r.id} opened: destroy KEK {args.name} v{args.version}; needs "
            f"{r.quorum} other custodians' approval before {r.expires_at[:19]}Z"
        )
        say(f"custodians approve with: {PROG} approve {r.id[:8]} --as NAME")
    return 0


def cmd_kek_jobs(args: argparse.Namespace) -> int:
    from custodian.cli import kek_quorum

    with open_service(args) as svc:
        jobs = svc.keys.jobs(args.name)
        fails = svc.keys.failures()
        states = svc.keys.job_states(jobs)
        if args.json:
            print(
                json.dumps(
                    kek_quorum.jobs_json(svc, args.name)
                    + [
                        {
                            **{k: getattr(j, k) for k in j.__dataclass_fields__},
                            "status": states[j.id],
                            "failures": [
                                {
                                    "backup": f.backup,
                                    "from_version": f.from_version,
                                    "reason": f.reason,
                                    "at": f.at,
                                }
                                for f in fails
                                if f.job == j.id
                            ],
                        }
                        for j in jobs
                    ],
                    indent=2,
                )
            )
            return 0
        say(
            f"{'JOB':<8}  {'KEK':<16} {'TO':>3}  {'STATE':<11} {'DONE':>10} {'FAILED':>7} "
            f"{'RUNS':>4}  {'STARTED':<19}  BY"
        )
        for j in jobs:
            say(
                f"{j.id[:8]}  {j.kek:<16} v{j.target_version:<2}  {states[j.id]:<11} "
                f"{j.rewrapped:>10,} {j.failed:>7,} {j.runs:>4}  {j.created_at[:19]:<19}  "
                f"{j.started_by}"
            )
            for f in (x for x in fails if x.job == j.id):
                say(f"          failed {f.backup} (v{f.from_version}): {f.reason}")
        quorum = kek_quorum.print_jobs(svc, args.name)
        if not jobs and not quorum:
            say("never rotated: no rewrap job yet")
    return 0


def add_parsers(sub: Subparsers) -> None:
    kek = sub.add_parser("kek", help="key-encryption keys").add_subparsers(
        dest="kek_command", metavar="COMMAND", required=True
    )
    s = kek.add_parser("list", help="KEKs, versions, states and DEK census")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_kek_list)

    s = kek.add_parser("create", help="create a KEK (custodians; confirm with a TOTP code)")
    s.add_argument("name", metavar="NAME")
    s.add_argument(
        "--backend",
        default="local",
        help="where it lives: local (default), or a server backend (vault, aws-kms): "
        "configured already, or configured now with its --vault-... settings",
    )
    s.add_argument(
        "--suite",
        default=None,
        choices=["mlkem768-x25519", "x25519", "p256"],
        help="HPKE suite on the local backend (default: the home's default; aws-kms keys "
        "are KMS's own symmetric keys)",
    )
    s.add_argument("--purpose", default="", help="what it protects, for people")
    s.add_argument(
        "--kms-region", metavar="REGION", help="aws-kms: the region new keys are made in"
    )
    s.add_argument(
        "--kms-endpoint-url",
        metavar="URL",
        help="aws-kms: a private (VPC) endpoint for KMS, https://...",
    )
    s.add_argument(
        "--custody",
        choices=["single", "quorum"],
        default=None,
        help="quorum (the default for a local KEK): no single person or account opens its "
        "DEKs; its holders, present, each get a share. single: one key pair sealed by the "
        "root key (the default on a server backend, which holds the key itself)",
    )
    _add_holder_options(s)
    B.add_backend_options(s)
    B.add_custody_fd(s)
    s.add_argument(
        "--wrap-credential-fd",
        "--vault-wrap-token-fd",
        dest="wrap_credential_fd",
        type=int,
        metavar="N",
        help="a server backend's wrap-only credential for operators (sealed by the root "
        "key; refused if it can decrypt), from file descriptor N",
    )
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_kek_create)

    s = kek.add_parser(
        "rotate",
        help="new KEK version, then rewrap every older DEK; a quorum KEK refreshes, its "
        "holders present (custodians; TOTP)",
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("--no-rewrap", action="store_true", help="create the version and job only")
    s.add_argument(
        "--holders", default="", help="quorum: the holders present (default: every holder)"
    )
    s.add_argument(
        "--holder-passphrase-fd",
        action="append",
        metavar="NAME=FD",
        help="quorum: read a holder's passphrase from file descriptor FD (else a terminal)",
    )
    _add_rewrap_options(s)
    B.add_custody_fd(s)
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_kek_rotate)

    s = kek.add_parser("rewrap", help="run or resume the rewrap job of a KEK (custodians)")
    s.add_argument("name", metavar="NAME")
    _add_rewrap_options(s)
    B.add_custody_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_kek_rewrap)

    s = kek.add_parser("retire", help="retire a version whose census is zero (custodians; TOTP)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("version", type=int, metavar="VERSION")
    B.add_custody_fd(s)
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_kek_retire)

    s = kek.add_parser(
        "destroy", help="ask to destroy a retired version's key material (two custodians approve)"
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("version", type=int, metavar="VERSION")
    s.add_argument("--reason", required=True)
    add_acting(s)
    s.set_defaults(func=cmd_kek_destroy)

    from custodian.cli import kek_migrate, kek_quorum

    kek_quorum.add_parsers(kek)
    kek_migrate.add_parser(kek)

    s = kek.add_parser(
        "jobs", help="rotation history: rewrap, refresh and redistribution jobs, census"
    )
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_kek_jobs)


def _add_holder_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--holders", default="", help="quorum: the holders, NAME,NAME,NAME (x = 1..N)")
    s.add_argument("--quorum", type=int, default=2, metavar="M", help="quorum: M of N (2)")
    s.add_argument(
        "--holder-passphrase-fd",
        action="append",
        metavar="NAME=FD",
        help="quorum: read a holder's passphrase from file descriptor FD (else a terminal)",
    )


def _add_rewrap_options(s: argparse.ArgumentParser) -> None:
    add_kms_credentials_fd(s)
    s.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes for the unwrap and wrap work (default: the CPUs here)",
    )
    s.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="N",
        help=f"DEKs per batch; each batch is one transaction (default {REWRAP_BATCH:,}, or "
        "fewer for a small job, so that progress moves and Ctrl+C stops within it)",
    )
