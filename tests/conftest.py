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


# A test that leaves many descriptors open fails here, by name, instead of starving later tests
# of descriptors (a CI run once died with EMFILE far from the leak). Linux only; ~20 us a test.
_FD_DIR = "/proc/self/fd"
FD_LEAK_PER_TEST = 100


def _open_fds() -> dict:
    fds = {}
    for fd in os.listdir(_FD_DIR):
        try:
            fds[fd] = os.readlink(f"{_FD_DIR}/{fd}")
        except OSError:
            pass
    return fds


@pytest.fixture(autouse=True)
def _fd_leak_guard():
    if not os.path.isdir(_FD_DIR):
        yield
        return
    before = len(os.listdir(_FD_DIR))
    yield
    after = len(os.listdir(_FD_DIR))
    if after - before > FD_LEAK_PER_TEST:
        sample = sorted(set(_open_fds().values()))[:10]
        pytest.fail(f"this test left {after - before} more file descriptors open than it found "
                    f"({before} -> {after}); e.g. {sample}", pytrace=False)
