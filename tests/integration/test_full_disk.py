"""A real full disk under the home during ``backup encrypt`` (issue 12).

The home lives on a 1 MiB tmpfs mounted in a private mount namespace
(``unshare --user --map-root-user --mount``: no privilege needed, nothing
outside sees it, and it goes with the process). The tmpfs is filled but for a
few pages, then the real ``custodian backup encrypt`` runs: with about 8 to 16
pages free, the audit entry still fits and the catalog's commit does not. At
every amount of free space the command ends in one line with its exit status,
and afterwards the log and the catalog agree: every ``ok`` backup.encrypt that
no compensating entry cancels is in the catalog, and nothing else is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "custodian")

SCRIPT = r"""
set -u
C="$1"; OUT="$2"
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring
head -c 100000 /dev/urandom > "$OUT/data"
for FREE in 6 8 10 12 14 16 24; do
  M="$OUT/m$FREE"; mkdir -p "$M" "$OUT/dst$FREE"
  mount -t tmpfs -o size=1m tmpfs "$M" || exit 97
  "$C" --home "$M/home" init --keyring home-file --suite x25519 --custody single \
    >/dev/null || exit 98
  "$C" --home "$M/home" people enrol bot --role operator --service >/dev/null || exit 98
  dd if=/dev/zero of="$M/filler" bs=4096 2>/dev/null
  truncate -s -$((FREE * 4096)) "$M/filler"
  "$C" --home "$M/home" backup encrypt - "$OUT/dst$FREE/a.cbk" --as bot \
      < "$OUT/data" > "$OUT/stdout$FREE" 2> "$OUT/stderr$FREE"
  echo $? > "$OUT/rc$FREE"
  rm "$M/filler"
  "$C" --home "$M/home" audit verify > "$OUT/verify$FREE"; echo $? >> "$OUT/verify$FREE"
  "$C" --home "$M/home" audit show --json > "$OUT/log$FREE"
  "$C" --home "$M/home" backup list --json > "$OUT/list$FREE"
done
"""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces_work(), reason="no user and mount namespaces here")
def test_a_full_disk_at_the_catalog_commit_leaves_log_and_catalog_agreeing(
    tmp_path: Path,
) -> None:
    r = subprocess.run(
        ["unshare", "-rm", "sh", "-c", SCRIPT, "full-disk", EXE, str(tmp_path)],
        capture_output=True,
        timeout=240,
    )
    if r.returncode == 97:
        pytest.skip("tmpfs cannot be mounted in a user namespace here")
    assert r.returncode == 0, r.stderr.decode()
    commit_failures = 0
    for free in (6, 8, 10, 12, 14, 16, 24):
        rc = int((tmp_path / f"rc{free}").read_text())
        err = (tmp_path / f"stderr{free}").read_text()
        verify = (tmp_path / f"verify{free}").read_text().splitlines()
        assert verify[-1] == "0", (free, verify)
        entries = [json.loads(x) for x in (tmp_path / f"log{free}").read_text().splitlines()]
        backups = {b["id"] for b in json.loads((tmp_path / f"list{free}").read_text())}
        aborted = {e["details"].get("aborts") for e in entries if e["outcome"] == "failed"}
        made = {
            e["subject"].removeprefix("backup:")
            for e in entries
            if e["action"] == "backup.encrypt" and e["outcome"] == "ok" and e["seq"] not in aborted
        }
        assert made == backups, (free, rc, err)
        files = sorted(p.name for p in (tmp_path / f"dst{free}").iterdir())
        if rc == 0:
            assert len(backups) == 1 and files == ["a.cbk"], (free, err)
        else:
            assert rc == 3, (free, rc, err)
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert backups == set() and files == [], (free, files)
            if "could not record backup.encrypt" in err:
                commit_failures += 1
                assert "says so after its entry" in err
                assert any(e["details"].get("aborts") for e in entries)
    assert commit_failures >= 1, "no amount of free space made the commit itself fail"
