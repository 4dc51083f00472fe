"""Moving a KEK between backends (issues 11 and 14): `kek migrate NAME --to quorum` with
the holders present, and the generic `--to BACKEND` through the backend interface, each
with the rewrap job (resumable, SIGKILL-safe, census per backend and version), after
which the single private key is destroyed through the usual destroy request."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from custodian import container
from custodian.backends.base import DekRef, Health, VersionMaterial, dek_context, sealed_name
from custodian.errors import ConflictError, CustodianError, UnwrapError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service import Service
from tests.conftest import Cast, Clock, Enrolled, approved_session, enrol, next_code, unlock


@pytest.fixture
def carol(svc: Service, cast: Cast, alice: Actor) -> Enrolled:
    return enrol(svc, "carol", ("custodian",), alice)


@pytest.fixture
def holders(svc: Service, cast: Cast, alice: Actor, carol: Enrolled) -> list[Actor]:
    svc.clock = Clock()
    return [alice, unlock(svc, cast.bob), unlock(svc, carol)]


def backups(svc: Service, cast: Cast, tmp_path: Path, n: int) -> dict[str, bytes]:
    """``n`` real backups under the default KEK (single custody): id -> plaintext."""
    bot = unlock(svc, cast.bot)
    out = tmp_path / "containers"
    out.mkdir(exist_ok=True)
    made: dict[str, bytes] = {}
    for i in range(n):
        data = f"backup {i}\n".encode() * (1 + i % 7) + os.urandom(64)
        b = svc.backups.encrypt(io.BytesIO(data), out / f"b{i}.cbk", by=bot, label=f"b{i}")
        made[b.id] = data
    return made


def restore_all(svc: Service, cast: Cast, ids: Sequence[str], target: Path) -> dict[str, bytes]:
    """Restore ``ids`` in a session oscar asked for and alice and bob approved (for quorum
    backups: from the shares they released to it); label -> plaintext."""
    target.mkdir(mode=0o700)
    s = approved_session(svc, cast, list(ids), target)
    rep = svc.restores.run(s.request, by=unlock(svc, cast.oscar))
    assert [x.outcome for x in rep.results] == ["ok"] * len(ids), rep.results
    return {p.name: p.read_bytes() for p in target.iterdir()}


def census(svc: Service, name: str = "backups") -> dict[str, int]:
    return {f"{r.backend}/v{r.version}": r.deks for r in svc.migrations.census(name)}


# ---------------------------------------------------------------- to quorum


def test_migrate_to_quorum_moves_every_dek_and_restores_need_the_holders(
    svc: Service, cast: Cast, holders: list[Actor], tmp_path: Path
) -> None:
    alice = holders[0]
    made = backups(svc, cast, tmp_path, 6)
    assert census(svc) == {"local/v1": 6}
    j = svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    assert (j.target_version, j.total, j.state) == (2, 6, "running")
    k = svc.keys.get("backups")
    assert k.backend == "quorum" and [v.backend for v in k.versions] == ["local", "quorum"]
    # a backup made now goes to the holders at once (format 2)
    bot = unlock(svc, cast.bot)
    new = svc.backups.encrypt(io.BytesIO(b"after\n"), tmp_path / "after.cbk", by=bot, label="after")
    assert (new.kek_version, Path(new.location).read_bytes()[8]) == (2, 2)
    rep = svc.migrations.run("backups", by=alice)
    assert rep.finished and rep.rewrapped == 6 and rep.remaining == 0
    assert census(svc) == {"local/v1": 0, "quorum/v2": 7}
    for bid in made:
        b = svc.backups.get(bid)
        assert b.kek_version == 2 and b.wrapped_dek[:4] == b"CQW2"
        # the container is not rewritten: its header keeps the wrap made at creation
        with open(b.location, "rb") as f:
            h = container.read_header(f)
        assert (h.format, h.backend, h.kek_version) == (1, "local", 1)
    # no key of this account opens a migrated DEK now
    b = svc.backups.get(next(iter(made)))
    (res,) = svc.keys.backend("quorum").unwrap([DekRef(b.id, b.kek, 2, b.wrapped_dek)])
    assert isinstance(res, UnwrapError) and "no key opens it alone" in str(res)
    # the holders do not ask for restores of them; an operator does, two holders approve
    with pytest.raises(AuthError, match="holds a share of backups v2"):
        svc.restores.request([b.id], "mine", tmp_path, by=alice)
    got = restore_all(svc, cast, list(made), tmp_path / "restored")
    assert sorted(got.values()) == sorted(made.values())
    entry = svc.audit.entries(action="kek.migrate")[-1]
    assert entry["details"]["from_backend"] == "local" and entry["details"]["backend"] == "quorum"
    assert entry["details"]["census"] == {"local/v1": 6}
    assert sorted(e["actor"] for e in svc.audit.entries(action="kek.manifest.sign")) == [
        "alice",
        "bob",
        "carol",
    ]
    res = svc.audit.verify()
    assert res.ok, res.summary()


def test_after_migration_the_single_private_key_is_destroyed_under_quorum(
    svc: Service, cast: Cast, holders: list[Actor], carol: Enrolled, tmp_path: Path
) -> None:
    """The header's old wrap opens with v1's private key until it is destroyed; retire and
    the destroy request (waiting period, two other custodians) remove it."""
    alice, bob, carol_a = holders
    made = backups(svc, cast, tmp_path, 3)
    svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    svc.migrations.run("backups", by=alice)
    # until then the account still opens the header's wrap: said in the threat model
    b = svc.backups.get(next(iter(made)))
    with open(b.location, "rb") as f:
        h = container.read_header(f)
    (dek,) = svc.keys.backend("local").unwrap([DekRef(b.id, "backups", 1, h.wrapped_dek)])
    assert isinstance(dek, SecretBytes)
    dek.wipe()
    svc.keys.retire("backups", 1, next_code(svc, cast.alice), by=alice)
    assert isinstance(svc.clock, Clock)
    svc.clock.advance(7 * 86400 + 1)
    r = svc.keys.request_destroy("backups", 1, "migrated to quorum custody", by=alice)
    svc.approvals.approve(r.id, next_code(svc, cast.bob), by=bob)
    assert svc.sealed.exists(sealed_name("backups", 1))
    r = svc.approvals.approve(r.id, next_code(svc, carol), by=carol_a)
    assert r.state == "done"
    assert not svc.sealed.exists(sealed_name("backups", 1))  # the single private key is gone
    assert svc.catalog.kek_version("backups", 1).state == "destroyed"
    with Service.open(svc.home.path) as other:
        (res,) = other.keys.backend("local").unwrap([DekRef(b.id, "backups", 1, h.wrapped_dek)])
        assert isinstance(res, UnwrapError)
    got = restore_all(svc, cast, list(made), tmp_path / "restored")
    assert sorted(got.values()) == sorted(made.values())
    res = svc.audit.verify()
    assert res.ok, res.summary()


def test_a_holder_who_is_not_a_custodian_is_refused_and_nothing_changes(
    svc: Service, cast: Cast, holders: list[Actor], tmp_path: Path
) -> None:
    alice, bob, _ = holders
    backups(svc, cast, tmp_path, 2)
    oscar = unlock(svc, cast.oscar)
    before = svc.catalog.db.execute("SELECT id, kek_version, wrapped_dek FROM backups").fetchall()
    with pytest.raises(CustodianError, match="oscar is not an active custodian"):
        svc.migrations.to_quorum(
            "backups", [alice, bob, oscar], 2, by=alice, code=next_code(svc, cast.alice)
        )
    k = svc.keys.get("backups")
    assert (k.backend, k.current_version) == ("local", 1)
    assert svc.catalog.db.execute(
        "SELECT id, kek_version, wrapped_dek FROM backups"
    ).fetchall() == (before)
    assert svc.keys.jobs() == []
    refused = [e for e in svc.audit.entries(action="kek.migrate") if e["outcome"] != "ok"]
    assert refused and "oscar" in refused[-1]["details"]["reason"]
    res = svc.audit.verify()
    assert res.ok, res.summary()


def test_bad_quorums_and_holders_named_twice_are_refused(
    svc: Service, cast: Cast, holders: list[Actor]
) -> None:
    alice, bob, _ = holders
    with pytest.raises(CustodianError, match=r"2 <= M <= N-1"):
        svc.migrations.to_quorum("backups", holders, 3, by=alice, code=next_code(svc, cast.alice))
    with pytest.raises(CustodianError, match="named twice"):
        svc.migrations.to_quorum(
            "backups", [alice, bob, bob], 2, by=alice, code=next_code(svc, cast.alice)
        )
    with pytest.raises(AuthError, match="fresh TOTP"):
        svc.migrations.to_quorum("backups", holders, 2, by=alice, code="")
    oscar = unlock(svc, cast.oscar)
    with pytest.raises(AuthError, match="custodian role"):
        svc.migrations.to_quorum("backups", holders, 2, by=oscar, code="000000")
    assert svc.keys.get("backups").backend == "local"
    assert svc.migrations.refusal("backups", "quorum", by=oscar) is not None
    assert svc.migrations.refusal("backups", "quorum", by=alice) is None


def test_a_quorum_kek_does_not_migrate_away(svc: Service, cast: Cast, holders: list[Actor]) -> None:
    """Leaving quorum custody would rebuild every DEK in one process: refused, logged."""
    alice = holders[0]
    svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    why = svc.migrations.refusal("backups", "local", by=alice)
    assert why is not None and "restore" in why
    with pytest.raises(ConflictError, match="quorum KEK"):
        svc.migrations.to_backend("backups", "local", by=alice, code=next_code(svc, cast.alice))
    with pytest.raises(ConflictError, match=r"already on the quorum backend|quorum KEK"):
        svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    assert svc.keys.get("backups").current_version == 2
    assert svc.audit.verify().ok


def test_a_forged_migration_entry_fails_verify(
    svc: Service, cast: Cast, holders: list[Actor]
) -> None:
    """The ledger rule: a kek.migrate entry that does not start from the backend the KEK
    was on, or leaves quorum, is reported by audit verify."""
    from custodian import ledger

    k = ledger.KekInfo("backups", "local", "x25519", 5)
    assert ledger._migration(k, {"from_backend": "local", "backend": "quorum"}) == ""
    assert "was on local" in ledger._migration(k, {"from_backend": "vault", "backend": "quorum"})
    assert "backend it was on" in ledger._migration(
        k, {"from_backend": "local", "backend": "local"}
    )
    q = ledger.KekInfo("v", "quorum", "x25519", 5)
    assert "left quorum" in ledger._migration(q, {"from_backend": "quorum", "backend": "local"})
    # and in a real log: a catalog edit putting v2 back on local is caught before a wrap
    alice = holders[0]
    svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    with svc.catalog.transaction():
        svc.catalog.db.execute("UPDATE kek_versions SET backend='local' WHERE version=2")
    bot = unlock(svc, cast.bot)
    with pytest.raises(CustodianError, match="backend"):
        svc.backups.encrypt(io.BytesIO(b"x"), Path(svc.home.path) / "x.cbk", by=bot, label="x")


# ---------------------------------------------------------------- any backend


class SoftKms:
    """A server-like backend for the generic path, as vault or aws-kms behave: the key
    material stays inside it (here: AES-256 keys per version, in memory), every wrap is
    bound to its context, and it has no public key."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys: dict[tuple[str, int], bytes] = {}

    def create_version(self, kek: str, suite: str, version: int) -> VersionMaterial:
        self.keys[(kek, version)] = os.urandom(32)
        fp = hashlib.sha256(self.keys[(kek, version)]).hexdigest()[:32]
        return VersionMaterial(version, " ".join(fp[i : i + 4] for i in range(0, 32, 4)), None)

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        out = []
        for bid, dek in items:
            n = os.urandom(12)
            ct = AESGCM(self.keys[(kek, version)]).encrypt(
                n, bytes(dek.reveal()), dek_context(bid, kek, version)
            )
            out.append(n + ct)
        return out

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        out: list[SecretBytes | UnwrapError] = []
        for r in refs:
            key = self.keys.get((r.kek, r.version))
            try:
                assert key is not None
                pt = AESGCM(key).decrypt(
                    r.wrapped[:12], r.wrapped[12:], dek_context(r.backup_id, r.kek, r.version)
                )
            except (AssertionError, InvalidTag):
                out.append(UnwrapError(f"{r.backup_id} does not open"))
                continue
            out.append(SecretBytes(pt, "DEK"))
        return out

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        out: list[bytes | UnwrapError] = []
        for r, d in zip(refs, self.unwrap(refs), strict=True):
            if isinstance(d, UnwrapError):
                out.append(d)
                continue
            with d:
                out.append(self.wrap(r.kek, to_version, [(r.backup_id, d)])[0])
        return out

    def retire(self, kek: str, version: int) -> None:
        pass

    def destroy(self, kek: str, version: int) -> None:
        self.keys.pop((kek, version), None)

    def health(self) -> Health:
        return Health(self.name, True, "in memory")


