"""The root key through a real Secret Service (GNOME Keyring over D-Bus, headless)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

SCRIPT = """
set -e
printf 'unlock-for-test' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
"$BIN/custodian" --home "$H" init --suite x25519 --custody single
"$BIN/custodian" --home "$H" people enrol bot --role operator --service
printf 'secret payload' | "$BIN/custodian" --home "$H" backup encrypt - "$H/x.cbk" --as bot
"$BIN/custodian" --home "$H" audit verify
"$BIN/python" - <<'PY'
import os
from pathlib import Path
from custodian.service import Service
from custodian import people as P
from custodian.secret import SecretBytes
s = Service.open(os.environ["H"])
print("keyring:", s.keyring.description)
(b,) = s.backups.list()
# a restore the real way: two custodians enrolled, bot asks, both approve
codes = {}
pw = SecretBytes(b"a long passphrase for the keyring test")
for name in ("alice", "bob"):
    by = s.auth.unlock("alice", pw) if name == "bob" else None
    pending = s.people.begin_enrolment(name, ("custodian",), passphrase=pw, by=by)
    codes[name] = SecretBytes(bytes(pending.totp.reveal()))
    s.people.complete_enrolment(pending, P.hotp(pending.totp, P.current_step()), by=by)
out = Path(os.environ["T"])
r = s.restores.request([b.id], "keyring test", out, by=s.auth.unlock("bot", None))
for name in ("alice", "bob"):
    code = P.hotp(codes[name], P.current_step() + 1)
    r = s.approvals.approve(r.id, code, by=s.auth.unlock(name, pw))
rep = s.restores.run(r.id, by=s.auth.unlock("bot", None))
print("plaintext:", (out / b.label).read_text(), rep.summary())
PY
"""


def test_root_key_round_trips_through_gnome_keyring(tmp_path: Path) -> None:
    assert shutil.which("dbus-run-session"), "make test installs dbus"
    assert shutil.which("gnome-keyring-daemon"), "make test installs gnome-keyring"
    env = {
        **os.environ,
        "BIN": str(BIN),
        "H": str(tmp_path / "home"),
        "T": str(tmp_path / "restored"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }
    (tmp_path / "run").mkdir(mode=0o700)
    (tmp_path / "restored").mkdir(mode=0o700)
    r = subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "keyring: keyring.backends.SecretService.Keyring" in r.stdout
    assert "plaintext: secret payload" in r.stdout
    assert "audit log verified: 4 entries" in r.stdout  # init, KEK, enrolment, encrypt
    # the root key is in the Secret Service's store, not in the home
    assert not (tmp_path / "home" / "keyring").exists()
    assert list((tmp_path / "data" / "keyrings").iterdir())
