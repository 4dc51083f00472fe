"""The ``vault`` backend: KEK versions are versions of a HashiCorp Vault / OpenBao
transit key (``hvac``).

Each KEK is one transit key, ``aes256-gcm96`` with ``derived=true``, named
``<key_prefix><KEK name>``. The derivation ``context`` of every DEK is
:func:`vault_context` (label, backup id, KEK name): transit ``rewrap``
ignores ``associated_data``, so the derived key is the binding that survives
a rewrap; the version is in the ciphertext (``vault:vN:``) and checked against
the catalog's. A version's fingerprint is SHA-256 over the server's address,
mount, key name, version and the version's creation time as the server
reports it; before the first wrap to a version this process reads the key and
compares, so a configuration edited to point at another server or key wraps
nothing.

Two credentials (docs/backends.md):

- **wrap** (encrypt and read the key only): operators wrap with it. It is
  sealed by the KSK in the sealed store (``backend/<name>/wrap``), set with
  ``custodian backend credential``; a credential that can decrypt or rewrap
  is refused there.
- **custody** (decrypt, rewrap, create, rotate, configure, trim, backup): it
  can open every DEK, so it is never in the configuration file and never in
  the sealed store. It is handed in for one ceremony (``use_credential``),
  kept in memory only, and dropped at the end.

Batches: a default listener refuses a JSON body with more than 1,000 strings
(``max_request_json_strings``), which with a context is 249 items. A batch
starts at :data:`FIRST_BATCH`, halves on the "high complexity" refusal, and
tries twice the size once after its first success, so a server whose listener
allows more is used with larger batches. A rewrap or decrypt batch reports
failed items one by one (decrypt fails the whole request when one item fails,
with every item's result in the error body): each is checked and a failure is
an :class:`UnwrapError` in its slot. A failure of the whole call (unreachable,
a timeout, permission denied, a missing key, an expired token) raises
:class:`BackendError` with a message that names what to do; no error text
that could hold a plaintext (a decrypt error body does) is ever kept.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from custodian.backends.base import Check, DekRef, Health, VersionMaterial
from custodian.backends.registry import BackendEnv
from custodian.backends.vault_types import (
    AUTHS,
    CONTEXT_LABEL,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    FIRST_BATCH,
    KEY_TYPE,
    KIND,
    KNOWN_SETTINGS,
    MAX_BATCH,
    PURPOSES,
    SECRET_SETTINGS,
    VaultOptions,
    _loopback,
    _uuid_bytes,
    bad_wrap,
    fingerprint,
    policies,
    sealed_credential,
    vault_context,
)
from custodian.errors import BackendError, UnwrapError
from custodian.secret import SecretBytes

# What callers import from here (its settings and texts live in vault_types).
__all__ = [
    "AUTHS",
    "CONTEXT_LABEL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "FIRST_BATCH",
    "KEY_TYPE",
    "KIND",
    "KNOWN_SETTINGS",
    "MAX_BATCH",
    "PURPOSES",
    "SECRET_SETTINGS",
    "VaultBackend",
    "VaultOptions",
    "_loopback",
    "_uuid_bytes",
    "bad_wrap",
    "fingerprint",
    "open_backend",
    "policies",
    "sealed_credential",
    "vault_context",
]


class _Complex(Exception):
    """The server refused a batch as too large ("high complexity")."""


class VaultBackend:
    """Transit keys on one Vault or OpenBao server."""

    def __init__(self, name: str, options: VaultOptions, env: BackendEnv) -> None:
        import hvac  # noqa: F401  (fail here, with the kind's name, if missing)

        self.name = name
        self.opts = options
        self._env = env
        self._batch = options.batch_items
        self._grow = True  # try a larger batch once, after the first success
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tokens: dict[str, SecretBytes] = {}  # purpose -> client token (after login)
        self._given: dict[str, SecretBytes] = {}  # purpose -> credential handed in
        self._verified: set[tuple[str, int]] = set()
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ plumbing

    @property
    def rewrap_threads(self) -> int:
        """Job batches a rewrap keeps in flight (custodian.rotation.ThreadRewrapper)."""
        return self.opts.concurrency

    @property
    def batch_items(self) -> int:
        """The batch size in use now (what the server accepted)."""
        return self._batch

    def key_name(self, kek: str) -> str:
        return f"{self.opts.key_prefix}{kek}"

    def close(self) -> None:
        for p in list(self._given):
            self.drop_credential(p)
        for t in self._tokens.values():
            t.wipe()
        self._tokens.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def use_credential(self, purpose: str, secret: SecretBytes) -> None:
        """Hold ``secret`` (a token, or an AppRole secret id) for ``purpose`` in memory."""
        if purpose not in PURPOSES:
            raise ValueError(purpose)
        self.drop_credential(purpose)
        self._given[purpose] = SecretBytes(bytes(secret.reveal()), f"{self.name} {purpose} cred")

    def drop_credential(self, purpose: str) -> None:
        old = self._given.pop(purpose, None)
        if old is not None:
            old.wipe()
        tok = self._tokens.pop(purpose, None)
        if tok is not None:
            tok.wipe()
        self._local = threading.local()  # every thread's clients log in again

    def has_credential(self, purpose: str) -> bool:
        if purpose in self._given:
            return True
        return purpose == "wrap" and self._env.sealed.exists(sealed_credential(self.name))

    def _credential(self, purpose: str) -> SecretBytes:
        if purpose in self._given:
            return self._given[purpose]
        if purpose == "wrap" and self._env.sealed.exists(sealed_credential(self.name)):
            return self._env.sealed.unseal(self._env.ksk(), sealed_credential(self.name))
        if purpose == "wrap":
            raise BackendError(
                f"backend {self.name} has no wrap credential; a custodian sets it with "
                f"'custodian backend credential {self.name} --as NAME'. Nothing was done."
            )
        raise BackendError(
            f"this needs backend {self.name}'s custody credential (the token or AppRole "
            "secret id that can decrypt and rewrap), which custodian never stores: give it "
            "for this ceremony (--vault-token-fd FD, or the dialog's field). Nothing was done."
        )

    def _http(self, token: str | None) -> Any:
        import hvac
        import requests

        s = requests.Session()
        s.trust_env = False  # no proxies, CA bundles or netrc from the environment
        cert = (self.opts.client_cert, self.opts.client_key) if self.opts.client_cert else None
        # hvac takes verify and cert from a session it is given, not from its arguments
        s.verify = self.opts.ca_file or True
        s.cert = cert
        return hvac.Client(
            url=self.opts.address,
            token=token if token is not None else "",
            verify=self.opts.ca_file or True,
            cert=cert,
            timeout=self.opts.timeout,
            namespace=self.opts.namespace or None,
            session=s,
        )

    def _login(self, purpose: str) -> SecretBytes:
        """The client token for ``purpose`` (an AppRole login once, then kept)."""
        with self._lock:
            tok = self._tokens.get(purpose)
            if tok is not None:
                return tok
            cred = self._credential(purpose)
            if purpose not in self._given:  # unsealed for this login only
                self._given[purpose] = cred
            if self.opts.auth == "token":
                tok = SecretBytes(bytes(cred.reveal()), f"{self.name} {purpose} token")
            else:
                role = self.opts.wrap_role_id if purpose == "wrap" else self.opts.custody_role_id
                if not role:
                    raise BackendError(
                        f"[backends.{self.name}] uses AppRole but sets no {purpose}_role_id; "
                        "add it (a role id is not a secret). Nothing was done."
                    )
                c = self._http(None)
                r = self._call(
                    f"logging in with AppRole ({purpose})",
                    lambda: c.auth.approle.login(
                        role_id=role,
                        secret_id=bytes(cred.reveal()).decode(),
                        mount_point=self.opts.approle_mount,
                    ),
                    purpose=None,
                )
                tok = SecretBytes(str(r["auth"]["client_token"]).encode(), f"{self.name} token")
            self._tokens[purpose] = tok
            return tok

    def client(self, purpose: str) -> Any:
        """An hvac client for this thread, authenticated for ``purpose``."""
        c = self._local.__dict__.get(purpose)
        if c is None:
            c = self._http(bytes(self._login(purpose).reveal()).decode())
            self._local.__dict__[purpose] = c
        return c

    def _call(self, doing: str, fn: Callable[[], Any], purpose: str | None) -> Any:
        """``fn()``, with each way a server call fails said in words (no server text that
        could hold a secret: only the server's error strings, never a response body)."""
        import hvac.exceptions as X
        import requests

        where = f"{self.name} ({self.opts.address})"
        try:
            return fn()
        except requests.exceptions.Timeout:
            raise BackendError(
                f"{where} did not answer within {self.opts.timeout:g} s while {doing}; "
                "nothing was changed by custodian. Check the server (a hung or overloaded "
                "server), then run the command again: a rewrap resumes where it stopped."
            ) from None
        except requests.exceptions.SSLError:
            raise BackendError(
                f"{where}: the TLS handshake failed while {doing} (certificate not trusted, "
                "or a client certificate refused); set ca_file / client_cert in "
                f"[backends.{self.name}]. Nothing was done."
            ) from None
        except requests.exceptions.ConnectionError:
            raise BackendError(
                f"{where} cannot be reached while {doing} (refused or down); nothing was "
                "changed by custodian. Start or reach the server, then run the command again: "
                "a rewrap resumes where it stopped."
            ) from None
        except X.Forbidden:
            why = self._why_forbidden(purpose)
            raise BackendError(
                f"{where} refused {doing}: {why}. Nothing was changed by custodian."
            ) from None
        except X.InvalidPath as e:
            raise BackendError(
                f"{where}: not found while {doing} ({_errors(e)}): the transit mount "
                f"{self.opts.mount!r} or the key is missing on this server. Check address, "
                f"mount and key_prefix in [backends.{self.name}]. Nothing was done."
            ) from None
        except X.VaultDown:
            raise BackendError(
                f"{where} is sealed or in standby while {doing}; unseal it, then run the "
                "command again. Nothing was done."
            ) from None
        except X.InvalidRequest as e:
            if "complexity" in _errors(e):
                raise _Complex() from None
            raise BackendError(f"{where} refused {doing} ({_errors(e)}).") from None
        except X.VaultError as e:
            raise BackendError(
                f"{where} failed while {doing} ({type(e).__name__}: {_errors(e)})."
            ) from None

    def _why_forbidden(self, purpose: str | None) -> str:
        """Permission denied: an expired or revoked token, or a policy without the path."""
        if purpose is None:
            return "the AppRole credential was refused (wrong or expired secret id)"
        import hvac.exceptions as X
        import requests

        try:
            info = self.client(purpose).auth.token.lookup_self()["data"]
        except (X.VaultError, requests.exceptions.RequestException):
            return (
                f"the {purpose} credential is not valid (expired, revoked or wrong): give a new one"
            )
        pols = ", ".join(info.get("policies") or []) or "none"
        return (
            f"the {purpose} credential's policies ({pols}) do not allow it; see the policies "
            "in docs/backends.md"
        )

    # ------------------------------------------------------------ keys

    def _read_key(self, kek: str, purpose: str) -> dict[str, Any]:
        c = self.client(purpose)
        r = self._call(
            f"reading transit key {self.key_name(kek)}",
            lambda: c.secrets.transit.read_key(self.key_name(kek), mount_point=self.opts.mount),
            purpose,
        )
        return dict(r["data"])

    def _fingerprint(self, kek: str, version: int, key: Mapping[str, Any]) -> str:
        created = (key.get("keys") or {}).get(str(version))
        if created is None:
            raise BackendError(
                f"transit key {self.key_name(kek)} on {self.opts.address} has no version "
                f"{version} (trimmed, or another key); nothing was done."
            )
        return fingerprint(self.opts.address, self.opts.mount, self.key_name(kek), version, created)

    def _verify(self, kek: str, version: int, purpose: str) -> None:
        """The server's key version is the one the catalog (checked against the log)
        records: same address, mount, key and creation time."""
        if (kek, version) in self._verified:
            return
        key = self._read_key(kek, purpose)
        recorded = self._env.catalog.kek_version(kek, version).fingerprint
        live = self._fingerprint(kek, version, key)
        if live != recorded:
            raise BackendError(
                f"transit key {self.key_name(kek)} v{version} at {self.opts.address} is not "
                f"the key version KEK {kek} v{version} was created with (fingerprint {live}, "
                f"recorded {recorded}): the configuration points at another server, mount or "
                "key. Nothing was wrapped; put [backends."
                f"{self.name}] back as it was."
            )
        self._verified.add((kek, version))

    def create_version(self, kek: str, suite: str, version: int) -> VersionMaterial:
        c = self.client("custody")
        name, mount = self.key_name(kek), self.opts.mount
        t = c.secrets.transit
        if version == 1:
            exists = True
            try:
                self._read_key(kek, "custody")
            except BackendError as e:
                if "not found" not in str(e):
                    raise
                exists = False
            if exists:
                raise BackendError(
                    f"a transit key named {name} exists already at {self.opts.address}; "
                    "custodian makes its own keys. Choose another KEK name or key_prefix. "
                    "Nothing was created."
                )
            self._call(
                f"creating transit key {name}",
                lambda: t.create_key(
                    name,
                    key_type=KEY_TYPE,
                    derived=True,
                    exportable=self.opts.exportable or None,
                    allow_plaintext_backup=self.opts.exportable or None,
                    mount_point=mount,
                ),
                "custody",
            )
        else:
            self._call(
                f"rotating transit key {name}",
                lambda: t.rotate_key(name, mount_point=mount),
                "custody",
            )
        key = self._read_key(kek, "custody")
        if key.get("type") != KEY_TYPE or key.get("derived") is not True:
            raise BackendError(
                f"transit key {name} is {key.get('type')} derived={key.get('derived')}; "
                f"custodian needs {KEY_TYPE} with derived=true. Nothing was created."
            )
        if int(key.get("latest_version", 0)) != version:
            raise BackendError(
                f"transit key {name} is at version {key.get('latest_version')} on the server "
                f"but custodian expected {version} (rotated outside custodian?); nothing was "
                "recorded. Compare the server's key with 'custodian kek list'."
            )
        fp = self._fingerprint(kek, version, key)
        self._verified.add((kek, version))
        return VersionMaterial(version, fp, None)

    # ------------------------------------------------------------ batches

    def _batches(
        self,
        doing: str,
        items: Sequence[dict[str, str]],
        send: Callable[[Any, list[dict[str, str]]], list[dict[str, Any]]],
        purpose: str,
    ) -> list[dict[str, Any]]:
        """Send ``items`` in batches the server accepts; results in the same order."""
        out: list[dict[str, Any]] = []
        i = 0
        # the first batches one at a time (they settle the size), then the rest in parallel
        while i < len(items):
            n = self._batch
            chunk = list(items[i : i + n])
            try:
                res = self._call(doing, lambda ch=chunk: send(self.client(purpose), ch), purpose)  # type: ignore[misc]
            except _Complex:
                with self._lock:
                    self._grow = False
                    if n <= 1:
                        raise BackendError(
                            f"{self.name} refuses even one item as too complex while {doing}; "
                            "check the listener's max_request_json_strings. Nothing was done."
                        ) from None
                    self._batch = max(1, min(self._batch, n // 2))
                continue
            out.extend(res)
            i += len(chunk)
            with self._lock:
                if self._grow and len(chunk) == n:
                    self._batch = min(MAX_BATCH, n * 2)
                    self._grow = False
                elif not self._grow:
                    break
        rest = [list(items[j : j + self._batch]) for j in range(i, len(items), self._batch)]
        if not rest:
            return out
        if self.opts.concurrency == 1 or len(rest) == 1:
            for ch in rest:
                out.extend(self._batches(doing, ch, send, purpose) if ch else [])
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.opts.concurrency, thread_name_prefix="vault")
        futs = [self._pool.submit(self._batches, doing, ch, send, purpose) for ch in rest]
        errors: list[BaseException] = []
        for f in futs:
            try:
                out.extend(f.result())
            except BaseException as e:  # every batch ends before the first error is raised
                errors.append(e)
        if errors:
            raise errors[0]
        return out

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        self._verify(kek, version, "wrap")
        name, mount = self.key_name(kek), self.opts.mount
        batch = [
            {
                "plaintext": base64.b64encode(bytes(dek.reveal())).decode(),
                "context": vault_context(bid, kek),
            }
            for bid, dek in items
        ]

        def send(c: Any, ch: list[dict[str, str]]) -> list[dict[str, Any]]:
            r = c.secrets.transit.encrypt_data(
                name, plaintext=None, batch_input=ch, key_version=version, mount_point=mount
            )
            return list(r["data"]["batch_results"])

        res = self._batches(f"wrapping under {name} v{version}", batch, send, "wrap")
        prefix = f"vault:v{version}:"
        out: list[bytes] = []
        for r in res:
            ct = str(r.get("ciphertext", ""))
            if r.get("error") or not ct.startswith(prefix):
                raise BackendError(
                    f"{self.name} did not wrap a DEK under {name} v{version} "
                    f"({str(r.get('error', 'wrong version'))[:120]}); nothing was written."
                )
            out.append(ct.encode("ascii"))
        return out

    def _items(
        self, refs: Sequence[DekRef]
    ) -> tuple[list[int], list[dict[str, str]], list[SecretBytes | UnwrapError | bytes | None]]:
        """The refs that look right (their index, their batch item), and a slot per ref
        already holding the error of those that do not."""
        slots: list[SecretBytes | UnwrapError | bytes | None] = [None] * len(refs)
        idx: list[int] = []
        items: list[dict[str, str]] = []
        b64, label = base64.b64encode, CONTEXT_LABEL
        prefixes: dict[int, bytes] = {}
        kek_bytes: dict[str, bytes] = {}
        for i, r in enumerate(refs):
            v = r.version
            pre = prefixes.get(v) or prefixes.setdefault(v, f"vault:v{v}:".encode())
            w = r.wrapped
            if not (w.startswith(pre) and w.isascii()):
                slots[i] = UnwrapError(
                    bad_wrap(r.backup_id, r.kek, r.version, "not a transit ciphertext of it")
                )
                continue
            kb = kek_bytes.get(r.kek) or kek_bytes.setdefault(r.kek, r.kek.encode("utf-8"))
            ctx = b64(label + _uuid_bytes(r.backup_id) + kb).decode("ascii")
            idx.append(i)
            items.append({"ciphertext": w.decode("ascii"), "context": ctx})
        return idx, items, slots

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        out: list[SecretBytes | UnwrapError] = [UnwrapError("not done")] * len(refs)
        for kek, group in _by_kek(refs):
            name, mount = self.key_name(kek), self.opts.mount
            idx, items, slots = self._items([refs[i] for i in group])

            def send(
                c: Any, ch: list[dict[str, str]], name: str = name, mount: str = mount
            ) -> list[dict[str, Any]]:
                return _decrypt_batch(c, name, mount, ch)

            res = self._batches(f"unwrapping under {name}", items, send, "custody")
            for j, r in zip(idx, res, strict=True):
                ref = refs[group[j]]
                pt = r.get("plaintext") or ""
                r["plaintext"] = ""
                if r.get("error") or not pt:
                    slots[j] = UnwrapError(
                        bad_wrap(ref.backup_id, kek, ref.version, _item_error(r))
                    )
                    continue
                dek = base64.b64decode(pt)
                if len(dek) != 32:
                    slots[j] = UnwrapError(
                        bad_wrap(ref.backup_id, kek, ref.version, "not a 32-byte key")
                    )
                    continue
                slots[j] = SecretBytes(dek, "DEK")
            for j, s in enumerate(slots):
                assert isinstance(s, SecretBytes | UnwrapError)
                out[group[j]] = s
        return out

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        out: list[bytes | UnwrapError] = [UnwrapError("not done")] * len(refs)
        prefix = f"vault:v{to_version}:"
        for kek, group in _by_kek(refs):
            self._verify(kek, to_version, "custody")
            name, mount = self.key_name(kek), self.opts.mount
            idx, items, slots = self._items([refs[i] for i in group])

            def send(
                c: Any, ch: list[dict[str, str]], name: str = name, mount: str = mount
            ) -> list[dict[str, Any]]:
                r = c.secrets.transit.rewrap_data(
                    name,
                    ciphertext=None,
                    batch_input=ch,
                    key_version=to_version,
                    mount_point=mount,
                )
                return list(r["data"]["batch_results"])

            res = self._batches(f"rewrapping under {name} to v{to_version}", items, send, "custody")
            for j, r in zip(idx, res, strict=True):
                ref = refs[group[j]]
                ct = str(r.get("ciphertext") or "")
                if r.get("error") or not ct.startswith(prefix):
                    slots[j] = UnwrapError(
                        bad_wrap(ref.backup_id, kek, ref.version, _item_error(r))
                    )
                else:
                    slots[j] = ct.encode("ascii")
            for j, s in enumerate(slots):
                assert isinstance(s, bytes | UnwrapError)
                out[group[j]] = s
        return out

    # ------------------------------------------------------------ retirement, destruction

    def _versions(self, kek: str, state: str) -> list[int]:
        return [v.version for v in self._env.catalog.kek(kek).versions if v.state == state]

    def retire(self, kek: str, version: int) -> None:
        """``min_decryption_version`` = the lowest version still active (the catalog marks
        ``version`` retired before this is called)."""
        active = self._versions(kek, "active")
        lowest = min(active)
        if lowest < version:
            raise BackendError(
                f"transit retires versions from the lowest up, and KEK {kek} v{lowest} is "
                f"still active; retire v{lowest} first. Nothing was done."
            )
        name = self.key_name(kek)
        c = self.client("custody")
        self._call(
            f"setting min_decryption_version of {name} to {lowest}",
            lambda: c.secrets.transit.update_key_configuration(
                name, min_decryption_version=lowest, mount_point=self.opts.mount
            ),
            "custody",
        )

    def destroy(self, kek: str, version: int) -> None:
        """``trim`` below the lowest version not destroyed (after ``min_encryption_version``
        is set, which trim needs)."""
        k = self._env.catalog.kek(kek)
        kept = [v.version for v in k.versions if v.state != "destroyed"]
        floor = min(kept) if kept else k.current_version
        if version >= floor:
            raise BackendError(
                f"transit destroys versions from the lowest up, and KEK {kek} v{floor} is not "
                f"destroyed; v{version}'s key material stays on the server until it is."
            )
        name, mount = self.key_name(kek), self.opts.mount
        c = self.client("custody")
        t = c.secrets.transit
        key = self._read_key(kek, "custody")
        latest = int(key.get("latest_version", k.current_version))
        if int(key.get("min_decryption_version", 1)) < floor:
            self._call(
                f"setting min_decryption_version of {name}",
                lambda: t.update_key_configuration(
                    name, min_decryption_version=floor, mount_point=mount
                ),
                "custody",
            )
        # trim needs min_encryption_version set (hvac refuses both in one call unless
        # encryption's is above decryption's, so each in its own)
        self._call(
            f"setting min_encryption_version of {name}",
            lambda: t.update_key_configuration(
                name, min_encryption_version=latest, mount_point=mount
            ),
            "custody",
        )
        self._call(
            f"trimming {name} below v{floor}",
            lambda: t.trim_key(name, min_version=floor, mount_point=mount),
            "custody",
        )

    def backup_key(self, kek: str) -> SecretBytes:
        """The transit ``backup`` of ``kek``'s key (plaintext key material: seal it at once)."""
        name = self.key_name(kek)
        c = self.client("custody")
        r = self._call(
            f"backing up {name}",
            lambda: c.secrets.transit.backup_key(name, mount_point=self.opts.mount),
            "custody",
        )
        return SecretBytes(str(r["data"]["backup"]).encode("ascii"), "transit backup")

    # ------------------------------------------------------------ health

    def health(self) -> Health:
        return self.check(())

    def check(self, keks: Sequence[str]) -> Health:
        """Reachable, authenticated, each key present, permissions enough (wrap for the
        wrap credential and no more; unwrap and rewrap for the custody one when given)."""
        checks: list[Check] = []

        def done(detail: str) -> Health:
            ok = all(c.ok for c in checks)
            return Health(self.name, ok, detail if not ok else "ready", tuple(checks))

        try:
            c = self._http(None)
            st = self._call(
                "reading its health",
                lambda: c.sys.read_health_status(method="GET"),
                None,
            )
            if not isinstance(st, dict):
                st = st.json() if hasattr(st, "json") else {}
            if st.get("sealed"):
                checks.append(Check("reachable", False, f"{self.opts.address} is sealed"))
                return done(checks[-1].detail)
            checks.append(
                Check("reachable", True, f"{self.opts.address}, version {st.get('version', '?')}")
            )
        except BackendError as e:
            checks.append(Check("reachable", False, str(e)))
            return done(str(e))
        for purpose in PURPOSES:
            if not self.has_credential(purpose):
                checks.append(
                    Check(
                        f"{purpose} credential",
                        purpose == "custody",  # the custody one is given per ceremony
                        "not given (it is given per ceremony)"
                        if purpose == "custody"
                        else "none: set it with 'custodian backend credential'",
                    )
                )
                continue
            try:
                info = self._call(
                    "looking up the token",
                    lambda p=purpose: self.client(p).auth.token.lookup_self(),  # type: ignore[misc]
                    purpose,
                )["data"]
                ttl = int(info.get("ttl") or 0)
                checks.append(
                    Check(
                        f"{purpose} credential",
                        True,
                        f"authenticated (policies {', '.join(info.get('policies') or [])}; "
                        + (f"expires in {ttl:,} s)" if ttl else "no expiry)"),
                    )
                )
            except BackendError as e:
                checks.append(Check(f"{purpose} credential", False, str(e)))
                continue
            for kek in keks:
                checks.append(self._check_key(kek, purpose))
            if not keks:  # no KEK yet: what the policy allows on keys under the prefix
                checks.append(self._check_caps("", purpose, f"{self.opts.key_prefix}*"))
        return done(next((c.detail for c in checks if not c.ok), "ready"))

    def _capabilities(self, purpose: str, paths: list[str]) -> dict[str, list[str]]:
        c = self.client(purpose)
        r = self._call(
            "reading its capabilities",
            lambda: c.sys.get_capabilities(paths=paths),
            purpose,
        )
        data = r.get("data", r) if isinstance(r, dict) else {}
        return {p: list(data.get(p) or []) for p in paths}

    def key_paths(self, kek: str) -> dict[str, str]:
        m, k = self.opts.mount, self.key_name(kek)
        return {
            "wrap": f"{m}/encrypt/{k}",
            "unwrap": f"{m}/decrypt/{k}",
            "rewrap": f"{m}/rewrap/{k}",
            "read": f"{m}/keys/{k}",
            "rotate": f"{m}/keys/{k}/rotate",
            "config": f"{m}/keys/{k}/config",
            "trim": f"{m}/keys/{k}/trim",
        }

    def wrap_only_problem(self, kek_names: Sequence[str]) -> str:
        """Why the wrap credential is more than wrap-only ('' when it is wrap-only)."""
        for kek in kek_names or [""]:
            paths = self.key_paths(kek or "probe")
            caps = self._capabilities("wrap", list(paths.values()))
            can = {op for op, p in paths.items() if {"update", "root", "sudo"} & set(caps[p])}
            too = sorted(can & {"unwrap", "rewrap", "config", "trim"})
            if too:
                return (
                    f"the wrap credential can also {', '.join(too)} "
                    f"({'the root policy' if 'root' in caps[paths['wrap']] else 'its policies'})"
                    ": anyone with the workstation's keyring could open every DEK with it. Give "
                    "an encrypt-only token (policy custodian-wrap in docs/backends.md)"
                )
        return ""

    def _check_key(self, kek: str, purpose: str) -> Check:
        try:
            key = self._read_key(kek, purpose)
        except BackendError as e:
            return Check(f"key {kek}", False, str(e))
        if key.get("type") != KEY_TYPE or key.get("derived") is not True:
            return Check(f"key {kek}", False, f"{self.key_name(kek)} is not {KEY_TYPE}, derived")
        return self._check_caps(kek, purpose, f"{self.key_name(kek)} v{key.get('latest_version')}")

    def _check_caps(self, kek: str, purpose: str, what: str) -> Check:
        """Whether ``purpose``'s credential may do what it is for on ``kek``'s key (any key
        under the prefix when ``kek`` is ''), and, for wrap, nothing more."""
        try:
            paths = self.key_paths(kek or "probe")
            caps = self._capabilities(purpose, list(paths.values()))
        except BackendError as e:
            return Check(f"permissions ({purpose})", False, str(e))
        can = {op for op, p in paths.items() if {"update", "root", "sudo"} & set(caps[p])}
        if purpose == "wrap":
            need, forbidden = {"wrap"}, can & {"unwrap", "rewrap", "config", "trim"}
        else:
            need, forbidden = {"unwrap", "rewrap", "rotate", "config", "trim"}, set()
        missing = sorted(need - can)
        ok = not missing and not forbidden
        detail = f"{what} ({purpose}: " + (
            f"cannot {', '.join(missing)}"
            if missing
            else (f"can also {', '.join(sorted(forbidden))}: not wrap-only" if forbidden else "ok")
        )
        name = f"key {kek} ({purpose})" if kek else f"permissions ({purpose})"
        return Check(name, ok, detail + ")")


def _errors(e: Any) -> str:
    errs = getattr(e, "errors", None)
    if isinstance(errs, list) and errs:
        return "; ".join(str(x)[:160] for x in errs[:3])
    return type(e).__name__


def _item_error(r: Mapping[str, Any]) -> str:
    err = str(r.get("error") or "no result")
    return err[:120]


def _by_kek(refs: Sequence[DekRef]) -> Iterator[tuple[str, list[int]]]:
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(refs):
        groups.setdefault(r.kek, []).append(i)
    yield from groups.items()


def _decrypt_batch(c: Any, name: str, mount: str, ch: list[dict[str, str]]) -> list[dict[str, Any]]:
    """A batch decrypt. The server fails the whole request when one item fails, with
    every item's result in the error body: those results are the answer (the body is
    read here and never kept in an exception, since it holds the good items' plaintext)."""
    import hvac.exceptions as X

    try:
        r = c.secrets.transit.decrypt_data(name, ciphertext=None, batch_input=ch, mount_point=mount)
        return list(r["data"]["batch_results"])
    except X.InvalidRequest as e:
        body = e.json if isinstance(e.json, dict) else None
        if body is None and e.text:
            import json

            try:
                body = json.loads(e.text)
            except ValueError:
                body = None
        results = ((body or {}).get("data") or {}).get("batch_results")
        e.text = e.json = None
        e.args = ("decrypt batch failed",)
        if isinstance(results, list) and len(results) == len(ch):
            return [dict(x) for x in results]
        raise


def open_backend(name: str, options: Mapping[str, Any], env: BackendEnv) -> VaultBackend:
    return VaultBackend(name, VaultOptions.parse(name, options, env.home_id), env)
