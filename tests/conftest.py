"""Shared fixtures for the core tests (network, optimizers, threads, errors)."""

import os
import sys

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # make `import reference` work whatever the import mode
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session")
def fb():
    """The package under test. A failed import is an error here, never a skip."""
    import fastbp

    return fastbp


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def openmp(fb):
    """For a test that needs a team of threads: skipped where the core was built without
    OpenMP (Apple clang's default), which runs on one thread."""
    if fb.build_info()["openmp"] is None:
        pytest.skip("built without OpenMP: fastbp runs on one thread")


@pytest.fixture
def restore_threads(fb):
    """Put the core's thread count back after a test that changes it."""
    before = fb.get_num_threads()
    yield before
    fb.set_num_threads(before)
