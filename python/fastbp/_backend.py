"""Backends: the same primitive calls on each device, chosen by ``net.device``.

A backend is the compiled module that holds a network and its epoch loop: the CPU core
(``fastbp._core``, always there) or the CUDA backend (``fastbp._cuda``, built with
``FASTBP_CUDA=ON``). Both export the same names with the same arguments: ``Network32`` /
``Network64`` (forward, backward, evaluate, activation_stats, layer_stats, weight_grad_norms,
clip_grad_norm, clip_grad_value, add_gradient_noise), ``OptimizerState32`` / ``64`` (step,
state_dict, load_state_dict), ``train_epoch`` and ``line_search_step``. What differs is where
the memory lives, and the :class:`Backend` objects below hide that: the CPU backend's
parameters are numpy views of the core's buffer; the CUDA backend's live on the GPU, and data
for a whole fit is uploaded once (:meth:`Backend.upload`). The network (``network.py``), the
optimizers (``optim.py``) and the Trainer (``train.py``) call these and do not fork.

The CUDA backend is imported on first use, never by ``import fastbp``. Before that, cuBLAS is
loaded from the ``nvidia-cublas`` wheel (``ctypes.CDLL`` with ``RTLD_GLOBAL``): the module
asks the dynamic loader for ``libcublas.so.<major>`` by name, which then resolves to the
library already loaded. (When fastbp and the wheel share one site-packages the module's run
path, ``$ORIGIN/../nvidia/cu13/lib``, finds it too; the preload also covers installs elsewhere,
such as ``pip install --target`` or an editable build.)

``FASTBP_CUDA_EMULATION=1`` makes ``device="cuda"`` use ``fastbp._cuda_emu`` instead, where it
is built (``FASTBP_CUDA_EMULATION=ON``): the CUDA backend's code on a host emulation of the
device, for testing its logic without a GPU. It is slow and never chosen otherwise.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

import numpy as np

from . import _core

EMULATION_ENV = "FASTBP_CUDA_EMULATION"
_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class Backend:
    """The primitives of one device; see the module docstring."""

    device: str = "cpu"  # "cpu", or "cuda:<ordinal>"
    module: ModuleType
    _device_args: tuple[int, ...] = ()  # after the constructors' own: the GPU's ordinal

    def network(
        self, dtype: np.dtype, sizes: list[int], hidden: list[str], output: str, loss: str
    ) -> Any:
        cls = self.module.Network32 if dtype == np.float32 else self.module.Network64
        return cls(sizes, hidden, output, loss, *self._device_args)

    def optimizer_state(self, dtype: np.dtype, n_params: int) -> Any:
        cls = self.module.OptimizerState32 if dtype == np.float32 else self.module.OptimizerState64
        return cls(n_params, *self._device_args)

    def owns(self, obj: Any) -> bool:
        """Whether ``obj`` (a network or optimizer state) belongs to this backend."""
        return type(obj).__module__ == self.module.__name__ and self._same_device(obj)

    def _same_device(self, obj: Any) -> bool:
        return True

    # The epoch loop and line search, with _core's signatures.
    def train_epoch(self, *args: Any) -> dict[str, Any]:
        return self.module.train_epoch(*args)

    def line_search_step(self, *args: Any) -> tuple[float, float]:
        return self.module.line_search_step(*args)

    def upload(self, *arrays: Any) -> tuple[Any, ...]:
        """The arrays as this backend reads them many times (a fit's data): as they are on
        the CPU, copies in device memory on a GPU."""
        return arrays

    def snapshot(self, core: Any) -> Any:
        """A copy of the parameters that :meth:`set_params` puts back (on the same device)."""
        return np.array(core.params)

    def params_finite(self, core: Any) -> bool:
        return bool(np.isfinite(core.params).all())

    def get_params(self, core: Any) -> np.ndarray:
        """The parameters as a host array: a writable view of the CPU core's buffer."""
        return core.params

    def get_grads(self, core: Any) -> np.ndarray:
        return core.grads

    def set_params(self, core: Any, flat: np.ndarray) -> None:
        core.params[...] = flat

    def set_grads(self, core: Any, flat: np.ndarray) -> None:
        core.grads[...] = flat


class CpuBackend(Backend):
    device = "cpu"
    module = _core


class CudaBackend(Backend):
    """The CUDA backend on one GPU (``ordinal``)."""

    def __init__(self, module: ModuleType, ordinal: int) -> None:
        self.module = module
        self.ordinal = ordinal
        self.device = f"cuda:{ordinal}" if ordinal else "cuda"
        self._device_args = (ordinal,)

    def _same_device(self, obj: Any) -> bool:
        return getattr(obj, "device", None) == self.ordinal

    def upload(self, *arrays: Any) -> tuple[Any, ...]:
        return tuple(self.module.DeviceArray(np.ascontiguousarray(a), self.ordinal) for a in arrays)

    def snapshot(self, core: Any) -> Any:
        return core.snapshot()

    def params_finite(self, core: Any) -> bool:
        return bool(core.params_finite())

    def get_params(self, core: Any) -> np.ndarray:
        return core.get_params()

    def get_grads(self, core: Any) -> np.ndarray:
        return core.get_grads()

    def set_params(self, core: Any, flat: np.ndarray) -> None:
        core.set_params(flat)

    def set_grads(self, core: Any, flat: np.ndarray) -> None:
        core.set_grads(flat)


CPU = CpuBackend()
_cuda_backends: dict[tuple[str, int], CudaBackend] = {}


def parse_device(device: Any) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", ordinal) from "cpu", "cuda" or "cuda:N"; TypeError or
    ValueError naming ``device`` otherwise."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, 'cpu' or 'cuda', got {type(device).__name__}")
    match = _DEVICE.match(device.strip().lower())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError(
            f"device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU's number), got {device!r}"
        )
    return match.group(1), int(match.group(2) or 0)


