"""Shared pieces: timed child processes, result records, the printed tables, JSON.

Benchmarks are not tests: a missed target prints MISS and the run carries on,
and a case that fails (for example because the core changed under it) prints
ERROR with the reason and the other cases still run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
VENV_BIN = Path(sys.executable).parent
CUSTODIAN_BIN = VENV_BIN / "custodian"
OUT_DIR = Path(__file__).resolve().parent / "out"


@dataclass
class Child:
    """One finished child process: wall time, peak resident memory, output."""

    argv: list[str]
    wall: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str
    rss_source: str = "wait4"

    @property
    def peak_mb(self) -> float:
        return self.maxrss_kb * 1024 / 1e6

    def check(self) -> Child:
        if self.returncode != 0:
            last = (self.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{Path(self.argv[0]).name} exited {self.returncode}: {last}")
        return self

    def json(self) -> dict[str, Any]:
        """The last line of standard output, parsed as JSON."""
        lines = self.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"{Path(self.argv[0]).name} printed nothing")
        data: dict[str, Any] = json.loads(lines[-1])
        return data


@functools.cache
def gnu_time() -> str | None:
    """The path of GNU time (Debian package ``time``), if it is there."""
    path = shutil.which("time")
    if not path:
        return None
    try:
        v = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in v.stdout + v.stderr else None


def run_child(
    argv: Sequence[object],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    poll: float = 0.0005,
) -> Child:
    """Run ``argv`` to completion and measure its wall time and its own peak RSS.

    Peak RSS does not come from ``wait4`` on a child of this process: Linux
    carries the high-water mark of the forked (or vforked) copy of this
    process across ``exec``, so every child would report at least this
    process's own peak (40 MB here; 300 MB after a big allocation). GNU time,
    a small process that forks the command, reports the command's real peak;
    it adds about 1 ms to the wall time. Without it the peak is an upper bound
    and says so in :attr:`Child.rss_source`.

    ``poll`` is how often the end is checked (seconds): short for whole-process
    timings; a long run timed inside the child polls less, so this process
    does not take CPU from it.
    """
    args = [str(a) for a in argv]
    timer = gnu_time()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(prefix="rss-") as rss,
    ):
        cmd = [timer, "-q", "-f", "%M", "-o", rss.name, *args] if timer else args
        t0 = time.perf_counter()
        p = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,  # so a timeout can kill the command and not only GNU time
        )
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(poll)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        maxrss_kb, source = ru.ru_maxrss, "wait4 (upper bound: includes the parent's peak)"
        if timer:
            lines = Path(rss.name).read_text(errors="replace").split()
            if lines and lines[-1].isdigit():
                maxrss_kb, source = int(lines[-1]), "GNU time"
        out.seek(0)
        err.seek(0)
        return Child(
            args,
            wall,
            maxrss_kb,
            p.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            source,
        )


@dataclass
class Row:
    """One measured case. ``best`` is in seconds (lower is better)."""

    group: str
    name: str
    runs: list[float] = field(default_factory=list)
    work: float = 0.0  # units of work per run (bytes, operations)
    unit: str = "MiB/s"  # how the rate is shown
    peak_mb: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    note: str = ""
    error: str | None = None

    @property
    def best(self) -> float | None:
        return min(self.runs) if self.runs else None

    @property
    def median(self) -> float | None:
        if not self.runs:
            return None
        s = sorted(self.runs)
        return s[len(s) // 2]

    @property
    def rate(self) -> float | None:
        """Work per second at the best run, in ``unit``."""
        b = self.best
        if not b or not self.work:
            return None
        return self.work / (MiB if self.unit == "MiB/s" else 1) / b

    def add_peak(self, mb: float) -> None:
        self.peak_mb = mb if self.peak_mb is None else max(self.peak_mb, mb)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(best=self.best, median=self.median, rate=self.rate)
        return d


@dataclass
class Target:
    group: str
    what: str
    measured: str
    goal: str
    ok: bool | None  # None: could not be measured

    @property
    def verdict(self) -> str:
        return "ERROR" if self.ok is None else ("PASS" if self.ok else "MISS")


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.targets: list[Target] = []
        self.notes: list[str] = []
        self.started = time.time()

    def row(self, group: str, name: str, **kw: Any) -> Row:
        r = Row(group, name, **kw)
        self.rows.append(r)
        return r

    def target(self, group: str, what: str, measured: str, goal: str, ok: bool | None) -> None:
        self.targets.append(Target(group, what, measured, goal, ok))

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    # ------------------------------------------------------------ output

    def print_group(self, group: str, title: str) -> None:
        rows = [r for r in self.rows if r.group == group]
        if not rows:
            return
        print()
        print(title)
        hdr = f"{'case':<40} {'best':>9} {'median':>9} {'rate':>14} {'ratios':<30} {'peak':>8}"
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            if r.error:
                print(f"{r.name:<40} ERROR: {r.error}")
                continue
            rate = f"{r.rate:,.0f} {r.unit}" if r.rate is not None else ""
            ratios = "  ".join(f"{v:.2f}x {k}" for k, v in r.ratios.items())
            peak = f"{r.peak_mb:.1f} MB" if r.peak_mb is not None else ""
            print(
                f"{r.name:<40} {_secs(r.best):>9} {_secs(r.median):>9} {rate:>14} "
                f"{ratios:<30} {peak:>8}"
            )
            if r.note:
                print(f"{'':<42}{r.note}")

    def print_targets(self) -> None:
        if not self.targets:
            return
        print()
        print("TARGETS")
        hdr = f"{'group':<8} {'target':<52} {'measured':>16} {'goal':>12}  verdict"
        print(hdr)
        print("-" * len(hdr))
        for t in self.targets:
            print(f"{t.group:<8} {t.what:<52} {t.measured:>16} {t.goal:>12}  {t.verdict}")
        counts = {v: sum(t.verdict == v for t in self.targets) for v in ("PASS", "MISS", "ERROR")}
        print(", ".join(f"{n} {v}" for v, n in counts.items() if n))

    def write_json(self, out_dir: Path, groups: Sequence[str], argv: Sequence[str]) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
        data = {
            "meta": environment(),
            "argv": list(argv),
            "groups": list(groups),
            "started": self.started,
            "seconds": time.time() - self.started,
            "rows": [r.to_json() for r in self.rows],
            "targets": [asdict(t) | {"verdict": t.verdict} for t in self.targets],
            "notes": self.notes,
        }
        path = out_dir / f"bench-{stamp}.json"
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(path, out_dir / "latest.json")
        return path


def _secs(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.3f} s"


def environment() -> dict[str, Any]:
    """What was measured, on what: enough to compare two runs honestly."""
    meta: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            meta["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?"
            )
    except OSError:
        pass
    try:
        import cryptography

        meta["cryptography"] = cryptography.__version__
    except ImportError:
        pass
    try:
        import custodian

        meta["custodian"] = {"file": custodian.__file__, "version": custodian.__version__}
        root = Path(custodian.__file__).resolve().parent.parent
        git = shutil.which("git")
        if git and (root / ".git").exists():
            head = subprocess.run(
                [git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            dirty = subprocess.run(
                [git, "-C", str(root), "status", "--porcelain", "custodian", "screens"],
                capture_output=True,
                text=True,
            ).stdout.splitlines()
            meta["custodian"].update(commit=head, uncommitted=dirty)
    except Exception as e:  # the core may be mid-edit; say so rather than fail
        meta["custodian"] = {"error": f"{type(e).__name__}: {e}"}
    return meta


def best_of(n: int, fn: Any) -> list[float]:
    """Call ``fn`` (which returns seconds) ``n`` times; return every timing."""
    return [fn() for _ in range(n)]
