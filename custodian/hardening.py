"""Process hardening for every custodian process that can hold key material.

A core dump of a restore held the KSK, a signing key and a DEK (issue 12).
:func:`no_core_dumps` is called first thing by the CLI (and so the TUI it
opens, ``python -m custodian`` and the console script) and by each rewrap
worker, before any secret is read:

- ``RLIMIT_CORE`` soft and hard limits 0: no core file, and no child can raise
  the limit again (without ``CAP_SYS_RESOURCE``);
- on Linux, ``prctl(PR_SET_DUMPABLE, 0)``: no core even where a core handler
  ignores the limit (a ``core_pattern`` pipe), and other processes of the same
  user can no longer ptrace-attach or read this one's memory through
  ``/proc/PID/mem``. ``execve`` resets the flag, which is why each worker sets
  it again itself.

What it does not stop: root, a debugger attached before the flag is set, or
swap (the process's pages may be written to an unencrypted swap device).
"""

from __future__ import annotations

import contextlib
import sys

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def no_core_dumps() -> None:
    """Forbid core dumps of this process (and ptrace by the same user, on Linux)."""
    import resource

    with contextlib.suppress(OSError, ValueError):  # lowering a limit does not fail
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # a libc without prctl
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def dumpable() -> bool | None:
    """Whether this process may dump core (PR_GET_DUMPABLE); None where it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return bool(ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
