"""The first set-up as the custodian guide lists it in CLI steps, and what ``custodian``
with no command opens on a home that is not there yet.

The commands run in this process (``custodian.cli.main``, cheap KDF), every secret
on a file descriptor of its own: ``init``, three ``people enrol``, ``kek
create --custody quorum``, ``breakglass split`` with each share to its holder's
descriptor. Then ``svc.setup`` says the set-up is done, and the audit log verifies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from custodian import people as P
from custodian.cli import main
from custodian.home import Home
from custodian.secret import SecretBytes
from custodian.service import Service

SECRETS = {n: bytes([i + 1]) * 20 for i, n in enumerate(("alice", "bob", "carol"))}


def fd(data: str) -> int:
    r, w = os.pipe()
    os.write(w, data.encode() + b"\n")
    os.close(w)
    return r


def phrase(name: str) -> str:
    return f"{name} test passphrase long enough"


def code(name: str, ahead: int = 0) -> str:
    """``name``'s code; ``ahead=1`` is the next step's, which a check accepts too (one
    step either side), so a second confirmation needs no wait."""
    return P.hotp(SecretBytes(SECRETS[name]), P.current_step() + ahead)


def test_the_guides_cli_steps_make_a_quorum_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    # a known TOTP secret per person, so the first code can be written ahead (a script's way)
    order = iter(SECRETS.values())
    monkeypatch.setattr(P, "new_totp_secret", lambda: SecretBytes(next(order), "TOTP secret"))
    if P.current_step() != P.current_step(P.time.time() + 5):  # no step change mid-test
        import time

        time.sleep(6)

    assert main(["--home", home, "init", "--keyring", "home-file"]) == 0
    out = capsys.readouterr().out
    assert "no KEK yet" in out and "kek create backups --custody quorum" in out

    assert main(["--home", home, "people", "enrol", "alice", "--role", "custodian",
                 "--new-passphrase-fd", str(fd(phrase("alice"))),
                 "--totp-fd", str(fd(code("alice")))]) == 0  # fmt: skip
    for name in ("bob", "carol"):
        alice = ["--as", "alice", "--passphrase-fd", str(fd(phrase("alice")))]
        assert main(["--home", home, "people", "enrol", name, "--role", "custodian",
                     "--new-passphrase-fd", str(fd(phrase(name))),
                     "--totp-fd", str(fd(code(name))), *alice]) == 0  # fmt: skip
    capsys.readouterr()

    assert main(["--home", home, "kek", "create", "backups", "--custody", "quorum",
                 "--holders", "alice,bob,carol", "--quorum", "2",
                 "--holder-passphrase-fd", f"bob={fd(phrase('bob'))}",
                 "--holder-passphrase-fd", f"carol={fd(phrase('carol'))}",
                 "--totp-fd", str(fd(code("alice", 1))),
                 "--as", "alice", "--passphrase-fd", str(fd(phrase("alice")))]) == 0  # fmt: skip
    assert "created quorum KEK backups v1 (2 of 3" in capsys.readouterr().out

    pipes = {n: os.pipe() for n in ("alice", "bob", "carol")}
    args = ["--home", home, "breakglass", "split", "--holders", "alice,bob,carol",
            "--holder-passphrase-fd", f"alice={fd(phrase('alice'))}",
            "--holder-passphrase-fd", f"carol={fd(phrase('carol'))}",
            "--totp-fd", str(fd(code("bob", 1))),
            "--as", "bob", "--passphrase-fd", str(fd(phrase("bob")))]  # fmt: skip
    for n, (_, w) in pipes.items():
        args += ["--share-fd", f"{n}={w}"]
    assert main(args) == 0
    shares = {}
    for n, (r, w) in pipes.items():
        os.close(w)
        with os.fdopen(r) as f:
            shares[n] = f.read().strip()
    assert len({len(s.split()) for s in shares.values()}) == 1 and len(set(shares.values())) == 3

    with Service.open(home) as svc:
        p = svc.setup.progress()
        assert (p.step, p.custodians, p.quorum_keks) == (
            "done", ("alice", "bob", "carol"), ("backups",))  # fmt: skip
        assert svc.config.default_kek == "backups" and svc.keys.get("backups").backend == "quorum"
        assert svc.audit.verify().ok
        first = svc.audit.entries()[1]
        assert first["action"] == "person.enrol"  # no single-custody KEK was ever made
        by = svc.auth.unlock("carol", SecretBytes(phrase("carol").encode()))
        assert svc.custody.drill([shares["alice"], shares["carol"]], by=by).ok


@pytest.mark.parametrize("state", ["missing", "empty", "made"])
def test_custodian_with_no_command_hands_the_tui_a_home_to_set_up(
    tmp_path: Path, state: str
) -> None:
    path = tmp_path / "home"
    if state == "empty":
        path.mkdir()
    if state == "made":
        Service.init(path, keyring_backend="home-file", custody="quorum").close()
    got: list[Any] = []

    def tui(target: Any) -> None:
        got.append(target)
        if isinstance(target, Service):
            got.append(target.setup.progress().step)

    assert main(["--home", str(path)], tui=tui) == 0
    if state == "made":  # a home made, nobody enrolled: the TUI resumes its set-up
        assert isinstance(got[0], Service) and got[1] == "custodians"
    else:  # nothing there yet: the set-up ceremony makes the home
        assert got == [Home.resolve(path)]
        assert not (path / "custodian.toml").exists()


def test_a_directory_that_holds_something_else_is_not_taken_for_a_new_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "photos"
    path.mkdir()
    (path / "holiday.jpg").write_bytes(b"\xff\xd8")
    called: list[Any] = []
    assert main(["--home", str(path)], tui=called.append) != 0
    assert called == []
    assert "not a custodian home" in capsys.readouterr().err
