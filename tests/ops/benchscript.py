"""Load a script of bench/ as a module, for the tests of the benchmark tools."""
import importlib.util
import os

_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")


def load(name: str):
    """bench/<name>.py as a fresh module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(_BENCH, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
