"""fastbp's compiled core (private: use the fastbp package). Arrays are C-contiguous numpy
arrays of the network's dtype; labels are int32. Every call releases the GIL and locks the
network it works on."""

from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

class Optim(Enum):
    sgd = ...
    adam = ...
    adamw = ...
    rmsprop = ...
    adagrad = ...
    line_search = ...

class OptimConfig:
    kind: Optim
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    beta1: float
    beta2: float
    eps: float
    alpha: float
    centered: bool
    lr_decay: float
    c1: float
    shrink: float
    max_iter: int
    def __init__(self) -> None: ...

class StopToken:
    """A request to stop, which the epoch loop reads before each mini-batch; thread-safe."""
    def __init__(self) -> None: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...
    @property
    def is_set(self) -> bool: ...

def shutting_down() -> bool:
    """Whether the interpreter has begun to exit: no computation starts any more."""

class EpochConfig:
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int
    clip_norm: float
    clip_value: float
    noise: bool
    noise_eta: float
    noise_gamma: float
    noise_seed: int
    noise_t: int
    bf16_products: bool
    def __init__(self) -> None: ...

class _Network:
    def __init__(self, sizes: list[int], hidden: list[str], output: str, loss: str) -> None: ...
    @property
    def n_layers(self) -> int: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def n_params(self) -> int: ...
    @property
    def params(self) -> npt.NDArray[Any]: ...
    @property
    def grads(self) -> npt.NDArray[Any]: ...
    def layer_views(self, grads: bool) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]: ...
    def forward(self, X: npt.NDArray[Any]) -> npt.NDArray[Any]: ...
    def backward(self, X: npt.NDArray[Any], Y: npt.NDArray[Any]) -> tuple[float, float]: ...
    def evaluate(self, X: npt.NDArray[Any], Y: npt.NDArray[Any]) -> tuple[float, float]: ...
    def activation_stats(
        self, X: npt.NDArray[Any]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
    def layer_stats(self, X: npt.NDArray[Any]) -> dict[str, npt.NDArray[np.float64]]:
        """saturation, dead, preactivation_mean, preactivation_std, activation_mean,
        activation_std (n_layers,) and activation_hist (n_layers, n_bins) of one forward pass."""
    def weight_grad_norms(self) -> npt.NDArray[np.float64]: ...
    def clip_grad_norm(self, max_norm: float) -> float: ...
    def clip_grad_value(self, value: float) -> None: ...
    def add_gradient_noise(self, eta: float, gamma: float, seed: int, t: int) -> None: ...

class Network32(_Network): ...
class Network64(_Network): ...

class _OptimizerState:
    def __init__(self, n_params: int) -> None: ...
    @property
    def steps(self) -> int: ...
    def step(self, net: _Network, config: OptimConfig) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        """``{"step": int, "momentum_fresh": bool, "buffers": {name: ndarray (n_params,)}}``:
        copies of the state, under torch's buffer names (``exp_avg``, ``momentum_buffer``...)."""
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the whole state by ``state`` (as state_dict returns), or raise ValueError
        naming the problem and change nothing."""

class OptimizerState32(_OptimizerState): ...
class OptimizerState64(_OptimizerState): ...

def train_epoch(
    net: _Network,
    optimizer: _OptimizerState,
    config: OptimConfig,
    X: npt.NDArray[Any],
    Y: npt.NDArray[Any],
    start_params: npt.NDArray[Any],
    epoch_config: EpochConfig,
    stop: StopToken | None = None,
) -> dict[str, Any]:
    """One epoch; its statistics. ``stop`` (and the interpreter's exit) ends it before any
    mini-batch: ``"stopped"`` is then ``"requested"`` (or ``"shutdown"``), else None."""

def line_search_step(
    net: _Network, config: OptimConfig, X: npt.NDArray[Any], Y: npt.NDArray[Any]
) -> tuple[float, float]: ...
def activation_table() -> list[dict[str, Any]]:
    """Per activation: name, hidden, auto_init and hist_edges (the inner bin edges of
    layer_stats' activation_hist)."""

def loss_names() -> list[str]: ...
def loss_table() -> list[dict[str, Any]]: ...

MAX_DIM: int
"""The largest layer width and batch (2**31 - 2**16): BLAS takes 32-bit int dimensions, and the
products' blocking needs room above them."""
MAX_STEPS: int
"""The most steps an optimizer state, and a noise schedule, may count (2**62 - 1 on 64-bit
longs): far beyond any run, and far from the counters' overflow."""

def set_num_threads(n: int) -> int:
    """Ask for ``n`` threads; returns the count used (at most ``max_threads()``)."""

def get_num_threads() -> int: ...
def set_local_num_threads(n: int) -> int:
    """For the calling thread only: ``n`` threads instead of the process's count (0: the
    process's count again); returns the thread's previous setting (0: none)."""

def max_threads() -> int: ...
def forked_child() -> bool:
    """Whether this process was made by fork() after the core was loaded: it then runs on one
    thread."""

def set_flush_denormals(flush: bool) -> None: ...
def get_flush_denormals() -> bool: ...
def build_info() -> dict[str, Any]: ...
def _packed_gemm(
    trans_a: bool,
    trans_b: bool,
    alpha: float,
    A: npt.NDArray[np.float32],
    B: npt.NDArray[np.float32],
    beta: float,
    C: npt.NDArray[np.float32],
    bfloat16: bool,
) -> None: ...
