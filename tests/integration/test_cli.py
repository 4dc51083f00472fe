"""The `custodian` command as scripts and cron use it: no terminal, no stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "custodian")


def run(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [EXE, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def cli_home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    r = run("--home", str(h), "init", "--keyring", "home-file", "--suite", "x25519")
    assert r.returncode == 0, r.stderr
    assert b"fingerprint" in r.stdout
    return h


def test_help_and_version_need_no_home() -> None:
    r = run("--help")
    assert r.returncode == 0 and b"backup" in r.stdout
    assert run("--version").stdout.startswith(b"custodian ")


def test_encrypt_from_a_pipe_list_and_json(cli_home: Path, tmp_path: Path) -> None:
    dst = tmp_path / "nightly.cbk"
    r = run(
        "--home",
        str(cli_home),
        "backup",
        "encrypt",
        "-",
        str(dst),
        "--label",
        "nightly",
        "--json",
        stdin=b"pg_dump output\n" * 1000,
    )
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["label"] == "nightly" and rec["size"] == 15000 and rec["kek_version"] == 1
    assert dst.read_bytes()[:8] == b"CUSTODBK"
    assert r.stderr == b""  # no progress noise without a terminal
    r = run("--home", str(cli_home), "backup", "list", "--json")
    assert [b["id"] for b in json.loads(r.stdout)] == [rec["id"]]
    r = run("--home", str(cli_home), "kek", "list", "--json")
    (kek,) = json.loads(r.stdout)
    assert kek["versions"][0]["deks"] == 1


def test_home_from_the_environment(cli_home: Path) -> None:
    r = run("kek", "list", env={"CUSTODIAN_HOME": str(cli_home)})
    assert r.returncode == 0 and b"backups" in r.stdout


def test_failures_are_one_line_with_a_status(cli_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    dst = tmp_path / "exists.cbk"
    dst.write_bytes(b"keep")
    r = run("--home", str(cli_home), "backup", "encrypt", str(src), str(dst))
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1 and b"--force" in r.stderr and b"Traceback" not in r.stderr
    assert dst.read_bytes() == b"keep"

    r = run("--home", str(tmp_path / "missing"), "kek", "list")
    assert r.returncode == 3 and b"init" in r.stderr and r.stderr.count(b"\n") == 1

    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    r = run("--home", str(cli_home), "backup", "import", str(junk))
    assert r.returncode == 6 and b"not a custodian backup container" in r.stderr

    os.chmod(cli_home, 0o750)
    r = run("--home", str(cli_home), "kek", "list")
    assert r.returncode == 3 and b"chmod" in r.stderr


def test_import_registers_a_container(cli_home: Path, tmp_path: Path) -> None:
    dst = tmp_path / "a.cbk"
    run("--home", str(cli_home), "backup", "encrypt", "-", str(dst), stdin=b"abc")
    r = run("--home", str(cli_home), "backup", "import", str(dst))
    assert r.returncode == 2 and b"already in the catalog" in r.stderr


def test_init_without_a_usable_keyring_says_how_to_configure_one(tmp_path: Path) -> None:
    r = run(
        "--home",
        str(tmp_path / "h"),
        "init",
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    assert r.returncode == 4
    assert b"PYTHON_KEYRING_BACKEND" in r.stderr and b"keyringrc.cfg" in r.stderr
    assert not (tmp_path / "h").exists()


def test_demo_refuses_without_home_and_builds_with_one(tmp_path: Path) -> None:
    r = run("demo", env={"CUSTODIAN_HOME": ""})
    assert r.returncode == 2
    r = run("--home", str(tmp_path / "d"), "demo", "--backups", "30")
    assert r.returncode == 0, r.stderr
    r = run("--home", str(tmp_path / "d"), "kek", "list", "--json")
    (kek,) = json.loads(r.stdout)
    assert [v["deks"] for v in kek["versions"]] == [18, 12]


def test_kek_list_does_not_import_textual(cli_home: Path) -> None:
    code = (
        "import sys; from custodian.cli import main\n"
        f"main(['--home', {str(cli_home)!r}, 'kek', 'list'])\n"
        "assert 'textual' not in sys.modules, 'textual imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
