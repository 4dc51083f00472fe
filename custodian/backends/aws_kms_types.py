"""What the ``aws-kms`` backend reads, records and reports (:mod:`custodian.backends.aws_kms`).

:class:`Settings` is ``[backends.aws-kms]`` in custodian.toml (no credential may
be there); :class:`KeyMaterial` is what the catalog keeps of a version (its
fingerprint is in the signed log); :class:`DecryptCredential` is the decrypt
role's credential as released into one session; :func:`context` is the
encryption context every call on a DEK is bound to; :func:`explain` turns an
error code of KMS into what a person reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from custodian.errors import BackendError, ConfigError
from custodian.secret import SecretBytes

NAME = "aws-kms"
SUITE = "aws-symmetric-default"  # KMS SYMMETRIC_DEFAULT: AES-256-GCM inside KMS's HSMs
MATERIAL_LABEL = b"custodian/aws-kms/v1\n"
DELETION_DAYS = (7, 30)  # what ScheduleKeyDeletion accepts (PendingWindowInDays)
# Settings the configuration may hold. Anything that looks like a credential is refused
# by name: the decrypt authority is never in the configuration file.
SETTINGS = (
    "region",
    "endpoint_url",
    "alias_prefix",
    "profile",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "backoff_base",
    "backoff_cap",
    "workers",
    "deletion_window_days",
)
_SECRETISH = re.compile(r"secret|token|password|credential|access_key|session", re.IGNORECASE)
_ALIAS_RE = re.compile(r"^alias/[A-Za-z0-9/_-]{1,200}$")


def context(home_id: str, backup_id: str, kek: str, version: int) -> dict[str, str]:
    """The KMS encryption context of a DEK: what every Encrypt, Decrypt and ReEncrypt of
    it is bound to (KMS authenticates it as additional data and logs it in CloudTrail)."""
    return {
        "custodian:home": home_id,
        "custodian:backup": backup_id,
        "custodian:kek": kek,
        "custodian:version": str(version),
    }


def alias_part(kek: str) -> str:
    """A KEK name as alias characters (letters, digits, '/', '_', '-'): '_' is written
    '__' and '.' '_d', so two names never share an alias."""
    return kek.replace("_", "__").replace(".", "_d")


def fingerprint(material: bytes) -> str:
    """custodian.backends.local.fingerprint over the material, suite ``SUITE`` (so the
    catalog-vs-log check of custodian.service.reconcile covers it unchanged)."""
    h = hashlib.sha256(b"custodian kek v1\0" + SUITE.encode() + b"\0" + material).hexdigest()
    return " ".join(h[:32][i : i + 4] for i in range(0, 32, 4))


@dataclass(frozen=True)
class KeyMaterial:
    """What the catalog records of an aws-kms version (docs/backends.md, byte form)."""

    arn: str
    region: str
    endpoint_url: str
    alias: str

    @property
    def key_id(self) -> str:
        """The key's id (the ARN's last part): what moto's DisableKey and
        ScheduleKeyDeletion look keys up by (AWS takes either)."""
        return self.arn.rpartition("/")[2]

    def encode(self) -> bytes:
        body = {
            "alias": self.alias,
            "arn": self.arn,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
        }
        return MATERIAL_LABEL + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> KeyMaterial:
        if not raw.startswith(MATERIAL_LABEL):
            raise BackendError("the catalog's record of this aws-kms version is not one.")
        try:
            d = json.loads(raw[len(MATERIAL_LABEL) :])
            return cls(str(d["arn"]), str(d["region"]), str(d["endpoint_url"]), str(d["alias"]))
        except (ValueError, KeyError, TypeError):
            raise BackendError("the catalog's record of this aws-kms version is damaged.") from None


@dataclass(frozen=True)
class Settings:
    """``[backends.aws-kms]`` in custodian.toml: where new keys are made and how calls
    behave. No credential: those come from the boto3 chain (wrap) or a session
    (decrypt)."""

    region: str = ""
    endpoint_url: str = ""
    alias_prefix: str = "alias/custodian"
    profile: str = ""
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    max_attempts: int = 6  # tries of one call while KMS says it is throttling
    backoff_base: float = 0.1
    backoff_cap: float = 4.0
    workers: int = 8  # concurrent calls in a batch (ReEncrypt, Decrypt, Encrypt)
    deletion_window_days: int = 30

    @classmethod
    def from_config(cls, opts: dict[str, Any]) -> Settings:
        where = "[backends.aws-kms]"
        secret = sorted(k for k in opts if _SECRETISH.search(k))
        if secret:
            raise ConfigError(
                f"{where} names {', '.join(secret)}: custodian never reads an AWS credential "
                "from its configuration (the decrypt authority must not sit in a file one "
                "account can read). Remove it; wrap uses the boto3 credential chain, decrypt "
                "a credential released into a session. Nothing was done."
            )
        unknown = sorted(set(opts) - set(SETTINGS))
        if unknown:
            raise ConfigError(
                f"{where} has unknown settings {', '.join(unknown)}; use {', '.join(SETTINGS)}."
            )
        try:
            s = cls(
                region=str(opts.get("region", "")),
                endpoint_url=str(opts.get("endpoint_url", "")),
                alias_prefix=str(opts.get("alias_prefix", "alias/custodian")).rstrip("/"),
                profile=str(opts.get("profile", "")),
                connect_timeout=float(opts.get("connect_timeout", 3.0)),
                read_timeout=float(opts.get("read_timeout", 5.0)),
                max_attempts=int(opts.get("max_attempts", 6)),
                backoff_base=float(opts.get("backoff_base", 0.1)),
                backoff_cap=float(opts.get("backoff_cap", 4.0)),
                workers=int(opts.get("workers", 8)),
                deletion_window_days=int(opts.get("deletion_window_days", 30)),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} has a value of the wrong kind ({e}).") from None
        s.check()
        return s

    def check(self) -> None:
        where = "[backends.aws-kms]"
        low, high = DELETION_DAYS
        if not low <= self.deletion_window_days <= high:
            raise ConfigError(
                f"{where} deletion_window_days is {self.deletion_window_days}; KMS schedules "
                f"a key's deletion {low} to {high} days ahead."
            )
        if not 0 < self.connect_timeout <= 60 or not 0 < self.read_timeout <= 120:
            raise ConfigError(
                f"{where} timeouts must be above 0 and at most 60 s (connect) and 120 s "
                "(read): a hung endpoint must not hang custodian."
            )
        if not 1 <= self.max_attempts <= 20 or not 1 <= self.workers <= 64:
            raise ConfigError(f"{where} max_attempts must be 1 to 20 and workers 1 to 64.")
        if not _ALIAS_RE.fullmatch(self.alias_prefix + "/x"):
            raise ConfigError(
                f"{where} alias_prefix {self.alias_prefix!r} must start with 'alias/' and hold "
                "only letters, digits, '/', '_' and '-'."
            )
        if self.endpoint_url and not re.fullmatch(r"https?://[^\s]+", self.endpoint_url):
            raise ConfigError(f"{where} endpoint_url {self.endpoint_url!r} is not a URL.")


@dataclass(frozen=True, repr=False)
class DecryptCredential:
    """The decrypt role's credential, released into one session (never stored by custodian
    in the clear; see docs/backends.md for what will hold it)."""

    access_key_id: str
    secret_access_key: SecretBytes
    session_token: SecretBytes | None = None
    expiration: str = ""

    def __repr__(self) -> str:
        return f"DecryptCredential({self.access_key_id[:4]}…, redacted)"

    __str__ = __repr__

    @classmethod
    def from_json(cls, text: str | bytes) -> DecryptCredential:
        """From ``aws sts assume-role`` output (``{"Credentials": {...}}``) or the inner
        object (``AccessKeyId``, ``SecretAccessKey``, ``SessionToken``, ``Expiration``)."""
        try:
            d = json.loads(text)
            if isinstance(d, dict) and "Credentials" in d:
                d = d["Credentials"]
            key, secret = str(d["AccessKeyId"]), str(d["SecretAccessKey"])
            token = d.get("SessionToken")
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                "the decrypt credential is not JSON with AccessKeyId and SecretAccessKey (as "
                "'aws sts assume-role' prints it); nothing was decrypted."
            ) from None
        return cls(
            key,
            SecretBytes(secret.encode(), "AWS secret access key"),
            SecretBytes(str(token).encode(), "AWS session token") if token else None,
            str(d.get("Expiration", "")),
        )

    def wipe(self) -> None:
        self.secret_access_key.wipe()
        if self.session_token is not None:
            self.session_token.wipe()


# ---------------------------------------------------------------- KMS errors, named

THROTTLED = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
EXPIRED = frozenset({"ExpiredTokenException", "ExpiredToken", "RequestExpired"})
BAD_CREDENTIAL = frozenset(
    {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException"}
)
ITEM_ERRORS = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class ItemFailed(Exception):
    """One wrapped DEK did not open (its slot gets an UnwrapError; the batch goes on)."""


def explain(code: str, e: Exception, op: str, what: str, tries: int) -> Exception:
    """The error a person reads for KMS's ``code`` on ``op`` (``what`` names the key or
    alias); :class:`ItemFailed` for a problem of one wrapped DEK."""
    if code in ITEM_ERRORS:
        return ItemFailed(code)
    if code in THROTTLED:
        return BackendError(
            f"AWS KMS kept throttling {op} for {what} ({code}, {tries} tries with backoff); "
            "nothing was lost. Try again later, or lower [backends.aws-kms] workers."
        )
    if code in EXPIRED:
        return BackendError(
            f"the AWS credential for {op} has expired ({code}); nothing was changed. "
            "Renew it (aws sso login, or assume the role again) and try again."
        )
    if code in BAD_CREDENTIAL:
        return BackendError(
            f"AWS does not recognise the credential used for {op} ({code}); nothing was "
            "changed. Check the boto3 credential chain or the session's credential."
        )
    if code == "AccessDeniedException":
        return BackendError(
            f"AWS KMS denied {op} on {what} (AccessDeniedException): the credential's "
            "role lacks the permission (docs/operator-guide.md lists the policies). "
            "Nothing was changed."
        )
    if code == "NotFoundException":
        return BackendError(
            f"AWS KMS has no {what} (NotFoundException); nothing was changed. Check the "
            "region and endpoint, and whether the key or alias was deleted."
        )
    if code in ("DisabledException", "KMSInvalidStateException"):
        return BackendError(
            f"AWS KMS refused {op}: {what} is disabled or pending deletion ({code}); "
            "nothing was changed."
        )
    msg = str(getattr(e, "response", {}).get("Error", {}).get("Message", ""))[:200]
    return BackendError(f"AWS KMS {op} on {what} failed ({code}: {msg}); nothing was changed.")
