"""A rewrap worker process for the local backend, and the pool that drives it.

Run as ``python -m custodian.backends.rewrap_worker``; it reads frames on its
standard input and answers on its standard output. Every frame is a 4-byte
big-endian length and that many bytes.

- first frame (keys): ``suite\\0kek\\0`` then the target version (u32), the
  target public key (u32 length + bytes), then for each source version its
  number (u32) and private key (u32 length + bytes);
- then batch frames: a count (u32), then per DEK the backup id (36 ASCII
  bytes), its version (u32), the wrapped DEK (u32 length + bytes);
- each batch is answered by one frame in the same order: per DEK a status
  byte (0 = rewrapped, 1 = failed) and u32 length + bytes (the new wrapped DEK,
  or the UTF-8 reason).

End of input ends the worker. The worker wipes its copy of the key bytes it
can (Python keeps the parsed key objects until it exits).
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import IO, Any

from custodian.backends.base import DekRef, dek_context
from custodian.errors import BackendError, UnwrapError
from custodian.secret import SecretBytes

_U32 = struct.Struct(">I")


def _frame(f: IO[bytes], data: bytes) -> None:
    f.write(_U32.pack(len(data)) + data)
    f.flush()


def _read_exact(f: IO[bytes], n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        part = f.read(n - len(buf))
        if not part:
            return None
        buf += part
    return bytes(buf)


def _read_frame(f: IO[bytes]) -> bytes | None:
    head = _read_exact(f, 4)
    if head is None:
        return None
    (n,) = _U32.unpack(head)
    return _read_exact(f, n)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.d = memoryview(data)
        self.i = 0

    def u32(self) -> int:
        (v,) = _U32.unpack_from(self.d, self.i)
        self.i += 4
        return int(v)

    def take(self, n: int) -> bytes:
        out = bytes(self.d[self.i : self.i + n])
        self.i += n
        return out

    def blob(self) -> bytes:
        return self.take(self.u32())

    @property
    def more(self) -> bool:
        return self.i < len(self.d)


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    from cryptography.exceptions import InvalidTag

    from custodian.backends import local

    keys = _read_frame(inp)
    if keys is None:
        return
    suite_name, kek, rest = keys.split(b"\0", 2)
    r = _Reader(rest)
    to = r.u32()
    suite_s, kek_s = suite_name.decode(), kek.decode()
    hs = local.suite(suite_s)
    pub = local.load_public(suite_s, r.blob())
    privs: dict[int, Any] = {}
    while r.more:
        v = r.u32()
        with SecretBytes(r.blob(), "KEK private key") as raw:
            privs[v] = local.load_private(suite_s, raw)
    del keys, rest, r
    while (frame := _read_frame(inp)) is not None:
        br = _Reader(frame)
        parts: list[bytes] = []
        for _ in range(br.u32()):
            bid = br.take(36).decode()
            version = br.u32()
            wrapped = br.blob()
            priv = privs.get(version)
            if priv is None:
                msg = f"KEK {kek_s} version {version} is not active; it unwraps nothing any more."
                parts.append(b"\1" + _U32.pack(len(msg.encode())) + msg.encode())
                continue
            try:
                dek = hs.decrypt(wrapped, priv, info=dek_context(bid, kek_s, version))
            except (InvalidTag, ValueError):
                msg = local.bad_wrap(bid, kek_s, version)
                parts.append(b"\1" + _U32.pack(len(msg.encode())) + msg.encode())
                continue
            new = hs.encrypt(dek, pub, info=dek_context(bid, kek_s, to))
            del dek
            parts.append(b"\0" + _U32.pack(len(new)) + new)
        _frame(out, b"".join(parts))


class _Worker:
    """One child process and the futures of the batches it has been given, in order."""

    def __init__(self, keys: bytes) -> None:
        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "custodian.backends.rewrap_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # nothing of a worker reaches the terminal (the TUI draws there); a worker
            # that dies is reported by the pool as "ended early", and its batches redone
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        self.waiting: deque[Future[list[bytes | UnwrapError]]] = deque()
        self.lock = threading.Lock()
        _frame(self.stdin, keys)
        self.thread = threading.Thread(target=self._read, name="rewrap-reader", daemon=True)
        self.thread.start()

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        fut: Future[list[bytes | UnwrapError]] = Future()
        parts = [_U32.pack(len(refs))]
        for ref in refs:
            bid = ref.backup_id.encode()
            if len(bid) != 36:
                raise BackendError(f"backup id {ref.backup_id!r} is not a UUID.")
            parts.append(bid + _U32.pack(ref.version) + _U32.pack(len(ref.wrapped)) + ref.wrapped)
        with self.lock:
            self.waiting.append(fut)
            try:
                _frame(self.stdin, b"".join(parts))
            except OSError:
                self.waiting.pop()
                raise _died() from None
        return fut

    def _read(self) -> None:
        while True:
            frame = _read_frame(self.stdout)
            with self.lock:
                if frame is None:
                    while self.waiting:
                        f = self.waiting.popleft()
                        if f.set_running_or_notify_cancel():
                            f.set_exception(_died())
                    return
                f = self.waiting.popleft()
            if not f.set_running_or_notify_cancel():
                continue  # cancelled: the job will not write it
            r = _Reader(frame)
            res: list[bytes | UnwrapError] = []
            while r.more:
                status = r.take(1)
                data = r.blob()
                res.append(data if status == b"\0" else UnwrapError(data.decode()))
            f.set_result(res)

    def close(self) -> None:
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
        "a rewrap worker process ended early; nothing of its batches was written. Run the "
        "rewrap again to resume from the last committed batch."
    )


class Pool:
    """``n`` workers; batches go round-robin, each result is a future."""

    def __init__(
        self,
        n: int,
        suite_name: str,
        kek: str,
        to_version: int,
        public: bytes,
        private: dict[int, SecretBytes],
    ) -> None:
        keys = bytearray(suite_name.encode() + b"\0" + kek.encode() + b"\0")
        keys += _U32.pack(to_version) + _U32.pack(len(public)) + public
        for v, sb in private.items():
            raw = sb.reveal()
            keys += _U32.pack(v) + _U32.pack(len(raw)) + raw
        try:
            self.workers = [_Worker(bytes(keys)) for _ in range(n)]
        finally:
            keys[:] = bytes(len(keys))
        self._next = 0

    def submit(self, refs: Sequence[DekRef]) -> Future[list[bytes | UnwrapError]]:
        w = self.workers[self._next % len(self.workers)]
        self._next += 1
        return w.submit(refs)

    def close(self) -> None:
        for w in self.workers:
            w.close()


if __name__ == "__main__":
    import signal

    from custodian.hardening import no_core_dumps

    no_core_dumps()  # before the first frame (the KEK private keys) is read
    # Ctrl+C at the terminal reaches the whole process group: the parent stops after the
    # batch in flight, which its workers must finish (they end at the parent's EOF)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
