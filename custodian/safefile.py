"""Files born invisible: plaintext and containers have no name until complete.

DESIGN: "Plaintext goes to a temporary file renamed into place only after the
last chunk authenticated, and a crash at any moment leaves no plaintext and no
partial file behind." A restore and ``backup encrypt`` write through a
:class:`HiddenFile`: an ``O_TMPFILE`` inode in the target directory that has
no name while it is written (a SIGKILL frees it with the process), linked in
place through ``/proc/self/fd`` only once complete and checked. Where the file
system has no ``O_TMPFILE`` (or ``/proc`` is missing) the bytes go to a
private name (``.NAME.<16 hex>.custodian-tmp``, mode 0600) under an exclusive
``flock``, and the next run of the same kind sweeps what a dead writer left
(:func:`leftovers`). The flock, not the process id, tells a live writer from
a dead one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from custodian.errors import ConflictError

USE_O_TMPFILE = True  # tests switch it off to take the private-name path on any file system
PRIVATE_SUFFIX = ".custodian-tmp"
_PRIVATE_RE = re.compile(r"^\..*\.[0-9a-f]{16}" + re.escape(PRIVATE_SUFFIX) + "$")
_LEGACY_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.partial$")  # custodian 0.1.0's names


def is_private_name(name: str) -> bool:
    """Whether ``name`` is one of the private temporary names a writer uses."""
    return bool(_PRIVATE_RE.match(name))


class HiddenFile:
    """A new file that nobody can reach by name until it is complete and checked.

    The bytes go to an ``O_TMPFILE`` inode in the target directory (no name at
    all: a crash or SIGKILL frees it). Once complete and fsynced, :meth:`keep`
    links it under a private name (``.NAME.<16 hex>.custodian-tmp``, mode 0600)
    and :meth:`publish` gives it its real name; :meth:`done` then drops the
    private name. While the private name and the real name are one file, the
    file is published but not yet recorded: :func:`leftovers` lets the next run
    of the same kind find it and decide (roll back, or finish). Where the file
    system has no ``O_TMPFILE`` the bytes go to the private name from the start.
    The writer holds an exclusive ``flock`` on the file for as long as it lives,
    which is how a sweeper tells a live writer's file from a dead one's.
    """

    def __init__(self, dst: Path) -> None:
        self.dst = Path(dst).absolute()
        self.dir = self.dst.parent
        self.private: Path | None = None
        self.published = False
        fd = self._open_anonymous() if USE_O_TMPFILE else None
        if fd is None:
            fd, self.private = self._open_private()
        self.fd = fd
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=0, closefd=False)

    def _open_anonymous(self) -> int | None:
        flag = getattr(os, "O_TMPFILE", 0)
        if not flag or not os.path.isdir("/proc/self/fd"):
            return None
        try:
            fd = os.open(self.dir, flag | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                return None  # this file system (or kernel) has no O_TMPFILE
            raise
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _private_path(self) -> Path:
        return self.dir / f".{self.dst.name[:100]}.{secrets.token_hex(8)}{PRIVATE_SUFFIX}"

    def _open_private(self) -> tuple[int, Path]:
        while True:
            path = self._private_path()
            try:
                # mode 000 until locked: a sweeper skips a file it cannot lock or read
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
            except FileExistsError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.fchmod(fd, 0o600)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            return fd, path

    def keep(self) -> None:
        """The file is complete: make it durable and give it its private name."""
        os.fsync(self.fd)
        if self.private is not None:
            return
        # linkat(AT_SYMLINK_FOLLOW) on the /proc magic link gives the inode a name. CPython
        # calls plain link() (which would link the symlink itself) unless a dir fd is given.
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            while True:
                path = self._private_path()
                try:
                    os.link(
                        f"/proc/self/fd/{self.fd}", path.name, dst_dir_fd=dfd, follow_symlinks=True
                    )
                except FileExistsError:
                    continue
                self.private = path
                return
        finally:
            os.close(dfd)

    def publish(self, replace: bool) -> None:
        """Give the kept file its real name: never over an existing file unless ``replace``."""
        assert self.private is not None, "keep() first"
        if replace:
            os.replace(self.private, self.dst)
            self.private = None
        else:
            try:
                os.link(self.private, self.dst)
            except FileExistsError:
                raise ConflictError(
                    f"{self.dst} appeared while writing; nothing was replaced. "
                    "Use --force to replace it."
                ) from None
        self.published = True
        _fsync_dir(self.dir)

    def done(self) -> None:
        """The file is recorded where it belongs: drop the private name, release the lock."""
        if self.private is not None:
            self.private.unlink(missing_ok=True)
            self.private = None
            _fsync_dir(self.dir)
        self._close()

    def abandon(self) -> None:
        """Let go of the file as it is (names and all) for the next run's sweep to finish."""
        self._close()

    def discard(self) -> None:
        """Remove every name the file got (its real name only if it is still this file)."""
        try:
            if self.published and _same_file(self.dst, self.fd):
                self.dst.unlink(missing_ok=True)
            if self.private is not None:
                self.private.unlink(missing_ok=True)
                self.private = None
        finally:
            self._close()

    def _close(self) -> None:
        if self.fd >= 0:
            self.file.close()
            os.close(self.fd)
            self.fd = -1


