"""Fixtures for the TUI tests: a real home with people and backups.

``ui_svc`` is a real :class:`Service` on a home under ``tmp_path``. Snapshot
tests wrap it in :class:`Frozen`, which replaces what changes from run to run
(paths, ids, times, fingerprints, hashes) by fixed values on the way out,
and only on the way out: every call still goes to the real service.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from custodian.audit import VerifyResult
from custodian.catalog import Backup, Kek, Person
from custodian.people import Actor
from custodian.service import Service, Status
from tests.conftest import Cast, _make, unlock

FIXED_NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
# uuids, long hex or base64, paths: what differs between two runs
VARIABLE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}|[0-9a-f]{16,}|[A-Za-z0-9+/=]{40,}|/")
FULL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SUBJECT = re.compile(f"(?P<uuid>{FULL_UUID.pattern})|{VARIABLE.pattern}")
LABELS = ("pg-orders", "ldap", "etc-web01", "mail-archive", "gitlab-repos")


def fixed_clock() -> datetime:
    return FIXED_NOW


def stamp(i: int) -> str:
    return (FIXED_NOW - timedelta(hours=7 * i)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


@pytest.fixture
def ui_home(tmp_path: Path) -> Iterator[tuple[Service, Cast]]:
    """Two custodians, an operator, an auditor, a bot; a KEK with two versions; 24 backups."""
    svc, cast = _make(tmp_path / "home", "x25519")
    bot = unlock(svc, cast.bot)
    alice = unlock(svc, cast.alice)
    out = tmp_path / "out"
    out.mkdir()
    for i in range(24):
        if i == 14:
            svc.keys.add_version("backups", by=alice)
        label = f"{LABELS[i % len(LABELS)]}-{i:03d}.sql"
        svc.backups.encrypt(
            io.BytesIO(f"backup {i}\n".encode() * (i + 1)),
            out / f"{label}.cbk",
            by=bot,
            label=label,
            created_at=stamp(24 - i),
        )
    yield svc, cast
    svc.close()


@pytest.fixture
def ui_svc(ui_home: tuple[Service, Cast]) -> Service:
    return ui_home[0]


@pytest.fixture
def ui_cast(ui_home: tuple[Service, Cast]) -> Cast:
    return ui_home[1]


def fake_id(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


class Namespace:
    """A capability namespace of the real service with some of its calls replaced."""

    def __init__(self, real: Any, **calls: Any) -> None:
        self._real = real
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        if name in self._calls:
            return self._calls[name]
        return getattr(self._real, name)


class Frozen:
    """A real service whose outputs have their run-to-run values fixed, for snapshots."""

    def __init__(self, svc: Service) -> None:
        self._svc = svc
        self.keys = Namespace(svc.keys, list=self.keks)
        self.backups = Namespace(svc.backups, list=self.backups_list)
        self.people = Namespace(svc.people, list=self.people_list)
        self.audit = Namespace(svc.audit, entries=self.audit_entries, verify=self.audit_verify)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._svc, name)

    def status(self, **kw: Any) -> Status:
        st = self._svc.status(**kw)
        return replace(
            st,
            home=Path("/srv/custodian"),
            home_id="7d3f0c2a-1b9e-4c55-8e21-6a0f4b7d9e13",
            keks=tuple(self._kek(k) for k in st.keks),
        )

    @staticmethod
    def _kek(k: Kek) -> Kek:
        versions = tuple(
            replace(
                v,
                created_at=stamp(30 * (len(k.versions) - v.version) + 2),
                fingerprint=" ".join(f"{v.version:x}{n:03x}" for n in range(8)),
            )
            for v in k.versions
        )
        return replace(k, created_at=stamp(100), versions=versions)

    def keks(self) -> list[Kek]:
        return [self._kek(k) for k in self._svc.keys.list()]

    @staticmethod
    def _backup(b: Backup) -> Backup:
        return replace(b, id=fake_id(b.label))

    def backups_list(self, *args: Any, **kwargs: Any) -> list[Backup]:
        return [self._backup(b) for b in self._svc.backups.list(*args, **kwargs)]

    def people_list(self, **kwargs: Any) -> list[Person]:
        out = []
        for p in self._svc.people.list(**kwargs):
            keys = tuple(
                replace(k, key_id=fake_id(p.name + str(i)).replace("-", ""), created_at=stamp(50))
                for i, k in enumerate(p.keys)
            )
            out.append(replace(p, created_at=stamp(50), keys=keys))
        return out

    def audit_entries(self, **kwargs: Any) -> list[dict[str, Any]]:
        out = []
        for e in self._svc.audit.entries(**kwargs):
            seq = int(e["seq"])
            f = dict(e)
            f["time"] = stamp(2000 - seq)
            for k in ("hash", "prev", "key_id"):
                f[k] = (fake_id(f"{k}{seq}").replace("-", "") * 2)[: len(str(e[k]))]
            f["sig"] = "A" * len(e["sig"])
            f["subject"] = VARIABLE.sub("…", str(e.get("subject", "")))
            if FULL_UUID.search(str(e.get("subject", ""))):
                # a whole id keeps its width (the Subject column is as wide as in real use)
                f["subject"] = self._subject(seq, e)
            if isinstance(f.get("details"), dict):
                f["details"] = {
                    k: "…" if k in ("step", "seq") or VARIABLE.search(str(v)) else v
                    for k, v in f["details"].items()
                }
            out.append(f)
        return out

    @staticmethod
    def _subject(seq: int, e: dict[str, Any]) -> str:
        """Ids in a subject made fixed, the same as the backups screen shows them."""
        details = e.get("details") if isinstance(e.get("details"), dict) else {}
        seed = str(details.get("label") or f"subject{seq}")

        def fixed(m: re.Match[str]) -> str:
            return fake_id(seed) if m["uuid"] else "…"

        return SUBJECT.sub(fixed, str(e.get("subject", "")))

    def audit_verify(self, **kwargs: Any) -> VerifyResult:
        r = self._svc.audit.verify(**kwargs)
        return replace(
            r,
            head=(fake_id("head").replace("-", "") * 2)[: len(r.head)],
            checkpoint=VARIABLE.sub("…", r.checkpoint),
        )


def sign_in_directly(app: Any, actor: Actor) -> None:
    """Put an already unlocked actor into the app, as the sign-in dialog would."""
    app.actor = actor
    app.who = f"{actor.name} ({', '.join(actor.roles)})"
