"""The keystore root key (KSK), the OS keyring that holds it, and the sealed store.

The KSK is 32 random bytes. It is kept in the OS keyring through
python-keyring's standard backend selection, under the service name
``custodian`` and the user name ``ksk:<home id>``, so several homes can share
one keyring. Its only other copy is the break-glass share set.

The sealed store is a directory of small files, one per secret (a local KEK
version's private key, later TOTP secrets and escrow blobs). Each file is::

    magic "CSEAL1\\0\\0" (8) | KSK id (8) | nonce (12) | AES-256-GCM ciphertext+tag

with associated data ``b"custodian sealed v1\\0" + name``, so a blob cannot be
moved under another name. The KSK id lets a wrong root key be named as such.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from pathlib import Path
from typing import Any

from custodian.errors import KeyringError, NotFoundError, SealError
from custodian.home import write_private
from custodian.secret import SecretBytes

SERVICE = "custodian"
SEAL_MAGIC = b"CSEAL1\0\0"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,127}$")


def ksk_id(ksk: SecretBytes) -> bytes:
    """A short public identifier of a KSK (HMAC of a constant)."""
    return hmac.new(ksk.reveal(), b"custodian ksk id v1", hashlib.sha256).digest()[:8]


def ksk_check_value(ksk: SecretBytes) -> str:
    """The value stored in the catalog to recognise the right KSK after recovery."""
    return hmac.new(ksk.reveal(), b"custodian ksk check v1", hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- keyring


def _home_file_backend(directory: Path) -> Any:
    """A keyring backend that keeps entries in a JSON file inside the home.

    Only for demo homes and tests: the root key sits beside what it protects.
    """
    from keyring.backend import KeyringBackend

    class HomeFileKeyring(KeyringBackend):
        priority = 0.1  # never chosen by keyring's own selection

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.file = directory / "keyring.json"

        def _load(self) -> dict[str, str]:
            if not self.file.exists():
                return {}
            data: dict[str, str] = json.loads(self.file.read_text(encoding="utf-8"))
            return data

        def get_password(self, service: str, username: str) -> str | None:
            return self._load().get(f"{service}\0{username}")

        def set_password(self, service: str, username: str, password: str) -> None:
            directory.mkdir(mode=0o700, exist_ok=True)
            data = self._load()
            data[f"{service}\0{username}"] = password
            write_private(self.file, json.dumps(data).encode())

        def delete_password(self, service: str, username: str) -> None:
            data = self._load()
            data.pop(f"{service}\0{username}", None)
            write_private(self.file, json.dumps(data).encode())

    return HomeFileKeyring()


class Keyring:
    """Where this home keeps secrets outside the home: the KSK, later signing keys."""

    def __init__(self, backend_name: str, home_keyring_dir: Path, home_id: str) -> None:
        self.backend_name = backend_name
        self._dir = home_keyring_dir
        self._home_id = home_id
        self._backend: Any = None

    def _get(self) -> Any:
        if self._backend is not None:
            return self._backend
        if self.backend_name == "home-file":
            self._backend = _home_file_backend(self._dir)
            return self._backend
        import keyring
        from keyring.backends import fail

        try:
            kr = keyring.get_keyring()
        except Exception as e:  # a configured backend that cannot be loaded
            raise KeyringError(
                f"the configured keyring backend could not be loaded ({type(e).__name__}: {e}); "
                "nothing was changed. Check PYTHON_KEYRING_BACKEND or keyringrc.cfg, or "
                "install the package that provides the backend."
            ) from None
        usable = not isinstance(kr, fail.Keyring)
        if usable and type(kr).__name__ == "ChainerBackend":
            usable = bool(getattr(kr, "backends", []))
        if not usable:
            raise KeyringError(
                "no usable OS keyring was found, so the root key cannot be stored or read; "
                "nothing was changed. On a desktop, unlock your Secret Service (GNOME Keyring, "
                "KWallet); on a server, set PYTHON_KEYRING_BACKEND or keyringrc.cfg to a "
                "backend (see docs/operator-guide.md, 'Keyring')."
            )
        self._backend = kr
        return kr

    @property
    def description(self) -> str:
        if self.backend_name == "home-file":  # no need to load keyring to say so
            return "home file (demo only)"
        try:
            kr = self._get()
        except KeyringError:
            return "unavailable"
        return f"{type(kr).__module__}.{type(kr).__name__}"

    def _user(self, what: str) -> str:
        return f"{what}:{self._home_id}"

    def get(self, what: str) -> str | None:
        try:
            value: str | None = self._get().get_password(SERVICE, self._user(what))
        except KeyringError:
            raise
        except Exception as e:  # keyring backends raise many kinds
            raise KeyringError(
                f"the keyring refused to read {what!r} ({type(e).__name__}); nothing was "
                "changed. Unlock the keyring and try again."
            ) from None
        return value

    def set(self, what: str, value: str) -> None:
        try:
            self._get().set_password(SERVICE, self._user(what), value)
        except KeyringError:
            raise
        except Exception as e:
            raise KeyringError(
                f"the keyring refused to store {what!r} ({type(e).__name__}); nothing was "
                "stored. Unlock the keyring and try again."
            ) from None

    def delete(self, what: str) -> None:
        """Remove an entry (nothing happens if it is not there)."""
        import contextlib

        try:
            kr = self._get()
            if kr.get_password(SERVICE, self._user(what)) is not None:
                with contextlib.suppress(Exception):
                    kr.delete_password(SERVICE, self._user(what))
        except KeyringError:
            raise
        except Exception as e:
            raise KeyringError(
                f"the keyring refused to remove {what!r} ({type(e).__name__}); nothing was "
                "changed. Unlock the keyring and try again."
            ) from None

    def load_ksk(self, expected_check: str) -> SecretBytes:
        raw = self.get("ksk")
        if raw is None:
            raise KeyringError(
                "this home's root key is not in the keyring (" + self.description + "); "
                "no secret was read. Use the keyring (and the account) this home was made with; "
                "if it is lost, custodians install it again from the break-glass shares "
                "('custodian breakglass recover')."
            )
        ksk = SecretBytes(base64.b64decode(raw), "KSK")
        if not hmac.compare_digest(ksk_check_value(ksk), expected_check):
            ksk.wipe()
            raise KeyringError(
                "the keyring holds a root key that is not this home's (check value differs); "
                "nothing was unsealed. Use the keyring this home was made with."
            )
        return ksk

    def store_ksk(self, ksk: SecretBytes) -> None:
        self.set("ksk", base64.b64encode(ksk.reveal()).decode())


# ---------------------------------------------------------------- sealed store


class SealedStore:
    """Secrets sealed under the KSK, one file per named blob."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, name: str) -> Path:
        if not _NAME_RE.fullmatch(name) or ".." in name:
            raise ValueError(f"bad sealed blob name {name!r}")
        return self.dir / (name.replace("/", "__") + ".sealed")

    @staticmethod
    def _aad(name: str) -> bytes:
        return b"custodian sealed v1\0" + name.encode()

    def seal(self, ksk: SecretBytes, name: str, secret: SecretBytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        ct = AESGCM(ksk.reveal()).encrypt(nonce, secret.reveal(), self._aad(name))
        write_private(self._path(name), SEAL_MAGIC + ksk_id(ksk) + nonce + ct)

    def unseal(self, ksk: SecretBytes, name: str) -> SecretBytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        path = self._path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"the sealed store has no {name!r}") from None
        if blob[:8] != SEAL_MAGIC or len(blob) < 8 + 8 + 12 + 16:
            raise SealError(f"sealed blob {name!r} is not a custodian sealed blob")
        if not hmac.compare_digest(blob[8:16], ksk_id(ksk)):
            raise SealError(
                f"sealed blob {name!r} was sealed under another root key; nothing was unsealed."
            )
        out = SecretBytes(bytes(len(blob) - 28 - 16), name)
        try:
            AESGCM(ksk.reveal()).decrypt_into(blob[16:28], blob[28:], self._aad(name), out.reveal())
        except InvalidTag:
            out.wipe()
            raise SealError(
                f"sealed blob {name!r} failed authentication (tampered or renamed); "
                "nothing was unsealed. Restore the sealed store from a copy."
            ) from None
        return out

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def destroy(self, name: str) -> None:
        path = self._path(name)
        if path.exists():
            size = path.stat().st_size
            with open(path, "r+b") as f:
                f.write(os.urandom(size))
                f.flush()
                os.fsync(f.fileno())
            path.unlink()
