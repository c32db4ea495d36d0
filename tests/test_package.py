import importlib
import subprocess
import sys

import aeronpy
from aeronpy._native import COMPILED_MODULES


def test_compiled_modules_are_compiled():
    for name in COMPILED_MODULES:
        mod = importlib.import_module(f"aeronpy.{name}")
        assert mod.__file__.endswith((".so", ".pyd")), mod.__file__


def test_import_fails_loudly_without_compiled_modules(tmp_path):
    # Copy the pure-Python package without its extension modules and import it.
    import shutil

    src = __import__("os").path.dirname(aeronpy.__file__)
    dst = tmp_path / "aeronpy"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # -S: no site-packages, so an editable install's import hook cannot redirect the import
    # back to the source tree; the copy in tmp_path (cwd) is the one imported.
    proc = subprocess.run(
        [sys.executable, "-S", "-c", "import aeronpy"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "compiled module" in proc.stderr and "no pure-Python fallback" in proc.stderr


def test_public_constants():
    assert aeronpy.BACK_PRESSURED < 0 and aeronpy.NOT_CONNECTED < 0 and aeronpy.CLOSED < 0
    assert len({aeronpy.BACK_PRESSURED, aeronpy.NOT_CONNECTED, aeronpy.CLOSED}) == 3
