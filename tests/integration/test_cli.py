"""The `custodian` command as scripts and cron use it: no terminal, no stdin."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from custodian.service import Service
from tests.conftest import Cast, Enrolled, next_code

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
    r = run(
        "--home",
        str(h),
        "init",
        "--keyring",
        "home-file",
        "--suite",
        "x25519",
        "--custody",
        "single",
    )
    assert r.returncode == 0, r.stderr
    assert b"fingerprint" in r.stdout
    r = run("--home", str(h), "people", "enrol", "bot", "--role", "operator", "--service")
    assert r.returncode == 0, r.stderr
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
        "--as",
        "bot",
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
    r = run("--home", str(cli_home), "backup", "encrypt", str(src), str(dst), "--as", "bot")
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1 and b"--force" in r.stderr and b"Traceback" not in r.stderr
    assert dst.read_bytes() == b"keep"

    r = run("--home", str(tmp_path / "missing"), "kek", "list")
    assert r.returncode == 3 and b"init" in r.stderr and r.stderr.count(b"\n") == 1

    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    r = run("--home", str(cli_home), "backup", "import", str(junk), "--as", "bot")
    assert r.returncode == 6 and b"not a custodian backup container" in r.stderr

    os.chmod(cli_home, 0o750)
    r = run("--home", str(cli_home), "kek", "list")
    assert r.returncode == 3 and b"chmod" in r.stderr


def test_import_registers_a_container(cli_home: Path, tmp_path: Path) -> None:
    dst = tmp_path / "a.cbk"
    run("--home", str(cli_home), "backup", "encrypt", "-", str(dst), "--as", "bot", stdin=b"abc")
    r = run("--home", str(cli_home), "backup", "import", str(dst), "--as", "bot")
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
    quorum, legacy = json.loads(r.stdout)
    assert (quorum["name"], quorum["backend"]) == ("backups", "quorum")
    assert [v["deks"] for v in quorum["versions"]] == [21]
    assert (legacy["name"], legacy["backend"]) == ("legacy", "local")
    assert [v["deks"] for v in legacy["versions"]] == [5, 4]


def test_kek_list_does_not_import_textual(cli_home: Path) -> None:
    code = (
        "import sys; from custodian.cli import main\n"
        f"main(['--home', {str(cli_home)!r}, 'kek', 'list'])\n"
        "assert 'textual' not in sys.modules, 'textual imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_python_m_custodian_is_the_console_script(tmp_path: Path) -> None:
    """``python -m custodian`` answers as ``custodian`` does, and a subcommand imports no UI."""

    def python_m(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=60
        )

    helped = python_m("-m", "custodian", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout == run("--help").stdout and b"backup" in helped.stdout
    home = tmp_path / "fresh"
    r = run(
        "--home",
        str(home),
        "init",
        "--keyring",
        "home-file",
        "--suite",
        "x25519",
        "--custody",
        "single",
    )
    assert r.returncode == 0, r.stderr
    script = run("--home", str(home), "kek", "list")
    module = python_m("-X", "importtime", "-m", "custodian", "--home", str(home), "kek", "list")
    assert script.returncode == 0 and module.returncode == 0, module.stderr
    assert module.stdout == script.stdout and b"backups" in module.stdout
    imported = {
        line.rsplit(b"|", 1)[-1].strip().split(b".")[0]
        for line in module.stderr.splitlines()
        if line.startswith(b"import time:")
    }
    assert b"custodian" in imported  # the trace is there to read
    assert not imported & {b"textual", b"rich", b"screens"}


def test_python_m_custodian_opens_the_tui_through_its_entry_point(
    cli_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.metadata

    import screens.entry
    from custodian import __main__ as entry

    assert entry.load_tui() is screens.entry.open_tui  # registered in pyproject.toml
    opened: list[Path] = []
    monkeypatch.setattr(screens.entry, "open_tui", lambda svc: opened.append(svc.home.path))
    assert entry.main(["--home", str(cli_home)]) == 0  # no command: the TUI
    assert entry.main(["--home", str(cli_home), "tui"]) == 0
    assert opened == [cli_home.resolve()] * 2
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: ())
    assert entry.main(["--home", str(cli_home), "tui"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("custodian: error: no TUI is installed")


def _enrol_person(
    home: Path, name: str, role: str, passphrase: bytes, as_: tuple[str, bytes] | None = None
) -> str:
    """Enrol through the CLI as a script would: passphrases and the code on pipes.

    Reads the secret the CLI shows, computes the current code from it like an
    authenticator app, and returns the base32 secret.
    """
    import base64
    import time

    from custodian import people as P
    from custodian.secret import SecretBytes

    pw_r, pw_w = os.pipe()
    code_r, code_w = os.pipe()
    os.write(pw_w, passphrase + b"\n")
    os.close(pw_w)
    args = [
        EXE,
        "--home",
        str(home),
        "people",
        "enrol",
        name,
        "--role",
        role,
        "--new-passphrase-fd",
        str(pw_r),
        "--totp-fd",
        str(code_r),
    ]
    fds = [pw_r, code_r]
    if as_ is not None:
        as_r, as_w = os.pipe()
        os.write(as_w, as_[1] + b"\n")
        os.close(as_w)
        args += ["--as", as_[0], "--passphrase-fd", str(as_r)]
        fds.append(as_r)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, pass_fds=fds
    )
    for fd in fds:
        os.close(fd)
    assert proc.stdout is not None
    secret = ""
    deadline = time.monotonic() + 120  # real Argon2id unlocks: slow on a loaded machine
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.strip().startswith("secret:"):
            secret = line.split(":", 1)[1].strip()
            break
        assert line, proc.stderr.read() if proc.stderr else ""
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    os.write(code_w, P.hotp(SecretBytes(raw), P.current_step()).encode() + b"\n")
    os.close(code_w)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"enrolled " + name.encode() in out
    return secret


def test_enrolment_sign_in_failures_and_verified_audit(cli_home: Path, tmp_path: Path) -> None:
    _enrol_person(cli_home, "alice", "custodian", b"alice passphrase for the cli tests")
    # once a custodian exists, enrolment needs one of them
    r = run("--home", str(cli_home), "people", "enrol", "eve", "--role", "custodian", "--service")
    assert r.returncode != 0
    _enrol_person(
        cli_home,
        "bob",
        "custodian",
        b"bob passphrase for the cli tests",
        as_=("alice", b"alice passphrase for the cli tests"),
    )
    r = run("--home", str(cli_home), "people", "list", "--json")
    assert {p["name"] for p in json.loads(r.stdout)} == {"alice", "bob", "bot"}

    # a wrong passphrase is refused, said in one line, and logged as refused
    rfd, wfd = os.pipe()
    os.write(wfd, b"not alice's\n")
    os.close(wfd)
    r = subprocess.run(
        [
            EXE,
            "--home",
            str(cli_home),
            "audit",
            "checkpoint",
            "-o",
            str(tmp_path / "cp.json"),
            "--as",
            "alice",
            "--passphrase-fd",
            str(rfd),
        ],
        capture_output=True,
        pass_fds=[rfd],
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    os.close(rfd)
    assert r.returncode == 7 and b"wrong passphrase" in r.stderr
    assert b"alice passphrase for the cli tests" not in r.stderr
    r = run("--home", str(cli_home), "audit", "show", "--outcome", "refused", "--json")
    refused = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["action"] for e in refused][-1] == "person.unlock"
    assert "passphrase" not in json.dumps(refused[-1]["details"]).replace("wrong passphrase", "")

    # a checkpoint by alice, then verify against it
    rfd, wfd = os.pipe()
    os.write(wfd, b"alice passphrase for the cli tests\n")
    os.close(wfd)
    r = subprocess.run(
        [
            EXE,
            "--home",
            str(cli_home),
            "audit",
            "checkpoint",
            "-o",
            str(tmp_path / "cp.json"),
            "--as",
            "alice",
            "--passphrase-fd",
            str(rfd),
        ],
        capture_output=True,
        pass_fds=[rfd],
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    os.close(rfd)
    assert r.returncode == 0, r.stderr
    r = run("--home", str(cli_home), "audit", "verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert r.returncode == 0, r.stdout
    assert b"checkpoint at entry" in r.stdout

    # cut the newest entries off: verify with the checkpoint says so and exits non-zero
    seg = sorted((cli_home / "audit").glob("segment-*.jsonl"))[-1]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:-3]))
    r = run("--home", str(cli_home), "audit", "verify")
    assert r.returncode == 0  # without a checkpoint a cut tail cannot be seen...
    r = run("--home", str(cli_home), "audit", "verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert r.returncode == 8 and b"cut" in r.stdout  # ...with one it is


def test_demo_codes_only_on_a_demo_home(cli_home: Path) -> None:
    r = run("--home", str(cli_home), "demo", "codes")
    assert r.returncode == 7 and b"demo home" in r.stderr


# ---------------------------------------------------------------- restore and approvals


def _as(
    home: Path, who: Enrolled, *args: str, code: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``custodian ARGS --as WHO`` with the passphrase (and a TOTP code) on pipes."""
    fds: list[int] = []
    extra: list[str] = ["--as", who.name]
    if who.passphrase:
        r, w = os.pipe()
        os.write(w, who.passphrase.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += ["--passphrase-fd", str(r)]
    if code is not None:
        r, w = os.pipe()
        os.write(w, code.encode() + b"\n")
        os.close(w)
        fds.append(r)
        extra += ["--totp-fd", str(r)]
    try:
        return subprocess.run(
            [EXE, "--home", str(home), *args, *extra],
            capture_output=True,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    finally:
        for fd in fds:
            os.close(fd)


def test_restore_request_approve_run_through_the_cli(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    home = svc.home.path
    bot = svc.auth.unlock("bot", None)
    good = svc.backups.encrypt(
        io.BytesIO(b"rows\n" * 5000), tmp_path / "g.cbk", by=bot, label="db dump"
    )
    bad = svc.backups.encrypt(
        io.BytesIO(os.urandom(100_000)), tmp_path / "b.cbk", by=bot, label="bad"
    )
    target = tmp_path / "restore"
    target.mkdir()

    r = _as(
        home,
        cast.oscar,
        "restore",
        "request",
        good.id[:8],
        bad.id,
        "--reason",
        "INC-7 [/b]",
        "--target",
        str(target),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    req = json.loads(r.stdout)
    rid = req["id"]
    assert req["state"] == "open" and [b["file"] for b in req["backups"]] == ["db_dump", "bad"]

    # an argument is never a code: approve has no option for one
    r = run("--home", str(home), "approve", rid, "--as", "alice", "123456")
    assert r.returncode == 2
    # without a terminal and without --totp-fd: refused, nothing decided
    r = _as(home, cast.alice, "approve", rid[:8])
    assert r.returncode == 2 and b"--totp-fd" in r.stderr
    # the requester, and an operator
    r = _as(home, cast.oscar, "approve", rid, code="000000")
    assert r.returncode == 7 and b"custodian role" in r.stderr

    code = next_code(svc, cast.alice)
    r = _as(home, cast.alice, "approve", rid[:8], code=code)
    assert r.returncode == 0, r.stderr
    assert b"1 of 2 approvals" in r.stdout
    r = _as(home, cast.alice, "approve", rid, code=code)  # same person, same code
    assert r.returncode == 2 and b"already approved" in r.stderr
    r = _as(home, cast.bob, "approve", rid, code=next_code(svc, cast.bob))
    assert r.returncode == 0, r.stderr
    assert b"session" in r.stdout and b"restore run" in r.stdout

    r = run("--home", str(home), "restore", "list", "--state", "approved", "--json")
    assert [x["id"] for x in json.loads(r.stdout)] == [rid]
    r = run("--home", str(home), "restore", "show", rid[:8])
    assert r.returncode == 0 and b"approved by alice" in r.stdout and b"'INC-7 [/b]'" in r.stdout

    p = Path(bad.location)
    raw = bytearray(p.read_bytes())
    raw[-100] ^= 1
    p.write_bytes(raw)
    r = _as(home, cast.alice, "restore", "run", rid)
    assert r.returncode == 7 and b"only oscar" in r.stderr
    r = _as(home, cast.oscar, "restore", "run", rid[:8])
    assert r.returncode == 9, r.stderr
    out = r.stdout.decode()
    assert f"ok      {good.id}" in out and f"FAILED  {bad.id}" in out
    assert "1 restored, 1 failed" in out.splitlines()[-1]
    assert r.stderr == b""  # no progress bar without a terminal
    assert (target / "db_dump").read_bytes() == b"rows\n" * 5000
    assert sorted(x.name for x in target.iterdir()) == ["db_dump"]

    r = _as(home, cast.oscar, "restore", "run", rid)
    assert r.returncode == 7 and b"already ran" in r.stderr
    r = run("--home", str(home), "restore", "show", rid, "--json")
    shown = json.loads(r.stdout)
    assert shown["state"] == "done" and [x["outcome"] for x in shown["results"]] == ["ok", "failed"]
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout
    log = "".join(x.read_text() for x in (home / "audit").glob("*.jsonl"))
    assert f'"{code}"' not in log and f"={code}" not in log  # codes are never logged
    assert cast.alice.passphrase not in log


def test_deny_and_cancel_through_the_cli(svc: Service, cast: Cast, tmp_path: Path) -> None:
    home = svc.home.path
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=svc.auth.unlock("bot", None))
    r = _as(
        home,
        cast.oscar,
        "restore",
        "request",
        b.id,
        "--reason",
        "why",
        "--target",
        str(tmp_path / "nope"),
    )
    assert r.returncode == 2 and b"not an existing directory" in r.stderr
    r = _as(
        home, cast.audrey, "restore", "request", b.id, "--reason", "why", "--target", str(tmp_path)
    )
    assert r.returncode == 7
    r1 = _as(
        home,
        cast.oscar,
        "restore",
        "request",
        b.id,
        "--reason",
        "one",
        "--target",
        str(tmp_path),
        "--json",
    )
    r2 = _as(
        home,
        cast.oscar,
        "restore",
        "request",
        b.id,
        "--reason",
        "two",
        "--target",
        str(tmp_path),
        "--json",
    )
    id1, id2 = json.loads(r1.stdout)["id"], json.loads(r2.stdout)["id"]

    r = run("--home", str(home), "deny", id1, "--as", "bob")
    assert r.returncode == 2 and b"--reason" in r.stderr
    r = _as(home, cast.bob, "deny", id1, "--reason", "no ticket", code=next_code(svc, cast.bob))
    assert r.returncode == 0 and b"denied; this is final" in r.stdout
    r = _as(home, cast.alice, "approve", id1, code=next_code(svc, cast.alice))
    assert r.returncode == 2 and b"final" in r.stderr

    r = _as(home, cast.oscar, "restore", "cancel", id2)
    assert r.returncode == 0 and b"cancelled" in r.stdout
    r = _as(home, cast.oscar, "restore", "cancel", id2)
    assert r.returncode == 2 and b"already cancelled" in r.stderr
    r = run("--home", str(home), "restore", "list")
    assert r.returncode == 0 and b"denied" in r.stdout and b"cancelled" in r.stdout
    r = run("--home", str(home), "audit", "show", "--action", "request.", "--json")
    acts = [(e["action"], e["outcome"]) for e in map(json.loads, r.stdout.splitlines())]
    assert ("request.deny", "ok") in acts and ("request.approve", "refused") in acts
    assert ("request.cancel", "ok") in acts and ("request.cancel", "refused") in acts
    assert run("--home", str(home), "audit", "verify").returncode == 0


def _next_step_code(svc: Service, who: Enrolled) -> str:
    """``who``'s next unused code in real time, waiting (under 30 s) for its step."""
    import time

    from custodian import people as P

    while svc.catalog.totp_last_step(who.name) >= P.current_step() + 1:
        time.sleep(0.5)
    return next_code(svc, who)


def test_kek_lifecycle_through_the_cli(svc: Service, cast: Cast, tmp_path: Path) -> None:
    """create, rotate (one DEK fails, exit 10), rewrap again, retire, destroy with two
    approvals, jobs, list: each with codes on pipes, no terminal."""
    from tests.conftest import enrol, unlock
    from tests.unit.test_rotation import fill, fingerprints

    home = svc.home.path
    alice = unlock(svc, cast.alice)
    carol, dave, erin = (enrol(svc, n, ("custodian",), alice) for n in ("carol", "dave", "erin"))
    before = fill(svc, 1500)
    bad = sorted(before)[700]
    (good_wrap,) = svc.catalog.db.execute(
        "SELECT wrapped_dek FROM backups WHERE id=?", (bad,)
    ).fetchone()
    svc.catalog.db.execute("UPDATE backups SET wrapped_dek=? WHERE id=?", (bytes(80), bad))

    r = _as(
        home,
        cast.alice,
        "kek",
        "create",
        "archive",
        "--custody",
        "single",
        "--suite",
        "p256",
        "--purpose",
        "long-term [/b]",
        code=next_code(svc, cast.alice),
    )
    assert r.returncode == 0, r.stderr
    assert b"created KEK archive v1 on local (p256)" in r.stdout and b"fingerprint" in r.stdout
    r = _as(home, cast.oscar, "kek", "create", "mine", "--custody", "single", code="123456")
    assert r.returncode == 7 and b"custodian role" in r.stderr
    # a local KEK is a quorum KEK unless asked otherwise: without holders, a usage error
    r = _as(home, cast.alice, "kek", "create", "mine", code="123456")
    assert r.returncode == 2 and b"quorum KEK by default" in r.stderr

    r = _as(
        home, cast.bob, "kek", "rotate", "backups", "--batch", "200", code=next_code(svc, cast.bob)
    )
    out = r.stdout.decode()
    assert r.returncode == 10, (out, r.stderr)
    assert "v1 -> v2" in out and "DEKs to rewrap: 1,500" in out
    assert f"FAILED  {bad}  (v1)" in out and "does not open" in out
    assert "1,499 rewrapped, 1 failed" in out and "1 DEK(s) left under older versions" in out
    assert r.stderr == b""  # no progress bar without a terminal

    r = _as(home, carol, "kek", "retire", "backups", "1", code=next_code(svc, carol))
    assert r.returncode == 2 and b"still wraps 1 DEK" in r.stderr
    # the wrap is repaired (say, from the container header's copy); rewrap needs no code
    svc.catalog.db.execute("UPDATE backups SET wrapped_dek=? WHERE id=?", (good_wrap, bad))
    r = _as(home, carol, "kek", "rewrap", "backups")
    assert r.returncode == 0, r.stderr
    assert b"1 rewrapped, 0 failed" in r.stdout
    r = _as(home, carol, "kek", "rewrap", "backups")
    assert r.returncode == 0 and b"nothing to rewrap" in r.stdout
    r = _as(home, carol, "kek", "retire", "backups", "1", code=next_code(svc, carol))
    assert r.returncode == 0, r.stderr
    assert b"v1 retired" in r.stdout

    # a shorter waiting period loosens the policy: editing the file is refused, the
    # policy command opens a request, and two other custodians approve it
    cfg = home / "custodian.toml"
    text = cfg.read_text()
    cfg.write_text(text.replace("retirement_wait_days = 7", "retirement_wait_days = 0"))
    r = _as(home, cast.alice, "kek", "destroy", "backups", "1", "--reason", "Q4 clean-up")
    assert r.returncode == 8 and b"retirement_wait_days = 0, but the signed" in r.stderr
    cfg.write_text(text)
    r = _as(home, cast.alice, "policy", "set", "retirement_wait_days", "0", "--reason", "test")
    assert r.returncode == 0 and b"loosens the policy" in r.stdout, r.stderr
    pid = r.stdout.split()[1].decode()
    for who in (dave, erin):
        r = _as(home, who, "approve", pid[:8], code=next_code(svc, who))
        assert r.returncode == 0, r.stderr
    assert b"policy.retirement_wait_days is now 0" in r.stdout
    r = run("--home", str(home), "policy", "show", "--json")
    assert json.loads(r.stdout)["retirement_wait_days"]["value"] == 0
    r = _as(home, cast.alice, "kek", "destroy", "backups", "1")
    assert r.returncode == 2  # --reason is required
    r = _as(home, cast.alice, "kek", "destroy", "backups", "1", "--reason", "Q4 clean-up")
    assert r.returncode == 0, r.stderr
    rid = r.stdout.split()[1].decode()
    r = run("--home", str(home), "restore", "show", rid)
    assert b"destroys  KEK backups v1" in r.stdout
    # one code per step and person (real time here): dave and erin wait for the next step
    r = _as(home, dave, "approve", rid[:8], code=_next_step_code(svc, dave))
    assert r.returncode == 0 and b"1 of 2 approvals" in r.stdout
    r = _as(home, erin, "approve", rid[:8], code=_next_step_code(svc, erin))
    assert r.returncode == 0 and b"is destroyed" in r.stdout, r.stderr

    r = run("--home", str(home), "kek", "list", "--json")
    keks = {k["name"]: k for k in json.loads(r.stdout)}
    assert [(v["version"], v["state"], v["deks"]) for v in keks["backups"]["versions"]] == [
        (1, "destroyed", 0),
        (2, "active", 1500),
    ]
    assert keks["archive"]["purpose"] == "long-term [/b]"
    r = run("--home", str(home), "kek", "jobs", "--json")
    jobs = json.loads(r.stdout)
    assert [(j["state"], j["rewrapped"], j["failed"]) for j in jobs] == [
        ("done", 1499, 1),
        ("done", 1, 0),
    ]
    assert jobs[0]["failures"][0]["backup"] == bad
    r = run("--home", str(home), "kek", "jobs")
    assert r.returncode == 0 and f"failed {bad} (v1)".encode() in r.stdout
    assert fingerprints(svc) == before
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout
