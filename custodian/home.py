"""The home directory: where it is, its layout, and its permissions.

One directory, mode 0700, every file 0600. It holds the configuration, the
catalog, the sealed store and (from the audit issue on) the audit log. The
home is chosen by ``--home``, else ``CUSTODIAN_HOME``, else the platform's
data directory.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from custodian.errors import HomeError

ENV_HOME = "CUSTODIAN_HOME"
CONFIG_NAME = "custodian.toml"
CATALOG_NAME = "catalog.db"
SEALED_DIR = "sealed"
KEYRING_DIR = "keyring"
BACKUPS_DIR = "backups"
AUDIT_DIR = "audit"


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_path

    return user_data_path("custodian", appauthor=False)


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def catalog(self) -> Path:
        return self.path / CATALOG_NAME

    @property
    def sealed(self) -> Path:
        return self.path / SEALED_DIR

    @property
    def keyring_dir(self) -> Path:
        return self.path / KEYRING_DIR

    @property
    def audit(self) -> Path:
        return self.path / AUDIT_DIR

    @property
    def backups(self) -> Path:
        return self.path / BACKUPS_DIR

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None) -> Home:
        return cls(Path(path).expanduser().absolute() if path else default_home().absolute())

    def create(self) -> None:
        """Make a new, empty home. Refuses a directory that already holds one."""
        if self.config.exists():
            raise HomeError(
                f"{self.path} is already a custodian home; nothing was changed. "
                "Use it as it is, or choose another directory with --home."
            )
        if self.path.exists() and any(self.path.iterdir()):
            raise HomeError(
                f"{self.path} exists and is not empty; nothing was changed. "
                "Choose an empty or new directory with --home."
            )
        old = os.umask(0o077)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.path, 0o700)
            for sub in (self.sealed, self.backups, self.audit):
                sub.mkdir(mode=0o700, exist_ok=True)
        finally:
            os.umask(old)

    def check(self) -> None:
        """Refuse a missing home, or one whose permissions let others in."""
        if not self.path.is_dir():
            raise HomeError(
                f"no custodian home at {self.path}. Create one with "
                f"'custodian --home {self.path} init', or point --home or "
                f"{ENV_HOME} at an existing home."
            )
        if not self.config.is_file():
            raise HomeError(
                f"{self.path} is not a custodian home (no {CONFIG_NAME}). Point --home "
                "at a home made by 'custodian init'."
            )
        loose = [p for p in self._walk() if _is_loose(p)]
        if loose:
            names = ", ".join(str(p.relative_to(self.path.parent)) for p in loose[:3])
            more = f" and {len(loose) - 3} more" if len(loose) > 3 else ""
            raise HomeError(
                f"the home {self.path} is readable or writable by others ({names}{more}); "
                "nothing was read. Fix it with 'chmod -R go-rwx "
                f"{self.path}' and try again."
            )

    def _walk(self) -> list[Path]:
        out = [self.path]
        for sub in (self.sealed, self.keyring_dir, self.audit):
            if sub.is_dir():
                out.append(sub)
                out.extend(sub.iterdir())
        for name in (CONFIG_NAME, CATALOG_NAME):
            p = self.path / name
            if p.exists():
                out.append(p)
        return out


def _is_loose(p: Path) -> bool:
    mode = p.lstat().st_mode
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def write_private(path: Path, data: bytes) -> None:
    """Write a file atomically with mode 0600 (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
