"""Benchmarks for tracking performance regressions (pytest-benchmark).

Run them explicitly: ``pytest bench/`` (the normal test run, ``pytest``, only collects tests/).
Compare with a saved run: ``pytest bench/ --benchmark-autosave`` then
``pytest bench/ --benchmark-compare --benchmark-compare-fail=median:25%``.
On machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE globally, prefix the command with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``.
"""

import pytest


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        config.addinivalue_line("markers", "benchmark: pytest-benchmark options (plugin absent)")


def pytest_collection_modifyitems(config, items):
    # Without the plugin (not installed, or -p no:benchmark) there is no `benchmark` fixture:
    # skip rather than error.
    if config.pluginmanager.hasplugin("benchmark"):
        return
    skip = pytest.mark.skip(reason="needs pytest-benchmark (pip install pytest-benchmark)")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
