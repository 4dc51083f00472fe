"""The ``custodian`` command.

With no subcommand it opens the TUI. Every subcommand runs without a terminal
when its values come as options (scripts, cron), and fails with one line on
standard error and a non-zero exit status. Imports are lazy so that
``custodian --help`` and ``custodian kek list`` start quickly and never import
textual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custodian.errors import CustodianError

if TYPE_CHECKING:
    from custodian.approvals import Request, RestoreResult
    from custodian.catalog import Backup
    from custodian.people import Actor
    from custodian.secret import SecretBytes
    from custodian.service import PendingEnrolment, Service

PROG = "custodian"


def _service(args: argparse.Namespace) -> Service:
    from custodian.service import Service

    return Service.open(args.home)


def _human(n: int) -> str:
    if n < 0:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


class _TermProgress:
    """A progress line on standard error when it is a terminal; silent otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        pct = int(100 * done / total) if total else 100
        if pct != self.last:
            self.last = pct
            sys.stderr.write(f"\r{self.what}: {pct:3d}% ({_human(done)} of {_human(total)})")
            sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.last >= 0:
            sys.stderr.write("\n")


# ---------------------------------------------------------------- who is acting


def _usage_error(msg: str) -> Exception:
    from custodian.errors import CustodianError

    e = CustodianError(msg)
    e.exit_code = 2
    return e


def _read_fd(fd: int) -> bytes:
    """One line from an inherited file descriptor (automation: never an argument)."""
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.readline().rstrip(b"\r\n")
    except OSError as e:
        raise _usage_error(f"cannot read file descriptor {fd}: {e.strerror}") from None


def _secret_input(prompt: str, fd: int | None, what: str, *, confirm: bool = False) -> SecretBytes:
    from custodian.secret import SecretBytes

    if fd is not None:
        return SecretBytes(_read_fd(fd), what)
    if not sys.stdin.isatty():
        raise _usage_error(
            f"{what} needed and no terminal to ask on: pass it on a file descriptor "
            f"(see --help), never as an argument."
        )
    import getpass

    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise _usage_error(f"the two {what}s differ; nothing was done.")
    return SecretBytes(first.encode(), what)


def _code_input(fd: int | None, who: str) -> str:
    if fd is not None:
        return _read_fd(fd).decode(errors="replace")
    if not sys.stdin.isatty():
        raise _usage_error("a TOTP code is needed and there is no terminal: use --totp-fd N.")
    return input(f"current TOTP code of {who}: ")


def _actor(svc: Service, args: argparse.Namespace) -> Actor:
    name = getattr(args, "as_", None)
    if not name:
        raise _usage_error("this command acts, so it needs to know who you are: --as NAME.")
    from custodian.errors import NotFoundError

    try:
        p = svc.person(name)
    except NotFoundError:
        return svc.unlock(name, None)  # records the refusal (name HMAC'd) and raises
    if p.kind == "service" and p.key is not None and p.key.protection == "none":
        return svc.unlock(name, None)
    with _secret_input(f"passphrase of {name}: ", args.passphrase_fd, "passphrase") as pw:
        return svc.unlock(name, pw)


def _clear_terminal() -> None:
    """After a ceremony step that showed a secret: clear the screen and scrollback."""
    if sys.stdout.isatty():
        sys.stdout.write("\033[H\033[2J\033[3J")
        sys.stdout.flush()


# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from custodian.service import Service

    with Service.init(
        args.home, kek=args.kek, suite=args.suite, keyring_backend=args.keyring
    ) as svc:
        k = svc.kek(args.kek)
        print(f"created home {svc.home.path}")
        print(f"root key stored in keyring: {svc.keyring.description}")
        print(f"KEK {k.name} v1 ({k.suite}) fingerprint {k.versions[0].fingerprint}")
        print(
            f"next: enrol the first custodian with '{PROG} --home {svc.home.path} people "
            "enrol NAME --role custodian'"
        )
    return 0


def cmd_kek_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        keks = svc.keks()
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
        print(f"{'KEK':<20} {'VER':>4} {'STATE':<10} {'DEKS':>8}  {'CREATED':<20} FINGERPRINT")
        for k in keks:
            for v in reversed(k.versions):
                cur = "*" if v.version == k.current_version else " "
                print(
                    f"{k.name:<20} {cur}{v.version:>3} {v.state:<10} {v.dek_count:>8}  "
                    f"{v.created_at[:19]:<20} {v.fingerprint}"
                )
            print(f"{'':<20} backend {k.backend}, suite {k.suite}, {k.dek_count} DEKs")
    return 0


