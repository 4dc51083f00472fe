"""The command line reads as the README says (issue 13): one-line usage errors, the
Backups screen's sort names, thousands separators, exit statuses, the demo home."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from custodian.service import Service
from tests.conftest import Cast, next_code, unlock
from tests.integration.test_cli import cli_home, run  # noqa: F401  (a fixture)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("kek",), b"the following arguments are required: COMMAND"),
        (("deny",), b"the following arguments are required"),
        (("backup", "list", "--sort", "bogus"), b"use created, label, size, version or id"),
        (("kek", "list", "--bogus"), b"unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], words: bytes) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1 and words in r.stderr and b"--help" in r.stderr
    assert b"usage:" not in r.stderr


def test_home_after_the_command_says_where_it_goes(tmp_path: Path) -> None:
    r = run("demo", "--home", str(tmp_path / "d"))
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1
    assert b"--home goes before the command: custodian --home DIR" in r.stderr
    assert not (tmp_path / "d").exists()


def test_sort_takes_the_screens_names(cli_home: Path, tmp_path: Path) -> None:  # noqa: F811
    for i, size in enumerate((1000, 10, 200)):
        dst = tmp_path / f"b{i}.cbk"
        r = run(
            "--home", str(cli_home), "backup", "encrypt", "-", str(dst), "--label", f"b{i}",
            "--as", "bot", stdin=b"x" * size,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    for name, first in (("created", "b2"), ("created_at", "b2"), ("size", "b0"), ("label", "b2")):
        r = run("--home", str(cli_home), "backup", "list", "--sort", name, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["label"] == first, name
    r = run("--home", str(cli_home), "backup", "list", "--sort", "version")
    assert r.returncode == 0 and r.stdout.decode().splitlines()[-1] == "3 of 3 backups"
    r = run("--home", str(cli_home), "backup", "list")
    assert "1,000 B" in r.stdout.decode()  # thousands separators, as the screens show them


def test_a_missing_checkpoint_file_is_status_1(cli_home: Path, tmp_path: Path) -> None:  # noqa: F811
    r = run("--home", str(cli_home), "audit", "verify", "--checkpoint", str(tmp_path / "no.json"))
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    assert b"cannot read checkpoint" in r.stderr and b"No such file" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    r = run("--home", str(cli_home), "audit", "verify", "--checkpoint", str(bad))
    assert r.returncode == 2 and b"is not JSON" in r.stderr


def test_demo_home_policy_and_wording(tmp_path: Path) -> None:
    home = tmp_path / "d"
    r = run("--home", str(home), "demo", "--backups", "1200")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "1,200 backups" in out and "destroyed after 0 day(s) here" in out
    r = run("--home", str(home), "policy", "show", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["retirement_wait_days"]["value"] == 0
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout
    r = run("--home", str(home), "audit", "reconcile")
    assert r.returncode == 0, r.stdout
    r = run("--home", str(home), "kek", "list")
    listed = r.stdout.decode()
    assert "backend quorum, suite mlkem768-x25519, 840 DEKs" in listed
    assert "backend local, suite mlkem768-x25519, 360 DEKs" in listed and "     216  " in listed
    assert "any 2 of alice, bob, carol" in out and "cheap Argon2id parameters" in out


def test_restore_show_says_denied(svc: Service, cast: Cast, home: Path, tmp_path: Path) -> None:
    b = svc.backups.encrypt(
        io.BytesIO(b"x"), tmp_path / "x.cbk", by=svc.auth.unlock("bot", None), label="x"
    )
    t = tmp_path / "t"
    t.mkdir()
    r = svc.restores.request([b.id], "INC-3", t, by=unlock(svc, cast.oscar))
    svc.approvals.deny(r.id, next_code(svc, cast.bob), "no ticket", by=unlock(svc, cast.bob))
    out = run("--home", str(home), "restore", "show", r.id[:8])
    assert out.returncode == 0, out.stderr
    assert b"denied by bob" in out.stdout and b"'no ticket'" in out.stdout
    assert b"denyd" not in out.stdout


def test_a_totp_code_typed_at_the_terminal_is_not_echoed(
    svc: Service, cast: Cast, home: Path
) -> None:
    import os
    import select
    import subprocess
    import time

    from tests.integration.test_cli import EXE

    code = next_code(svc, cast.alice)
    svc.close()  # the child opens the home itself
    master, slave = os.openpty()
    read, write = os.pipe()
    os.write(write, cast.alice.passphrase.encode() + b"\n")
    os.close(write)
    p = subprocess.Popen(
        [EXE, "--home", str(home), "kek", "create", "arch", "--suite", "x25519",
         "--custody", "single", "--as", "alice", "--passphrase-fd", str(read)],
        stdin=slave, stdout=slave, stderr=slave, pass_fds=(read,), start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    os.close(read)
    seen = b""
    typed = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not typed and b"current TOTP code of alice" in seen:
            os.write(master, code.encode() + b"\r")
            typed = True
        if p.poll() is not None and not ready:
            break
    os.close(master)
    assert p.wait(timeout=30) == 0, seen
    assert b"not shown as you type" in seen and b"created KEK arch" in seen
    assert code.encode() not in seen  # neither echoed nor printed: not in the scrollback
