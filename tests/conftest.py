"""Shared fixtures. Every test points the home and the keyring at tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from custodian.service import Service


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUSTODIAN_HOME", raising=False)
    # Never let a test reach the real keyring of whoever runs the suite.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def svc(home: Path) -> Iterator[Service]:
    s = Service.init(home, keyring_backend="home-file", suite="x25519")
    yield s
    s.close()


@pytest.fixture
def hybrid_svc(tmp_path: Path) -> Iterator[Service]:
    s = Service.init(tmp_path / "hhome", keyring_backend="home-file")
    yield s
    s.close()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path
