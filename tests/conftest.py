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
