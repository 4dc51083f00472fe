"""Online guessing, bounded: one counter per person for wrong passphrases and codes.

Every check of a secret a person types goes through :class:`Attempts`: the
passphrase that unlocks a signing key (the CLI's ``--as``, TUI sign-in) in
:meth:`custodian.service.auth.Auth.unlock`, and every TOTP code (sign-in,
approve and deny, KEK ceremonies) in :meth:`HomeContext.check_totp`. Before
the secret is even looked at, :meth:`Attempts.gate` refuses a person who must
wait: after ``auth_backoff_after`` failures in a row each further attempt waits
``auth_backoff_seconds``, doubling per failure; from ``auth_lockout_after``
failures on the person is locked for ``auth_lockout_minutes``, doubling per
further failure, at most a day. A correct secret during a wait is refused like
a wrong one (otherwise the wait would not slow a guesser down). The counts
live in the catalog (migration 7), per kind of secret: a success clears the
count of its own kind only, so a guesser who knows the passphrase cannot reset
the count of codes by unlocking again. Each refusal is logged; lifting a
lockout early is a ``person.unlock`` request that custodians approve
(:meth:`custodian.service.people.People.request_unlock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from custodian import approvals as A
from custodian.people import Actor, AuthError

if TYPE_CHECKING:
    from custodian.service.context import HomeContext

KINDS = ("passphrase", "totp")
MAX_WAIT = 86400  # one day: the longest a single failure makes anyone wait


@dataclass(frozen=True)
class Lockout:
    """Where a person stands: failures in a row (the larger kind) and the wait."""

    person: str
    failures: int
    until: str  # service-clock stamp before which no attempt is tried
    until_epoch: float
    locked: bool  # True: a lockout; False: a backoff (or no wait left)

    def waiting(self, now: float) -> bool:
        return now < self.until_epoch


def until_stamp(now: float, wait: int) -> str:
    """The stored "no attempt before" stamp (the epoch when there is no wait)."""
    return A.stamp(now + wait if wait else 0)


def _epoch(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _when(t: float, now: float) -> str:
    left = max(1, int(t - now + 0.999))
    if left < 120:
        rel = f"{left} s"
    elif left < 7200:
        rel = f"{left // 60} min"
    else:
        rel = f"{left // 3600} h {left % 3600 // 60} min"
    return f"{A.stamp(t)[11:19]} UTC{'' if left < 86400 else ' ' + A.stamp(t)[:10]} (in {rel})"


class Attempts:
    """The per-person counter shared by every check of a passphrase or a TOTP code."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def status(self, person: str) -> Lockout | None:
        """The person's count and wait, or None when they have no failure counted."""
        rows = self._ctx.catalog.auth_failures(person)
        if not rows:
            return None
        failures = max(n for n, _ in rows.values())
        until = max(u for _, u in rows.values())
        return Lockout(
            person,
            failures,
            until,
            _epoch(until),
            failures >= self._ctx.policy.auth_lockout_after,
        )

    def wait_after(self, failures: int) -> int:
        """Seconds the ``failures``-th failure in a row makes the next attempt wait."""
        pol = self._ctx.policy
        if failures >= pol.auth_lockout_after:
            extra = failures - pol.auth_lockout_after
            return int(min(MAX_WAIT, pol.auth_lockout_minutes * 60 * 2 ** min(extra, 20)))
        if failures >= pol.auth_backoff_after:
            extra = failures - pol.auth_backoff_after
            return int(min(MAX_WAIT, pol.auth_backoff_seconds * 2 ** min(extra, 20)))
        return 0

    def gate(self, person: str, action: str, subject: str, signer: Actor | None) -> None:
        """Refuse (and log) an attempt by ``person`` while they must wait. Call under the
        catalog's write lock (in a transaction), so that parallel attempts queue here.
        ``signer`` signs the refusal (the person's own unlocked key at a TOTP check;
        None: the home key)."""
        ctx = self._ctx
        st = self.status(person)
        now = ctx.clock()
        if st is None or not st.waiting(now):
            return
        when = _when(st.until_epoch, now)
        if st.locked:
            reason = f"locked until {st.until} after {st.failures} failed attempts"
            msg = (
                f"{person} is locked after {st.failures} failed attempts in a row, until "
                f"{when}; nothing was tried or done. Try again then, or ask custodians to "
                f"lift it early: custodian people unlock {person} --reason TEXT --as NAME."
            )
        else:
            reason = f"backoff: wait until {st.until} after {st.failures} failed attempts"
            msg = (
                f"{st.failures} failed attempts in a row for {person}: the next attempt is "
                f"allowed at {when}; nothing was tried or done. Wait, then try again."
            )
        ctx.record_refusal(signer, action, subject, reason, {"failures": st.failures})
        err = AuthError(msg)
        err.logged = True
        raise err

    def count_failure(self, person: str, kind: str) -> str:
        """Count a failure of ``kind``, kept even though the caller's transaction rolls
        back (it is applied at the transaction's end, under the same lock). Returns the
        sentence to add to the caller's message: what the next attempt faces."""
        ctx = self._ctx
        now = ctx.clock()
        n = ctx.catalog.auth_failures(person).get(kind, (0, ""))[0] + 1
        wait = self.wait_after(n)

        def store() -> None:
            count = ctx.catalog.add_auth_failure(person, kind, A.stamp(now))
            ctx.catalog.set_auth_wait(person, kind, until_stamp(now, self.wait_after(count)))

        ctx.catalog.after_transaction(store)
        return self.next_try(person, n, now + wait, now)

    def next_try(self, person: str, n: int, until: float, now: float) -> str:
        pol = self._ctx.policy
        if n >= pol.auth_lockout_after:
            return (
                f" {n} failed attempts in a row: {person} is now locked until {_when(until, now)}."
            )
        if until > now:
            return f" {n} failed attempts in a row: the next try waits until {_when(until, now)}."
        if n > 1:
            return f" ({n} failed in a row; from {pol.auth_backoff_after} on, each try waits.)"
        return ""

    def succeeded(self, person: str, kind: str) -> None:
        """A right secret of ``kind``: its count starts again (the other kind's does not)."""
        ctx = self._ctx
        if kind in ctx.catalog.auth_failures(person):
            ctx.catalog.after_transaction(lambda: ctx.catalog.clear_auth_failures(person, kind))

    def lift(self, person: str) -> None:
        """Clear every count of ``person`` (an approved person.unlock request, inside its
        transaction)."""
        self._ctx.catalog.clear_auth_failures(person)
