"""A ready demo home: a quorum KEK held by alice, bob and carol (any two of three), a
single-custody KEK with two versions to rotate or migrate, sample backups.

It is built as a real home is: everyone enrolled first (bootstrap, the home key
signing the first enrolment), then the quorum KEK made with its three holders
present, which ends bootstrap. Each person's passphrase protects their keys with
cheap Argon2id parameters (:data:`custodian.custody.personal.CHEAP_KDF`, 8 MiB,
one pass), which the home records and the dashboard and ``custodian demo`` say:
the demo passphrases are printed in the README, so nothing is lost, and every
ceremony (a holder typing a passphrase) is quick to try alone.

The demo home keeps its root key in a keyring file inside itself (never the
user's own keyring) and is marked ``demo = true`` in its configuration, which
later commands check before they reveal anything demo-only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from custodian import people as P
from custodian.approvals import Request
from custodian.secret import SecretBytes
from custodian.service import Service

# Sample people. The README gives these passphrases; `custodian demo codes`
# shows their current TOTP codes (on a demo home only).
PEOPLE: list[tuple[str, tuple[str, ...], str | None]] = [
    ("alice", ("custodian",), "alice demo passphrase for trying"),
    ("bob", ("custodian",), "bob demo passphrase for trying"),
    # a third custodian: destroying a KEK version needs two approvers besides its requester
    ("carol", ("custodian",), "carol demo passphrase for trying"),
    ("oscar", ("operator",), "oscar demo passphrase for trying"),
    ("audrey", ("auditor",), "audrey demo passphrase for trying"),
    ("backup-bot", ("operator",), None),  # a service identity, as a cron job would use
]

SYSTEMS = [
    "pg-orders",
    "pg-billing",
    "mysql-crm",
    "etc-web01",
    "etc-web02",
    "ldap",
    "gitlab-repos",
    "mail-archive",
    "hr-files",
    "vault-snapshot",
]


def _sample(rng: random.Random, system: str, day: datetime) -> bytes:
    lines = [f"-- {system} backup taken {day:%Y-%m-%d %H:%M} UTC (demo data, not real)"]
    for i in range(rng.randint(20, 120)):
        lines.append(
            f"INSERT INTO t_{system.replace('-', '_')} VALUES ({i}, "
            f"'{rng.getrandbits(64):016x}', {rng.randint(0, 10**6)});"
        )
    return ("\n".join(lines) + "\n").encode()


QUORUM_KEK = "backups"  # the default KEK: alice, bob and carol hold shares, 2 of 3
HOLDERS = ("alice", "bob", "carol")
QUORUM_M = 2
SINGLE_KEK = "legacy"  # single custody (a key pair sealed by the root key), two versions
QUORUM_SHARE = 0.7  # of the sample backups, under the quorum KEK; the rest under legacy
LEGACY_FIRST = 0.6  # of legacy's backups, under its version 1
KDF_NOTE = (
    "passphrases here protect keys with cheap Argon2id parameters (8 MiB, 1 pass; a real "
    "home uses 512 MiB, 2 passes)"
)

# A retired KEK version may be destroyed at once on a demo home (7 days elsewhere), so
# that destruction can be tried alone; the dashboard and the key dialogs say so.
DEMO_RETIREMENT_WAIT_DAYS = 0
DEMO_POLICY_REASON = (
    "demo home: a retired KEK version may be destroyed at once, so that every ceremony "
    "can be tried alone"
)


def build_demo(
    home: Path,
    *,
    backups: int = 1000,
    seed: int = 2026,
    progress: Callable[[int, int], None] | None = None,
) -> Service:
    """Create the demo home at ``home`` and fill it.

    The single-custody KEK ``legacy`` first (the home key makes it, as ``init
    --custody single`` does), then the people (bootstrap), then the demo's policy
    (no waiting period between retiring a KEK version and destroying it: alice
    asks, bob and carol approve, as on any home, so the log records it before
    anything depends on it), then the quorum KEK ``backups`` with alice, bob and
    carol present (carol confirms with a code), then the sample backups: most
    under ``backups`` (wrapped to the holders, format 2), the rest under
    ``legacy`` v1 and v2, recorded in group commits
    (:meth:`Backups.encrypt_samples`). ``progress(done, total)`` counts backups.
    A build that fails removes the home it made.
    """
    svc = Service.init(
        home, kek=QUORUM_KEK, keyring_backend="home-file", demo=True, custody="quorum"
    )
    try:
        svc.keys.create(
            SINGLE_KEK,
            by=svc.ctx.home_actor(),
            purpose="single custody: rotate it, or migrate it to the holders",
        )
        first = None
        secrets: dict[str, SecretBytes] = {}
        phrases: dict[str, SecretBytes | None] = {}
        for name, roles, phrase in PEOPLE:
            pw = SecretBytes(phrase.encode(), "passphrase") if phrase else None
            phrases[name] = pw
            pending = svc.people.begin_enrolment(
                name, roles, passphrase=pw, by=first, service=phrase is None
            )
            code = None
            if pending.totp is not None:
                secrets[name] = SecretBytes(bytes(pending.totp.reveal()), "TOTP secret")
                # the step before this one (accepted, one step either side): the current
                # code is then free for whoever signs in right after the build
                code = P.hotp(pending.totp, P.current_step() - 1)
            svc.people.complete_enrolment(pending, code, by=first)
            if first is None:
                first = svc.auth.unlock(name, pw)
        assert first is not None
        _demo_policy(svc, first, secrets, phrases)
        holders = [svc.auth.unlock(n, phrases[n]) for n in HOLDERS]
        # carol's current code went to the policy; the next step is within the window
        svc.keys.create_quorum(
            QUORUM_KEK,
            holders,
            QUORUM_M,
            by=holders[2],
            code=P.hotp(secrets["carol"], P.current_step() + 1),
            purpose="default KEK for backups: any two of alice, bob, carol",
        )
        bot = svc.auth.unlock("backup-bot", None)
        rng = random.Random(seed)  # noqa: S311  (sample content only; keys use os.urandom)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=180)
        step = timedelta(days=180) / max(backups, 1)
        n_quorum = int(backups * QUORUM_SHARE)
        n_legacy1 = int((backups - n_quorum) * LEGACY_FIRST)
        samples = []
        for i in range(backups):
            day = start + step * i
            system = SYSTEMS[i % len(SYSTEMS)]
            label = f"{system}-{day:%Y%m%d-%H%M}.sql"
            samples.append(
                (_sample(rng, system, day), label, day.strftime("%Y-%m-%dT%H:%M:%S.000000Z"))
            )

        def step_done(base: int) -> Callable[[int, int], None]:
            def report(done: int, _total: int) -> None:
                if progress is not None:
                    progress(base + done, backups)

            return report

        out = svc.home.backups
        # interleaved in time: every tenth system's backups are legacy ones
        legacy = [s for i, s in enumerate(samples) if _is_legacy(i, backups, n_quorum)]
        quorum = [s for i, s in enumerate(samples) if not _is_legacy(i, backups, n_quorum)]
        svc.backups.encrypt_samples(quorum, out, by=bot, progress=step_done(0))
        base = len(quorum)
        svc.backups.encrypt_samples(
            legacy[:n_legacy1], out, by=bot, kek=SINGLE_KEK, progress=step_done(base)
        )
        svc.keys.add_version(SINGLE_KEK, by=first)
        svc.backups.encrypt_samples(
            legacy[n_legacy1:], out, by=bot, kek=SINGLE_KEK, progress=step_done(base + n_legacy1)
        )
        for secret in secrets.values():
            secret.wipe()
    except BaseException:
        svc.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)  # a new directory: Home.create refused any other
        raise
    return svc


def _is_legacy(i: int, total: int, n_quorum: int) -> bool:
    """Whether sample ``i`` of ``total`` goes under the single-custody KEK: spread evenly,
    ``total - n_quorum`` of them."""
    n = total - n_quorum
    return n > 0 and (i * n) // total != ((i + 1) * n) // total


def _demo_policy(
    svc: Service,
    alice: P.Actor,
    secrets: dict[str, SecretBytes],
    phrases: dict[str, SecretBytes | None],
) -> None:
    """The demo's shorter retirement wait, the way any home loosens its policy: a
    request by alice that two other custodians approve, each with a fresh code (the
    current step; their enrolment used the one before)."""
    r = svc.policy.set(
        "retirement_wait_days", DEMO_RETIREMENT_WAIT_DAYS, by=alice, reason=DEMO_POLICY_REASON
    )
    if not isinstance(r, Request):  # already as short (cannot happen on a new home)
        return
    for name in ("bob", "carol"):
        by = svc.auth.unlock(name, phrases[name])
        svc.approvals.approve(r.id, P.hotp(secrets[name], P.current_step()), by=by)
