"""Which code serves a configured backend, and what every backend is given.

A home's configuration names its backends, one ``[backends.NAME]`` section
each; the section's ``kind`` (its name when absent: ``[backends.vault]`` is
of kind ``vault``) picks the code. A kind is registered as a dotted path to a
factory, imported on first use, so a home that never uses a server backend
never imports its client library::

    KINDS["aws-kms"] = "custodian.backends.aws_kms:open_backend"

or, at run time, ``register("aws-kms", "custodian.backends.aws_kms:open_backend")``.
A factory is ``open_backend(name, options, env) -> KekBackend``: ``options``
is the section as read (raise :class:`custodian.errors.ConfigError` naming
the setting when one is wrong), ``env`` a :class:`BackendEnv`.

Optional methods a backend may have beyond :class:`~custodian.backends.base.KekBackend`
(the service looks for them with ``getattr``):

- ``check(keks) -> Health``: the detailed health (reachable, authenticated,
  each KEK's key present, permissions enough to wrap, unwrap, rewrap) that
  ``custodian backend check`` and the dashboard show; without it, ``health()``.
- ``use_credential(purpose, secret)`` / ``drop_credential(purpose)``: a
  credential handed in for one ceremony (``purpose`` is ``"custody"``: the one
  that decrypts, rewraps and manages keys); the backend keeps it in memory only.
- ``close()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from custodian.backends.base import KekBackend
from custodian.catalog import Catalog
from custodian.errors import BackendError, ConfigError
from custodian.keystore import SealedStore
from custodian.secret import SecretBytes

# kind -> "module:function". "local" and "quorum" are built in (the context makes them).
KINDS: dict[str, str] = {
    "vault": "custodian.backends.vault:open_backend",
    "aws-kms": "custodian.backends.aws_kms:open_backend",
}
EMBEDDED_KINDS = ("local", "quorum")


@dataclass(frozen=True)
class BackendEnv:
    """What a backend gets from the home that opens it."""

    home_id: str
    catalog: Catalog  # read the KEK versions' recorded fingerprints before trusting a server
    sealed: SealedStore  # wrap-only credentials live here, sealed by the KSK
    ksk: Callable[[], SecretBytes]


Factory = Callable[[str, Mapping[str, Any], BackendEnv], KekBackend]


def register(kind: str, target: str | Factory) -> None:
    """Make ``kind`` available to ``[backends.NAME]`` sections (``kind = "..."``)."""
    if kind in EMBEDDED_KINDS:
        raise ValueError(f"{kind!r} is built in")
    _FACTORIES.pop(kind, None)
    if isinstance(target, str):
        KINDS[kind] = target
    else:
        KINDS.pop(kind, None)
        _FACTORIES[kind] = target


_FACTORIES: dict[str, Factory] = {}


def kind_of(name: str, options: Mapping[str, Any]) -> str:
    return str(options.get("kind", name))


def factory(kind: str) -> Factory:
    if kind in _FACTORIES:
        return _FACTORIES[kind]
    target = KINDS.get(kind)
    if target is None:
        raise ConfigError(
            f"backend kind {kind!r} is unknown; use one of "
            f"{', '.join([*EMBEDDED_KINDS, *sorted(KINDS)])}."
        )
    module, _, attr = target.partition(":")
    try:
        fn: Factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise BackendError(
            f"backend kind {kind!r} is not available in this installation ({e.__class__.__name__}: "
            f"{e}); nothing was done."
        ) from None
    _FACTORIES[kind] = fn
    return fn


def open_backend(name: str, options: Mapping[str, Any], env: BackendEnv) -> KekBackend:
    """The backend of section ``[backends.NAME]`` (not the embedded ones)."""
    return factory(kind_of(name, options))(name, options, env)
