"""A ready demo home: local backend, a KEK with two versions, sample backups.

The demo home keeps its root key in a keyring file inside itself (never the
user's own keyring) and is marked ``demo = true`` in its configuration, which
later commands check before they reveal anything demo-only.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from custodian import people as P
from custodian.secret import SecretBytes
from custodian.service import Service

# Sample people. The README gives these passphrases; `custodian demo codes`
# shows their current TOTP codes (on a demo home only).
PEOPLE: list[tuple[str, tuple[str, ...], str | None]] = [
    ("alice", ("custodian",), "alice-demo-passphrase"),
    ("bob", ("custodian",), "bob-demo-passphrase"),
    # a third custodian: destroying a KEK version needs two approvers besides its requester
    ("carol", ("custodian",), "carol-demo-passphrase"),
    ("oscar", ("operator",), "oscar-demo-passphrase"),
    ("audrey", ("auditor",), "audrey-demo-passphrase"),
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


def build_demo(
    home: Path,
    *,
    backups: int = 1000,
    seed: int = 2026,
    progress: Callable[[int, int], None] | None = None,
) -> Service:
    """Create the demo home at ``home`` and fill it."""
    svc = Service.init(home, keyring_backend="home-file", demo=True)
    try:
        first = None
        for name, roles, phrase in PEOPLE:
            pw = SecretBytes(phrase.encode(), "passphrase") if phrase else None
            pending = svc.people.begin_enrolment(
                name, roles, passphrase=pw, by=first, service=phrase is None
            )
            code = P.hotp(pending.totp, P.current_step()) if pending.totp else None
            svc.people.complete_enrolment(pending, code, by=first)
            if first is None:
                first = svc.auth.unlock(name, pw)
        assert first is not None
        bot = svc.auth.unlock("backup-bot", None)
        rng = random.Random(seed)  # noqa: S311  (sample content only; keys use os.urandom)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=180)
        step = timedelta(days=180) / max(backups, 1)
        first_version = int(backups * 0.6)
        out = svc.home.backups
        for i in range(backups):
            if i == first_version:
                svc.keys.add_version(svc.config.default_kek, by=first)
            day = start + step * i
            system = SYSTEMS[i % len(SYSTEMS)]
            label = f"{system}-{day:%Y%m%d-%H%M}.sql"
            data = _sample(rng, system, day)
            svc.backups.encrypt(
                io.BytesIO(data),
                out / f"{label}.cbk",
                by=bot,
                label=label,
                created_at=day.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            )
            if progress is not None:
                progress(i + 1, backups)
    except BaseException:
        svc.close()
        raise
    return svc
