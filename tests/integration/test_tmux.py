"""The real `custodian` console script in a real terminal (tmux), driven by keys.

A demo home is built with the real command (real scrypt cost), then the TUI
runs in a detached tmux session of 120x40 on a server of its own (`tmux -L`),
so nothing here touches anyone else's tmux. The test reads the screen with
`capture-pane`, types with `send-keys`, signs alice in and out, quits, and
then checks that neither her passphrase nor her TOTP secret ever reached the
terminal, on screen or in the scrollback.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from custodian import people as P
from custodian.service import Service, totp_name

EXE = str(Path(sys.executable).parent / "custodian")
PASSPHRASE = "alice demo passphrase for trying"  # custodian.demo.PEOPLE, and the README
SIZE = (120, 40)
DEMO_BACKUPS = 30  # the default 1000 only makes the build slower
EXITED = "custodian exited with status"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("tmux") is None,
        reason="tmux is not installed (`make deb` or `make test` installs it)",
    ),
]


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the tmux server, and so of the TUI: nothing that records or resizes."""
    drop = ("TMUX", "TMUX_PANE", "COLUMNS", "LINES", "CUSTODIAN_HOME", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TEXTUAL")}
    env.update(TERM="xterm-256color", HOME=str(tmp_path), LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return env


class Tmux:
    """One tmux server on its own socket, holding one session."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"custodian-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.env = env
        self.seen: list[str] = []  # every screen captured, for the leak check

    def __call__(self, *args: str) -> str:
        r = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, f"tmux {' '.join(args)}: {r.stderr}"
        return r.stdout

    def screen(self) -> str:
        text = self("capture-pane", "-p", "-t", "tui")
        self.seen.append(text)
        return text

    def wait_for(self, what: str, condition: Callable[[str], bool], seconds: float = 20.0) -> str:
        """Poll the screen until ``condition(screen)`` holds, or fail showing the screen."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.screen()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {seconds:.0f} s; the screen was:\n{text}")
            time.sleep(0.2)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self("send-keys", "-t", "tui", *(["-l"] if literal else []), *keys)

    def kill(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            capture_output=True,
            timeout=10,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        # kill-server leaves the socket file behind; it is ours, so remove it too
        tmpdir = Path(self.env.get("TMUX_TMPDIR") or "/tmp")
        (tmpdir / f"tmux-{os.getuid()}" / self.socket).unlink(missing_ok=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(clean_env(tmp_path))
    try:
        yield t
    finally:
        t.kill()  # always this test's own server, by its own socket


def build_demo(home: Path, env: dict[str, str]) -> None:
    r = subprocess.run(
        [EXE, "--home", str(home), "demo", "--backups", str(DEMO_BACKUPS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert "demo home ready" in r.stdout


def alice_totp(home: Path) -> tuple[bytes, int]:
    """Alice's TOTP secret (to prove it never reaches the terminal) and her last used step."""
    with Service.open(home) as svc:
        p = svc.people.get("alice")
        with svc.sealed.unseal(svc.ctx.load_ksk(), totp_name("alice", p.totp_generation)) as s:
            secret = bytes(s.reveal())
        (last_step,) = svc.catalog.db.execute(
            "SELECT last_step FROM totp WHERE person='alice'"
        ).fetchone()
    return secret, int(last_step)


def alice_code(home: Path, env: dict[str, str], last_step: int) -> str:
    """Alice's code from `custodian demo codes`, for a step her enrolment has not used.

    A code counts once: the demo build spent the step alice enrolled in, so
    wait for the next one, and for a code with a few seconds left to live.
    """
    deadline = time.monotonic() + 70
    while time.monotonic() < deadline:
        if P.current_step() <= last_step:
            time.sleep(0.5)
            continue
        r = subprocess.run(
            [EXE, "--home", str(home), "demo", "codes"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, r.stderr
        m = re.search(r"^alice\s+(\d{6})\s+\(\s*(\d+) s left\)", r.stdout, re.MULTILINE)
        assert m, r.stdout
        if int(m[2]) >= 5:
            return m[1]
        time.sleep(int(m[2]) + 0.5)
    pytest.fail("no usable TOTP code for alice within 70 s")


def test_tui_in_a_real_terminal_signs_in_and_out_and_leaks_no_secret(
    tmp_path: Path, tmux: Tmux
) -> None:
    home = tmp_path / "demo-home"
    build_demo(home, tmux.env)
    secret, last_step = alice_totp(home)
    b32 = P.totp_b32(P.SecretBytes(secret))
    grouped = " ".join(b32[i : i + 4] for i in range(0, len(b32), 4))  # as the TOTP step shows it

    # The TUI in a 120x40 terminal; when it ends, the shell says how.
    width, height = SIZE
    tmux(
        "new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height),
        "sh", "-c", f'"$0" --home "$1"; echo "{EXITED} $?"; sleep 120', EXE, str(home),
    )  # fmt: skip

    # The dashboard.
    tmux.wait_for("dashboard", lambda s: "KEK backups" in s and "Backups" in s)

    # F3: the backups table, newest first.
    tmux.keys("F3")
    screen = tmux.wait_for(
        "backups table",
        lambda s: f"{DEMO_BACKUPS} of {DEMO_BACKUPS} backups" in s and "Created (UTC)" in s,
    )
    assert re.search(r"[0-9a-f]{8}  \S+\.sql", screen), screen  # id and label of a row

    # F9: sign in as alice with her passphrase and the code `demo codes` shows.
    code = alice_code(home, tmux.env, last_step)
    tmux.keys("F9")
    tmux.wait_for("sign-in dialog", lambda s: "Code from your authenticator" in s)
    tmux.wait_for("alice in the list", lambda s: "alice  (custodian)" in s)
    tmux.keys("Enter")  # alice is first and highlighted; enter moves on to the passphrase
    time.sleep(0.3)
    tmux.keys(PASSPHRASE, literal=True)
    tmux.wait_for("masked passphrase", lambda s: "•" * 8 in s, seconds=5)
    tmux.keys("Enter")  # on to the code
    time.sleep(0.3)
    tmux.keys(code, literal=True)
    tmux.wait_for("the code typed", lambda s: code in s, seconds=5)
    tmux.keys("Enter")
    tmux.wait_for("alice signed in", lambda s: "Signed in: alice" in s)

    # F9 again signs out.
    tmux.keys("F9")
    tmux.wait_for("signed out", lambda s: "Not signed in" in s and "Signed in: alice" not in s)

    # ctrl+q quits: the process ends and the shell reports a clean exit.
    tmux.keys("C-q")
    tmux.wait_for("the TUI to exit", lambda s: EXITED in s, seconds=10)
    assert f"{EXITED} 0" in tmux.screen()

    # Nothing secret on any screen captured along the way, nor in the whole scrollback.
    everything = tmux("capture-pane", "-p", "-S", "-", "-E", "-", "-t", "tui")
    for text in [*tmux.seen, everything]:
        for needle in (PASSPHRASE, b32, grouped, secret.hex()):
            assert needle not in text, "a secret reached the terminal"
