"""The install is pinned to bytes: requirements.lock with hashes (issue 12).

``make`` builds the venv with ``pip install --require-hashes -r requirements.lock``
and then custodian with ``--no-deps --no-build-isolation``. These tests keep the
lock complete and in step with pyproject.toml, and show pip refusing a package
whose bytes are not the ones the lock names (offline: a wheel made here).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), read the way pip reads the file."""
    text = LOCK.read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *opts = line.split(" --hash=")
        m = re.fullmatch(
            r"([A-Za-z0-9._-]+)(\[[A-Za-z0-9,._-]+\])?==([A-Za-z0-9.+!-]+)", spec.strip()
        )
        assert m, f"not an exact pin in the lock: {spec!r}"
        out[canonicalize_name(m.group(1))] = (m.group(3), [h.strip() for h in opts])
    return out


def test_every_locked_package_is_pinned_with_hashes() -> None:
    lock = _lock()
    assert len(lock) > 30
    for name, (_, hashes) in lock.items():
        assert hashes, f"{name} has no --hash in the lock"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    assert "setuptools" in lock  # the build backend too: custodian is built without isolation


def test_the_lock_covers_pyproject_and_agrees_with_it() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here, by name."""
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert py["project"]["requires-python"] == ">=3.11"
    wanted = [
        *py["project"]["dependencies"],
        *py["project"]["optional-dependencies"]["dev"],
        *py["build-system"]["requires"],
    ]
    lock = _lock()
    for spec in wanted:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is in pyproject.toml but not in the lock: run make lock"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"the lock pins {req.name}=={version}, outside {req.specifier}: run make lock"
        )


def test_the_installed_packages_are_the_locked_ones() -> None:
    for name, (version, _) in _lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. a build-only package after the build
        assert installed == version, f"{name} {installed} installed, the lock says {version}"


def test_the_makefile_installs_from_the_lock_only() -> None:
    mk = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r $(LOCK)" in mk
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in mk
    assert '-e ".[dev]"' not in mk and "--upgrade pip" not in mk


def _wheel(path: Path, body: bytes) -> None:
    dist = "custodian_hash_probe-1.0.dist-info"
    files = {
        "custodian_hash_probe/__init__.py": body,
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: custodian-hash-probe\nVersion: 1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")


@pytest.mark.slow
def test_pip_refuses_a_package_whose_bytes_are_not_the_locked_ones(tmp_path: Path) -> None:
    """The attack: the same name and version, other bytes (a compromised mirror or
    account). With --require-hashes, as the Makefile runs pip, it is refused."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    whl = wheels / "custodian_hash_probe-1.0-py3-none-any.whl"
    _wheel(whl, b"GOOD = True\n")
    good = hashlib.sha256(whl.read_bytes()).hexdigest()
    req = tmp_path / "lock.txt"
    req.write_text(f"custodian-hash-probe==1.0 --hash=sha256:{good}\n")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def pip(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--require-hashes", "--no-index"),
                *("--find-links", str(wheels), "--target", str(tmp_path / target), "-r", str(req)),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    r = pip("ok")
    assert r.returncode == 0, r.stderr
    assert (
        tmp_path / "ok" / "custodian_hash_probe" / "__init__.py"
    ).read_bytes() == b"GOOD = True\n"
    _wheel(whl, b"GOOD = True; import os  # planted\n")  # same file name, other bytes
    r = pip("bad")
    assert r.returncode != 0 and "DO NOT MATCH THE HASHES" in r.stderr, r.stderr
    assert not (tmp_path / "bad" / "custodian_hash_probe").exists()
    req.write_text("custodian-hash-probe==1.0\n")  # and a line without a hash is refused
    r = pip("nohash")
    assert r.returncode != 0 and "hash" in r.stderr.lower(), r.stderr
