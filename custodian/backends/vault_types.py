"""What the ``vault`` backend reads and records (:mod:`custodian.backends.vault`): its
settings (:class:`VaultOptions`), the DEK's derivation context, the version
fingerprint, the policies of its two credentials and its error texts; no client
code, so the CLI and the configuration check read them without ``hvac``."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from custodian.errors import ConfigError

KIND = "vault"
KEY_TYPE = "aes256-gcm96"
FIRST_BATCH = 249  # items a default listener accepts with a context (1,000 JSON strings)
MAX_BATCH = 4096
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONCURRENCY = 2
CONTEXT_LABEL = b"custodian/v1/vault-dek\0"
PURPOSES = ("wrap", "custody")
AUTHS = ("token", "approle")
# settings that would put a secret in the configuration file: refused by name
SECRET_SETTINGS = (
    "token",
    "secret_id",
    "wrap_token",
    "custody_token",
    "decrypt_token",
    "wrap_secret_id",
    "custody_secret_id",
    "password",
)
KNOWN_SETTINGS = {
    "kind",
    "address",
    "mount",
    "key_prefix",
    "namespace",
    "ca_file",
    "client_cert",
    "client_key",
    "timeout_seconds",
    "batch_items",
    "concurrency",
    "auth",
    "approle_mount",
    "wrap_role_id",
    "custody_role_id",
    "exportable",
}


def vault_context(backup_id: str, kek: str) -> str:
    """The transit derivation context of a DEK (base64): label, backup id (16 bytes),
    KEK name. The version is not in it: a rewrap keeps the context."""
    raw = CONTEXT_LABEL + _uuid_bytes(backup_id) + kek.encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def _uuid_bytes(backup_id: str) -> bytes:
    """A canonical backup id's 16 bytes (the catalog's form, fast); any other spelling
    through uuid.UUID, which also refuses what is not a UUID."""
    if len(backup_id) == 36 and backup_id[8] == backup_id[13] == "-":
        try:
            b = bytes.fromhex(backup_id.replace("-", ""))
        except ValueError:
            b = b""
        if len(b) == 16:
            return b
    return uuid.UUID(backup_id).bytes


def policies(mount: str, key_prefix: str) -> dict[str, str]:
    """The two policies (HCL) docs/backends.md gives: ``custodian-wrap`` for the wrap
    credential (encrypt and read the keys, nothing else) and ``custodian-custody`` for
    the custody credential (everything custodian does to its keys)."""
    k = f"{mount}/%s/{key_prefix}*"
    own = (
        'path "auth/token/lookup-self" { capabilities = ["read"] }\n'
        'path "sys/capabilities-self" { capabilities = ["update"] }\n'
    )
    return {
        "custodian-wrap": (
            f'path "{k % "encrypt"}" {{ capabilities = ["update"] }}\n'
            f'path "{k % "keys"}" {{ capabilities = ["read"] }}\n' + own
        ),
        "custodian-custody": (
            f'path "{k % "encrypt"}" {{ capabilities = ["update"] }}\n'
            f'path "{k % "decrypt"}" {{ capabilities = ["update"] }}\n'
            f'path "{k % "rewrap"}" {{ capabilities = ["update"] }}\n'
            f'path "{k % "keys"}" {{ capabilities = ["create", "read", "update"] }}\n'
            f'path "{k % "backup"}" {{ capabilities = ["read"] }}\n' + own
        ),
    }


def sealed_credential(name: str) -> str:
    """The sealed-store name of backend ``name``'s wrap credential."""
    return f"backend/{name}/wrap"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class VaultOptions:
    address: str
    mount: str = "transit"
    key_prefix: str = "custodian-"
    namespace: str = ""
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout: float = DEFAULT_TIMEOUT
    batch_items: int = FIRST_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    auth: str = "token"
    approle_mount: str = "approle"
    wrap_role_id: str = ""
    custody_role_id: str = ""
    exportable: bool = False

    @classmethod
    def parse(cls, name: str, opts: Mapping[str, Any], home_id: str) -> VaultOptions:
        where = f"[backends.{name}]"
        secret = [k for k in opts if k in SECRET_SETTINGS]
        if secret:
            raise ConfigError(
                f"{where} sets {', '.join(secret)}: a credential is never kept in the "
                "configuration file. Remove it; give the wrap credential with 'custodian "
                "backend credential' and the custody credential at each ceremony."
            )
        unknown = sorted(set(opts) - KNOWN_SETTINGS)
        if unknown:
            raise ConfigError(
                f"{where} has unknown settings: {', '.join(unknown)}; use "
                f"{', '.join(sorted(KNOWN_SETTINGS))}."
            )
        address = str(opts.get("address", "")).rstrip("/")
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{where} address is {address!r}; give the server's URL, e.g. "
                "https://vault.example.org:8200."
            )
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ConfigError(
                f"{where} address {address} is plain http to another machine: tokens and "
                "wrapped keys would cross the network in clear. Use https (with ca_file "
                "when the server's certificate is private); http is allowed to loopback only."
            )
        try:
            timeout = float(opts.get("timeout_seconds", DEFAULT_TIMEOUT))
            batch = int(opts.get("batch_items", FIRST_BATCH))
            conc = int(opts.get("concurrency", DEFAULT_CONCURRENCY))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: timeout_seconds, batch_items and concurrency are numbers."
            ) from None
        if not 0.1 <= timeout <= 120:
            raise ConfigError(f"{where} timeout_seconds is {timeout}; use 0.1 to 120 seconds.")
        if not 1 <= batch <= MAX_BATCH:
            raise ConfigError(f"{where} batch_items is {batch}; use 1 to {MAX_BATCH}.")
        if not 1 <= conc <= 16:
            raise ConfigError(f"{where} concurrency is {conc}; use 1 to 16.")
        auth = str(opts.get("auth", "token"))
        if auth not in AUTHS:
            raise ConfigError(f"{where} auth is {auth!r}; use one of {', '.join(AUTHS)}.")
        for f in ("ca_file", "client_cert", "client_key"):
            p = str(opts.get(f, ""))
            if p and not Path(p).is_file():
                raise ConfigError(f"{where} {f} {p} is not a readable file.")
        if bool(opts.get("client_cert")) != bool(opts.get("client_key")):
            raise ConfigError(f"{where} needs both client_cert and client_key, or neither.")
        prefix = str(opts.get("key_prefix", f"custodian-{home_id[:8]}-"))
        return cls(
            address=address,
            mount=str(opts.get("mount", "transit")).strip("/"),
            key_prefix=prefix,
            namespace=str(opts.get("namespace", "")),
            ca_file=str(opts.get("ca_file", "")),
            client_cert=str(opts.get("client_cert", "")),
            client_key=str(opts.get("client_key", "")),
            timeout=timeout,
            batch_items=batch,
            concurrency=conc,
            auth=auth,
            approle_mount=str(opts.get("approle_mount", "approle")),
            wrap_role_id=str(opts.get("wrap_role_id", "")),
            custody_role_id=str(opts.get("custody_role_id", "")),
            exportable=opts.get("exportable", False) is True,
        )


def fingerprint(address: str, mount: str, key: str, version: int, created: object) -> str:
    h = hashlib.sha256(
        b"custodian vault kek v1\0"
        + "\0".join([address, mount, key, str(version), str(created)]).encode()
    ).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


def bad_wrap(backup_id: str, kek: str, version: int, why: str) -> str:
    return (
        f"the wrapped DEK of backup {backup_id} does not open under KEK {kek} version "
        f"{version} ({why}: tampered, or bound to another backup)."
    )
