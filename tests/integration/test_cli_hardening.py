"""Bad text and bad files through the real command (issue 12).

Untrusted text (labels, reasons, names from the catalog or the log, error text)
reaches the terminal escaped: an ANSI sequence does not run, a newline does not
forge a row. New labels are capped and checked. A binary custodian.toml, a
label that is not UTF-8, an empty passphrase on a file descriptor, a damaged
catalog page and a container with an empty final chunk each end in one line on
standard error with the exit status of README's table.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from custodian import container
from custodian.errors import InputError
from custodian.secret import new_dek
from custodian.service import Service
from custodian.text import MAX_LABEL, printable
from tests.conftest import Cast, unlock
from tests.integration.test_cli import EXE, _as, cli_home, run

__all__ = ["cli_home"]  # the fixture, used here

EVIL = (
    "db\x1b[2J\x1b]0;owned\x07\n"
    "ffffffff-0000-0000-0000-000000000000  1970-01-01  forged\u202eexe.sh"
)


def _one_line(r: subprocess.CompletedProcess[bytes], status: int) -> str:
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == status, (r.returncode, err, r.stdout)
    assert err.count("\n") == 1 and err.startswith("custodian: error: "), err
    assert "Traceback" not in err
    return err


def _no_controls(out: bytes) -> None:
    text = out.decode()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text


def test_printable_escapes_what_drives_a_terminal() -> None:
    assert printable("plain label, ünïcode ok") == "plain label, ünïcode ok"
    assert printable("a\x1b[31mb\nc\td\x7f\x9b\u202e\u2066\u2028") == (
        "a\\x1b[31mb\\nc\\td\\x7f\\x9b\\u202e\\u2066\\u2028"
    )
    assert printable("bad \udcff byte") == "bad \\udcff byte"
    assert printable(42) == "42"


def test_labels_are_capped_and_must_be_one_printable_line(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    bot = unlock(svc, cast.bot)
    for label in ("x" * (MAX_LABEL + 1), "x" * 10_000_000, "two\nlines", "esc\x1b[2J", "\udcff"):
        with pytest.raises(InputError) as ei:
            svc.backups.encrypt(io.BytesIO(b"data"), tmp_path / "a.cbk", by=bot, label=label)
        assert ei.value.exit_code == 2 and len(str(ei.value)) < 300
    assert list(tmp_path.glob("*.cbk")) == [] and svc.backups.list() == []
    b = svc.backups.encrypt(io.BytesIO(b"d"), tmp_path / "a.cbk", by=bot, label="x" * MAX_LABEL)
    assert b.label == "x" * MAX_LABEL
    # the default label, from a file name, is made printable instead of refused
    odd = tmp_path / "odd\x1bname"
    odd.write_bytes(b"data")
    assert svc.backups.encrypt(odd, tmp_path / "b.cbk", by=bot).label == "odd\\x1bname"
    with pytest.raises(InputError):
        svc.backups.import_file(Path(b.location), by=bot, label="line\nbreak")


def test_the_cli_refuses_bad_labels_in_one_line(cli_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    for label in (b"x" * (MAX_LABEL + 1), b"\xff\xfe", b"a\x1b[31mred\nforged row"):
        r = subprocess.run(
            [
                EXE,
                "--home",
                str(cli_home),
                "backup",
                "encrypt",
                str(src),
                str(tmp_path / "o"),
                b"--label",
                label,
                "--as",
                "bot",
            ],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        _no_controls(r.stderr)
        _one_line(r, 2)
        assert not (tmp_path / "o").exists()


def test_untrusted_text_from_the_catalog_and_the_log_is_escaped(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    home = svc.home.path
    bot = unlock(svc, cast.bot)
    b = svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "a.cbk", by=bot, label="plain")
    # a catalog written by an older custodian, or edited: the label holds anything
    db = sqlite3.connect(home / "catalog.db")
    db.execute("UPDATE backups SET label=? WHERE id=?", (EVIL, b.id))
    db.commit()
    db.close()
    r = run("--home", str(home), "backup", "list")
    assert r.returncode == 0, r.stderr
    _no_controls(r.stdout)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3, lines  # the heading, one backup, the count: no forged row
    assert "\\x1b[2J" in lines[1] and "\\n" in lines[1] and "\\u202e" in lines[1]

    # names in the log: a refused encrypt names its destination file in the subject
    r = _as(home, cast.alice, "backup", "encrypt", "-", str(tmp_path / EVIL.replace("/", "_")))
    assert r.returncode == 7, r.stderr
    _no_controls(r.stderr)
    r = run("--home", str(home), "audit", "show", "--last", "1")
    _no_controls(r.stdout)
    assert len(r.stdout.decode().splitlines()) == 1 and "\\x1b[2J" in r.stdout.decode()

    # a reason custodians read before they decide
    target = tmp_path / "t"
    target.mkdir()
    r = _as(home, cast.oscar, "restore", "request", b.id, "--reason", EVIL, "--target", str(target))
    assert r.returncode == 0, r.stderr
    for args in (("restore", "list"), ("restore", "show", r.stdout.split()[1].decode())):
        shown = run("--home", str(home), *args)
        assert shown.returncode == 0, shown.stderr
        _no_controls(shown.stdout)

    # error text that quotes a path
    r = run("--home", str(home), "backup", "import", str(tmp_path / EVIL), "--as", "bot")
    _no_controls(r.stderr)
    _one_line(r, 2)


def test_a_binary_configuration_is_one_line(cli_home: Path) -> None:
    (cli_home / "custodian.toml").write_bytes(os.urandom(2048) + b"\xff")
    _one_line(run("--home", str(cli_home), "kek", "list"), 3)


def test_an_empty_passphrase_on_a_file_descriptor_is_one_line(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    r, w = os.pipe()
    os.close(w)  # nothing at all on it
    try:
        p = subprocess.run(
            [
                EXE,
                "--home",
                str(svc.home.path),
                "audit",
                "checkpoint",
                "-o",
                str(tmp_path / "c"),
                "--as",
                "alice",
                "--passphrase-fd",
                str(r),
            ],
            capture_output=True,
            pass_fds=(r,),
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    finally:
        os.close(r)
    assert "is empty" in _one_line(p, 2)
    assert not (tmp_path / "c").exists()


def test_a_damaged_catalog_page_is_one_line(cli_home: Path) -> None:
    db = sqlite3.connect(cli_home / "catalog.db")
    ((page,),) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='keks'").fetchall()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(cli_home / "catalog.db", "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xa5" * size)
    err = _one_line(run("--home", str(cli_home), "kek", "list"), 3)
    assert "damaged" in err or "catalog" in err


def test_backup_import_refuses_an_empty_final_chunk(cli_home: Path, tmp_path: Path) -> None:
    """Format section 4: the full chunks of a plaintext then an empty last chunk is a second
    encoding of the same bytes; made here with the DEK, as only a DEK holder can."""
    dek, bid = new_dek(), uuid.uuid4()
    data = b"y" * (2 * 1024)
    out = io.BytesIO()
    container.encrypt_stream(
        io.BytesIO(data),
        out,
        dek,
        backup_id=bid,
        backend="local",
        kek="backups",
        kek_version=1,
        wrapped_dek=b"w" * 80,
        chunk_size=1024,
    )
    h = container.read_header(io.BytesIO(out.getvalue()))
    aead = AESGCM(container._derive(dek, h.salt, bid, b"payload"))
    chunks = [aead.encrypt(container._nonce(i, False), data[:1024], h.mac) for i in (0, 1)]
    chunks.append(aead.encrypt(container._nonce(2, True), b"", h.mac))
    path = tmp_path / "mutant.cbk"
    path.write_bytes(out.getvalue()[: h.size] + b"".join(chunks))
    r = run("--home", str(cli_home), "backup", "import", str(path), "--as", "bot")
    assert "empty final chunk" in _one_line(r, 6)
    good = tmp_path / "good.cbk"
    good.write_bytes(out.getvalue())
    assert (
        run("--home", str(cli_home), "backup", "import", str(good), "--as", "bot").returncode == 0
    )
