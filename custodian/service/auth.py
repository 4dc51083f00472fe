"""``svc.auth``: unlocking a person's key, TOTP checks, signing in and out.

The CLI's ``--as`` is :meth:`Auth.unlock`; the TUI signs in with
:meth:`Auth.sign_in` (passphrase, then a fresh TOTP code). Every failure is
logged; a code counts once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from custodian import people as P
from custodian.errors import CustodianError, NotFoundError
from custodian.people import Actor, AuthError
from custodian.secret import SecretBytes
from custodian.service.context import HomeContext

if TYPE_CHECKING:
    from custodian.service.attempts import Lockout


class Auth:
    """Who is acting: unlocked signing keys and fresh codes."""

    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def unlock(self, name: str, passphrase: SecretBytes | None) -> Actor:
        """Unlock a person's signing key (the CLI's --as). Failures are logged."""
        ctx = self._ctx
        try:
            p = ctx.catalog.person(name)
        except NotFoundError:
            ctx.record_refusal(None, "person.unlock", f"person:{ctx.hmac(name)}", "no such person")
            raise AuthError(f"nobody named {name!r} is enrolled; nothing was done.") from None
        subject = f"person:{name}"
        if not p.active or p.kind == "home":
            ctx.record_refusal(None, "person.unlock", subject, "person is disabled")
            raise AuthError(f"{name} is disabled and cannot act; nothing was done.")
        k = p.key
        blob = ctx.keyring.get(f"sign:{name}:{k.key_id}") if k else None
        if k is None or blob is None:
            raise AuthError(
                f"{name}'s signing key is not in this keyring ({ctx.keyring.description}); "
                "use the workstation where they enrolled, or have a custodian replace the key."
            )
        n, until = 0, 0.0
        if passphrase is not None:  # nothing typed, nothing to guess: a service identity
            # Counted before the key derivation, under the catalog's lock, so that
            # attempts in parallel each find those before them; a success clears it.
            from custodian.service.attempts import until_stamp

            with ctx.catalog.transaction():
                ctx.attempts.gate(name, "person.unlock", subject, None)
                n = ctx.catalog.add_auth_failure(name, "passphrase", ctx.now())
                wait = ctx.attempts.wait_after(n)
                until = ctx.clock() + wait
                ctx.catalog.set_auth_wait(name, "passphrase", until_stamp(ctx.clock(), wait))
        try:
            opened = P.open_signing_key(
                name,
                k.key_id,
                blob,
                passphrase,
                home_id=ctx.config.home_id,
                personal_blob=ctx.keyring.get(f"personal:{name}:{k.key_id}"),
            )
        except AuthError as e:
            ctx.record_refusal(
                None, "person.unlock", subject, "wrong passphrase", {"failures": n} if n else None
            )
            if not n:
                raise e from None
            err = AuthError(str(e) + ctx.attempts.next_try(name, n, until, ctx.clock()))
            err.logged = True
            raise err from None
        if n:
            with ctx.catalog.transaction():
                ctx.catalog.clear_auth_failures(name, "passphrase")
        actor = Actor(name, p.roles, k.key_id, opened.key, opened.personal)
        if opened.from_v1 and passphrase is not None:
            self._upgrade(actor, opened.key, passphrase)
        return actor

    def _upgrade(self, actor: Actor, key: Any, passphrase: SecretBytes) -> None:
        """A version 1 (scrypt) key blob becomes version 2 (a personal key under Argon2id)
        at its first unlock, under the same passphrase; the entry says so."""
        ctx = self._ctx
        with P.private_raw(key) as raw:
            blob, pblob, pk = P.seal_signing_key(
                actor.name,
                raw,
                passphrase,
                home_id=ctx.config.home_id,
                kdf=P.kdf_params(ctx.config.demo),
            )
        params = P.kdf_params(ctx.config.demo)
        with ctx.audited(
            actor,
            "person.key.protect",
            f"person:{actor.name}",
            {"key_id": actor.key_id, "protection": "personal key", "kdf": params.label},
        ):
            if pblob is not None:
                ctx.keyring.set(f"personal:{actor.name}:{actor.key_id}", pblob)
            ctx.keyring.set(f"sign:{actor.name}:{actor.key_id}", blob)
        actor._personal = pk

    def lockout(self, name: str) -> Lockout | None:
        """``name``'s failed attempts in a row and the wait they impose (None: none)."""
        return self._ctx.attempts.status(name)

    def check_totp(
        self, actor: Actor, code: str, action: str = "totp.check", subject: str | None = None
    ) -> int:
        """Accept ``code`` for ``actor`` once (see :meth:`HomeContext.check_totp`)."""
        return self._ctx.check_totp(actor, code, action, subject)

    def sign_in(self, name: str, passphrase: SecretBytes, code: str) -> Actor:
        """TUI sign-in: passphrase unlocks the key, then a fresh TOTP code."""
        ctx = self._ctx
        actor = self.unlock(name, passphrase)
        if actor.roles == ("operator",) and ctx.catalog.person(name).kind == "service":
            raise AuthError(f"{name} is a service identity and cannot sign in.")
        try:
            with ctx.catalog.transaction():
                step = ctx.check_totp(actor, code, "person.sign_in")
                ctx.record(actor, "person.sign_in", f"person:{name}", details={"step": step})
        except CustodianError:
            actor.forget()
            raise
        return actor

    def sign_out(self, actor: Actor) -> None:
        """End a session. A key that was replaced, or a person disabled, while
        signed in signs nothing more: the home key records the sign-out then."""
        ctx = self._ctx
        subject = f"person:{actor.name}"
        try:
            try:
                p = ctx.catalog.person(actor.name)
                current = p.active and p.key is not None and p.key.key_id == actor.key_id
            except NotFoundError:
                current = False
            if current:
                ctx.record(actor, "person.sign_out", subject)
            else:
                ctx.record(
                    ctx.home_actor(),
                    "person.sign_out",
                    subject,
                    details={"note": "key replaced or person disabled during the session"},
                )
        finally:
            actor.forget()