def test_migrate_between_any_two_backends_then_to_quorum(
    svc: Service, cast: Cast, holders: list[Actor], tmp_path: Path
) -> None:
    """local -> softkms through the interface alone, then softkms -> quorum: each DEK
    opens to the same plaintext after each move, census per backend and version."""
    alice = holders[0]
    kms = SoftKms("softkms")
    svc.config.backends["softkms"] = {}
    svc.ctx._backends["softkms"] = kms
    made = backups(svc, cast, tmp_path, 4)
    with pytest.raises(CustodianError, match="not configured"):
        svc.migrations.to_backend("backups", "nowhere", by=alice, code=next_code(svc, cast.alice))
    with pytest.raises(CustodianError, match="holders present"):
        svc.migrations.to_backend("backups", "quorum", by=alice, code=next_code(svc, cast.alice))
    svc.migrations.to_backend("backups", "softkms", by=alice, code=next_code(svc, cast.alice))
    rep = svc.migrations.run("backups", by=alice)
    assert rep.finished and rep.rewrapped == 4
    assert census(svc) == {"local/v1": 0, "softkms/v2": 4}
    assert len(kms.keys) == 1
    got = restore_all(svc, cast, list(made), tmp_path / "r1")  # unwrapped by softkms
    assert sorted(got.values()) == sorted(made.values())
    svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    svc.migrations.run("backups", by=alice)
    assert census(svc) == {"local/v1": 0, "softkms/v2": 0, "quorum/v3": 4}
    assert [j.target_version for j in svc.migrations.jobs("backups")] == [2, 3]
    got = restore_all(svc, cast, list(made), tmp_path / "r2")
    assert sorted(got.values()) == sorted(made.values())
    res = svc.audit.verify()
    assert res.ok, res.summary()


