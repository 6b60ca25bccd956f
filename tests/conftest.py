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


# ---- the comparisons with PyTorch, counted -----------------------------------------------------
# They skip where torch is not installed, so a CI that lost torch would pass with none of them
# run: the summary says how many ran (.ci/run shows it). A comparison is a test that asks for
# torch through pytest.importorskip("torch"), in its body or in a helper it calls.

_torch_tests: set[str] = set()
_running: list[str] = []
_importorskip = pytest.importorskip


def _importorskip_counted(modname, *args, **kwargs):
    __tracebackhide__ = True  # a skip names the test's line, as pytest.importorskip's does
    if modname == "torch" and _running:
        _torch_tests.add(_running[-1])
    return _importorskip(modname, *args, **kwargs)


pytest.importorskip = _importorskip_counted


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _running.append(item.nodeid)
    try:
        yield
    finally:
        _running.pop()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _torch_tests:
        return
    counts = {}
    for outcome in ("passed", "failed", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        counts[outcome] = len({r.nodeid for r in reports if r.nodeid in _torch_tests})
    try:
        import torch

        version = f"torch {torch.__version__}"
    except ImportError:
        version = "torch not installed"
    terminalreporter.write_line(
        f"torch comparisons ({version}): {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