def _same_file(path: Path, fd: int) -> bool:
    try:
        a, b = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Leftover:
    """A private file whose writer is gone, locked for the sweeper while it decides.

    ``linked`` is the public name in the same directory that is the same file,
    if there is one: the writer published it and died before recording it.
    """

    path: Path
    fd: int
    linked: Path | None

    def remove(self, *, linked: bool) -> None:
        """Remove the private name, and the public one too when ``linked`` (each only
        while it is still this file)."""
        if linked and self.linked is not None and _same_file(self.linked, self.fd):
            self.linked.unlink(missing_ok=True)
        if _same_file(self.path, self.fd):
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self.fd)


def leftovers(directory: Path) -> list[Leftover]:
    """The private files in ``directory`` that no live writer holds (see HiddenFile).

    Each comes locked, so that a second sweeper skips it; the caller decides and
    closes each. Files of custodian 0.1.0 (``.NAME.PID.xxxxxxxx.partial``, whose
    writer took no lock) count when their process is gone.
    """
    out: list[Leftover] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    private = [n for n in names if n.startswith(".") and is_private_name(n)]
    legacy = [n for n in names if n.startswith(".") and _legacy_dead(n)]
    if not private and not legacy:
        return out
    by_inode: dict[tuple[int, int], Path] = {}
    for n in names:
        if n.startswith(".") and (is_private_name(n) or _LEGACY_RE.match(n)):
            continue
        try:
            st = os.lstat(directory / n)
        except OSError:
            continue
        if st.st_nlink > 1:
            by_inode[(st.st_dev, st.st_ino)] = directory / n
    for n in private + legacy:
        path = directory / n
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, or not ours to read
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st = os.fstat(fd)
            if st.st_mode & 0o777 == 0 and (st.st_size or time.time() - st.st_mtime < 60):
                raise BlockingIOError  # a writer between create and lock: not ours yet
        except OSError:
            os.close(fd)
            continue
        out.append(Leftover(path, fd, by_inode.get((st.st_dev, st.st_ino))))
    return out


def _legacy_dead(name: str) -> bool:
    m = _LEGACY_RE.match(name)
    if m is None:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def sweep_plain(directory: Path) -> int:
    """Remove every dead writer's private file that no public name shares; how many."""
    n = 0
    for lo in leftovers(directory):
        try:
            if lo.linked is None:
                lo.remove(linked=False)
                n += 1
        finally:
            lo.close()
    return n


def write_new_file(dst: Path, force: bool, fill: Callable[[BinaryIO], None]) -> None:
    """Write ``dst`` through a file that has no name until it is complete (HiddenFile).

    Without ``force`` an existing ``dst`` is never replaced (link, not rename, so
    a file appearing meanwhile is not clobbered either). On any error nothing
    of the new file remains and ``dst`` is untouched.
    """
    hf = open_new_file(dst, force)
    try:
        fill(hf.file)
        hf.keep()
        hf.publish(force)
    except BaseException:
        hf.discard()
        raise
    hf.done()


def open_new_file(dst: Path, force: bool) -> HiddenFile:
    """Check that ``dst`` may be written, then a HiddenFile for it."""
    dst = Path(dst).absolute()
    if not force and (dst.exists() or dst.is_symlink()):
        raise ConflictError(
            f"{dst} already exists; nothing was written. Use --force to replace it."
        )
    if not dst.parent.is_dir():
        raise ConflictError(f"the directory {dst.parent} does not exist; nothing was written.")
    return HiddenFile(dst)
