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


def test_a_build_removes_compiled_modules_no_source_builds_any_more():
    """A module renamed or removed from csrc/ stayed in build/lib (so `pip install .` and a
    wheel packed it) and in place (importable). The build deletes it now."""
    import os
    import shutil
    import sysconfig
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, "setup.py")):
        import pytest
        pytest.skip("not a source checkout")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    stale = os.path.join(root, "aeronpy", "_gone_from_csrc" + suffix)
    shutil.copyfile(os.path.join(root, "aeronpy", "_crc" + suffix), stale)
    kept = [name for name in os.listdir(os.path.join(root, "aeronpy"))
            if name.endswith(suffix) and not name.startswith("_gone_from_csrc")]
    try:
        done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
                              cwd=root, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not os.path.exists(stale)
        for name in kept:                     # the real modules are all still there
            assert os.path.exists(os.path.join(root, "aeronpy", name)), name
    finally:
        if os.path.exists(stale):
            os.remove(stale)
