"""No core dump of a process that holds key material (issue 12).

A core from SIGABRT during a restore held the KSK, a signing key and a DEK.
Every custodian process that can hold keys (the CLI, the TUI it opens, the
rewrap workers) sets RLIMIT_CORE to (0, 0) and, on Linux, PR_SET_DUMPABLE to 0
(which also keeps other processes of the same user from ptrace-attaching or
reading its memory through /proc) before it reads any secret.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from custodian.service import Service
from tests.conftest import Cast, approved_session, unlock

REPORT = """
import atexit, ctypes, resource, sys
def report():
    libc = ctypes.CDLL(None)
    with open({out!r}, "w") as f:
        f.write(f"{{resource.getrlimit(resource.RLIMIT_CORE)}} {{libc.prctl(3, 0, 0, 0, 0)}}")
atexit.register(report)
"""


def _as_started(tmp_path: Path, argv: list[str], stdin: bytes = b"") -> str:
    """Run ``argv`` as it is always started, with a sitecustomize that reports, at exit,
    the process's core limit and PR_GET_DUMPABLE."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    out = tmp_path / "report"
    (site / "sitecustomize.py").write_text(REPORT.format(out=str(out)))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=60, check=False)
    return out.read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux")
def test_the_cli_and_the_rewrap_worker_run_without_core_dumps(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "custodian")
    assert _as_started(tmp_path, [exe, "--version"]) == "(0, 0) 0"
    assert _as_started(tmp_path, [sys.executable, "-m", "custodian", "--help"]) == "(0, 0) 0"
    # the worker as the pool starts it (custodian.backends.rewrap_worker._Worker); end of
    # input ends it
    worker = [sys.executable, "-m", "custodian.backends.rewrap_worker"]
    assert _as_started(tmp_path, worker) == "(0, 0) 0"


def _core_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name == "core" or p.name.startswith("core."))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="core_pattern is Linux")
def test_sigabrt_during_a_restore_leaves_no_core(svc: Service, cast: Cast, tmp_path: Path) -> None:
    """The attack: allow cores (ulimit -c unlimited), SIGABRT ``restore run`` while it
    decrypts, look for a core in its working directory (core_pattern "core")."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"cores go elsewhere here (core_pattern {pattern!r})")
    bot = unlock(svc, cast.bot)
    src = tmp_path / "big"
    src.write_bytes(os.urandom(64 * 1024 * 1024))
    b = svc.backups.encrypt(src, tmp_path / "big.cbk", by=bot)
    target = tmp_path / "restore"
    target.mkdir()
    s = approved_session(svc, cast, [b.id], target)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r, w = os.pipe()
    os.write(w, cast.oscar.passphrase.encode() + b"\n")
    os.close(w)

    def allow_cores() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    p = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "custodian"),
            "--home",
            str(svc.home.path),
            "restore",
            "run",
            s.request,
            "--as",
            "oscar",
            "--passphrase-fd",
            str(r),
        ],
        cwd=cwd,
        pass_fds=(r,),
        preexec_fn=allow_cores,  # the attacker's shell: ulimit -c unlimited
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(r)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        try:  # wait until it has the plaintext open, so that the DEK is in memory
            if any(
                os.readlink(f"/proc/{p.pid}/fd/{fd}").startswith(str(target))
                for fd in os.listdir(f"/proc/{p.pid}/fd")
            ):
                break
        except OSError:
            pass
        time.sleep(0.002)
    p.send_signal(signal.SIGABRT)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGABRT
    time.sleep(0.5)  # the kernel writes the core as the process dies
    assert _core_files(cwd) == [], "a core dump of a process holding key material"
