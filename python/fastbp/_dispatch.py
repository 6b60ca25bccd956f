"""Which copy of the compiled core this process runs.

The core is compiled several times, once per x86-64 microarchitecture level (CMakeLists.txt),
as ``fastbp/_core_<variant>``: ``baseline`` (any x86-64, and the only variant on other
architectures), ``v2`` (SSE4.2, POPCNT), ``v3`` (AVX2, FMA, BMI2: Haswell, Zen 1 and later),
``v4`` (AVX-512). A developer build with ``FASTBP_NATIVE=ON`` has the single variant ``native``.
At import fastbp loads the best variant this CPU runs, or the one named by the environment
variable ``FASTBP_ISA``, under the name ``fastbp._core``; nothing else in the package knows
there is a choice. Exactly one variant is ever loaded in a process: each registers the same C++
types with pybind11, which refuses a second registration.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

# The CPU features each level adds to the one before it (names as _cpu_features reports them;
# the vector ones only when the operating system enables their registers).
_LEVEL_FEATURES = {
    "baseline": (),
    "v2": ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16", "lahf"),
    "v3": ("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "lzcnt", "movbe"),
    "v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
_LEVELS = tuple(_LEVEL_FEATURES)

# Best first. "native" was built for the machine it runs on, on purpose.
VARIANTS = ("native", "v4", "v3", "v2", "baseline")

ENV = "FASTBP_ISA"

_chosen: dict[str, Any] = {}


def required_features(variant: str) -> tuple[str, ...]:
    """The CPU features a variant's code may use (none known for ``native``)."""
    if variant not in _LEVEL_FEATURES:
        return ()
    upto = _LEVELS[: _LEVELS.index(variant) + 1]
    return tuple(f for level in upto for f in _LEVEL_FEATURES[level])


def built_variants() -> list[str]:
    """The variants this installation holds, best first."""
    return [v for v in VARIANTS if importlib.util.find_spec(f"fastbp._core_{v}") is not None]


def choose(built: list[str], features: tuple[str, ...], forced: str | None) -> str:
    """The variant to load: ``forced`` if given (checked), else the best one built whose
    features the CPU has. Raises ImportError, saying why, when there is none."""
    have = set(features)

    def missing(variant: str) -> list[str]:
        return [f for f in required_features(variant) if f not in have]

    if forced is None:
        for variant in built:
            if not missing(variant):
                return variant
        raise ImportError(
            f"no core variant of this fastbp installation runs on this CPU (built: "
            f"{', '.join(built) or 'none'}; CPU features: {' '.join(features) or 'none'})"
        )
    if forced not in VARIANTS:
        raise ImportError(
            f"{ENV}={forced!r} is not a core variant: use one of auto, {', '.join(VARIANTS)}"
        )
    if forced not in built:
        raise ImportError(
            f"{ENV}={forced}: this fastbp installation has no {forced} core "
            f"(built: {', '.join(built) or 'none'})"
        )
    lacking = missing(forced)
    if lacking:
        usable = [v for v in built if not missing(v)]
        raise ImportError(
            f"{ENV}={forced}: this CPU (or its operating system) lacks {', '.join(lacking)}, "
            f"which the {forced} core needs; it runs {', '.join(usable) or 'none'}"
        )
    return forced


def load_core() -> ModuleType:
    """Import the chosen variant as ``fastbp._core`` (once per process) and return it."""
    loaded = sys.modules.get("fastbp._core")
    if loaded is not None:
        return loaded
    from . import _cpu_features

    features = tuple(_cpu_features.features())
    built = built_variants()
    setting = os.environ.get(ENV, "").strip().lower()
    forced = None if setting in ("", "auto") else setting
    variant = choose(built, features, forced)

    found = importlib.util.find_spec(f"fastbp._core_{variant}")
    assert found is not None and found.origin is not None
    # Every variant's init function is PyInit__core, which the loader finds by the spec's name.
    spec = importlib.util.spec_from_file_location("fastbp._core", found.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastbp._core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["fastbp._core"]
        raise
    _chosen.update(
        isa=variant,
        isa_built=built,
        isa_choice=f"{ENV}={setting}" if forced else "auto",
        cpu_features=list(features),
    )
    return module


def info() -> dict[str, Any]:
    """What load_core chose and from what: for fastbp.build_info()."""
    return dict(_chosen)
