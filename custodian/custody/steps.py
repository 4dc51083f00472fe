"""The work of one step of a quorum custody job, per DEK, in this process or in workers.

:mod:`custodian.custody.jobs` stores and orders; this module computes. A source
makes parts (the dealer's sealed deltas, or an old holder's sub-shares of their own
share); a target seals their new share (old share XOR delta, or the weighted sum of
sub-shares). Nothing here combines shares into a DEK: :func:`custodian.custody.quorum.combine`
is never called (tests/unit/test_refresh.py patches it, and the field's ``combine``,
to raise while whole jobs run).

Workers (``python -m custodian.custody.steps``) run a target's batches in child
processes, as the rewrap workers do: frames of a 4-byte length and that many bytes.
The first frame carries the step's keys (:func:`encode_keys`); each batch frame its
items; each answer frame the results in order.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any

from custodian.custody import jobs as J
from custodian.custody import quorum as Q
from custodian.errors import BackendError, CustodianError
from custodian.secret import SecretBytes

_U32 = struct.Struct(">I")


@dataclass
class StepKeys:
    """What one person's step needs: the manifests and, where the step opens something,
    that person's private holder keys (objects, never written anywhere)."""

    kind: str  # refresh | redistribute
    role: str  # source | target
    who: str  # a holder's name, or jobs.DEALER
    new: Q.Manifest
    old: dict[int, Q.Manifest]  # from version -> its manifest
    sources: tuple[str, ...] = ()
    new_private: Any = None  # targets: the new holder key
    old_private: dict[int, Any] = field(default_factory=dict)  # refresh targets, sources

    def __repr__(self) -> str:
        return f"StepKeys({self.kind} {self.role} {self.who}, [keys redacted])"


def _old(keys: StepKeys, version: int) -> Q.Manifest:
    m = keys.old.get(version)
    if m is None:
        raise Q.QuorumError(f"no manifest of v{version} was given to this step.")
    return m


def source_one(keys: StepKeys, it: J.SourceItem) -> J.SourceResult:
    """The parts a source makes for one DEK ({target index: sealed blob})."""
    try:
        old = _old(keys, it.from_version)
        qw = Q.QuorumWrap.decode(it.wrapped)
        qw.check_against(old)
        if keys.kind == "refresh":
            new_deal, parts = Q.deal_refresh(old, keys.new, it.backup, qw.deal_id)
        else:
            new_deal = it.new_deal if it.new_deal is not None else os.urandom(16)
            priv = keys.old_private.get(it.from_version)
            if priv is None:
                raise Q.QuorumError(f"{keys.who}'s holder key of v{it.from_version} is missing.")
            share = Q.open_share(qw, old, it.backup, keys.who, priv)
            with share.value:
                parts = Q.reshare(share, old, keys.new, it.backup, qw.deal_id, new_deal)
    except CustodianError as e:
        return J.SourceResult(it, it.new_deal or b"", {}, str(e))
    return J.SourceResult(it, new_deal, {x - 1: blob for x, blob in parts.items()})


def target_one(keys: StepKeys, it: J.TargetItem) -> J.TargetResult:
    """The new share a target seals for one DEK."""
    if not it.wrapped:
        return J.TargetResult(it, None, "the DEK's wrap changed since it was dealt")
    try:
        old = _old(keys, it.from_version)
        qw = Q.QuorumWrap.decode(it.wrapped)
        qw.check_against(old)
        if keys.kind == "refresh":
            if set(it.parts) != {0}:
                raise Q.QuorumError(f"no refresh delta for {keys.who}")
            priv = keys.old_private.get(it.from_version)
            if priv is None:
                raise Q.QuorumError(f"{keys.who}'s holder key of v{it.from_version} is missing.")
            share = Q.open_share(qw, old, it.backup, keys.who, priv)
            with share.value:
                s = Q.apply_refresh(
                    share, it.parts[0], old, keys.new, it.backup, qw.deal_id, it.new_deal,
                    keys.who, keys.new_private,
                )  # fmt: skip
        else:
            sealed = {old.holder(keys.sources[i]).x: b for i, b in it.parts.items()}
            s = Q.combine_subshares(
                sealed, old, keys.new, it.backup, qw.deal_id, it.new_deal, keys.who,
                keys.new_private,
            )  # fmt: skip
    except CustodianError as e:
        return J.TargetResult(it, None, str(e))
    return J.TargetResult(it, s)


