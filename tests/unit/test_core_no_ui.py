"""The core never imports textual, rich or screens (each module checked in a fresh
interpreter), and the facade has the shape the layout promises."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import custodian

CORE_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(custodian.__path__, prefix="custodian.")
)
CAPABILITIES = ("keys", "backups", "people", "auth", "approvals", "restores", "audit", "custody")


def test_there_are_core_modules() -> None:
    assert "custodian.service" in CORE_MODULES
    assert "custodian.cli" in CORE_MODULES
    assert "custodian.__main__" in CORE_MODULES
    for cap in (*CAPABILITIES, "context"):
        assert f"custodian.service.{cap}" in CORE_MODULES
    for group in ("kek", "backup", "people", "restore", "audit", "home"):
        assert f"custodian.cli.{group}" in CORE_MODULES


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_import_ui(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "ui = ('textual', 'rich', 'screens')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ui)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_the_facade_is_made_of_namespaces(tmp_path: object) -> None:
    from custodian.service import Service

    names = {n for n in vars(Service) if not n.startswith("_") and callable(getattr(Service, n))}
    # The top level holds the home's lifecycle and the dashboard; everything else is
    # reached through a capability namespace (svc.keys.rotate, svc.restores.run, ...).
    assert names <= {"open", "init", "close", "status"}, names
    for cap in CAPABILITIES:
        assert cap in Service.__init__.__code__.co_names, cap
