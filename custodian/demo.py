"""A ready demo home: local backend, a KEK with two versions, sample backups.

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

    People first, then the demo's policy (no waiting period between retiring a KEK
    version and destroying it: alice asks, bob and carol approve, as on any home,
    so the log records it before anything depends on it), then the sample backups,
    recorded in two group commits (:meth:`Backups.encrypt_samples`), one per KEK
    version. ``progress(done, total)`` counts backups. A build that fails removes
    the home it made.
    """
    svc = Service.init(home, keyring_backend="home-file", demo=True)
    try:
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
        bot = svc.auth.unlock("backup-bot", None)
        rng = random.Random(seed)  # noqa: S311  (sample content only; keys use os.urandom)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=180)
        step = timedelta(days=180) / max(backups, 1)
        first_version = int(backups * 0.6)
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
        svc.backups.encrypt_samples(samples[:first_version], out, by=bot, progress=step_done(0))
        if first_version < backups:
            svc.keys.add_version(svc.config.default_kek, by=first)
            svc.backups.encrypt_samples(
                samples[first_version:], out, by=bot, progress=step_done(first_version)
            )
        for secret in secrets.values():
            secret.wipe()
    except BaseException:
        svc.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)  # a new directory: Home.create refused any other
        raise
    return svc


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