class InlineSteps:
    """One batch at a time, in this process."""

    workers = 1

    def __init__(self, keys: StepKeys) -> None:
        self.keys = keys

    def submit(self, items: Sequence[J.TargetItem]) -> Future[list[J.TargetResult]]:
        f: Future[list[J.TargetResult]] = Future()
        try:
            f.set_result([target_one(self.keys, it) for it in items])
        except BaseException as e:  # handed to the caller through the future
            f.set_exception(e)
        return f

    def close(self) -> None:
        pass


# ---------------------------------------------------------------- worker processes


def _blob(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.d, self.i = memoryview(data), 0

    def u32(self) -> int:
        (v,) = _U32.unpack_from(self.d, self.i)
        self.i += 4
        return int(v)

    def blob(self) -> bytes:
        n = self.u32()
        out = bytes(self.d[self.i : self.i + n])
        self.i += n
        return out

    @property
    def more(self) -> bool:
        return self.i < len(self.d)


def encode_keys(
    keys: StepKeys, new_private: SecretBytes, old_private: dict[int, SecretBytes]
) -> bytearray:
    """A target's keys for a worker (the caller wipes the result)."""
    out = bytearray(_blob(keys.kind.encode()) + _blob(keys.who.encode()))
    out += _blob(keys.new.encode()) + _blob(bytes(new_private.reveal()))
    out += _U32.pack(len(keys.sources)) + b"".join(_blob(s.encode()) for s in keys.sources)
    for v, m in sorted(keys.old.items()):
        raw = old_private.get(v)
        out += _U32.pack(v) + _blob(m.encode()) + _blob(bytes(raw.reveal()) if raw else b"")
    return out


def _decode_keys(frame: bytes) -> StepKeys:
    from custodian.backends.local import load_private

    r = _Reader(frame)
    kind, who = r.blob().decode(), r.blob().decode()
    new = Q.Manifest.decode(r.blob())
    with SecretBytes(r.blob(), "holder key") as raw:
        new_private = load_private(new.suite, raw)
    sources = tuple(r.blob().decode() for _ in range(r.u32()))
    old: dict[int, Q.Manifest] = {}
    old_private: dict[int, Any] = {}
    while r.more:
        v = r.u32()
        old[v] = Q.Manifest.decode(r.blob())
        raw_b = r.blob()
        if raw_b:
            with SecretBytes(raw_b, "holder key") as raw:
                old_private[v] = load_private(old[v].suite, raw)
    return StepKeys(kind, "target", who, new, old, sources, new_private, old_private)


def _encode_items(items: Sequence[J.TargetItem]) -> bytes:
    out = [_U32.pack(len(items))]
    for it in items:
        parts = b"".join(_U32.pack(s) + _blob(b) for s, b in sorted(it.parts.items()))
        out.append(
            _U32.pack(it.row) + _blob(it.backup.encode()) + _U32.pack(it.from_version)
            + _blob(it.wrapped) + _blob(it.new_deal) + _U32.pack(len(it.parts)) + parts
        )  # fmt: skip
    return b"".join(out)


def _decode_items(frame: bytes) -> list[J.TargetItem]:
    r = _Reader(frame)
    items = []
    for _ in range(r.u32()):
        row, bid, ver = r.u32(), r.blob().decode(), r.u32()
        wrapped, deal = r.blob(), r.blob()
        parts = {}
        for _ in range(r.u32()):
            s = r.u32()
            parts[s] = r.blob()
        items.append(J.TargetItem(row, bid, ver, wrapped, deal, parts))
    return items


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from custodian.backends.rewrap_worker import _frame, _read_frame

    first = _read_frame(inp)
    if first is None:
        return
    keys = _decode_keys(first)
    del first
    while (frame := _read_frame(inp)) is not None:
        parts = []
        for res in (target_one(keys, it) for it in _decode_items(frame)):
            if res.share is None:
                parts.append(b"\1" + _blob(res.error.encode()))
            else:
                parts.append(b"\0" + _blob(res.share.commitment) + _blob(res.share.ciphertext))
        _frame(out, b"".join(parts))


class _Worker:
    def __init__(self, keys: bytes) -> None:
        from custodian.backends.rewrap_worker import _frame

        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "custodian.custody.steps"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.waiting: deque[tuple[list[J.TargetItem], Future[list[J.TargetResult]]]] = deque()
        self.lock = threading.Lock()
        _frame(self.stdin, keys)
        self.thread = threading.Thread(target=self._read, name="refresh-reader", daemon=True)
        self.thread.start()

    def submit(self, items: Sequence[J.TargetItem]) -> Future[list[J.TargetResult]]:
        from custodian.backends.rewrap_worker import _frame

        fut: Future[list[J.TargetResult]] = Future()
        with self.lock:
            self.waiting.append((list(items), fut))
            try:
                _frame(self.stdin, _encode_items(items))
            except OSError:
                self.waiting.pop()
                raise _died() from None
        return fut

    def _read(self) -> None:
        from custodian.backends.rewrap_worker import _read_frame

        while True:
            frame = _read_frame(self.stdout)
            with self.lock:
                if frame is None:
                    while self.waiting:
                        _, f = self.waiting.popleft()
                        if f.set_running_or_notify_cancel():
                            f.set_exception(_died())
                    return
                items, f = self.waiting.popleft()
            if not f.set_running_or_notify_cancel():
                continue
            r = _Reader(frame)
            res: list[J.TargetResult] = []
            for it in items:
                status = bytes(r.d[r.i : r.i + 1])
                r.i += 1
                if status == b"\0":
                    c, ct = r.blob(), r.blob()  # index and name: the pool's own target's
                    res.append(J.TargetResult(it, Q.SealedShare(0, "", c, ct)))
                else:
                    res.append(J.TargetResult(it, None, r.blob().decode()))
            f.set_result(res)

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(timeout=5)
        self.stdout.close()


def _died() -> BackendError:
    return BackendError(
        "a refresh worker process ended early; nothing of its batches was written. Run the "
        "step again to resume from the last committed batch."
    )


class ProcessSteps:
    """A target's batches in ``n`` worker processes, round-robin; results as futures."""

    def __init__(
        self,
        n: int,
        keys: StepKeys,
        new_private: SecretBytes,
        old_private: dict[int, SecretBytes],
    ) -> None:
        blob = encode_keys(keys, new_private, old_private)
        self._x = keys.new.holder(keys.who).x
        self._name = keys.who
        try:
            self.pool = [_Worker(bytes(blob)) for _ in range(n)]
        finally:
            blob[:] = bytes(len(blob))
        self.workers = n
        self._next = 0

    def submit(self, items: Sequence[J.TargetItem]) -> Future[list[J.TargetResult]]:
        w = self.pool[self._next % len(self.pool)]
        self._next += 1
        inner = w.submit(items)
        outer: Future[list[J.TargetResult]] = Future()

        def done(f: Future[list[J.TargetResult]]) -> None:
            if f.cancelled():
                outer.cancel()
                return
            e = f.exception()
            if e is not None:
                outer.set_exception(e)
                return
            outer.set_result(
                [
                    r
                    if r.share is None
                    else J.TargetResult(
                        r.item,
                        Q.SealedShare(self._x, self._name, r.share.commitment, r.share.ciphertext),
                    )
                    for r in f.result()
                ]
            )

        inner.add_done_callback(done)
        return outer

    def close(self) -> None:
        for w in self.pool:
            w.close()


if __name__ == "__main__":
    import signal

    from custodian.hardening import no_core_dumps

    no_core_dumps()  # before the first frame (the holder's private keys) is read
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