def backend_for(device: Any) -> Backend:
    """The backend of ``device`` ("cpu", "cuda", "cuda:N"); for CUDA, a ValueError naming
    ``device`` that says why it cannot be used here (not built, cuBLAS missing, no GPU)."""
    kind, ordinal = parse_device(device)
    if kind == "cpu":
        return CPU
    module = _cuda_module()
    count, why = module.device_count()
    if count == 0:
        raise ValueError(
            f"device={device!r}: fastbp's CUDA backend is built, but no CUDA device is usable "
            f"here ({why or 'no GPU found'})"
        )
    if ordinal >= count:
        raise ValueError(
            f"device={device!r}: there is no CUDA device {ordinal} "
            f"({count} usable: cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
        )
    key = (module.__name__, ordinal)
    if key not in _cuda_backends:
        _cuda_backends[key] = CudaBackend(module, ordinal)
    return _cuda_backends[key]


def cuda_available() -> bool:
    """Whether ``device="cuda"`` can be used now: the CUDA backend is built, cuBLAS loads and
    a GPU is usable. Never raises."""
    try:
        backend_for("cuda")
    except Exception:
        return False
    return True


def _module_name() -> str:
    return "fastbp._cuda_emu" if os.environ.get(EMULATION_ENV) == "1" else "fastbp._cuda"


def _cuda_module() -> ModuleType:
    """The CUDA backend's module, imported once (cuBLAS preloaded first)."""
    name = _module_name()
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    if importlib.util.find_spec(name) is None:
        if name.endswith("_emu"):
            raise ValueError(
                f"device='cuda': {EMULATION_ENV}=1 asks for the emulated CUDA backend, which "
                "this fastbp was built without (-Ccmake.define.FASTBP_CUDA_EMULATION=ON)"
            )
        raise ValueError(
            "device='cuda': this fastbp was built without its CUDA backend; build it with "
            "pip install nvidia-cublas && pip install . -Ccmake.define.FASTBP_CUDA=ON "
            "(nvcc needed)"
        )
    if not name.endswith("_emu"):
        _preload_cublas()
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ValueError(
            f"device='cuda': fastbp's CUDA backend is built but cannot be loaded: {err} "
            "(is the nvidia-cublas wheel it was built against installed?)"
        ) from None


_preloaded: list[Any] = []  # the loaded cuBLAS, kept for the life of the process


def _preload_cublas() -> None:
    """Load the cuBLAS of the nvidia-cublas wheel with RTLD_GLOBAL, so that the module's
    dependency on libcublas.so.<major> resolves to it. Nothing happens where no wheel is found:
    the module's run path, or the system's libraries, may still provide it."""
    if _preloaded:
        return
    build = _cuda_build()
    soname = build.CUBLAS_SONAME if build is not None else "libcublas.so.13"
    path = cublas_path(soname)
    if path is not None:
        _preloaded.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))


def _cuda_build() -> Any:
    """The module CMake writes beside the CUDA backend (what it was built with), or None."""
    try:
        return importlib.import_module("fastbp._cuda_build")
    except ImportError:
        return None


def cublas_path(soname: str) -> str | None:
    """The file ``soname`` of an installed nvidia-cublas wheel, or None."""
    for dist_name in ("nvidia-cublas", "nvidia-cublas-cu13", "nvidia-cublas-cu12"):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in dist.files or ():
            if f.name == soname:
                path = os.path.abspath(str(dist.locate_file(f)))
                if os.path.exists(path):
                    return path
    return None


def cuda_build_info() -> bool | dict[str, Any]:
    """False without a CUDA backend; else what it was built with (CUDA version, GPU
    architectures, cuBLAS version), what it finds at run time, and whether a GPU is usable."""
    if importlib.util.find_spec("fastbp._cuda") is None:
        return False
    info: dict[str, Any] = {}
    build = _cuda_build()
    if build is not None:
        info.update(
            cuda_version=build.CUDA_VERSION,
            architectures=build.ARCHITECTURES,
            cublas_version=build.CUBLAS_VERSION,
        )
    try:
        _preload_cublas()
        module = importlib.import_module("fastbp._cuda")
        info.update(module.build_info())
        count, why = module.device_count()
        info["devices"] = [module.device_name(i) for i in range(count)]
        info["available"] = count > 0
        if count == 0:
            info["unavailable_reason"] = why
    except Exception as err:  # a build_info() must always answer
        info["available"] = False
        info["unavailable_reason"] = f"the CUDA backend cannot be loaded: {err}"
    return info
