"""aws-kms through the ``custodian`` command: kek create with --kms-region and
--kms-endpoint-url, rotate and rewrap, and a restore run, the decrypt credential
read from --kms-credentials-fd for that command only."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from custodian.service import Service
from tests.conftest import Cast, Enrolled, enrol, next_code, unlock
from tests.integration.kms.conftest import REGION, MotoServer
from tests.integration.test_cli import EXE, run

CREDENTIAL = json.dumps(
    {
        "Credentials": {
            "AccessKeyId": "ASIATESTDECRYPT",
            "SecretAccessKey": "decrypt-role-secret-never-in-a-file",
            "SessionToken": "decrypt-role-session-token",
        }
    }
).encode()


def as_(
    home: Path, who: Enrolled, *args: str, code: str | None = None, creds: bool = False
) -> subprocess.CompletedProcess[bytes]:
    fds: list[int] = []
    extra = ["--as", who.name]

    def pipe(data: bytes, flag: str) -> None:
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        fds.append(r)
        extra.extend([flag, str(r)])

    if who.passphrase:
        pipe(who.passphrase.encode() + b"\n", "--passphrase-fd")
    if code is not None:
        pipe(code.encode() + b"\n", "--totp-fd")
    if creds:
        pipe(CREDENTIAL, "--kms-credentials-fd")
    try:
        return subprocess.run(
            [EXE, "--home", str(home), *args, *extra],
            capture_output=True,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            timeout=90,
        )
    finally:
        for fd in fds:
            os.close(fd)


def test_kms_kek_from_create_to_restore_through_the_cli(
    svc: Service, cast: Cast, moto: MotoServer, tmp_path: Path
) -> None:
    home = svc.home.path
    # codes are real time here: each person has two steps (enrolment took the first)
    alice = unlock(svc, cast.alice)
    approvers = [enrol(svc, n, ("custodian",), alice) for n in ("carol", "dave")]
    r = as_(home, cast.alice, "kek", "create", "nope", "--kms-region", REGION,
            code=next_code(svc, cast.alice))  # fmt: skip
    assert r.returncode == 2 and b"--backend aws-kms" in r.stderr
    r = as_(
        home, cast.alice, "kek", "create", "offsite", "--backend", "aws-kms",
        "--kms-region", REGION, "--kms-endpoint-url", moto.url, code=next_code(svc, cast.alice),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"created KEK offsite v1 on aws-kms (aws-symmetric-default)" in r.stderr + r.stdout
    text = (home / "custodian.toml").read_text()
    assert "[backends.aws-kms]" in text and moto.url in text and "secret" not in text
    src = tmp_path / "db.sql"
    src.write_bytes(b"rows\n" * 4000)
    r = run("--home", str(home), "backup", "encrypt", str(src), str(tmp_path / "db.cbk"),
            "--kek", "offsite", "--json", "--as", "bot")  # fmt: skip
    assert r.returncode == 0, r.stderr
    bid = json.loads(r.stdout)["id"]
    # rotate: the new version is made, the rewrap needs the session's credential
    r = as_(home, cast.bob, "kek", "rotate", "offsite", code=next_code(svc, cast.bob))
    assert r.returncode == 5 and b"decrypt role's credential" in r.stderr
    r = as_(home, cast.bob, "kek", "rewrap", "offsite", creds=True)
    assert r.returncode == 0, r.stderr
    r = run("--home", str(home), "kek", "list", "--json")
    (k,) = [k for k in json.loads(r.stdout) if k["name"] == "offsite"]
    assert k["backend"] == "aws-kms" and [v["deks"] for v in k["versions"]] == [0, 1]
    # a restore, approved by two custodians, run with the credential
    target = tmp_path / "restore"
    target.mkdir()
    r = as_(home, cast.oscar, "restore", "request", bid, "--reason", "INC-9", "--target",
            str(target), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = json.loads(r.stdout)["id"]
    for who in approvers:
        r = as_(home, who, "approve", rid, code=next_code(svc, who))
        assert r.returncode == 0, r.stderr
    r = as_(home, cast.oscar, "restore", "run", rid[:8])
    assert r.returncode != 0 and b"decrypt role's credential" in r.stdout + r.stderr
    r = as_(home, cast.oscar, "restore", "run", rid[:8], creds=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.read_bytes() for p in target.iterdir()] == [b"rows\n" * 4000]
    for out in (r.stdout, r.stderr):
        assert b"decrypt-role-secret" not in out
    log = b"".join(p.read_bytes() for p in (home / "audit").iterdir() if p.is_file())
    assert b"decrypt-role-secret" not in log and b"decrypt-role-session-token" not in log
