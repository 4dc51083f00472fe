"""People, their signing keys, TOTP steps and failed attempts, in the catalog."""

from __future__ import annotations

import sqlite3

from custodian.catalog.records import Person, SigningKey, utcnow
from custodian.errors import ConflictError, NotFoundError


class PeopleMixin:
    db: sqlite3.Connection

    def add_person(self, name: str, roles: tuple[str, ...], kind: str) -> None:
        try:
            self.db.execute(
                "INSERT INTO people(name, roles, kind, state, created_at) "
                "VALUES(?, ?, ?, 'active', ?)",
                (name, ",".join(roles), kind, utcnow()),
            )
        except sqlite3.IntegrityError:
            raise ConflictError(f"{name} is already enrolled; nothing was changed.") from None

    def add_signing_key(self, person: str, key_id: str, public: bytes, protection: str) -> None:
        now = utcnow()
        self.db.execute(
            "UPDATE signing_keys SET replaced_at=? WHERE person=? AND replaced_at IS NULL",
            (now, person),
        )
        self.db.execute(
            "INSERT INTO signing_keys(key_id, person, public_key, protection, created_at) "
            "VALUES(?, ?, ?, ?, ?)",
            (key_id, person, public, protection, now),
        )

    def set_totp(self, person: str, generation: int) -> None:
        self.db.execute(
            "INSERT INTO totp(person, generation, last_step, created_at) VALUES(?, ?, -1, ?) "
            "ON CONFLICT(person) DO UPDATE SET generation=excluded.generation, last_step=-1, "
            "created_at=excluded.created_at",
            (person, generation, utcnow()),
        )

    def totp_last_step(self, person: str) -> int:
        row = self.db.execute("SELECT last_step FROM totp WHERE person=?", (person,)).fetchone()
        return -1 if row is None else int(row[0])

    def use_totp_step(self, person: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already."""
        cur = self.db.execute(
            "UPDATE totp SET last_step=? WHERE person=? AND last_step < ?", (step, person, step)
        )
        return cur.rowcount == 1

    def auth_failures(self, person: str) -> dict[str, tuple[int, str]]:
        """Per kind of secret: (failures in a row, no attempt before this stamp)."""
        return {
            kind: (int(n), str(until))
            for kind, n, until in self.db.execute(
                "SELECT kind, failures, wait_until FROM auth_failures WHERE person=?", (person,)
            )
        }

    def add_auth_failure(self, person: str, kind: str, at: str) -> int:
        """Count one more failure in a row; returns the new count (call in a transaction)."""
        self.db.execute(
            "INSERT INTO auth_failures(person, kind, failures, last_at, wait_until) "
            "VALUES(?, ?, 1, ?, ?) ON CONFLICT(person, kind) DO UPDATE SET "
            "failures=failures + 1, last_at=excluded.last_at",
            (person, kind, at, at),
        )
        row = self.db.execute(
            "SELECT failures FROM auth_failures WHERE person=? AND kind=?", (person, kind)
        ).fetchone()
        return int(row[0])

    def set_auth_wait(self, person: str, kind: str, wait_until: str) -> None:
        self.db.execute(
            "UPDATE auth_failures SET wait_until=? WHERE person=? AND kind=?",
            (wait_until, person, kind),
        )

    def clear_auth_failures(self, person: str, kind: str | None = None) -> None:
        if kind is None:
            self.db.execute("DELETE FROM auth_failures WHERE person=?", (person,))
        else:
            self.db.execute("DELETE FROM auth_failures WHERE person=? AND kind=?", (person, kind))

    def set_person_state(self, name: str, state: str) -> None:
        self.db.execute(
            "UPDATE people SET state=?, disabled_at=? WHERE name=?",
            (state, utcnow() if state == "disabled" else None, name),
        )

    def set_person_roles(self, name: str, roles: tuple[str, ...]) -> None:
        self.db.execute("UPDATE people SET roles=? WHERE name=?", (",".join(roles), name))

    def people(self) -> list[Person]:
        keys: dict[str, list[SigningKey]] = {}
        for row in self.db.execute(
            "SELECT key_id, person, public_key, protection, created_at, replaced_at "
            "FROM signing_keys ORDER BY created_at"
        ):
            keys.setdefault(row[1], []).append(SigningKey(*row))
        gens = dict(self.db.execute("SELECT person, generation FROM totp").fetchall())
        return [
            Person(
                n,
                tuple(r.split(",")) if r else (),
                kind,
                state,
                created,
                dis,
                tuple(keys.get(n, ())),
                int(gens.get(n, 0)),
            )
            for n, r, kind, state, created, dis in self.db.execute(
                "SELECT name, roles, kind, state, created_at, disabled_at FROM people ORDER BY name"
            )
        ]

    def person(self, name: str) -> Person:
        for p in self.people():
            if p.name == name:
                return p
        raise NotFoundError(
            f"nobody named {name!r} is enrolled in this home; 'custodian people list' shows who is."
        )
