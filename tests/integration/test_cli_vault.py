"""The vault backend through the `custodian` command, against a real OpenBao on
127.0.0.1: `kek create --backend vault --vault-address ...` (configured, health-checked,
created), an operator's backup with the sealed wrap credential, `backend check`, a
rotation with the custody credential on a descriptor, a restore session run with it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock
from tests.integration import openbao
from tests.integration.test_cli import EXE, run


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[openbao.Server]:
    s = openbao.dev(tmp_path / "bao")
    try:
        yield s
    finally:
        s.stop()


def act(
    home: Path, who: Enrolled, *args: str, code: str | None = None, **secrets: str
) -> subprocess.CompletedProcess[bytes]:
    """``custodian ARGS --as WHO`` with the passphrase, a code and each of ``secrets``
    (option name -> value) on its own pipe."""
    fds: list[int] = []
    extra = ["--as", who.name]
    values = {"--passphrase-fd": who.passphrase, "--totp-fd": code or ""}
    values.update({f"--{k.replace('_', '-')}": v for k, v in secrets.items()})
    for opt, v in values.items():
        if not v:
            continue
        r, w = os.pipe()
        os.write(w, v.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += [opt, str(r)]
    try:
        return subprocess.run(
            [EXE, "--home", str(home), *args, *extra],
            capture_output=True, pass_fds=fds, stdin=subprocess.DEVNULL, timeout=90,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)


def test_vault_kek_through_the_cli(
    svc: Service, cast: Cast, tmp_path: Path, bao: openbao.Server
) -> None:
    svc.clock = Clock()
    home = svc.home.path
    prefix = f"custodian-{svc.ctx.config.home_id[:8]}-"
    bao.setup_transit(prefix)
    wrap, custody = bao.token("custodian-wrap"), bao.token("custodian-custody")

    # a root token as the wrap credential: refused before anything is created
    # (refused before the code is read: each attempt offers the same unused code)
    r = act(home, cast.alice, "kek", "create", "vk", "--backend", "vault",
            "--vault-address", bao.address, code=next_code(svc, cast.alice),
            vault_token_fd=custody, vault_wrap_token_fd=bao.root)  # fmt: skip
    assert r.returncode != 0 and b"can also" in r.stderr, r.stderr
    assert b"created KEK" not in r.stdout

    # a custody token that cannot rewrap: the health check refuses before creation
    r = act(home, cast.alice, "kek", "create", "vk", "--backend", "vault",
            "--vault-address", bao.address, code=next_code(svc, cast.alice),
            vault_token_fd=wrap)  # fmt: skip
    assert r.returncode != 0 and b"not ready" in r.stderr, r.stderr

    r = act(home, cast.alice, "kek", "create", "vk", "--backend", "vault",
            "--vault-address", bao.address, "--purpose", "vault-held backups",
            code=next_code(svc, cast.alice), vault_token_fd=custody,
            vault_wrap_token_fd=wrap)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"created KEK vk v1 on vault" in r.stdout
    assert custody.encode() not in r.stdout + r.stderr
    assert custody not in (home / "custodian.toml").read_text()

    r = run("--home", str(home), "backend", "check", "vault")
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"vault: ok" in r.stdout and b"key vk (wrap)" in r.stdout

    src = tmp_path / "db.dump"
    src.write_bytes(b"rows\n" * 5000)
    dst = tmp_path / "db.cbk"
    r = run("--home", str(home), "backup", "encrypt", str(src), str(dst), "--kek", "vk",
            "--json", "--as", "bot")  # fmt: skip
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]

    # one code per person here: the subprocesses follow the real clock (steps -1..+1)
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    r = act(home, carol, "kek", "rotate", "vk", code=next_code(svc, carol),
            vault_token_fd=custody)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"1 rewrapped" in r.stdout + r.stderr

    dave = enrol(svc, "dave", ("custodian",), unlock(svc, cast.alice))
    target = tmp_path / "restore"
    target.mkdir()
    r = act(home, cast.oscar, "restore", "request", bid, "--reason", "INC-1", "--target",
            str(target), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = json.loads(r.stdout)["id"]
    for who in (cast.bob, dave):
        r = act(home, who, "approve", rid[:8], code=next_code(svc, who))
        assert r.returncode == 0, r.stderr
    r = act(home, cast.oscar, "restore", "run", rid[:8])
    assert r.returncode != 0 and b"custody credential" in r.stdout + r.stderr
    r = act(home, cast.oscar, "restore", "run", rid[:8], backend_credential_fd=custody)
    assert r.returncode == 0, r.stdout + r.stderr
    (out,) = target.iterdir()
    assert out.read_bytes() == src.read_bytes()

    bao.stop()
    r = run("--home", str(home), "backend", "check", "--json")
    assert r.returncode == 1
    (v,) = [h for h in json.loads(r.stdout) if h["backend"] == "vault"]
    assert not v["ok"] and "cannot be reached" in v["detail"]
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
