"""Import the compiled hot-path modules, failing loudly if the build is missing.

There is deliberately no pure-Python fallback: a slow silent fallback would hide a broken
install from a latency-sensitive user.
"""
import importlib

COMPILED_MODULES: tuple = ('_crc', '_logindex', '_frame', '_udp', '_cursor', '_codec', '_codec_batch', '_segscan', '_clientpath', '_streams', '_ingress', '_applypath')


def load_compiled() -> dict:
    modules = {}
    for name in COMPILED_MODULES:
        try:
            modules[name] = importlib.import_module(f"aeronpy.{name}")
        except ImportError as exc:
            raise ImportError(
                f"aeronpy's compiled module aeronpy.{name} is missing or broken ({exc}). "
                "aeronpy has no pure-Python fallback for its hot path: install a prebuilt wheel "
                "(pip install aeronpy) or build from source with a C compiler and Cython "
                "(pip install .; for development: python setup.py build_ext --inplace)."
            ) from exc
    return modules
