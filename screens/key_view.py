"""How the Keys screen shows KEKs, versions and rewrap jobs: rows, notes, tables.

Pure functions over the core's dataclasses (and :func:`read_keys`, the service
calls behind the screen, which the screen runs in a worker's thread), so that
:mod:`screens.keys` holds only the screen's behaviour. Names, purposes,
fingerprints and reasons are untrusted: each goes into a ``Text`` after
:func:`~screens.format.safe`, never through markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from custodian.approvals import Request
from custodian.catalog import Kek, KekVersion
from custodian.rotation import RewrapFailure, RewrapJob
from custodian.service import Service
from screens.dashboard import STATE_STYLE, rotation_due
from screens.format import fit, safe, when

JOB_STYLE = {
    "running": "bold yellow",
    "paused": "yellow",
    "interrupted": "bold red",
    "not started": "yellow",
    "done": "green",
    "superseded": "dim",
}
# what an unfinished job's pane says of it (w resumes each but a running one)
JOB_WORDS = {
    "paused": "Paused rewrap job {id} to v{v}: press w to resume it from where it stopped.",
    "interrupted": (
        "Interrupted rewrap job {id} to v{v} (its run ended without finishing): press w to "
        "resume it from its last committed batch."
    ),
    "not started": "Rewrap job {id} to v{v} has not run yet: press w to start it.",
    "running": (
        "Rewrap job {id} to v{v} is running in another process (custodian kek rewrap); "
        "this screen follows its census."
    ),
}
MAX_FAILURES_SHOWN = 12
PURPOSE_WIDTH = 32


@dataclass(frozen=True)
class KeysRead:
    """Everything the screen shows, read in one go."""

    keks: list[Kek]
    jobs: list[RewrapJob]
    failures: list[RewrapFailure]
    destroy_requests: list[Request]
    states: dict[str, str] = field(default_factory=dict)  # job id -> how it stands
    custody: list[Any] = field(default_factory=list)  # quorum jobs (quorum_jobs.JobView)


def read_keys(service: Service) -> KeysRead:
    """The service calls behind the screen (in a worker's thread but for the first)."""
    jobs = service.keys.jobs()
    return KeysRead(
        service.keys.list(),
        jobs,
        service.keys.failures(),
        [r for r in service.approvals.requests("open") if r.kind == "kek.destroy"],
        service.keys.job_states(jobs),
        service.keys.custody_jobs(),
    )


def custody_view(custody: list[Any], k: Kek) -> Any:
    """The newest refresh or redistribution job of ``k`` (None if it never had one)."""
    mine = [v for v in custody if v.job.kek == k.name]
    return mine[-1] if mine else None


def fails_of(failures: list[RewrapFailure], jobs: list[RewrapJob]) -> list[RewrapFailure]:
    ids = {j.id for j in jobs}
    return [f for f in failures if f.job in ids]


def current_version(k: Kek) -> KekVersion | None:
    return next((v for v in k.versions if v.version == k.current_version), None)


def pending(k: Kek) -> int:
    """DEKs of ``k`` under older versions."""
    return sum(v.dek_count for v in k.versions if v.version != k.current_version)


def unfinished(jobs: list[RewrapJob], k: Kek) -> RewrapJob | None:
    """The running (unfinished) rewrap job of ``k``, if any."""
    running = [j for j in jobs if j.kek == k.name and j.state == "running"]
    return running[-1] if running else None


def kek_row(k: Kek, rotation_days: int, now: datetime) -> list[Text]:
    """A row of the KEKs table: name, backend, suite, current version, census, dates."""
    current = current_version(k)
    last = Text("-")
    due_text = Text("-")
    if current is not None:
        if k.current_version > 1:
            last = Text(f"{when(current.created_at)[:10]} (v{current.version})")
        else:  # under "Last rotated", as the dashboard says "Never rotated"
            last = Text("never", style="dim")
        due, overdue = rotation_due(current.created_at, rotation_days, now)
        if due is not None:
            due_text = (
                Text(f"{due:%Y-%m-%d} overdue", style="bold red")
                if overdue
                else Text(f"{due:%Y-%m-%d}")
            )
    return [
        Text(safe(k.name), style="bold"),
        Text(safe(k.backend)),
        Text(safe(k.suite)),
        Text(f"v{k.current_version}", style="cyan"),
        Text(f"{k.dek_count:,}", justify="right"),
        last,
        due_text,
        Text(fit(safe(k.purpose), PURPOSE_WIDTH).rstrip() or "-", style="dim"),
    ]


def version_row(k: Kek, v: KekVersion, *, asked: bool) -> list[Text]:
    """A row of the versions table; ``asked``: its destruction is requested (⚑)."""
    current = v.version == k.current_version
    end = Text("")
    if v.destroyed_at:
        end = Text(f"destroyed {when(v.destroyed_at)}", style="dim")
    elif v.retired_at:
        end = Text(f"retired {when(v.retired_at)}", style="yellow")
    if asked:
        end.append(" ⚑", style="bold")  # explained in the note under the table
    # "current" is said in words: a mark in a column of its own read as the cursor (▶)
    return [
        Text(
            f"v{v.version}"
            + (" current" if current else "")
            # a migrated KEK's older versions are on another backend: said beside them
            + (f" ({safe(v.backend)})" if v.backend and v.backend != k.backend else ""),
            style="bold cyan" if current else "cyan",
        ),
        Text(v.state, style=STATE_STYLE.get(v.state, "")),
        Text(when(v.created_at), style="dim"),
        Text(safe(v.fingerprint)),
        Text(f"{v.dek_count:,}", justify="right", style="bold" if v.dek_count else "dim"),
        end,
    ]


def destruction_requests(
    requests: list[Request], k: Kek, version: int | None = None
) -> list[Request]:
    """Open requests to destroy a version of ``k`` (of ``version`` only, if given)."""
    return [
        r
        for r in requests
        if r.payload.get("kek") == k.name
        and (version is None or r.payload.get("version") == version)
    ]


def destroy_note(asked: list[Request]) -> Text:
    """The note under the versions table: each open destruction request and its approvals."""
    out = Text()
    for r in asked:
        if out:
            out.append("\n")
        out.append("⚑ ", style="bold")
        out.append(
            f"Destruction of v{r.payload.get('version')} requested by {safe(r.requester)} "
            f"(request {r.id[:8]}, until {when(r.expires_at)} UTC): "
            f"{len(r.approvals)} of {r.quorum} approvals"
        )
        if r.approvals:
            out.append(f" ({', '.join(safe(a) for a in r.approvals)})")
        out.append(". Other custodians decide it on Restores (F6).", style="dim")
    return out


def history_table(jobs: list[RewrapJob], states: dict[str, str] | None = None) -> Table | Text:
    """The rotation history of one KEK: its rewrap jobs, newest first, each as it stands
    (``states``: running, paused, interrupted, not started, done, superseded)."""
    if not jobs:
        return Text("Never rotated: press r to rotate this KEK.", style="dim")
    states = states or {}
    t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold dim", expand=False)
    t.add_column("Job", no_wrap=True)
    t.add_column("Target", no_wrap=True)
    t.add_column("State", no_wrap=True)
    t.add_column("Done", justify="right", no_wrap=True)
    t.add_column("Failed", justify="right", no_wrap=True)
    t.add_column("Runs", justify="right", no_wrap=True)
    t.add_column("By", no_wrap=True)
    t.add_column("Started (UTC)", no_wrap=True)
    t.add_column("Finished (UTC)", no_wrap=True)
    for j in reversed(jobs):
        state = states.get(j.id, j.state)
        t.add_row(
            Text(j.id[:8]),
            Text(f"v{j.target_version}", style="cyan"),
            Text(state, style=JOB_STYLE.get(state, "")),
            Text(f"{j.rewrapped:,} of {j.total:,}"),
            Text(f"{j.failed:,}", style="bold red" if j.failed else "dim"),
            Text(str(j.runs)),
            Text(safe(j.started_by)),
            Text(when(j.created_at), style="dim"),
            Text(when(j.finished_at) if j.finished_at else "-", style="dim"),
        )
    return t


def failures_view(failures: list[RewrapFailure], jobs: list[RewrapJob]) -> Group | Text:
    """The DEKs that failed to rewrap in the newest job of ``jobs`` that has failures."""
    ids = {j.id: j for j in jobs}
    if not fails_of(failures, jobs):
        return Text("")
    # the newest job with failures: what still fails now (earlier jobs' failures
    # were retried by the later job, whose list is the one that counts)
    latest = next(j for j in reversed(jobs) if fails_of(failures, [j]))
    fails = fails_of(failures, [latest])
    earlier = [j for j in jobs if j.id != latest.id and j.failed]
    t = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold dim")
    t.add_column("Job", no_wrap=True)
    t.add_column("Backup", no_wrap=True)
    t.add_column("From", no_wrap=True)
    t.add_column("Reason", overflow="fold", ratio=1)
    for f in fails[:MAX_FAILURES_SHOWN]:
        t.add_row(
            Text(f.job[:8]),
            Text(safe(f.backup), style="red"),
            Text(f"v{f.from_version}", style="cyan"),
            Text(safe(f.reason)),
        )
    parts: list[Text | Table] = [
        Text(
            f"DEKs that failed to rewrap in job {latest.id[:8]} ({len(fails):,})",
            style="bold red",
        ),
        t,
    ]
    if len(fails) > MAX_FAILURES_SHOWN:
        parts.append(
            Text(
                f"… and {len(fails) - MAX_FAILURES_SHOWN:,} more: custodian kek jobs "
                f"{safe(ids[fails[0].job].kek)}",
                style="dim",
            )
        )
    if earlier:
        parts.append(
            Text(
                "Earlier jobs: "
                + ", ".join(f"{j.id[:8]} {j.failed:,} failed" for j in earlier)
                + f" (custodian kek jobs {safe(latest.kek)} lists them).",
                style="dim",
            )
        )
    parts.append(
        Text(
            "A failed DEK stays under its old version, which cannot be retired until the "
            "DEK is rewrapped (w retries) or its backup is dealt with.",
            style="dim",
        )
    )
    return Group(*parts)
