"""``svc.backends``: the home's KEK backends, their health and their credentials.

- :meth:`Backends.check` is ``custodian backend check`` and the dashboard's
  health: reachable, authenticated, each KEK's key present, permissions enough.
- :meth:`Backends.configure` writes a ``[backends.NAME]`` section (a custodian,
  audited with every setting; a section that KEKs already use is not changed).
- :meth:`Backends.set_wrap_credential` seals an operator's wrap-only credential
  by the KSK after checking that it is wrap-only.
- :meth:`Backends.custody` hands a credential that decrypts and rewraps to the
  backend for one ceremony: in memory only, never stored, never logged, dropped
  when the ``with`` block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from custodian.backends.base import EMBEDDED, Health
from custodian.errors import ConfigError, ConflictError, CustodianError
from custodian.people import Actor
from custodian.secret import SecretBytes
from custodian.service.context import HomeContext

BUILT_IN = ("local", "quorum")
CHECKING = "checking…"  # a server backend's health before its check has answered


class Backends:
    def __init__(self, ctx: HomeContext) -> None:
        self._ctx = ctx

    def names(self) -> list[str]:
        """The configured backends (``quorum`` is built in and needs no section)."""
        return list(self._ctx.config.backends)

    def kind(self, name: str) -> str:
        from custodian.backends.registry import kind_of

        if name == "quorum":
            return "quorum"
        return kind_of(name, self._ctx.config.backends.get(name, {}))

    def keks_of(self, name: str) -> list[str]:
        return [k.name for k in self._ctx.catalog.keks() if k.backend == name]

    def check(self, name: str) -> Health:
        """The backend's health, every check in words; never raises for a backend that is
        down or misconfigured (the health says so)."""
        ctx = self._ctx
        if name == "local" and not ctx.backend_loaded(name):
            return Health(name, True, EMBEDDED)
        try:
            be = ctx.backend(name)
            check = getattr(be, "check", None)
            if check is not None:
                h: Health = check(self.keks_of(name))
                return h
            return be.health()
        except CustodianError as e:
            return Health(name, False, str(e))

    def check_options(
        self,
        name: str,
        options: Mapping[str, Any],
        custody: SecretBytes | None = None,
        wrap: SecretBytes | None = None,
    ) -> Health:
        """The health of a backend not configured yet, with the credentials it would get
        (the KEK creation ceremony checks before anything is created: a wrap credential
        that can do more than wrap fails it). Nothing is written."""
        from custodian.backends import registry

        ctx = self._ctx
        env = registry.BackendEnv(ctx.config.home_id, ctx.catalog, ctx.sealed, ctx.load_ksk)
        try:
            be = registry.open_backend(name, options, env)
        except CustodianError as e:
            return Health(name, False, str(e))
        try:
            if custody is not None:
                _any(be).use_credential("custody", custody)
            if wrap is not None:
                _any(be).use_credential("wrap", wrap)
            check = getattr(be, "check", None)
            return check(()) if check is not None else be.health()
        except CustodianError as e:
            return Health(name, False, str(e))
        finally:
            close = getattr(be, "close", None)
            if close is not None:
                close()

    def configure(self, name: str, options: Mapping[str, Any], *, by: Actor) -> None:
        """Add backend ``name`` to the configuration with ``options`` (a custodian). The
        same options again change nothing; other options for a backend that KEKs use are
        refused: their versions' fingerprints name the server and key."""
        from custodian.backends import registry
        from custodian.container import BACKEND_RE

        ctx = self._ctx
        action, subject = "backend.configure", f"backend:{name}"
        ctx.require(by, "custodian", action, subject)
        opts = {str(k): v for k, v in options.items() if v not in (None, "")}
        if name in BUILT_IN or not BACKEND_RE.fullmatch(name):
            raise ctx.refused(
                by, action, subject, "bad name",
                f"{name!r} cannot name a backend: use 1 to 32 lowercase letters, digits or '-', "
                "not local or quorum. Nothing was changed.",
            )  # fmt: skip
        registry.factory(registry.kind_of(name, opts))  # an unknown kind is refused by name
        env = registry.BackendEnv(ctx.config.home_id, ctx.catalog, ctx.sealed, ctx.load_ksk)
        be = registry.open_backend(name, opts, env)  # options checked (ConfigError says which)
        close = getattr(be, "close", None)
        if close is not None:
            close()
        old = ctx.config.backends.get(name)
        if old == opts:
            return
        if old is not None and self.keks_of(name):
            raise ctx.refused(
                by, action, subject, "backend in use",
                f"backend {name} is used by KEK(s) {', '.join(self.keks_of(name))}; its "
                "settings stay as they are (the versions' fingerprints name its server and "
                "key). Nothing was changed.",
                ConflictError,
            )  # fmt: skip
        backends = {**ctx.config.backends, name: opts}
        with ctx.audited(by, action, subject, {"kind": registry.kind_of(name, opts), **opts}):
            cfg = replace(ctx.config, backends=backends)
            cfg.save(ctx.home.config)
            ctx.config = cfg
            ctx._backends.pop(name, None)

    def set_wrap_credential(self, name: str, secret: SecretBytes, *, by: Actor) -> Health:
        """Seal ``secret`` (a token or AppRole secret id) as backend ``name``'s wrap
        credential, after checking that it authenticates and cannot decrypt or rewrap."""
        from custodian.backends.vault_types import sealed_credential

        ctx = self._ctx
        action, subject = "backend.credential.set", f"backend:{name}"
        ctx.require(by, "custodian", action, subject)
        be = ctx.backend(name)
        use = getattr(be, "use_credential", None)
        if use is None:
            raise ConfigError(f"backend {name} takes no credential.")
        use("wrap", secret)
        try:
            try:
                problem = _any(be).wrap_only_problem(self.keks_of(name))
            except CustodianError as e:
                problem = str(e)
            if problem:
                raise ctx.refused(
                    by, action, subject, "not a wrap-only credential",
                    f"{problem}. Nothing was stored.",
                )  # fmt: skip
            with ctx.audited(by, action, subject, {"purpose": "wrap"}):
                ctx.sealed.seal(ctx.load_ksk(), sealed_credential(name), secret)
        finally:
            _any(be).drop_credential("wrap")
        return self.check(name)

    @contextmanager
    def custody(self, name: str, secret: SecretBytes | None) -> Iterator[None]:
        """Within the block, backend ``name`` holds ``secret`` as its custody credential
        (decrypt, rewrap, manage keys). ``None`` changes nothing (the embedded backends)."""
        if secret is None or name in BUILT_IN:
            yield
            return
        be = self._ctx.backend(name)
        use = getattr(be, "use_credential", None)
        if use is None:
            raise ConfigError(f"backend {name} takes no custody credential.")
        use("custody", secret)
        try:
            yield
        finally:
            _any(be).drop_credential("custody")


def _any(be: object) -> Any:
    """A backend's optional methods (custodian.backends.registry lists them)."""
    return be
