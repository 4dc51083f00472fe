"""Secret bytes that never print and are wiped when done.

Python cannot promise that no copy of a secret survives (the C libraries we
call may keep their own), but we keep our own copies in one mutable buffer,
never in ``str``/``bytes`` attributes that outlive their use, and zero that
buffer as soon as the holder is finished with it.
"""

from __future__ import annotations

import hmac
import os
from types import TracebackType
from typing import Self


class SecretBytes:
    """A redacted, wipeable holder of secret bytes (a DEK, a KSK, a private key)."""

    __slots__ = ("_buf", "_label")

    def __init__(self, data: bytes | bytearray | memoryview, label: str = "secret") -> None:
        self._buf = bytearray(data)
        self._label = label

    @classmethod
    def random(cls, size: int, label: str = "secret") -> SecretBytes:
        """Fresh bytes from the operating system's random source."""
        return cls(os.urandom(size), label)

    def __repr__(self) -> str:
        return f"<SecretBytes {self._label} [redacted, {len(self._buf)} bytes]>"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._buf)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._buf, other._buf)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> str:
        raise TypeError("secret bytes cannot be pickled")

    @property
    def wiped(self) -> bool:
        return len(self._buf) == 0

    def reveal(self) -> bytearray:
        """The underlying buffer, for handing straight to a cryptographic call.

        The caller must not keep it beyond that call.
        """
        if self.wiped:
            raise ValueError("secret was already wiped")
        return self._buf

    def wipe(self) -> None:
        """Zero the buffer and drop it."""
        self._buf[:] = bytes(len(self._buf))  # same length: overwritten in place
        self._buf = bytearray()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wipe()


def new_dek() -> SecretBytes:
    """A fresh 256-bit data-encryption key from the OS random source."""
    return SecretBytes.random(32, "DEK")
