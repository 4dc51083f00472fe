"""Rotation of a quorum KEK through the `custodian` command (issue 11): `kek rotate` with
the holders present, `kek refresh NAME --as HOLDER`, `kek redistribute`, `kek jobs`; and
SIGKILL at random moments of a holder's part and of the dealing: after each kill the
next run says the last one was interrupted and resumes; nothing is lost, every DEK
still opens (the real backups through an approved restore session)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from custodian.catalog import Backup
from custodian.custody import quorum as Q
from custodian.secret import SecretBytes
from custodian.service import Service, items
from tests.conftest import Cast, Clock, Enrolled, enrol, next_code, unlock
from tests.integration.test_cli import EXE, _as, run


def _pipe(text: str) -> int:
    r, w = os.pipe()
    os.write(w, text.encode() + b"\n")
    os.close(w)
    return r


def _with_holders(
    home: Path, by: Enrolled, holders: list[Enrolled], code: str, *args: str
) -> subprocess.CompletedProcess[bytes]:
    fds, extra = [], []
    for h in holders:
        if h.name == by.name:
            continue
        fds.append(_pipe(h.passphrase))
        extra += ["--holder-passphrase-fd", f"{h.name}={fds[-1]}"]
    fds.append(_pipe(by.passphrase))
    extra += ["--passphrase-fd", str(fds[-1])]
    fds.append(_pipe(code))
    extra += ["--totp-fd", str(fds[-1])]
    try:
        return subprocess.run(
            [EXE, "--home", str(home), *args, *extra, "--as", by.name],
            capture_output=True, pass_fds=fds, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture
def carol(svc: Service, cast: Cast) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), unlock(svc, cast.alice))


@pytest.fixture
def dave(svc: Service, cast: Cast) -> Enrolled:
    """Enrolled before the quorum KEK (bootstrap: enrolment is direct until then)."""
    return enrol(svc, "dave", ("custodian",), unlock(svc, cast.alice))


@pytest.fixture
def vault(svc: Service, cast: Cast, carol: Enrolled) -> list[str]:
    svc.clock = Clock()
    hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol)]
    # bob creates it: alice's and carol's next codes stay within the real clock's window
    svc.keys.create_quorum("vault", hs, 2, by=hs[1], code=next_code(svc, cast.bob))
    bot = unlock(svc, cast.bot)
    return [
        svc.backups.encrypt(
            io.BytesIO(f"backup {i}\n".encode() * 500), svc.home.path / f"b{i}.cbk", by=bot,
            kek="vault", label=f"b{i}",
        ).id
        for i in range(3)
    ]  # fmt: skip


def restore(svc: Service, cast: Cast, approvers: list[Enrolled], bids: list[str], t: Path) -> None:
    t.mkdir(mode=0o700)
    r = svc.restores.request(bids, "after the refresh", t, by=unlock(svc, cast.oscar))
    for who in approvers:
        r = svc.approvals.approve(r.id, next_code(svc, who), by=unlock(svc, who))
    rep = svc.restores.run(r.id, by=unlock(svc, cast.oscar))
    assert [x.outcome for x in rep.results] == ["ok"] * len(bids), rep.results
    for i in range(len(bids)):
        assert (t / f"b{i}").read_bytes() == f"backup {i}\n".encode() * 500


def test_rotate_refresh_redistribute_and_jobs_through_the_cli(
    svc: Service, cast: Cast, carol: Enrolled, dave: Enrolled, vault: list[str], tmp_path: Path
) -> None:
    home = svc.home.path
    everyone = [cast.alice, cast.bob, carol]
    r = _with_holders(home, cast.alice, everyone, next_code(svc, cast.alice),
                      "kek", "rotate", "vault", "--no-rewrap")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"v2 created, manifest fingerprint" in r.stdout and b"Refresh job" in r.stdout
    r = _as(home, cast.alice, "kek", "refresh", "vault")
    assert r.returncode == 0, r.stderr
    assert b"still to do: bob sealed 0 of 3; carol sealed 0 of 3" in r.stdout, r.stdout
    r = run("--home", str(home), "kek", "jobs", "vault")
    assert b"refresh" in r.stdout and b"census v1: 3, v2: 0" in r.stdout
    assert b"dealer dealt 3 of 3" in r.stdout and b"alice sealed 3 of 3" in r.stdout
    for who in (cast.bob, carol):
        r = _as(home, who, "kek", "refresh", "vault")
        assert r.returncode == 0, r.stderr
    assert b"the job is done" in r.stdout
    r = run("--home", str(home), "kek", "jobs", "vault", "--json")
    (job,) = [j for j in json.loads(r.stdout) if j.get("kind") == "refresh"]
    assert job["state"] == "done" and job["census"] == {"1": 0, "2": 3}
    # nothing to do now: said so, and the rewrap refuses a quorum KEK
    r = _as(home, cast.bob, "kek", "refresh", "vault")
    assert r.returncode != 0 and b"no refresh or redistribution under way" in r.stderr
    r = _as(home, cast.bob, "kek", "rewrap", "vault")
    assert r.returncode != 0 and b"no process rewraps" in r.stderr
    # a change of holders: dave joins, carol leaves; bob and carol re-share
    r = _with_holders(home, carol, [cast.alice, cast.bob, dave], next_code(svc, carol),
                      "kek", "redistribute", "vault", "--holders", "alice,bob,dave",
                      "--quorum", "2", "--sources", "bob,alice")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"v3: 2 of 3 (alice, bob, dave)" in r.stdout
    # everyone was present: the sources re-shared, then each new holder sealed theirs
    assert b"the job is done" in r.stdout, r.stdout
    assert {v.version: v.dek_count for v in svc.keys.get("vault").versions} == {1: 0, 2: 0, 3: 3}
    restore(svc, cast, [dave, cast.bob], vault, tmp_path / "r")
    r = run("--home", str(home), "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def _fill(svc: Service, n: int) -> dict[str, str]:
    """``n`` catalog rows with real quorum wraps (no containers): id -> SHA-256 of the DEK."""
    be = svc.keys.backend("quorum")
    prints, rows = {}, []
    batch = []
    for _ in range(n):
        bid = str(uuid.uuid4())
        dek = SecretBytes(os.urandom(32), "DEK")
        prints[bid] = hashlib.sha256(dek.reveal()).hexdigest()
        batch.append((bid, dek))
    for (bid, _), w in zip(batch, be.wrap("vault", 1, batch), strict=True):
        rows.append(Backup(bid, f"s-{bid[:8]}", "2026-01-01T00:00:00.000000Z", 1, 2, "0" * 64,
                           f"/nonexistent/{bid}", "vault", 1, w, 1 << 20))  # fmt: skip
    with svc.catalog.transaction():
        svc.catalog.add_backups(rows)
    return prints


def _deks(svc: Service, cast: Cast, carol: Enrolled) -> dict[str, str]:
    """Test oracle only (the product never does this): combine bob's and carol's shares of
    every DEK as the catalog holds it now."""
    out = {}
    rows = [b for v in svc.keys.get("vault").versions
            for b in svc.catalog.backups_under("vault", v.version, limit=10**6)]  # fmt: skip
    for b in rows:
        man = svc.keys.manifest("vault", b.kek_version)
        qw = Q.QuorumWrap.decode(b.wrapped_dek)
        keys = [items.holder_private(svc.ctx, unlock(svc, who), man) for who in (cast.bob, carol)]
        shares = [
            Q.open_share(qw, man, b.id, who.name, k)
            for who, k in zip((cast.bob, carol), keys, strict=True)
        ]
        out[b.id] = hashlib.sha256(Q.combine(qw, man, b.id, shares).reveal()).hexdigest()
    return out


@pytest.mark.slow
def test_sigkill_mid_refresh_loses_nothing_and_says_so(
    svc: Service, cast: Cast, carol: Enrolled, vault: list[str], tmp_path: Path
) -> None:
    n = 600
    prints = _fill(svc, n)
    before = _deks(svc, cast, carol)
    assert all(before[b] == p for b, p in prints.items())
    hs = [unlock(svc, cast.alice), unlock(svc, cast.bob), unlock(svc, carol)]
    j = svc.keys.rotate("vault", next_code(svc, cast.alice), by=hs[0], holders=hs)
    home = svc.home.path
    watch = sqlite3.connect(f"file:{svc.home.catalog}?mode=ro", uri=True)
    rng = random.Random(os.environ.get("PYTEST_XDIST_WORKER", "") + str(time.time()))

    def done(role: str, who: str) -> int:
        (d,) = watch.execute(
            "SELECT done FROM custody_job_steps WHERE job=? AND role=? AND who=?",
            (j.id, role, who),
        ).fetchone()
        return int(d)

    def start(who: Enrolled) -> subprocess.Popen[bytes]:
        fd = _pipe(who.passphrase)
        p = subprocess.Popen(
            [sys.executable, "-m", "custodian.cli", "--home", str(home), "kek", "refresh",
             "vault", "--batch", "40", "--workers", "2", "--as", who.name,
             "--passphrase-fd", str(fd)],
            pass_fds=[fd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        os.close(fd)
        return p

    kills = 0
    total = len(vault) + n
    # bob first: his run deals, then seals his; kill it at random points of both
    for who, role, name in ((cast.bob, "source", "*dealer"), (cast.bob, "target", "bob"),
                            (carol, "target", "carol")):  # fmt: skip
        goals = sorted(rng.sample(range(20, total - 40), 4))
        while goals:
            p = start(who)
            at = done(role, name)
            killed = False
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                if done(role, name) >= max(goals[0], at + 1):
                    time.sleep(rng.uniform(0, 0.05))
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    killed = True
                    break
                time.sleep(0.002)
            out = p.stdout.read().decode() if p.stdout else ""
            p.stdout.close() if p.stdout else None
            if not killed:
                p.wait(timeout=60)
                assert p.returncode == 0, out
                break
            kills += 1
            goals = [g for g in goals if g > done(role, name)]
            # the next run says the last one was interrupted, and that nothing was lost
            q = start(who) if goals or role == "target" else None
            if q is not None:
                time.sleep(0.3)
                os.killpg(q.pid, signal.SIGKILL)
                q.wait()
                said = q.stdout.read().decode() if q.stdout else ""
                q.stdout.close() if q.stdout else None
                kills += 1
                if "interrupted" in said:
                    assert "Nothing was lost" in said, said
        if role == "target":  # (bob's next run finishes the dealing first, then seals)
            r = _as(home, who, "kek", "refresh", "vault")
            assert r.returncode == 0, r.stdout + r.stderr
    r = _as(home, cast.alice, "kek", "refresh", "vault")  # the last holder, no kill
    assert r.returncode == 0 and b"the job is done" in r.stdout, r.stdout + r.stderr
    watch.close()
    assert kills >= 8
    with Service.open(home) as fresh:
        assert {v.version: v.dek_count for v in fresh.keys.get("vault").versions} == {
            1: 0, 2: total,
        }  # fmt: skip
        (view,) = fresh.keys.custody_jobs("vault")
        assert view.job.state == "done" and view.job.failed == 0
        assert _deks(fresh, cast, carol) == before  # the same DEKs, under new shares
        runs = [e for e in fresh.audit.entries(action="kek.refresh.run")]
        assert any(e["details"].get("resumes_interrupted_run") for e in runs)
        res = fresh.audit.verify()
        assert res.ok, res.summary()
        fresh.clock = svc.clock
        restore(fresh, cast, [cast.bob, carol], vault, tmp_path / "r")
