"""KEK backends: one interface (:class:`KekBackend`), several engines.

``local`` is embedded and needs no server. ``vault`` (HashiCorp Vault or
OpenBao transit) and ``aws-kms`` come with their own issue and implement the
same interface.
"""

from custodian.backends.base import (
    DekRef,
    Health,
    KekBackend,
    VersionMaterial,
    dek_context,
)

__all__ = ["DekRef", "Health", "KekBackend", "VersionMaterial", "dek_context"]