def _code(args: argparse.Namespace, by: Actor) -> str:
    return _code_input(getattr(args, "totp_fd", None), by.name)


def cmd_kek_create(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        code = _code(args, by)
        k = svc.create_kek(
            args.name,
            by=by,
            backend=args.backend,
            suite=args.suite,
            purpose=args.purpose,
            code=code,
        )
        v = k.versions[0]
        print(f"created KEK {k.name} v1 on {k.backend} ({k.suite})")
        print(f"fingerprint {v.fingerprint}")
    return 0


class _RewrapProgress:
    """Rewrap progress: a bar on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, every: float = 5.0) -> None:
        import time

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
        text = f"rewrapped {done:,} of {total:,} ({pct:5.1f}%), {rate:,.0f} DEKs/s"
        if rate > 0 and done < total:
            text += f", about {eta:,.0f} s left"
        if self.tty:
            width = 24
            fill = int(width * done / total) if total else width
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {text}   ")
            sys.stderr.flush()
        elif now - self.last >= self.every or done >= total:
            self.last = now
            print(text, flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _run_rewrap(svc: Service, args: argparse.Namespace, by: Actor) -> int:
    prog = _RewrapProgress()

    def failed(f: Any) -> None:
        if prog.tty:
            sys.stderr.write("\n")
        print(f"FAILED  {f.backup}  (v{f.from_version}) {f.reason}", flush=True)

    report = svc.rewrap(
        args.name,
        by=by,
        workers=args.workers,
        batch_size=args.batch,
        progress=prog,
        on_failure=failed,
    )
    prog.done()
    if not report.job:
        print(f"nothing to rewrap: every DEK of KEK {args.name} is under its current version")
        return 0
    print(report.summary())
    if report.remaining:
        print(
            f"{report.remaining:,} DEK(s) stay under older versions (see 'custodian kek jobs "
            f"{args.name}'); the old versions cannot be retired until they are rewrapped"
        )
    return REWRAP_INCOMPLETE if report.remaining else 0


def cmd_kek_rotate(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        pv = svc.rotate_preview(args.name, batch_size=args.batch)
        print(
            f"rotate KEK {pv.kek} ({pv.backend}, {pv.suite}): v{pv.current_version} -> "
            f"v{pv.new_version}"
        )
        for v, n in sorted(pv.census.items()):
            print(f"  v{v}: {n:,} DEK(s)")
        est = f"about {pv.estimated_seconds:,.0f} s" if pv.rate else "unknown"
        print(f"DEKs to rewrap: {pv.to_rewrap:,}; estimated time {est} ({pv.workers} worker(s))")
        if pv.unfinished is not None:
            print(
                f"the unfinished job {pv.unfinished.id[:8]} to v{pv.unfinished.target_version} "
                "is superseded: the new job covers its DEKs"
            )
        code = _code(args, by)
        j = svc.rotate(args.name, code, by=by)
        nv = svc.kek(args.name).versions[-1]
        print(
            f"KEK {args.name} v{j.target_version} created, fingerprint {nv.fingerprint}; "
            "it wraps every new DEK from now on"
        )
        if args.no_rewrap:
            print(f"rewrap job {j.id} waits; run it with: {PROG} kek rewrap {args.name} --as NAME")
            return 0
        return _run_rewrap(svc, args, by)


def cmd_kek_rewrap(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        return _run_rewrap(svc, args, by)


def cmd_kek_retire(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        code = _code(args, by)
        v = svc.retire_version(args.name, args.version, code, by=by)
        print(
            f"KEK {args.name} v{v.version} retired; it unwraps nothing from now on. Its key "
            f"material can be destroyed after {svc.config.policy.retirement_wait_days} day(s) "
            f"with: {PROG} kek destroy {args.name} {v.version} --reason TEXT --as NAME"
        )
    return 0


def cmd_kek_destroy(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        r = svc.request_destroy(args.name, args.version, args.reason, by=by)
        print(
            f"request {r.id} opened: destroy KEK {args.name} v{args.version}; needs "
            f"{r.quorum} other custodians' approval before {r.expires_at[:19]}Z"
        )
        print(f"custodians approve with: {PROG} approve {r.id[:8]} --as NAME")
    return 0


def cmd_kek_jobs(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        jobs = svc.rewrap_jobs(args.name)
        fails = svc.rewrap_failures()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            **{k: getattr(j, k) for k in j.__dataclass_fields__},
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
        print(
            f"{'JOB':<8}  {'KEK':<16} {'TO':>3}  {'STATE':<10} {'DONE':>10} {'FAILED':>7} "
            f"{'RUNS':>4}  {'STARTED':<19}  BY"
        )
        for j in jobs:
            print(
                f"{j.id[:8]}  {j.kek:<16} v{j.target_version:<2}  {j.state:<10} "
                f"{j.rewrapped:>10,} {j.failed:>7,} {j.runs:>4}  {j.created_at[:19]:<19}  "
                f"{j.started_by}"
            )
            for f in (x for x in fails if x.job == j.id):
                print(f"          failed {f.backup} (v{f.from_version}): {f.reason}")
        if not jobs:
            print("no rotation yet")
    return 0


def cmd_backup_encrypt(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        prog = _TermProgress("encrypting")
        if args.src == "-":
            b = svc.encrypt_backup(
                sys.stdin.buffer,
                Path(args.dst),
                by=by,
                kek=args.kek,
                label=args.label,
                force=args.force,
                progress=prog,
            )
        else:
            b = svc.encrypt_backup(
                Path(args.src),
                Path(args.dst),
                by=by,
                kek=args.kek,
                label=args.label,
                force=args.force,
                progress=prog,
            )
        prog.done()
        if args.json:
            print(json.dumps(_backup_json(b)))
        else:
            print(
                f"{b.id} {b.label} {_human(b.size)} -> {b.location} "
                f"(KEK {b.kek} v{b.kek_version}, digest {b.container_sha256[:19]}…)"
            )
    return 0


def _backup_json(b: Backup) -> dict[str, Any]:
    return {
        "id": b.id,
        "label": b.label,
        "created_at": b.created_at,
        "size": b.size,
        "container_size": b.container_size,
        "container_sha256": b.container_sha256,
        "location": b.location,
        "kek": b.kek,
        "kek_version": b.kek_version,
    }


def cmd_backup_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        rows = svc.backups(
            text=args.filter or "",
            kek=args.kek,
            version=args.version,
            order=args.sort,
            descending=not args.ascending,
            limit=args.limit,
        )
        if args.json:
            print(json.dumps([_backup_json(b) for b in rows], indent=2))
            return 0
        print(f"{'ID':<36}  {'CREATED':<19}  {'SIZE':>10}  {'KEK':<16}  LABEL")
        for b in rows:
            print(
                f"{b.id:<36}  {b.created_at[:19]:<19}  {_human(b.size):>10}  "
                f"{b.kek + ' v' + str(b.kek_version):<16}  {b.label}"
            )
        print(f"{len(rows)} of {svc.backup_count()} backups")
    return 0


def cmd_backup_import(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        for f in args.files:
            b = svc.import_backup(Path(f), by=by, label=args.label)
            print(f"imported {b.id} {b.label} (KEK {b.kek} v{b.kek_version})")
    return 0


def cmd_people_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        people = svc.people()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "name": p.name,
                            "roles": list(p.roles),
                            "kind": p.kind,
                            "state": p.state,
                            "created_at": p.created_at,
                            "key_id": p.key.key_id if p.key else None,
                            "keys": [
                                {
                                    "key_id": k.key_id,
                                    "created_at": k.created_at,
                                    "replaced_at": k.replaced_at,
                                    "protection": k.protection,
                                }
                                for k in p.keys
                            ],
                            "totp_generation": p.totp_generation,
                        }
                        for p in people
                    ],
                    indent=2,
                )
            )
            return 0
        print(f"{'NAME':<16} {'ROLES':<28} {'KIND':<8} {'STATE':<9} {'KEY':<18} KEYS")
        for p in people:
            kid = p.key.key_id[:16] if p.key else "-"
            print(
                f"{p.name:<16} {','.join(p.roles):<28} {p.kind:<8} {p.state:<9} {kid:<18} "
                f"{len(p.keys)}"
            )
        if not people:
            print(f"nobody enrolled yet: '{PROG} people enrol NAME --role custodian'")
    return 0


def _show_enrolment(svc: Service, pending: PendingEnrolment) -> None:
    label = svc.home.path.name
    print(f"Add this to {pending.name}'s authenticator app (scan, or type the secret):")
    print()
    for line in pending.qr(label):
        print("  " + line)
    print()
    print(f"  {pending.uri(label)}")
    print(f"  secret: {pending.secret_b32()}")
    print()


def cmd_people_enrol(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args) if args.as_ else None
        pw = None
        if not args.service or args.new_passphrase_fd is not None:
            pw = _secret_input(
                f"new passphrase for {args.name}: ",
                args.new_passphrase_fd,
                "passphrase",
                confirm=True,
            )
        pending = svc.begin_enrolment(
            args.name, args.role, passphrase=pw, by=by, service=args.service
        )
        if pw is not None:
            pw.wipe()
        try:
            code = None
            if pending.totp is not None:
                _show_enrolment(svc, pending)
                code = _code_input(args.totp_fd, args.name)
                _clear_terminal()
            p = svc.complete_enrolment(pending, code, by=by)
        finally:
            pending.discard()
        print(
            f"enrolled {p.name} ({', '.join(p.roles)}), signing key {p.key.key_id if p.key else ''}"
        )
    return 0


def cmd_people_replace_key(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        target = svc.person(args.name)
        pw = None
        if target.kind == "person" or args.new_passphrase_fd is not None:
            pw = _secret_input(
                f"new passphrase for {args.name}: ",
                args.new_passphrase_fd,
                "passphrase",
                confirm=True,
            )
        p = svc.replace_signing_key(args.name, pw, by=by)
        if pw is not None:
            pw.wipe()
        print(
            f"{p.name} has a new signing key {p.key.key_id if p.key else ''}; "
            "the old one still verifies older entries"
        )
    return 0


def cmd_people_replace_totp(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        pending = svc.begin_totp_replacement(args.name, by=by)
        try:
            _show_enrolment(svc, pending)
            code = _code_input(args.totp_fd, args.name)
            _clear_terminal()
            svc.complete_totp_replacement(pending, code, by=by)
        finally:
            pending.discard()
        print(f"{args.name} has a new TOTP secret; the old one no longer works")
    return 0


def cmd_people_disable(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        svc.disable_person(args.name, by=by, reason=args.reason or "")
        print(f"{args.name} is disabled; their past entries still verify")
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        rows = svc.audit_entries(
            actor=args.actor,
            action=args.action,
            outcome=args.outcome,
            text=args.text or "",
            last=args.last,
        )
        if args.json:
            for e in rows:
                print(json.dumps(e, sort_keys=True))
            return 0
        for e in rows:
            print(
                f"{e['seq']:>7} {e['time'][:19]} {e['actor']:<12} {e['outcome']:<8} "
                f"{e['action']:<22} {e['subject']}"
            )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        cp = None
        if args.checkpoint:
            try:
                cp = json.loads(Path(args.checkpoint).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise _usage_error(f"cannot read checkpoint {args.checkpoint}: {e}") from None
        prog = _TermProgress("verifying")
        res = svc.audit_verify(checkpoint=cp, progress=prog)
        prog.done()
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": res.ok,
                        "entries": res.entries,
                        "head": res.head,
                        "first_bad": res.first_bad,
                        "reason": res.reason,
                        "checkpoint": res.checkpoint,
                        "keys": res.keys,
                    }
                )
            )
        else:
            print(res.summary())
        return 0 if res.ok else 8


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise _usage_error(f"{out} exists; nothing was written. Use --force to replace it.")
    with _service(args) as svc:
        by = _actor(svc, args)
        cp = svc.audit_checkpoint(by=by)
        out.write_text(json.dumps(cp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(
            f"checkpoint at entry {cp['seq']} (head {cp['head'][:16]}…) signed by "
            f"{cp['actor']} written to {out}; keep it outside this home"
        )
    return 0


def cmd_demo_codes(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        for name, code, left in svc.demo_codes():
            print(f"{name:<12} {code}   ({left:2d} s left)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.action == "codes":
        return cmd_demo_codes(args)
    from custodian.demo import build_demo

    if not args.home:
        print(
            f"{PROG}: error: demo needs --home DIR (it never touches your real home)",
            file=sys.stderr,
        )
        return 2
    prog = _TermProgress("building demo")
    svc = build_demo(Path(args.home), backups=args.backups, progress=prog)
    prog.done()
    with svc:
        st = svc.status()
        print(
            f"demo home ready at {st.home}: {st.backup_count} backups, "
            f"{sum(len(k.versions) for k in st.keks)} KEK versions"
        )
        print(f"open it with: {PROG} --home {st.home}")
        print(
            f"sample people: {', '.join(p.name for p in svc.people())}; "
            f"their codes: {PROG} --home {st.home} demo codes"
        )
    return 0


# ---------------------------------------------------------------- restore and approvals

RESTORE_FAILED = 9  # the session ran and at least one backup failed
REWRAP_BATCH = 2000  # custodian.rotation.DEFAULT_BATCH (a test keeps them equal)
REWRAP_INCOMPLETE = 10  # the rewrap ran, and DEKs stay under older versions (failures)


def _request_json(r: Request) -> dict[str, Any]:
    s = r.session
    return {
        "id": r.id,
        "kind": r.kind,
        "state": r.state,
        "requester": r.requester,
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "closed_at": r.closed_at,
        "quorum": r.quorum,
        "reason": r.reason,
        "target": r.target,
        "backups": [{"id": b, "file": r.payload.get("files", {}).get(b)} for b in r.backups],
        "decisions": [
            {
                "custodian": d.custodian,
                "decision": d.decision,
                "at": d.at,
                "step": d.totp_step,
                "reason": d.reason,
            }
            for d in r.decisions
        ],
        "session": None
        if s is None
        else {
            "id": s.id,
            "state": s.state,
            "opened_at": s.opened_at,
            "expires_at": s.expires_at,
            "closed_at": s.closed_at,
        },
        "results": [
            {
                "backup": x.backup,
                "outcome": x.outcome,
                "reason": x.reason,
                "plaintext_size": x.plaintext_size,
                "path": x.path,
                "at": x.at,
            }
            for x in r.results
        ],
    }


def _print_request(svc: Service, r: Request) -> None:
    """The whole request, as a custodian sees it before deciding (untrusted text as is)."""
    print(f"request   {r.id}  ({r.kind}, {r.state})")
    print(f"asked by  {r.requester} at {r.created_at[:19]}Z; expires {r.expires_at[:19]}Z")
    print(f"reason    {r.reason!r}")
    if r.kind == "restore":
        print(f"target    {r.target}")
        print(f"backups   {len(r.backups)}:")
        for bid in r.backups:
            file = r.payload.get("files", {}).get(bid, bid)
            try:
                b = svc.backup(bid)
                what = f"{b.label!r}, {_human(b.size)}, created {b.created_at[:19]}"
            except CustodianError:
                what = "no longer in the catalog"
            print(f"  {bid}  {what}  -> {file}")
    if r.kind == "kek.destroy":
        print(
            f"destroys  KEK {r.payload.get('kek')} v{r.payload.get('version')} (retired), "
            f"fingerprint {r.payload.get('fingerprint')}"
        )
    print(f"approvals {len(r.approvals)} of {r.quorum}")
    for d in r.decisions:
        extra = f": {d.reason!r}" if d.reason else ""
        print(f"  {d.decision}d by {d.custodian} at {d.at[:19]}Z{extra}")
    if r.session is not None:
        s = r.session
        print(
            f"session   {s.id}  {s.state}, opened {s.opened_at[:19]}Z, expires {s.expires_at[:19]}Z"
        )
    for x in r.results:
        tail = f"{_human(x.plaintext_size or 0)} -> {x.path}" if x.outcome == "ok" else x.reason
        print(f"  {x.outcome:<6} {x.backup}  {tail}")


def cmd_restore_request(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        r = svc.request_restore(args.backups, args.reason, args.target, by=by)
        if args.json:
            print(json.dumps(_request_json(r), indent=2))
            return 0
        print(
            f"request {r.id} opened: {len(r.backups)} backup(s) into {r.target}; "
            f"needs {r.quorum} custodians' approval before {r.expires_at[:19]}Z"
        )
        print(f"custodians approve with: {PROG} approve {r.id[:8]} --as NAME")
    return 0


def cmd_restore_list(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        rows = svc.requests(args.state)
        if args.json:
            print(json.dumps([_request_json(r) for r in rows], indent=2))
            return 0
        print(
            f"{'ID':<36}  {'KIND':<11} {'STATE':<9} {'BY':<12} {'OK':>5}  {'EXPIRES':<19}  REASON"
        )
        for r in rows:
            print(
                f"{r.id:<36}  {r.kind:<11} {r.state:<9} {r.requester:<12} "
                f"{len(r.approvals)}/{r.quorum:<3}  {r.expires_at[:19]:<19}  {r.reason[:40]!r}"
            )
        if not rows:
            print("no requests" + (f" in state {args.state}" if args.state else ""))
    return 0


def cmd_restore_show(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        r = svc.request(args.id)
        if args.json:
            print(json.dumps(_request_json(r), indent=2))
        else:
            _print_request(svc, r)
    return 0


def cmd_restore_cancel(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        r = svc.cancel(args.id, by=by, reason=args.reason or "")
        print(
            f"request {r.id} cancelled" + (f"; session {r.session.id} closed" if r.session else "")
        )
    return 0


def _decide(args: argparse.Namespace, decision: str) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        r = svc.request(args.id)
        if sys.stdout.isatty() and args.totp_fd is None:
            _print_request(svc, r)
            print()
        code = _code_input(args.totp_fd, by.name)
        if decision == "approve":
            r = svc.approve(r.id, code, by=by)
        else:
            r = svc.deny(r.id, code, args.reason, by=by)
        code = ""
        if r.state == "approved" and r.session is not None:
            print(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); session "
                f"{r.session.id} open until {r.session.expires_at[:19]}Z. "
                f"{r.requester} runs it with: {PROG} restore run {r.id[:8]} --as {r.requester}"
            )
        elif r.state == "done" and r.kind == "kek.destroy":
            print(
                f"request {r.id} approved ({len(r.approvals)} of {r.quorum}); the key material "
                f"of KEK {r.payload.get('kek')} v{r.payload.get('version')} is destroyed"
            )
        elif r.state == "approved":
            print(f"request {r.id} approved ({len(r.approvals)} of {r.quorum})")
        elif r.state == "denied":
            print(f"request {r.id} denied; this is final")
        else:
            print(f"request {r.id}: {decision}d, {len(r.approvals)} of {r.quorum} approvals")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_deny(args: argparse.Namespace) -> int:
    return _decide(args, "deny")


def cmd_restore_run(args: argparse.Namespace) -> int:
    with _service(args) as svc:
        by = _actor(svc, args)
        prog = _TermProgress("restoring")

        def line(x: RestoreResult) -> None:
            if prog.tty:
                prog.done()
                prog.last = -1
            if x.outcome == "ok":
                print(
                    f"ok      {x.backup}  {_human(x.plaintext_size or 0)} -> {x.path}", flush=True
                )
            else:
                print(f"FAILED  {x.backup}  {x.reason}", flush=True)

        report = svc.run_restore(args.id, by=by, progress=prog, on_result=line)
        prog.done()
        print(report.summary())
        return RESTORE_FAILED if report.failed else 0


TuiRunner = Callable[["Service"], None]
_tui: TuiRunner | None = None


def cmd_tui(args: argparse.Namespace) -> int:
    if _tui is None:
        print(
            f"{PROG}: error: the TUI is not part of this entry point; run the "
            f"'{PROG}' command installed with the package.",
            file=sys.stderr,
        )
        return 2
    svc = _service(args)
    try:
        _tui(svc)
    finally:
        svc.close()
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from custodian import __version__

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Key custody for encrypted backups. With no command, opens the TUI.",
    )
    p.add_argument(
        "--home",
        metavar="DIR",
        default=os.environ.get("CUSTODIAN_HOME"),
        help="the custodian home (default: $CUSTODIAN_HOME, else the platform data dir)",
    )
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("init", help="create a home with its root key and a first KEK")
    s.add_argument("--kek", default="backups", help="name of the first KEK (default: backups)")
    s.add_argument(
        "--suite",
        default="mlkem768-x25519",
        choices=["mlkem768-x25519", "x25519", "p256"],
        help="HPKE suite of the KEK",
    )
    s.add_argument(
        "--keyring",
        default="system",
        choices=["system", "home-file"],
        help="where the root key lives: the OS keyring (default) or, for demos "
        "and tests only, a file inside the home",
    )
    s.set_defaults(func=cmd_init)

    kek = sub.add_parser("kek", help="key-encryption keys").add_subparsers(
        dest="kek_command", metavar="COMMAND", required=True
    )
    s = kek.add_parser("list", help="KEKs, versions, states and DEK census")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_kek_list)

    def acting(s: argparse.ArgumentParser, required: bool = True) -> None:
        s.add_argument(
            "--as",
            dest="as_",
            metavar="NAME",
            required=required,
            help="who is acting (their signing key signs the audit entry)",
        )
        s.add_argument(
            "--passphrase-fd",
            type=int,
            metavar="N",
            help="read the acting person's passphrase from file descriptor N",
        )

    def totp_fd(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--totp-fd", type=int, metavar="N", help="read the TOTP code from file descriptor N"
        )

    def rewrap_opts(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--workers",
            type=int,
            metavar="N",
            help="worker processes for the unwrap and wrap work (default: the CPUs here)",
        )
        s.add_argument(
            "--batch",
            type=int,
            default=REWRAP_BATCH,
            metavar="N",
            help=f"DEKs per batch; each batch is one transaction (default {REWRAP_BATCH:,})",
        )

    s = kek.add_parser("create", help="create a KEK (custodians; confirm with a TOTP code)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--backend", default="local", help="where it lives (default: local)")
    s.add_argument(
        "--suite",
        default=None,
        choices=["mlkem768-x25519", "x25519", "p256"],
        help="HPKE suite on the local backend (default: the home's default)",
    )
    s.add_argument("--purpose", default="", help="what it protects, for people")
    totp_fd(s)
    acting(s)
    s.set_defaults(func=cmd_kek_create)

    s = kek.add_parser(
        "rotate", help="new KEK version, then rewrap every older DEK (custodians; TOTP)"
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("--no-rewrap", action="store_true", help="create the version and job only")
    rewrap_opts(s)
    totp_fd(s)
    acting(s)
    s.set_defaults(func=cmd_kek_rotate)

    s = kek.add_parser("rewrap", help="run or resume the rewrap job of a KEK (custodians)")
    s.add_argument("name", metavar="NAME")
    rewrap_opts(s)
    acting(s)
    s.set_defaults(func=cmd_kek_rewrap)

    s = kek.add_parser("retire", help="retire a version whose census is zero (custodians; TOTP)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("version", type=int, metavar="VERSION")
    totp_fd(s)
    acting(s)
    s.set_defaults(func=cmd_kek_retire)

    s = kek.add_parser(
        "destroy", help="ask to destroy a retired version's key material (two custodians approve)"
    )
    s.add_argument("name", metavar="NAME")
    s.add_argument("version", type=int, metavar="VERSION")
    s.add_argument("--reason", required=True)
    acting(s)
    s.set_defaults(func=cmd_kek_destroy)

    s = kek.add_parser("jobs", help="rotation history: rewrap jobs and their failures")
    s.add_argument("name", nargs="?", metavar="NAME")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_kek_jobs)

    ppl = sub.add_parser("people", help="people, roles, signing keys and TOTP").add_subparsers(
        dest="people_command", metavar="COMMAND", required=True
    )
    s = ppl.add_parser("list", help="who is enrolled")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_people_list)
    s = ppl.add_parser("enrol", help="enrol a person (the first custodian needs no --as)")
    s.add_argument("name")
    s.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["custodian", "operator", "auditor"],
        help="repeat for several",
    )
    s.add_argument(
        "--service",
        action="store_true",
        help="a service identity for cron (operator only, no TOTP, passphrase optional)",
    )
    s.add_argument(
        "--new-passphrase-fd",
        type=int,
        metavar="N",
        help="read the new person's passphrase from file descriptor N",
    )
    s.add_argument("--totp-fd", type=int, metavar="N", help="read the first code from fd N")
    acting(s, required=False)
    s.set_defaults(func=cmd_people_enrol)
    s = ppl.add_parser("replace-key", help="give a person a new signing key")
    s.add_argument("name")
    s.add_argument("--new-passphrase-fd", type=int, metavar="N")
    acting(s)
    s.set_defaults(func=cmd_people_replace_key)
    s = ppl.add_parser("replace-totp", help="give a person a new TOTP secret")
    s.add_argument("name")
    s.add_argument("--totp-fd", type=int, metavar="N", help="read the first new code from fd N")
    acting(s)
    s.set_defaults(func=cmd_people_replace_totp)
    s = ppl.add_parser("disable", help="disable a person (their old entries still verify)")
    s.add_argument("name")
    s.add_argument("--reason")
    acting(s)
    s.set_defaults(func=cmd_people_disable)

    au = sub.add_parser("audit", help="the signed audit log").add_subparsers(
        dest="audit_command", metavar="COMMAND", required=True
    )
    s = au.add_parser("show", help="entries, newest last")
    s.add_argument("--actor")
    s.add_argument("--action", help="action or its prefix, e.g. person. or backup.encrypt")
    s.add_argument("--outcome", choices=["ok", "refused"])
    s.add_argument("--text", help="subject or details containing TEXT")
    s.add_argument("--last", type=int, metavar="N", help="only the newest N")
    s.add_argument("--json", action="store_true", help="the entries as stored (JSON Lines)")
    s.set_defaults(func=cmd_audit_show)
    s = au.add_parser("verify", help="check chain, signatures, gaps and a checkpoint (offline)")
    s.add_argument("--checkpoint", metavar="FILE", help="a checkpoint exported earlier")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit_verify)
    s = au.add_parser("checkpoint", help="export a signed checkpoint of the log's head")
    s.add_argument("-o", "--output", required=True, metavar="FILE")
    s.add_argument("--force", action="store_true")
    acting(s)
    s.set_defaults(func=cmd_audit_checkpoint)

    bk = sub.add_parser("backup", help="encrypted backups").add_subparsers(
        dest="backup_command", metavar="COMMAND", required=True
    )
    s = bk.add_parser("encrypt", help="encrypt SRC (or - for stdin) into a new container DST")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--kek", help="KEK to wrap the DEK under (default: the home's default)")
    s.add_argument("--label", help="label in the catalog (default: the source's file name)")
    s.add_argument("--force", action="store_true", help="replace DST if it exists")
    s.add_argument("--json", action="store_true", help="print the catalog record as JSON")
    acting(s)
    s.set_defaults(func=cmd_backup_encrypt)
    s = bk.add_parser("list", help="backups in the catalog")
    s.add_argument("--filter", metavar="TEXT", help="only labels or ids containing TEXT")
    s.add_argument("--kek", help="only backups under this KEK")
    s.add_argument("--version", type=int, help="only backups under this KEK version")
    s.add_argument(
        "--sort", default="created_at", choices=["created_at", "label", "size", "kek_version", "id"]
    )
    s.add_argument("--ascending", action="store_true", help="oldest or smallest first")
    s.add_argument("--limit", type=int, help="at most this many rows")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_backup_list)
    s = bk.add_parser("import", help="register containers made elsewhere")
    s.add_argument("files", metavar="FILE", nargs="+")
    s.add_argument("--label", help="label in the catalog (default: the file name)")
    acting(s)
    s.set_defaults(func=cmd_backup_import)

    rs = sub.add_parser("restore", help="restore requests and sessions").add_subparsers(
        dest="restore_command", metavar="COMMAND", required=True
    )
    s = rs.add_parser("request", help="ask for a restore (custodians then approve)")
    s.add_argument("backups", metavar="BACKUP", nargs="+", help="backup ids or unique prefixes")
    s.add_argument("--reason", required=True, help="why: custodians decide on it")
    s.add_argument(
        "--target", required=True, metavar="DIR", help="existing directory to restore into"
    )
    s.add_argument("--json", action="store_true", help="print the request as JSON")
    acting(s)
    s.set_defaults(func=cmd_restore_request)
    s = rs.add_parser("list", help="requests, oldest first")
    s.add_argument(
        "--state", choices=["open", "approved", "denied", "expired", "cancelled", "done"]
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_restore_list)
    s = rs.add_parser("show", help="one request: backups, decisions, session, results")
    s.add_argument("id", metavar="ID", help="request id, a unique prefix, or its session's id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_restore_show)
    s = rs.add_parser("cancel", help="cancel a request (the requester or a custodian); final")
    s.add_argument("id", metavar="ID")
    s.add_argument("--reason")
    acting(s)
    s.set_defaults(func=cmd_restore_cancel)
    s = rs.add_parser("run", help="run an approved restore session (the requester)")
    s.add_argument("id", metavar="ID", help="request id, a unique prefix, or the session's id")
    acting(s)
    s.set_defaults(func=cmd_restore_run)
    for verb, helptext in (
        ("approve", "approve a request with a fresh TOTP code (custodians)"),
        ("deny", "deny a request with a reason and a fresh TOTP code (custodians); final"),
    ):
        s = sub.add_parser(verb, help=helptext)
        s.add_argument("id", metavar="ID", help="request id or a unique prefix")
        if verb == "deny":
            s.add_argument("--reason", required=True)
        s.add_argument(
            "--totp-fd", type=int, metavar="N", help="read the TOTP code from file descriptor N"
        )
        acting(s)
        s.set_defaults(func=cmd_approve if verb == "approve" else cmd_deny)

    s = sub.add_parser("demo", help="build a demo home, or show its people's TOTP codes")
    s.add_argument(
        "action",
        nargs="?",
        choices=["build", "codes"],
        default="build",
        help="build (default): a new demo home at --home; codes: current codes",
    )
    s.add_argument("--backups", type=int, default=1000, help="how many sample backups")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("tui", help="open the TUI (the same as no command)")
    s.set_defaults(func=cmd_tui)
    return p


def main(argv: Sequence[str] | None = None, *, tui: TuiRunner | None = None) -> int:
    """Run the command line. ``tui`` opens the TUI; the core cannot import it, so the
    ``custodian`` console script (:mod:`screens.entry`) passes it in."""
    global _tui
    _tui = tui
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = getattr(args, "func", cmd_tui)
    from custodian.errors import CustodianError

    try:
        return func(args)
    except CustodianError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing half-done was recorded.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        print(
            f"{PROG}: error: {e.strerror or e} ({e.filename or 'no file'}); nothing was recorded.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # python -m custodian.cli: every command but the TUI
    sys.exit(main())
