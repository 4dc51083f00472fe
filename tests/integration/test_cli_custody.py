"""Quorum custody through the `custodian` command, with no terminal: the holders present
for `kek create --custody quorum`, an operator's backup and restore request, two holders
approving, the operator running the session (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from custodian.service import Service
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.integration.test_cli import EXE, _as, run


def test_a_quorum_kek_and_a_restore_through_the_cli(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    svc.clock = Clock()
    home = svc.home.path
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    # the holders are present: bob's and carol's passphrases on their own descriptors
    fds = []
    extra = []
    for who in (cast.bob, carol):
        r, w = os.pipe()
        os.write(w, who.passphrase.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += ["--holder-passphrase-fd", f"{who.name}={r}"]
    for who, code in ((cast.alice, None), (None, next_code(svc, cast.alice))):
        r, w = os.pipe()
        os.write(w, (who.passphrase if who else code).encode() + b"\n")  # type: ignore[union-attr]
        os.close(w)
        fds.append(r)
        extra += ["--passphrase-fd" if who else "--totp-fd", str(r)]
    try:
        r = subprocess.run(
            [EXE, "--home", str(home), "kek", "create", "vault", "--custody", "quorum",
             "--holders", "alice,bob,carol", "--quorum", "2", *extra, "--as", "alice"],
            capture_output=True, pass_fds=fds, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)
    assert r.returncode == 0, r.stderr
    assert b"created quorum KEK vault v1 (2 of 3: alice, bob, carol" in r.stdout
    assert b"manifest fingerprint" in r.stdout

    src = tmp_path / "db.dump"
    src.write_bytes(b"orders\n" * 3000)
    dst = tmp_path / "db.cbk"
    r = run("--home", str(home), "backup", "encrypt", str(src), str(dst), "--kek", "vault",
            "--json", "--as", "bot")  # fmt: skip
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    assert dst.read_bytes()[8] == 2  # container format 2

    target = tmp_path / "restore"
    target.mkdir()
    r = _as(home, cast.alice, "restore", "request", bid, "--reason", "mine", "--target",
            str(target))  # fmt: skip
    assert r.returncode == 7 and b"holds a share of vault v1" in r.stderr
    r = _as(home, cast.oscar, "restore", "request", bid, "--reason", "INC-9", "--target",
            str(target), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = json.loads(r.stdout)["id"]
    for who in (carol, cast.bob):
        r = _as(home, who, "approve", rid[:8], code=next_code(svc, who))
        assert r.returncode == 0, r.stderr
    r = _as(home, cast.oscar, "restore", "run", rid[:8])
    assert r.returncode == 0, r.stderr
    (out,) = target.iterdir()
    assert out.read_bytes() == src.read_bytes()
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_quorum_create_needs_its_holders_and_a_terminal_or_descriptors(
    svc: Service, cast: Cast
) -> None:
    home = svc.home.path
    r = _as(home, cast.alice, "kek", "create", "vault", "--custody", "quorum", code="000000")
    assert r.returncode == 2 and b"--holders" in r.stderr
    r = subprocess.run(
        [EXE, "--home", str(home), "kek", "create", "vault", "--custody", "quorum",
         "--holders", "alice,bob,oscar", "--holder-passphrase-fd", "bob"],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
