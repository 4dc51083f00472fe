"""`custodian breakglass` without a terminal: shares handed to each holder's own file
descriptor, a drill and a recovery reading them back from a descriptor (issue 11)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from custodian.service import Service
from tests.conftest import Cast, Clock, enrol, next_code, unlock
from tests.integration.test_cli import EXE


def _pipe(data: bytes) -> int:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def _run(args: list[str], fds: list[int]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            [EXE, *args], capture_output=True, pass_fds=fds, stdin=subprocess.DEVNULL, timeout=60
        )
    finally:
        for fd in fds:
            os.close(fd)


def test_split_drill_and_recover_through_the_cli(svc: Service, cast: Cast, tmp_path: Path) -> None:
    svc.clock = Clock()
    home = svc.home.path
    carol = enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))
    outs = {n: tmp_path / f"{n}.share" for n in ("alice", "bob", "carol")}
    share_fds = {n: os.open(p, os.O_WRONLY | os.O_CREAT, 0o600) for n, p in outs.items()}
    fds = [
        _pipe(cast.alice.passphrase.encode() + b"\n"),
        _pipe(next_code(svc, cast.alice).encode() + b"\n"),
        _pipe(cast.bob.passphrase.encode() + b"\n"),
        _pipe(carol.passphrase.encode() + b"\n"),
    ]
    args = [
        "--home", str(home), "breakglass", "split", "--holders", "alice,bob,carol",
        "--as", "alice", "--passphrase-fd", str(fds[0]), "--totp-fd", str(fds[1]),
        "--holder-passphrase-fd", f"bob={fds[2]}", "--holder-passphrase-fd", f"carol={fds[3]}",
    ]  # fmt: skip
    for n, fd in share_fds.items():
        args += ["--share-fd", f"{n}={fd}"]
    r = _run(args, fds + list(share_fds.values()))
    assert r.returncode == 0, r.stderr
    assert b"2 of 3 (alice, bob, carol)" in r.stdout
    shares = {n: p.read_text().strip() for n, p in outs.items()}
    assert all(len(s.split()) == 33 for s in shares.values())  # 256-bit SLIP-39 shares
    assert not any(s.encode() in r.stdout + r.stderr for s in shares.values())
    # without a way to hand the shares out: refused before anything is made
    r = _run(["--home", str(home), "breakglass", "split", "--holders", "alice,bob", "--as",
              "alice"], [])  # fmt: skip
    assert r.returncode == 2 and b"--share-fd" in r.stderr

    both = (shares["bob"] + "\n" + shares["carol"] + "\n").encode()
    fds = [_pipe(cast.alice.passphrase.encode() + b"\n"), _pipe(both)]
    r = _run(["--home", str(home), "breakglass", "drill", "--as", "alice", "--passphrase-fd",
              str(fds[0]), "--shares-fd", str(fds[1])], fds)  # fmt: skip
    assert r.returncode == 0 and b"passed (2 shares); nothing changed" in r.stdout, r.stderr
    r = subprocess.run([EXE, "--home", str(home), "breakglass", "status"], capture_output=True)
    assert b"last good drill 20" in r.stdout

    # a copy of the home with no keyring: the root key comes back from two shares
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    shutil.rmtree(copy / "keyring")
    fds = [_pipe(both)]
    r = _run(["--home", str(copy), "breakglass", "recover", "--shares-fd", str(fds[0])], fds)
    assert r.returncode == 0 and b"installed again" in r.stdout, r.stderr
    r = subprocess.run([EXE, "--home", str(copy), "audit", "verify"], capture_output=True)
    assert r.returncode == 0, r.stdout


def test_reshare_then_recover_with_reenrolment_through_the_cli(
    svc: Service, cast: Cast, tmp_path: Path
) -> None:
    """reshare takes the current set's shares on a descriptor and hands out new ones;
    recover --reenrol gives alice a new passphrase (from her descriptor) and bot a key."""
    svc.clock = Clock()
    home = svc.home.path
    alice = unlock(svc, cast.alice)
    carol = enrol(svc, "carol", ("custodian",), alice)
    holders = [alice, unlock(svc, cast.bob), unlock(svc, carol)]
    # bob confirms the first set: alice's next code is then still valid in real time
    with svc.custody.split(holders, by=holders[1], code=next_code(svc, cast.bob)) as ss:
        old = [s.reveal() for s in ss.shares]
        old_id = ss.set_id
    outs = {n: tmp_path / f"{n}.share" for n in ("alice", "bob", "carol")}
    share_fds = {n: os.open(p, os.O_WRONLY | os.O_CREAT, 0o600) for n, p in outs.items()}
    fds = [
        _pipe(cast.alice.passphrase.encode() + b"\n"),
        _pipe(next_code(svc, cast.alice).encode() + b"\n"),
        _pipe(cast.bob.passphrase.encode() + b"\n"),
        _pipe(carol.passphrase.encode() + b"\n"),
        _pipe((old[0] + "\n" + old[2] + "\n").encode()),
    ]
    args = [
        "--home", str(home), "breakglass", "reshare", "--holders", "alice,bob,carol",
        "--as", "alice", "--passphrase-fd", str(fds[0]), "--totp-fd", str(fds[1]),
        "--holder-passphrase-fd", f"bob={fds[2]}", "--holder-passphrase-fd", f"carol={fds[3]}",
        "--shares-fd", str(fds[4]),
    ]  # fmt: skip
    for n, fd in share_fds.items():
        args += ["--share-fd", f"{n}={fd}"]
    r = _run(args, fds + list(share_fds.values()))
    assert r.returncode == 0, r.stderr
    assert f"set {old_id} is revoked".encode() in r.stdout
    new = {n: p.read_text().strip() for n, p in outs.items()}
    # the old papers open nothing now
    fds = [_pipe((old[0] + "\n" + old[1] + "\n").encode())]
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    shutil.rmtree(copy / "keyring")
    r = _run(["--home", str(copy), "breakglass", "recover", "--shares-fd", str(fds[0])], fds)
    assert r.returncode == 4 and b"revoked" in r.stderr, r.stderr
    fds = [
        _pipe((new["bob"] + "\n" + new["carol"] + "\n").encode()),
        _pipe(b"alice chose this new passphrase after the fire\n"),
    ]
    r = _run(
        ["--home", str(copy), "breakglass", "recover", "--shares-fd", str(fds[0]),
         "--reenrol", "alice,bot", "--new-passphrase-fd", f"alice={fds[1]}"],
        fds,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"alice re-enrolled" in r.stdout and b"bot re-enrolled" in r.stdout
    r = subprocess.run([EXE, "--home", str(copy), "audit", "verify"], capture_output=True)
    assert r.returncode == 0, r.stdout
    from custodian.secret import SecretBytes

    with Service.open(copy) as other:
        a = other.auth.unlock(
            "alice", SecretBytes(b"alice chose this new passphrase after the fire")
        )
        assert a.name == "alice"
