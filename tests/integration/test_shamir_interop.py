"""Break-glass shares interoperate with the reference SLIP-39 command, both ways.

`shamir` comes from `shamir-mnemonic[cli]` (the dev extra). `shamir recover` prompts
with click: with standard input a pipe, `click.prompt` reads one share per line, and
the `-p` passphrase prompt (getpass) reads standard input too once the child has no
controlling terminal (start_new_session=True; otherwise getpass opens /dev/tty). It
exits 0 even when it recovered nothing, so the tests read the printed secret. No
network; every child is bounded by a timeout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from custodian.custody import breakglass as B
from custodian.custody.breakglass import BreakGlassError, Recovery, RecoverySecret

SHAMIR = Path(sys.executable).with_name("shamir")
HOME = "5b0e9c1a-7d2f-4a6b-8e3c-1f9d0a2b4c6e"
SECRET_HEX = "8d0c1f55a3e7b2c94f6d0e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shamir(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert SHAMIR.exists(), "the reference command is missing: pip install -e '.[dev]'"
    return subprocess.run(
        [str(SHAMIR), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal: getpass reads the pipe
    )


def reference_recover(shares: list[str], passphrase: str = "") -> str | None:
    """The secret `shamir recover` prints, or None."""
    lines = [*shares, *([passphrase, passphrase] if passphrase else [])]
    r = shamir("recover", *(["-p"] if passphrase else []), stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Your master secret is: ([0-9a-f]+)", ANSI.sub("", r.stdout))
    return m.group(1) if m else None


def reference_create(*args: str) -> list[str]:
    r = shamir("create", *args, "-S", SECRET_HEX)
    assert r.returncode == 0, r.stdout + r.stderr
    return [ln for ln in ANSI.sub("", r.stdout).splitlines() if len(ln.split()) == 33]


@pytest.mark.parametrize("passphrase", ["", "correct horse battery"])
def test_split_shares_recover_with_shamir_recover(passphrase: str) -> None:
    secret = RecoverySecret(bytes.fromhex(SECRET_HEX))
    ss = B.split(secret, HOME, passphrase=passphrase.encode())
    shares = [s.reveal() for s in ss.shares]
    for pair in ([0, 1], [1, 2], [2, 0]):
        assert reference_recover([shares[i] for i in pair], passphrase) == SECRET_HEX


def test_shamir_recover_prints_no_secret_one_share_short_but_exits_0() -> None:
    ss = B.split(RecoverySecret(bytes.fromhex(SECRET_HEX)), HOME)
    assert reference_recover([ss.shares[0].reveal()]) is None


def test_shamir_recover_with_a_wrong_passphrase_prints_another_secret() -> None:
    """Why the check value exists: SLIP-39 itself cannot tell a wrong passphrase."""
    secret = RecoverySecret(bytes.fromhex(SECRET_HEX))
    ss = B.split(secret, HOME, passphrase=b"right")
    shares = [s.reveal() for s in ss.shares[:2]]
    got = reference_recover(shares, "wrong")
    assert got is not None and got != SECRET_HEX
    with (
        pytest.raises(BreakGlassError, match="passphrase is wrong"),
        Recovery(HOME, ss.set_id, ss.check_value, passphrase=b"wrong") as r,
    ):
        for s in shares:
            r.add(s)


SCHEMES = {
    "2of3": ["2of3"],
    "custom -t 1 -g 2 3": ["custom", "-t", "1", "-g", "2", "3"],
    "2of3 not extendable": ["2of3", "-X"],
}


@pytest.mark.parametrize("passphrase", [None, "TREZOR pass"], ids=["no -p", "-p"])
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_shamir_create_shares_recover_in_the_ceremony(scheme: str, passphrase: str | None) -> None:
    args = SCHEMES[scheme] + (["-p", passphrase] if passphrase else [])
    shares = reference_create(*args)
    assert len(shares) == 3
    info = B.share_info(shares[0])
    assert (info.threshold, info.groups) == (2, 1)
    secret = RecoverySecret(bytes.fromhex(SECRET_HEX))
    check = B.check_value(secret, HOME, info.set_id)
    pw = (passphrase or "").encode()
    for pair in ([0, 1], [2, 1], [0, 2]):
        with Recovery(HOME, info.set_id, check, passphrase=pw) as r:
            assert str(r.add(shares[pair[0]])) == "1 of 2"
            assert r.add(shares[pair[1]]).done
            assert bytes(r.secret.reveal()).hex() == SECRET_HEX
    if passphrase:
        with (
            pytest.raises(BreakGlassError, match="passphrase is wrong"),
            Recovery(HOME, info.set_id, check) as r,
        ):
            r.add(shares[0])
            r.add(shares[1])
    rec = B.drill(shares, home_id=HOME, set_id=info.set_id, check_value=check, passphrase=pw)
    assert rec.ok and rec.shares_checked == 3