# ---------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_sigkill_mid_migration_then_resume_loses_nothing(
    svc: Service, cast: Cast, holders: list[Actor], tmp_path: Path
) -> None:
    """SIGKILL `custodian kek rewrap` of a migration to quorum at random moments, resume
    each time; then every DEK is under the quorum version, every backup restores through
    an approved session, and the audit log verifies."""
    alice = holders[0]
    made = backups(svc, cast, tmp_path, 120)
    j = svc.migrations.to_quorum("backups", holders, 2, by=alice, code=next_code(svc, cast.alice))
    home = svc.home.path
    rng = random.Random(str(time.time()))
    watch = sqlite3.connect(f"file:{svc.home.catalog}?mode=ro", uri=True)

    def progress() -> int:
        (d,) = watch.execute("SELECT rewrapped + failed FROM rotation_jobs WHERE id=?", (j.id,))
        return int(d[0])

    def start() -> subprocess.Popen[bytes]:
        r, w = os.pipe()
        os.write(w, cast.alice.passphrase.encode() + b"\n")
        os.close(w)
        cmd = [sys.executable, "-m", "custodian.cli", "--home", str(home), "kek", "rewrap",
               "backups", "--as", "alice", "--passphrase-fd", str(r), "--batch", "3"]  # fmt: skip
        p = subprocess.Popen(
            cmd, pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        os.close(r)
        return p

    kills = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        p = start()
        at_start = progress()
        killed = False
        while kills < 6 and p.poll() is None:
            if progress() > at_start:
                time.sleep(rng.uniform(0, 0.004))
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                killed = True
                break
            time.sleep(0.002)
        if killed:
            kills += 1
            continue
        out = p.stdout.read().decode() if p.stdout else ""
        p.wait(timeout=60)
        assert p.returncode == 0, out
        break
    watch.close()
    assert kills >= 5, kills
    with Service.open(home) as fresh:
        fresh.clock = svc.clock
        assert census(fresh) == {"local/v1": 0, "quorum/v2": 120}
        job = fresh.keys.jobs("backups")[0]
        assert (job.state, job.rewrapped, job.failed) == ("done", 120, 0)
        got = restore_all(fresh, cast, list(made), tmp_path / "restored")
        assert sorted(got.values()) == sorted(made.values())
        res = fresh.audit.verify()
        assert res.ok, res.summary()


# ---------------------------------------------------------------- a new home: quorum by default


def test_a_quorum_home_has_no_kek_until_its_custodians_make_the_first(tmp_path: Path) -> None:
    """`custodian init` (quorum, the default) makes no KEK: the custodians are enrolled
    first (bootstrap, as the first set-up ceremony does), then the quorum KEK named at init
    is made with its holders present; backups go to it by default."""
    svc = Service.init(
        tmp_path / "q", keyring_backend="home-file", suite="x25519", custody="quorum"
    )
    try:
        assert svc.keys.list() == []
        svc.clock = Clock()
        alice_e = enrol(svc, "alice", ("custodian",), None)
        alice = unlock(svc, alice_e)
        people = [alice_e] + [enrol(svc, n, ("custodian",), alice) for n in ("bob", "carol")]
        bot_e = enrol(svc, "bot", ("operator",), alice, service=True)
        bot = unlock(svc, bot_e)
        with pytest.raises(CustodianError, match="no KEK named 'backups'"):
            svc.backups.encrypt(io.BytesIO(b"x"), tmp_path / "x.cbk", by=bot)
        holders = [unlock(svc, p) for p in people]
        k = svc.keys.create_quorum(
            svc.config.default_kek, holders, 2, by=alice, code=next_code(svc, alice_e)
        )
        assert (k.name, k.backend) == ("backups", "quorum")
        b = svc.backups.encrypt(io.BytesIO(b"first\n"), tmp_path / "first.cbk", by=bot)
        assert Path(b.location).read_bytes()[8] == 2
        assert svc.audit.verify().ok
    finally:
        svc.close()
    with pytest.raises(ValueError, match="single or quorum"):
        Service.init(tmp_path / "z", keyring_backend="home-file", custody="both")
    assert not (tmp_path / "z").exists()
