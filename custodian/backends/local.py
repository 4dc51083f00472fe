"""The embedded ``local`` backend: each KEK version is an HPKE key pair (RFC 9180).

Suites (all HKDF-SHA256 and AES-256-GCM, base mode, single shot):

=================  ===================  ============================  ==========
suite              KEM                  private key kept (sealed)     public key
=================  ===================  ============================  ==========
mlkem768-x25519    ML-KEM-768+X25519    ML-KEM seed (64) | X25519 (32)  1184 + 32
x25519             DHKEM(X25519)        X25519 (32)                     32
p256               DHKEM(P-256)         P-256 scalar (32)               65
=================  ===================  ============================  ==========

Wrapping uses the public key alone, so an operator encrypts a backup without
any secret. Unwrapping unseals the version's private key with the KSK. The
HPKE ``info`` is :func:`custodian.backends.base.dek_context`, which binds the
backup id, KEK name and version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519

from custodian.backends.base import (
    EMBEDDED,
    DekRef,
    Health,
    VersionMaterial,
    dek_context,
    sealed_name,
)
from custodian.catalog import Catalog
from custodian.errors import BackendError, UnwrapError
from custodian.keystore import SealedStore
from custodian.secret import SecretBytes

_KDF, _AEAD = hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
KEMS = {
    "mlkem768-x25519": hpke.KEM.MLKEM768_X25519,
    "x25519": hpke.KEM.X25519,
    "p256": hpke.KEM.P256,
}


def suite(name: str) -> hpke.Suite:
    try:
        return hpke.Suite(KEMS[name], _KDF, _AEAD)
    except KeyError:
        raise BackendError(f"unknown local suite {name!r}; use one of {', '.join(KEMS)}.") from None


def generate(suite_name: str) -> tuple[SecretBytes, bytes]:
    """A new key pair: (private bytes to seal, public bytes for the catalog)."""
    if suite_name == "mlkem768-x25519":
        m = mlkem.MLKEM768PrivateKey.generate()
        x = x25519.X25519PrivateKey.generate()
        priv = SecretBytes(m.private_bytes_raw() + x.private_bytes_raw(), "KEK private key")
        pub = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    elif suite_name == "x25519":
        x = x25519.X25519PrivateKey.generate()
        priv = SecretBytes(x.private_bytes_raw(), "KEK private key")
        pub = x.public_key().public_bytes_raw()
    elif suite_name == "p256":
        p = ec.generate_private_key(ec.SECP256R1())
        priv = SecretBytes(p.private_numbers().private_value.to_bytes(32, "big"), "KEK private key")
        pub = p.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        suite(suite_name)  # raises the clear error
        raise AssertionError
    return priv, pub


def load_public(suite_name: str, pub: bytes) -> Any:
    if suite_name == "mlkem768-x25519":
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(pub[:1184]),
            x25519.X25519PublicKey.from_public_bytes(pub[1184:]),
        )
    if suite_name == "x25519":
        return x25519.X25519PublicKey.from_public_bytes(pub)
    if suite_name == "p256":
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    raise BackendError(f"unknown local suite {suite_name!r}")


def load_private(suite_name: str, priv: SecretBytes) -> Any:
    raw = bytes(priv.reveal())
    if suite_name == "mlkem768-x25519":
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:64]),
            x25519.X25519PrivateKey.from_private_bytes(raw[64:]),
        )
    if suite_name == "x25519":
        return x25519.X25519PrivateKey.from_private_bytes(raw)
    if suite_name == "p256":
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    raise BackendError(f"unknown local suite {suite_name!r}")


def measure_rewrap_rate(suite_name: str, seconds: float = 0.15) -> float:
    """DEKs per second one process rewraps (unwrap + wrap) here, with throwaway keys.

    Each step is exactly one rewrap's cryptography: open a wrapped DEK, wrap it again
    (the wrapped DEK is made before the clock starts). The median of five slices
    stands for the rate: a busy machine slows one slice, not the estimate."""
    import os
    import statistics
    import time

    hs = suite(suite_name)
    priv, pub = generate(suite_name)
    with priv:
        sk = load_private(suite_name, priv)
    pk = load_public(suite_name, pub)
    info = b"custodian rate probe"
    wrapped = hs.encrypt(os.urandom(32), pk, info=info)
    rates = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5 or n < 3:
            hs.encrypt(hs.decrypt(wrapped, sk, info=info), pk, info=info)
            n += 1
        rates.append(n / elapsed)
    return statistics.median(rates)


def bad_wrap(backup_id: str, kek: str, version: int) -> str:
    """Why a wrapped DEK did not open (the same words in this process and in a worker)."""
    return (
        f"the wrapped DEK of backup {backup_id} does not open under KEK {kek} version "
        f"{version} (tampered, or bound to another backup)."
    )


def fingerprint(suite_name: str, pub: bytes) -> str:
    """SHA-256 over suite and public key, first 128 bits, in groups of four hex digits."""
    h = hashlib.sha256(b"custodian kek v1\0" + suite_name.encode() + b"\0" + pub).hexdigest()[:32]
    return " ".join(h[i : i + 4] for i in range(0, 32, 4))


class LocalBackend:
    """HPKE key pairs whose private halves sit in the sealed store under the KSK."""

    name = "local"

    def __init__(
        self, catalog: Catalog, sealed: SealedStore, ksk: Callable[[], SecretBytes]
    ) -> None:
        self._catalog = catalog
        self._sealed = sealed
        self._ksk = ksk
        self._public: dict[tuple[str, int], tuple[str, Any]] = {}
        self._private: dict[tuple[str, int], tuple[str, Any]] = {}

    def close(self) -> None:
        self._private.clear()

    def _suite_of(self, kek: str) -> str:
        return self._catalog.kek(kek).suite

    def create_version(self, kek: str, suite_name: str, version: int) -> VersionMaterial:
        suite(suite_name)
        priv, pub = generate(suite_name)
        with priv:
            self._sealed.seal(self._ksk(), sealed_name(kek, version), priv)
        return VersionMaterial(version, fingerprint(suite_name, pub), pub)

    def _public_key(self, kek: str, version: int) -> tuple[str, Any]:
        key = (kek, version)
        if key not in self._public:
            v = self._catalog.kek_version(kek, version)
            if v.state != "active" or v.public_key is None:
                raise BackendError(
                    f"KEK {kek} version {version} is {v.state} and wraps nothing new."
                )
            s = self._suite_of(kek)
            self._public[key] = (s, load_public(s, v.public_key))
        return self._public[key]

    def _private_key(self, kek: str, version: int) -> tuple[str, Any]:
        key = (kek, version)
        if key not in self._private:
            v = self._catalog.kek_version(kek, version)
            if v.state != "active":
                raise UnwrapError(
                    f"KEK {kek} version {version} is {v.state}; it unwraps nothing any more."
                )
            s = self._suite_of(kek)
            with self._sealed.unseal(self._ksk(), sealed_name(kek, version)) as priv:
                self._private[key] = (s, load_private(s, priv))
        return self._private[key]

    def wrap(self, kek: str, version: int, items: Sequence[tuple[str, SecretBytes]]) -> list[bytes]:
        s, pub = self._public_key(kek, version)
        hs = suite(s)
        return [
            hs.encrypt(bytes(dek.reveal()), pub, info=dek_context(bid, kek, version))
            for bid, dek in items
        ]

    def unwrap(self, refs: Sequence[DekRef]) -> list[SecretBytes | UnwrapError]:
        out: list[SecretBytes | UnwrapError] = []
        for ref in refs:
            try:
                s, priv = self._private_key(ref.kek, ref.version)
            except UnwrapError as e:
                out.append(e)
                continue
            try:
                pt = suite(s).decrypt(
                    ref.wrapped, priv, info=dek_context(ref.backup_id, ref.kek, ref.version)
                )
            except (InvalidTag, ValueError):
                out.append(UnwrapError(bad_wrap(ref.backup_id, ref.kek, ref.version)))
                continue
            out.append(SecretBytes(pt, "DEK"))
        return out

    def rewrap(self, refs: Sequence[DekRef], to_version: int) -> list[bytes | UnwrapError]:
        out: list[bytes | UnwrapError] = []
        for ref, dek in zip(refs, self.unwrap(refs), strict=True):
            if isinstance(dek, UnwrapError):
                out.append(dek)
                continue
            with dek:
                out.append(self.wrap(ref.kek, to_version, [(ref.backup_id, dek)])[0])
        return out

    def retire(self, kek: str, version: int) -> None:
        self._private.pop((kek, version), None)
        self._public.pop((kek, version), None)

    def destroy(self, kek: str, version: int) -> None:
        self.retire(kek, version)
        self._sealed.destroy(sealed_name(kek, version))

    def health(self) -> Health:
        return Health(self.name, True, EMBEDDED)


# ---------------------------------------------------------------- rewrap in worker processes
#
# Each worker is ``python -m custodian.backends.rewrap_worker``, a child process
# that talks over its standard input and output (framing in that module). It
# gets the private keys of the versions it unwraps and the public key it wraps
# to once, at start, and then only wrapped DEKs go in and come out: plaintext
# DEKs never leave it. Plain child processes, not multiprocessing: nothing of
# the parent (its threads, its ``__main__``) is copied or re-imported.


class ProcessRewrapper:
    """Rewrap batches in ``workers`` child processes; each batch's result is a future."""

    def __init__(self, backend: LocalBackend, kek: str, to_version: int, workers: int) -> None:
        from custodian.backends import rewrap_worker as W

        cat = backend._catalog
        k = cat.kek(kek)
        private: dict[int, SecretBytes] = {}
        try:
            for v in k.versions:
                if v.version < to_version and v.state == "active":
                    # a key that does not unseal stops the job with the sealed store's own
                    # message, as it does in one process
                    private[v.version] = backend._sealed.unseal(
                        backend._ksk(), sealed_name(kek, v.version)
                    )
            target = cat.kek_version(kek, to_version)
            if target.state != "active" or target.public_key is None:
                raise BackendError(
                    f"KEK {kek} version {to_version} is {target.state}; it wraps nothing."
                )
            self.workers = workers
            self._pool = W.Pool(workers, k.suite, kek, to_version, target.public_key, private)
        finally:
            for sb in private.values():
                sb.wipe()

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        return self._pool.submit(refs)

    def close(self) -> None:
        self._pool.close()
