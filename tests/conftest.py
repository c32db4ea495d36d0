import os

import pytest

LONG = os.environ.get("AERONPY_LONG") == "1"


def pytest_collection_modifyitems(config, items):
    if LONG:
        return
    skip = pytest.mark.skip(reason="long run: set AERONPY_LONG=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Test helpers are imported as ``tests.<area>.<module>``. The repo root goes at the *end* of
# sys.path so that the installed aeronpy (with its compiled modules) wins over the source tree.
import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_ROOT = str(_Path(__file__).resolve().parent.parent)
if _ROOT not in _sys.path:
    _sys.path.append(_ROOT)
