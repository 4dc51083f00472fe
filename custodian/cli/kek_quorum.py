"""``custodian kek`` for quorum KEKs: rotate (refresh), refresh (a holder's part),
redistribute (a change of holders), and the custody jobs in ``kek jobs``.

No command here reconstructs a DEK: a rotation deals deltas sealed to the holders'
new keys, and each holder applies their own, present, with their own passphrase.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from custodian.cli.common import PROG, say

if TYPE_CHECKING:
    from custodian.people import Actor
    from custodian.service import Service

INCOMPLETE = 10  # as kek rewrap: the run ended and some DEKs failed (they stay where they were)


def holder_names(svc: Service, name: str) -> str:
    k = svc.keys.get(name)
    return ",".join(h.name for h in svc.keys.manifest(name, k.current_version).holders)


def rotate(svc: Service, args: argparse.Namespace, by: Actor) -> int:
    """``kek rotate NAME`` on a quorum KEK: the ceremony with every holder present."""
    from custodian.cli.kek import _code, _holders

    k = svc.keys.get(args.name)
    man = svc.keys.manifest(args.name, k.current_version)
    say(
        f"rotate quorum KEK {k.name}: v{k.current_version} -> v{k.current_version + 1} by "
        f"refresh ({man.m} of {man.n}: {', '.join(h.name for h in man.holders)})"
    )
    for v in k.versions:
        say(f"  v{v.version}: {v.dek_count:,} DEK(s)")
    say(
        "every holder takes part: each unlocks a new holder key here; each then seals "
        "their refreshed shares (no process ever holds a DEK)"
    )
    if not args.holders:
        args.holders = holder_names(svc, args.name)
    holders = _holders(svc, args, by)
    code = _code(args, by)
    j = svc.keys.rotate(args.name, code, by=by, holders=holders)
    nv = svc.keys.get(args.name).versions[-1]
    say(
        f"KEK {args.name} v{j.target_version} created, manifest fingerprint "
        f"{nv.fingerprint}, signed by {', '.join(h.name for h in holders)}; it wraps every "
        f"new DEK from now on. Refresh job {j.id}: {j.total:,} DEK(s)"
    )
    if args.no_rewrap:
        say(f"each holder runs their part with: {PROG} kek refresh {args.name} --as HOLDER")
        return 0
    rc = 0
    for h in holders:  # present now: each seals theirs while the keys are open
        rc = max(rc, run_part(svc, args, h))
    return rc


def run_part(svc: Service, args: argparse.Namespace, by: Actor, quiet: bool = False) -> int:
    import signal

    from custodian.cli.kek import _RewrapProgress

    prog = _RewrapProgress(verb="done")
    resume = f"{PROG} kek refresh {args.name} --as {by.name}"
    stop: list[bool] = []

    def interrupt(signum: int, frame: object) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.append(True)
        print(
            "stopping after the batch in flight (Ctrl+C again stops at once); every "
            f"committed batch is kept. Resume with: {resume}",
            file=sys.stderr,
            flush=True,
        )

    old = signal.signal(signal.SIGINT, interrupt)
    try:
        report = svc.keys.refresh(
            args.name,
            by=by,
            workers=getattr(args, "workers", None),
            batch_size=getattr(args, "batch", None),
            progress=prog,
            cancelled=lambda: bool(stop),
        )
    except KeyboardInterrupt:
        prog.done()
        say(f"interrupted: every committed batch is kept; resume with: {resume}")
        raise
    finally:
        signal.signal(signal.SIGINT, old)
    prog.done()
    if report.interrupted:
        say(report.interrupted)
    say(report.summary())
    for bid, why in report.failed:
        say(f"FAILED  {bid}  {why} (it stays under its old version and opens as before)")
    if report.cancelled:
        return 130
    if not report.finished and not quiet:
        left = [
            s
            for s in _view(svc, report.job).steps
            if s.done < _view(svc, report.job).job.total and s.who != by.name
        ]
        if left:
            say(
                "still to do: "
                + "; ".join(_view(svc, report.job).step_line(s) for s in left)
                + f" (each with: {PROG} kek refresh {args.name} --as NAME)"
            )
    return INCOMPLETE if report.failed else 0


def _view(svc: Service, job_id: str) -> Any:
    for v in svc.keys.custody_jobs():
        if v.job.id == job_id:
            return v
    raise LookupError(job_id)


def cmd_refresh(args: argparse.Namespace) -> int:
    from custodian.cli.common import open_service, unlock_actor

    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        return run_part(svc, args, by)


def cmd_redistribute(args: argparse.Namespace) -> int:
    from custodian.cli.common import open_service, unlock_actor, usage_error
    from custodian.cli.kek import _code, _holders

    with open_service(args) as svc:
        by = unlock_actor(svc, args)
        if not args.holders or not args.sources:
            raise usage_error("name the new holders (--holders) and the old ones who re-share "
                              "(--sources NAME,NAME).")  # fmt: skip
        holders = _holders(svc, args, by)
        code = _code(args, by)
        sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        j = svc.keys.redistribute(args.name, holders, args.quorum, sources, code, by=by)
        man = svc.keys.manifest(args.name, j.target_version)
        say(
            f"KEK {args.name} v{j.target_version}: {man.m} of {man.n} "
            f"({', '.join(h.name for h in man.holders)}), manifest fingerprint "
            f"{man.fingerprint}. Redistribution job {j.id}: {j.total:,} DEK(s)"
        )
        say(
            f"first each of {', '.join(sources)} re-shares, then each new holder seals: "
            f"{PROG} kek refresh {args.name} --as NAME"
        )
        rc = 0
        present = [h for h in holders if h.name in sources]  # they re-share first
        present += [h for h in holders if h.name not in sources]
        waited = []
        for h in present:  # then each present holder seals what was sealed to them
            rc = max(rc, run_part(svc, args, h, quiet=True))
            if svc.keys.custody_jobs(args.name)[-1].job.state == "running":
                waited.append(h)
        for h in waited:  # a source that sealed before the last source re-shared
            if svc.keys.custody_jobs(args.name)[-1].job.state == "running":
                rc = max(rc, run_part(svc, args, h))
        return rc


def print_jobs(svc: Service, name: str | None) -> int:
    """The custody jobs part of ``kek jobs``: census by version, each holder's part."""
    views = svc.keys.custody_jobs(name)
    for v in views:
        j = v.job
        census = ", ".join(f"v{n}: {c:,}" for n, c in sorted(v.census.items()))
        say(
            f"{j.id[:8]}  {j.kek:<16} v{j.target_version:<2}  {j.kind:<12} {j.state:<10} "
            f"moved {j.completed:,} of {j.total:,}, failed {j.failed:,}, runs {j.runs}  "
            f"{j.created_at[:19]}  {j.started_by}"
        )
        say(f"          census {census}")
        for s in v.steps:
            say(f"          {v.step_line(s)}")
        for bid, why in v.failures:
            say(f"          failed {bid}: {why}")
    return len(views)


