"""Shamir sharing over GF(2^8), byte-wise, without secret-dependent branches.

The field is GF(2)[x] / (x^8 + x^4 + x^3 + x + 1), the AES polynomial (0x11B),
as in SLIP-39. A secret of n bytes is n independent secrets; each share is the
value at a public point x (1..255) of a polynomial of degree m-1 whose constant
term is the secret and whose other coefficients are fresh random bytes.

Every multiplication that touches secret data is by a *public* constant (a
share index x, or a Lagrange weight, which depends on the share indices
only), and is done on all n bytes at once as one integer (SWAR: 0x80 bits are
moved out and reduced with a mask, never a branch or a table indexed by
secret bytes). Python gives no constant-time guarantee beyond that
(docs/custody.md, "What this code does not promise").

Addition in the field is XOR, so applying a refresh delta to a share is
``share XOR delta``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache

POLY = 0x11B
Random = Callable[[int], bytes]


@lru_cache(maxsize=16)
def _masks(n: int) -> tuple[int, int]:
    low7 = int.from_bytes(b"\x7f" * n, "big")
    ones = int.from_bytes(b"\x01" * n, "big")
    return low7, ones


def _xtime(v: int, low7: int, ones: int) -> int:
    """Every byte of ``v`` times x (0x02), reduced by the AES polynomial."""
    return ((v & low7) << 1) ^ (((v >> 7) & ones) * 0x1B)


def mul_const(v: int, c: int, n: int) -> int:
    """Each of the ``n`` bytes packed in ``v`` times the public constant ``c``."""
    if not 0 <= c <= 255:
        raise ValueError("a field element is one byte")
    low7, ones = _masks(n)
    out = 0
    for _ in range(8):
        if c & 1:  # branches on the public constant only
            out ^= v
        v = _xtime(v, low7, ones)
        c >>= 1
    return out


def mul(a: int, b: int) -> int:
    """One field multiplication, branch-free in both operands (tests, weights)."""
    out = 0
    for _ in range(8):
        out ^= -(b & 1) & a
        a = ((a << 1) ^ (-(a >> 7) & POLY)) & 0xFF
        b >>= 1
    return out & 0xFF


def inv(a: int) -> int:
    """a^-1 = a^254 (a fixed chain of squarings and products); inv(0) is refused."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    result, base, e = 1, a, 254
    for _ in range(8):
        result = mul(result, base) if e & 1 else mul(result, 1)
        base = mul(base, base)
        e >>= 1
    return result


def _check_xs(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ValueError("share indices must be distinct")
    if any(not 1 <= x <= 255 for x in xs):
        raise ValueError("share indices are 1..255 (0 is the secret itself)")


def _horner(coeffs: Sequence[int], x: int, n: int) -> int:
    """Evaluate sum coeffs[k] * x^k (coeffs packed n bytes each) at the public x."""
    acc = 0
    for c in reversed(coeffs):
        acc = mul_const(acc, x, n) ^ c
    return acc


def split(secret: bytes, m: int, xs: Sequence[int], rand: Random = os.urandom) -> list[bytes]:
    """Shares of ``secret`` at the points ``xs``; any ``m`` of them give it back."""
    _check_xs(xs)
    if not 1 <= m <= len(xs):
        raise ValueError("the threshold must be between 1 and the number of shares")
    n = len(secret)
    coeffs = [int.from_bytes(secret, "big")]
    coeffs += [int.from_bytes(rand(n), "big") for _ in range(m - 1)]
    try:
        return [_horner(coeffs, x, n).to_bytes(n, "big") for x in xs]
    finally:
        coeffs.clear()


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """The weights w_i with f(0) = sum w_i * f(x_i) for any f of degree < len(xs)."""
    _check_xs(xs)
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = mul(num, xj)  # (0 - x_j) = x_j in characteristic 2
                den = mul(den, xi ^ xj)
        out.append(mul(num, inv(den)))
    return out


def combine(points: Sequence[tuple[int, bytes]]) -> bytes:
    """The secret from exactly m points (x, share) of a degree m-1 sharing."""
    if not points:
        raise ValueError("no shares")
    n = len(points[0][1])
    if any(len(s) != n for _, s in points):
        raise ValueError("shares differ in length")
    xs = [x for x, _ in points]
    acc = 0
    for w, (_, s) in zip(lagrange_at_zero(xs), points, strict=True):
        acc ^= mul_const(int.from_bytes(s, "big"), w, n)
    return acc.to_bytes(n, "big")


def weighted(share: bytes, w: int) -> bytes:
    """``w * share`` byte-wise (a Lagrange-weighted sub-share in a redistribution)."""
    n = len(share)
    return mul_const(int.from_bytes(share, "big"), w, n).to_bytes(n, "big")


def zero_sharing(m: int, xs: Sequence[int], n: int, rand: Random = os.urandom) -> list[bytes]:
    """Values at ``xs`` of a random polynomial of degree m-1 with Z(0) = 0 (a refresh).

    Adding (XOR) them to the shares of any secret gives a fresh sharing of the same
    secret; below m of them say nothing about the old shares or the new ones.
    """
    return split(bytes(n), m, xs, rand)


def xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError("lengths differ")
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")
