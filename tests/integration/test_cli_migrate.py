"""`custodian kek migrate NAME --to quorum` through the command, with no terminal: the
holders present on their own descriptors, the job run at once, the census per backend
and version, refusals said before anything is typed (issues 11 and 14)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock
from tests.integration.test_cli import EXE, _as, run


def _migrate(home: Path, by: Enrolled, present: list[Enrolled], code: str, *args: str) -> Any:
    fds: list[int] = []
    extra: list[str] = []
    for who in present:
        r, w = os.pipe()
        os.write(w, who.passphrase.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += ["--holder-passphrase-fd", f"{who.name}={r}"]
    for value, flag in ((by.passphrase, "--passphrase-fd"), (code, "--totp-fd")):
        r, w = os.pipe()
        os.write(w, value.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += [flag, str(r)]
    try:
        return subprocess.run(
            [EXE, "--home", str(home), "kek", "migrate", "backups", *args, *extra,
             "--as", by.name],
            capture_output=True, pass_fds=fds, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)


def test_migrate_to_quorum_through_the_cli(svc: Service, cast: Cast, tmp_path: Path) -> None:
    svc.clock = Clock()
    home = svc.home.path
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    bot = unlock(svc, cast.bot)
    for i in range(3):
        svc.backups.encrypt(io.BytesIO(b"x" * 100), tmp_path / f"{i}.cbk", by=bot, label=f"b{i}")
    # a holder who is not a custodian: refused, nothing changed
    r = _migrate(home, cast.alice, [cast.bob, cast.oscar], next_code(svc, cast.alice),
                 "--to", "quorum", "--holders", "alice,bob,oscar")  # fmt: skip
    assert r.returncode != 0
    assert b"oscar is not an active custodian" in r.stderr, r.stderr
    assert svc.keys.get("backups").backend == "local"
    r = _migrate(home, cast.alice, [cast.bob, carol], next_code(svc, cast.alice),
                 "--to", "quorum", "--holders", "alice,bob,carol", "--quorum", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "migrate KEK backups from local to quorum" in out
    assert "v2 is a quorum version (2 of 3: alice, bob, carol)" in out
    assert "local      v1   active              0 DEK(s)" in out
    assert "quorum     v2   active              3 DEK(s)" in out
    assert "retire them" in out and "kek destroy backups VERSION" in out
    # a quorum KEK does not migrate away: said before any passphrase of a holder
    r = _as(home, cast.alice, "kek", "migrate", "backups", "--to", "local")
    assert r.returncode == 2 and b"a restore session" in r.stderr, r.stderr
    r = run("--home", str(home), "kek", "list", "--json")
    assert r.returncode == 0 and b'"backend": "quorum"' in r.stdout
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_init_makes_quorum_the_default_and_says_what_comes_next(tmp_path: Path) -> None:
    h = tmp_path / "h"
    r = run("--home", str(h), "init", "--keyring", "home-file")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "no KEK yet: KEK backups will be a quorum KEK (the default custody)" in out
    assert "kek create backups --custody quorum --holders NAME,NAME,NAME --quorum 2" in out
    r = run("--home", str(h), "kek", "list", "--json")
    assert r.returncode == 0 and r.stdout.strip() == b"[]"
    r = run("--home", str(tmp_path / "s"), "init", "--keyring", "home-file", "--custody", "single")
    assert r.returncode == 0 and b"single custody" in r.stdout, r.stderr
