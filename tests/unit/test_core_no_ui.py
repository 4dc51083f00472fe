"""The core never imports textual, rich or screens (checked in a fresh interpreter)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import custodian

CORE_MODULES = sorted(
    m.name for m in pkgutil.walk_packages(custodian.__path__, prefix="custodian.")
)


def test_there_are_core_modules() -> None:
    assert "custodian.service" in CORE_MODULES
    assert "custodian.cli" in CORE_MODULES


def test_core_modules_do_not_import_ui() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {CORE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "ui = ('textual', 'rich', 'screens')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ui)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
