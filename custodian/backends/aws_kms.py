"""The ``aws-kms`` backend: each KEK version is a customer managed key in AWS KMS.

A version is one symmetric KMS key (``SYMMETRIC_DEFAULT``: AES-256-GCM inside
KMS) behind two aliases, ``<prefix>/<home>/<kek>/v<N>`` (this version) and
``<prefix>/<home>/<kek>`` (the current version). The catalog keeps, where a
local version keeps its public key, the version's **material**: the key's ARN,
region, endpoint and version alias (:class:`KeyMaterial`); its fingerprint is
the one the signed ``kek.create`` / ``kek.rotate`` entry records, so an edited
catalog (another key, another endpoint) wraps nothing, and the configuration
only says where *new* keys are made.

Wrap is ``Encrypt`` with the encryption context of :func:`context` (home id,
backup id, KEK, version), unwrap ``Decrypt`` and rewrap ``ReEncrypt`` with the
same context, each pinned to the version's key. Before a wrap the backend
checks the key itself (``DescribeKey`` through the version alias: the alias
names the recorded key and the key is ``Enabled``), because moto encrypts to a
disabled key or one pending deletion, where AWS refuses.

Credentials: wrap, create, retire and destroy use the standard boto3 chain
(environment, profile, SSO, instance role), meant to be a role that cannot
decrypt. **Decrypt and ReEncrypt use only a credential passed in for a session**
(:meth:`AwsKmsBackend.decrypt_session`, a :class:`DecryptCredential`), never
the chain and never the configuration file: a configuration that names a
secret is refused (docs/backends.md, docs/threat-model.md).

Faults: every call has a bounded connect and read timeout and no botocore
retry; throttling is retried here with capped exponential backoff and full
jitter (:meth:`AwsKmsBackend._call`); a problem of the server or the credential
fails the whole batch with a :class:`BackendError` (a rewrap job stops and
resumes from its cursor), a problem of one wrapped DEK comes back in its slot.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from custodian.backends.aws_kms_types import (
    BAD_CREDENTIAL,
    DELETION_DAYS,
    EXPIRED,
    NAME,
    SUITE,
    THROTTLED,
    DecryptCredential,
    ItemFailed,
    KeyMaterial,
    Settings,
    alias_part,
    context,
    explain,
    fingerprint,
)
from custodian.backends.base import DekRef, Health, VersionMaterial
from custodian.catalog import Catalog
from custodian.errors import BackendError, UnwrapError
from custodian.secret import SecretBytes

if TYPE_CHECKING:
    from custodian.backends.registry import BackendEnv

HEALTH_TTL = 30.0  # seconds the dashboard's health line is kept
__all__ = [
    "DELETION_DAYS",
    "NAME",
    "SUITE",
    "AwsKmsBackend",
    "DecryptCredential",
    "KeyMaterial",
    "Settings",
    "alias_part",
    "context",
    "fingerprint",
    "from_config",
]


@dataclass
class _Keys:
    """Key states looked up during one batch (one DescribeKey per key per batch)."""

    states: dict[str, dict[str, Any]] = field(default_factory=dict)


class AwsKmsBackend:
    """KEK versions as AWS KMS keys. One instance per open home."""

    name = NAME
    suite = SUITE  # the only suite: custodian.service.keys names it for new KEKs

    def __init__(
        self,
        catalog: Catalog,
        home_id: str,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._catalog = catalog
        self._home_id = home_id
        self.settings = settings
        self._sleep = sleep
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._decrypt: DecryptCredential | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.retries = 0  # throttled calls tried again (health, tests, benchmarks)
        self._health: tuple[float, Health] | None = None

    # ------------------------------------------------------------ clients

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            self._clients.clear()

    def _config(self) -> Any:
        from botocore.config import Config

        s = self.settings
        return Config(
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # retried here
            max_pool_connections=s.workers + 2,
            user_agent_extra="custodian",
        )

    def _client(self, region: str, endpoint: str, *, decrypt: bool) -> Any:
        """A KMS client for ``region`` / ``endpoint``: the boto3 chain's, or the session's
        decrypt credential's (``decrypt``)."""
        import boto3

        cred = self._decrypt
        if decrypt and cred is None:
            raise BackendError(
                "aws-kms decrypts only with the decrypt role's credential released into this "
                "session, and none was given; nothing was decrypted. (Wrapping needs none.)"
            )
        key = (region, endpoint, cred.access_key_id if decrypt and cred else "")
        with self._lock:
            c = self._clients.get(key)
            if c is None:
                kw: dict[str, Any] = {"config": self._config()}
                if region:
                    kw["region_name"] = region
                if endpoint:
                    kw["endpoint_url"] = endpoint
                if decrypt and cred is not None:
                    session = boto3.session.Session(
                        aws_access_key_id=cred.access_key_id,
                        aws_secret_access_key=bytes(cred.secret_access_key.reveal()).decode(),
                        aws_session_token=(
                            bytes(cred.session_token.reveal()).decode()
                            if cred.session_token is not None
                            else None
                        ),
                    )
                else:
                    session = boto3.session.Session(profile_name=self.settings.profile or None)
                try:
                    c = session.client("kms", **kw)
                except Exception as e:  # botocore: no region, unknown profile, bad URL
                    raise BackendError(
                        f"no AWS KMS client could be made ({type(e).__name__}: {e}); set "
                        "region (or AWS_REGION) and check the profile. Nothing was done."
                    ) from None
                self._clients[key] = c
            return c

    @contextmanager
    def decrypt_session(self, credential: DecryptCredential) -> Iterator[None]:
        """Decrypt and ReEncrypt with ``credential`` inside the ``with`` block only; the
        clients made with it are dropped and the credential wiped at its end."""
        with self._lock:
            if self._decrypt is not None:
                raise BackendError("an aws-kms decrypt session is already open here.")
            self._decrypt = credential
        try:
            yield
        finally:
            with self._lock:
                self._decrypt = None
                for k in [k for k in self._clients if k[2]]:
                    del self._clients[k]
            credential.wipe()

    @property
    def has_decrypt_credential(self) -> bool:
        return self._decrypt is not None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.settings.workers, thread_name_prefix="custodian-kms"
                )
            return self._pool

    # ------------------------------------------------------------ calls, retries, errors

    def _call(self, client: Any, op: str, what: str, **kw: Any) -> dict[str, Any]:
        """``client.<op>(**kw)``; throttling tried again up to ``max_attempts`` times with
        capped exponential backoff and full jitter; every other failure explained."""
        from botocore import exceptions as BE

        s = self.settings
        endpoint = client.meta.endpoint_url
        method = getattr(client, op)
        op = "".join(p.title() for p in op.split("_"))  # the API's name: ReEncrypt
        for attempt in range(s.max_attempts):
            try:
                result: dict[str, Any] = method(**kw)
                return result
            except BE.ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("AccessDenied", "403") or (
                    status == 403 and code not in EXPIRED | BAD_CREDENTIAL
                ):
                    code = "AccessDeniedException"  # an IAM refusal, however it is spelt
                if code in THROTTLED and attempt + 1 < s.max_attempts:
                    with self._lock:
                        self.retries += 1
                    cap = min(s.backoff_cap, s.backoff_base * 2**attempt)
                    self._sleep(self._rng.uniform(0, cap))
                    continue
                err = explain(code, e, op, what, attempt + 1)
                err.code = code  # type: ignore[attr-defined]  # for callers that branch on it
                raise err from None
            except (BE.ConnectTimeoutError, BE.ReadTimeoutError) as e:
                raise BackendError(
                    f"AWS KMS at {endpoint} did not answer {op} for {what} within "
                    f"{s.connect_timeout:g} s to connect and {s.read_timeout:g} s to read "
                    f"({type(e).__name__}); nothing was changed. Check the endpoint and the "
                    "network, then try again."
                ) from None
            except BE.EndpointConnectionError:
                raise BackendError(
                    f"AWS KMS at {endpoint} cannot be reached ({op} for {what}); nothing was "
                    "changed. Check endpoint_url, the network or the VPC endpoint, then try "
                    "again."
                ) from None
            except (BE.NoCredentialsError, BE.PartialCredentialsError):
                raise BackendError(
                    f"no AWS credential was found for {op} ({what}): set one in the boto3 "
                    "chain (AWS_PROFILE, SSO, an instance role); nothing was changed."
                ) from None
            except BE.BotoCoreError as e:
                raise BackendError(
                    f"AWS KMS {op} for {what} failed ({type(e).__name__}); nothing was changed."
                ) from None
        raise AssertionError  # the loop returns or raises

    # ------------------------------------------------------------ what the catalog says

    def material(self, kek: str, version: int) -> KeyMaterial:
        v = self._catalog.kek_version(kek, version)
        if v.public_key is None:
            raise BackendError(f"KEK {kek} v{version} has no aws-kms key in the catalog.")
        return KeyMaterial.decode(bytes(v.public_key))

    def _alias(self, kek: str, version: int | None = None) -> str:
        base = f"{self.settings.alias_prefix}/{self._home_id[:8]}/{alias_part(kek)}"
        return base if version is None else f"{base}/v{version}"

    def _check_key(
        self, m: KeyMaterial, kek: str, version: int, client: Any, seen: _Keys
    ) -> dict[str, Any]:
        """The key behind ``m``'s version alias is the recorded key, and it is Enabled (moto
        encrypts to a disabled key or one pending deletion; AWS does not)."""
        if m.arn in seen.states:
            return seen.states[m.arn]
        what = f"alias {m.alias} of KEK {kek} v{version}"
        try:
            meta: dict[str, Any] = self._call(client, "describe_key", what, KeyId=m.alias)[
                "KeyMetadata"
            ]
        except BackendError as e:
            if getattr(e, "code", "") != "NotFoundException":
                raise
            # the alias is gone: say whether the key is too
            try:
                self._call(client, "describe_key", f"key {m.arn}", KeyId=m.arn)
            except BackendError:
                raise BackendError(
                    f"the KMS key of KEK {kek} v{version} ({m.arn}) does not exist in "
                    f"{m.region} (deleted, or another account or region); nothing was "
                    "wrapped or unwrapped."
                ) from None
            raise BackendError(
                f"alias {m.alias} of KEK {kek} v{version} is missing, though its key "
                f"{m.arn} exists; nothing was done. Put the alias back: aws kms create-alias "
                f"--alias-name {m.alias} --target-key-id {m.arn}"
            ) from None
        if meta.get("Arn") != m.arn:
            raise BackendError(
                f"alias {m.alias} points to {meta.get('Arn')}, but KEK {kek} v{version} is "
                f"key {m.arn} (as the signed log records); nothing was wrapped or unwrapped. "
                "Someone moved the alias: point it back, and find out who."
            )
        state = str(meta.get("KeyState", ""))
        if state != "Enabled" or meta.get("Enabled") is False:
            raise BackendError(
                f"the KMS key of KEK {kek} v{version} is {state or 'not enabled'} in KMS while "
                "the catalog says active; nothing was wrapped or unwrapped. Someone changed it "
                "outside custodian: enable it again (aws kms enable-key, or cancel-key-deletion)."
            )
        seen.states[m.arn] = meta
        return meta

    def _active(self, kek: str, version: int, doing: str) -> KeyMaterial:
        v = self._catalog.kek_version(kek, version)
        if v.state != "active":
            raise BackendError(f"KEK {kek} version {version} is {v.state} and {doing} nothing.")
        return self.material(kek, version)

    # ------------------------------------------------------------ the interface

    def create_version(self, kek: str, suite: str, version: int) -> VersionMaterial:
        s = self.settings
        if suite != SUITE:
            raise BackendError(f"aws-kms keys are {SUITE}, not {suite!r}; nothing was created.")
        c = self._client(s.region, s.endpoint_url, decrypt=False)
        region = str(c.meta.region_name)
        what = f"a key for KEK {kek} v{version}"
        meta = self._call(
            c,
            "create_key",
            what,
            Description=f"custodian KEK {kek} v{version} (home {self._home_id})",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[
                {"TagKey": "custodian:home", "TagValue": self._home_id},
                {"TagKey": "custodian:kek", "TagValue": kek},
                {"TagKey": "custodian:version", "TagValue": str(version)},
            ],
        )["KeyMetadata"]
        arn = str(meta["Arn"])
        alias, current = self._alias(kek, version), self._alias(kek)
        try:
            self._point(c, alias, arn, f"custodian KEK {kek} v{version} (home {self._home_id})")
            self._point(c, current, arn, "")
        except BackendError:
            # the key wraps nothing yet: do not leave an orphan behind
            with suppress(BackendError):
                self._call(
                    c, "schedule_key_deletion", arn, KeyId=meta["KeyId"], PendingWindowInDays=7
                )
            raise
        m = KeyMaterial(arn, region, s.endpoint_url, alias)
        raw = m.encode()
        return VersionMaterial(version, fingerprint(raw), raw)

    def _point(self, c: Any, alias: str, arn: str, orphan: str) -> None:
        """Point ``alias`` at ``arn``, creating it if need be. An alias that exists already
        is left from an attempt whose catalog commit never happened (the catalog has no
        such version): it is moved, and the key it named, if its description is
        ``orphan`` (made by this home for this version, so it wraps nothing), is
        scheduled for deletion."""
        try:
            self._call(c, "create_alias", alias, AliasName=alias, TargetKeyId=arn)
            return
        except BackendError as e:
            if getattr(e, "code", "") != "AlreadyExistsException":
                raise
        old: dict[str, Any] = self._call(c, "describe_key", alias, KeyId=alias)["KeyMetadata"]
        self._call(c, "update_alias", alias, AliasName=alias, TargetKeyId=arn)
        if orphan and old.get("Description") == orphan and old.get("Arn") != arn:
            with suppress(BackendError):
                self._call(
                    c, "schedule_key_deletion", alias, KeyId=old["KeyId"], PendingWindowInDays=7
                )

    def _pooled(self, fn: Callable[[int], Any], n: int) -> list[Any]:
        """``fn(i)`` for i < n, ``workers`` at a time; the first batch-level error stops
        items not yet started and is raised once every started item ended."""
        if n == 1:
            return [fn(0)]
        stop = threading.Event()
        errors: list[BaseException] = []

        def run(i: int) -> Any:
            if stop.is_set():
                return None
            try:
                return fn(i)
            except BaseException as e:
                stop.set()
                errors.append(e)
                return None

        out = list(self._executor().map(run, range(n)))
        if errors:
            raise errors[0]
        return out

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        m = self._active(kek, version, "wraps")
        c = self._client(m.region, m.endpoint_url, decrypt=False)
        self._check_key(m, kek, version, c, _Keys())

        def one(i: int) -> bytes:
            bid, dek = items[i]
            r = self._call(
                c,
                "encrypt",
                f"key {m.arn}",
                KeyId=m.arn,
                Plaintext=bytes(dek.reveal()),
                EncryptionContext=context(self._home_id, bid, kek, version),
            )
            if r.get("KeyId") != m.arn:
                raise BackendError(
                    f"AWS KMS answered Encrypt with key {r.get('KeyId')}, not {m.arn}; "
                    "nothing was wrapped."
                )
            return bytes(r["CiphertextBlob"])

        try:
            return self._pooled(one, len(items)) if items else []
        except ItemFailed as e:
            raise BackendError(f"AWS KMS refused to encrypt ({e}); nothing was wrapped.") from None

    def _sources(
        self, refs: Sequence[DekRef], client_for: Callable[[KeyMaterial], Any], seen: _Keys
    ) -> list[KeyMaterial | UnwrapError]:
        """Each ref's version material, checked (active in the catalog, enabled in KMS)."""
        by_version: dict[tuple[str, int], KeyMaterial | UnwrapError] = {}
        out: list[KeyMaterial | UnwrapError] = []
        for r in refs:
            key = (r.kek, r.version)
            if key not in by_version:
                v = self._catalog.kek_version(r.kek, r.version)
                if v.state != "active":
                    by_version[key] = UnwrapError(
                        f"KEK {r.kek} version {r.version} is {v.state}; it unwraps nothing "
                        "any more."
                    )
                else:
                    m = self.material(r.kek, r.version)
                    self._check_key(m, r.kek, r.version, client_for(m), seen)
                    by_version[key] = m
            out.append(by_version[key])
        return out

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        seen = _Keys()

        def client_for(m: KeyMaterial) -> Any:
            return self._client(m.region, m.endpoint_url, decrypt=True)

        if not refs:
            return []
        sources = self._sources(refs, client_for, seen)

        def one(i: int) -> SecretBytes | UnwrapError:
            r, m = refs[i], sources[i]
            if isinstance(m, UnwrapError):
                return m
            try:
                res = self._call(
                    client_for(m),
                    "decrypt",
                    f"key {m.arn}",
                    CiphertextBlob=r.wrapped,
                    KeyId=m.arn,
                    EncryptionContext=context(self._home_id, r.backup_id, r.kek, r.version),
                )
            except ItemFailed:
                return UnwrapError(_bad_wrap(r))
            if res.get("KeyId") != m.arn:
                return UnwrapError(_bad_wrap(r))
            return SecretBytes(bytes(res["Plaintext"]), "DEK")

        return list(self._pooled(one, len(refs)))

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        """ReEncrypt every ref to ``to_version``'s key: the DEK never leaves KMS."""
        if not refs:
            return []
        seen = _Keys()
        kek = refs[0].kek
        if any(r.kek != kek for r in refs):
            raise BackendError("one rewrap batch holds DEKs of one KEK only.")
        target = self._active(kek, to_version, "wraps")

        def client_for(m: KeyMaterial) -> Any:
            return self._client(m.region, m.endpoint_url, decrypt=True)

        tc = client_for(target)
        self._check_key(target, kek, to_version, tc, seen)
        sources = self._sources(refs, client_for, seen)
        for m in sources:
            if isinstance(m, KeyMaterial) and (m.region, m.endpoint_url) != (
                target.region,
                target.endpoint_url,
            ):
                raise BackendError(
                    f"KEK {kek}'s versions live in different regions or endpoints; ReEncrypt "
                    "works within one. Nothing was rewrapped."
                )

        def one(i: int) -> bytes | UnwrapError:
            r, m = refs[i], sources[i]
            if isinstance(m, UnwrapError):
                return m
            try:
                res = self._call(
                    tc,
                    "re_encrypt",
                    f"key {m.arn} to {target.arn}",
                    CiphertextBlob=r.wrapped,
                    SourceKeyId=m.arn,
                    SourceEncryptionContext=context(self._home_id, r.backup_id, kek, r.version),
                    DestinationKeyId=target.arn,
                    DestinationEncryptionContext=context(
                        self._home_id, r.backup_id, kek, to_version
                    ),
                )
            except ItemFailed:
                return UnwrapError(_bad_wrap(r))
            if res.get("SourceKeyId") != m.arn or res.get("KeyId") != target.arn:
                return UnwrapError(_bad_wrap(r))
            return bytes(res["CiphertextBlob"])

        return list(self._pooled(one, len(refs)))

    def retire(self, kek: str, version: int) -> None:
        """Disable the version's key: KMS itself refuses to decrypt with it from now on."""
        m = self.material(kek, version)
        c = self._client(m.region, m.endpoint_url, decrypt=False)
        self._call(c, "disable_key", f"key {m.arn} of KEK {kek} v{version}", KeyId=m.key_id)

    def destroy(self, kek: str, version: int) -> None:
        """``ScheduleKeyDeletion`` (the configured 7 to 30 days); a key already pending
        deletion, or no longer in KMS, is left as it is."""
        m = self.material(kek, version)
        c = self._client(m.region, m.endpoint_url, decrypt=False)
        what = f"key {m.arn} of KEK {kek} v{version}"
        if self.deletion_state(kek, version) in ("PendingDeletion", ""):
            return  # scheduled already, or gone from KMS
        self._call(
            c,
            "schedule_key_deletion",
            what,
            KeyId=m.key_id,
            PendingWindowInDays=self.settings.deletion_window_days,
        )

    def deletion_state(self, kek: str, version: int) -> str:
        """The KMS KeyState of a version's key ('' when KMS has no such key any more)."""
        m = self.material(kek, version)
        c = self._client(m.region, m.endpoint_url, decrypt=False)
        try:
            meta = self._call(c, "describe_key", f"key {m.arn}", KeyId=m.arn)["KeyMetadata"]
        except BackendError as e:
            if getattr(e, "code", "") == "NotFoundException":
                return ""
            raise
        return str(meta.get("KeyState", ""))

    # ------------------------------------------------------------ health

    def checks(self, probe: bool = True) -> list[tuple[str, bool, str]]:
        """(check, ok, detail) for: reachable and authenticated, each active version's key
        present and enabled behind its alias, wrap permitted (an Encrypt of a probe), and,
        with a session's decrypt credential, unwrap and rewrap (Decrypt and ReEncrypt of
        the probe). Bounded by the configured timeouts; raises nothing."""
        s = self.settings
        out: list[tuple[str, bool, str]] = []
        try:
            c = self._client(s.region, s.endpoint_url, decrypt=False)
            self._call(c, "list_aliases", "the aliases", Limit=1)
            out.append(("reachable, authenticated", True, str(c.meta.endpoint_url)))
        except BackendError as e:
            return [("reachable, authenticated", False, str(e))]
        seen = _Keys()
        probe_at: tuple[str, int, KeyMaterial] | None = None
        for k in self._catalog.keks():
            if k.backend != NAME:
                continue
            for v in k.versions:
                if v.state != "active":
                    continue
                try:
                    m = self.material(k.name, v.version)
                    self._check_key(
                        m,
                        k.name,
                        v.version,
                        self._client(m.region, m.endpoint_url, decrypt=False),
                        seen,
                    )
                    out.append((f"key {k.name} v{v.version}", True, f"enabled, {m.alias}"))
                    if v.version == k.current_version:
                        probe_at = (k.name, v.version, m)
                except BackendError as e:
                    out.append((f"key {k.name} v{v.version}", False, str(e)))
        if probe_at is None or not probe:
            return out
        kek, version, m = probe_at
        ctx = {"custodian:home": self._home_id, "custodian:probe": "health"}
        c = self._client(m.region, m.endpoint_url, decrypt=False)
        try:
            r = self._call(
                c,
                "encrypt",
                f"key {m.arn}",
                KeyId=m.arn,
                Plaintext=bytes(32),
                EncryptionContext=ctx,
            )
            blob = r["CiphertextBlob"]
            out.append(("wrap (Encrypt)", True, f"{kek} v{version}"))
        except (BackendError, ItemFailed) as e:
            out.append(("wrap (Encrypt)", False, str(e)))
            return out
        if self._decrypt is None:
            out.append(
                (
                    "unwrap, rewrap",
                    True,
                    "not checked: no decrypt credential here (it is released only into a session)",
                )
            )
            return out
        try:
            d = self._client(m.region, m.endpoint_url, decrypt=True)
            self._call(
                d,
                "decrypt",
                f"key {m.arn}",
                CiphertextBlob=blob,
                KeyId=m.arn,
                EncryptionContext=ctx,
            )
            out.append(("unwrap (Decrypt)", True, f"{kek} v{version}"))
            self._call(
                d,
                "re_encrypt",
                f"key {m.arn}",
                CiphertextBlob=blob,
                SourceKeyId=m.arn,
                SourceEncryptionContext=ctx,
                DestinationKeyId=m.arn,
                DestinationEncryptionContext=ctx,
            )
            out.append(("rewrap (ReEncrypt)", True, f"{kek} v{version}"))
        except (BackendError, ItemFailed) as e:
            out.append(("unwrap, rewrap", False, str(e)))
        return out

    def health(self) -> Health:
        """One line for the dashboard from :meth:`checks`, kept for ``HEALTH_TTL`` seconds
        (the dashboard reads it on every refresh; each check is a call to KMS)."""
        now = time.monotonic()
        cached = self._health
        if cached is not None and now - cached[0] < HEALTH_TTL:
            return cached[1]
        results = self.checks()
        bad = [f"{n}: {d}" for n, ok, d in results if not ok]
        if bad:
            h = Health(self.name, False, bad[0] + (f" (+{len(bad) - 1} more)" if bad[1:] else ""))
        else:
            keys = sum(n.startswith("key ") for n, _, _ in results)
            decrypt = (
                "unwrap and rewrap ok"
                if self._decrypt is not None
                else ("decrypt only in a session")
            )
            h = Health(self.name, True, f"reachable; {keys} key(s) enabled; wrap ok; {decrypt}")
        self._health = (now, h)
        return h


def _bad_wrap(r: DekRef) -> str:
    return (
        f"the wrapped DEK of backup {r.backup_id} does not open under KEK {r.kek} version "
        f"{r.version} (tampered, or bound to another backup)."
    )


def from_config(catalog: Catalog, home_id: str, opts: dict[str, Any]) -> AwsKmsBackend:
    """The backend as ``[backends.aws-kms]`` configures it (custodian.service.context)."""
    return AwsKmsBackend(catalog, home_id, Settings.from_config(opts))


def open_backend(name: str, options: Mapping[str, Any], env: BackendEnv) -> AwsKmsBackend:
    """The registry's factory (:mod:`custodian.backends.registry`): section
    ``[backends.NAME]`` of kind ``aws-kms``."""
    return from_config(env.catalog, env.home_id, dict(options))