def jobs_json(svc: Service, name: str | None) -> list[dict[str, Any]]:
    out = []
    for v in svc.keys.custody_jobs(name):
        j = v.job
        out.append(
            {
                **{k: getattr(j, k) for k in j.__dataclass_fields__},
                "census": {str(n): c for n, c in v.census.items()},
                "steps": [
                    {"role": s.role, "who": s.who, "done": s.done, "of": j.total} for s in v.steps
                ],
                "failures": [{"backup": b, "reason": r} for b, r in v.failures],
            }
        )
    return out


def add_parsers(kek: Any) -> None:
    from custodian.cli.common import add_acting, add_totp_fd
    from custodian.cli.kek import _add_holder_options, _add_rewrap_options

    s = kek.add_parser(
        "refresh",
        help="a holder's part of a quorum KEK's refresh or redistribution (resumable)",
    )
    s.add_argument("name", metavar="NAME")
    _add_rewrap_options(s)
    add_acting(s)
    s.set_defaults(func=cmd_refresh)

    s = kek.add_parser(
        "redistribute",
        help="change the holders of a quorum KEK: M old holders re-share (custodians; TOTP)",
    )
    s.add_argument("name", metavar="NAME")
    _add_holder_options(s)
    s.add_argument(
        "--sources",
        default="",
        metavar="NAME,NAME",
        help="the M current holders who re-share their shares",
    )
    _add_rewrap_options(s)
    add_totp_fd(s)
    add_acting(s)
    s.set_defaults(func=cmd_redistribute)
