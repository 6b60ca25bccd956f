"""scikit-learn estimators over :class:`~fastbp.MLP` and :class:`~fastbp.Trainer`.

:class:`MLPClassifier` and :class:`MLPRegressor` take scikit-learn's own MLP parameter names
where the concept is the same, so they drop into pipelines, grid searches and cross-validation;
every fit is a fastbp training run whose :class:`~fastbp.History` stays available as
``history_`` for :func:`~fastbp.diagnose`. This module is the only one in fastbp that imports
scikit-learn, and ``import fastbp`` does not import it.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state, check_scalar, column_or_1d
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "fastbp.MLPClassifier and fastbp.MLPRegressor need scikit-learn >= 1.6: "
        "pip install scikit-learn"
    ) from exc

from . import _core
from .data import LeakWarning, split
from .history import History
from .io import SavedModel
from .network import MLP
from .optim import SGD, AdaGrad, Adam, AdamW, GradientNoise, LineSearchSGD, Optimizer, RMSProp
from .train import Callback, EarlyStopping, Trainer

__all__ = ["MLPClassifier", "MLPRegressor"]

SOLVERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "linesearch")
LEARNING_RATES = ("constant", "invscaling", "adaptive")  # scikit-learn's schedules of "sgd"
SPARSE_FORMATS = ("csr", "csc", "coo")  # densified on input
ADAPTIVE_MIN_LR = 1e-6  # "adaptive" stops once the rate is at most this, as scikit-learn
# scikit-learn's name for the logistic sigmoid; fastbp's is "sigmoid".
ACTIVATION_ALIASES = {"logistic": "sigmoid"}
AUTO_BATCH = 200  # batch_size="auto" is min(200, n_samples), as in scikit-learn
SEED_HIGH = 2**63 - 1

_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer; ``()`` gives a network without a hidden layer.
    activation : str or sequence of str, default="relu"
        Hidden activation: "identity", "sigmoid" (or scikit-learn's "logistic"), "tanh",
        "relu", "leaky_relu", "elu", "softplus", "gelu" or "silu"; a sequence gives one per
        hidden layer.
    solver : {"adam", "sgd", "adamw", "rmsprop", "adagrad", "linesearch"}, default="adam"
        The optimizer: :class:`~fastbp.Adam`, :class:`~fastbp.SGD` (with ``momentum`` and
        ``nesterovs_momentum``), :class:`~fastbp.AdamW`, :class:`~fastbp.RMSProp`,
        :class:`~fastbp.AdaGrad` or :class:`~fastbp.LineSearchSGD` (Armijo backtracking on
        every batch, starting from ``learning_rate_init``; values near 1 suit it).
        scikit-learn's "lbfgs" is not available.
    alpha : float, default=0.0
        L2 penalty, scaled as in scikit-learn: each step adds ``alpha * w / batch_size`` to
        the gradient of every parameter ``w``, through the optimizer's ``weight_decay``
        (decoupled from the gradient for "adamw"). Unlike scikit-learn, biases are decayed
        too and ``loss_curve_`` holds the data loss without the penalty. Not available with
        "linesearch". The default is 0 where scikit-learn's is 1e-4, whose effect at
        scikit-learn's batch size of 200 is negligible.
    batch_size : int or "auto", default=32
        Mini-batch size; "auto" is ``min(200, n_samples)``, scikit-learn's default. A batch
        larger than the data set is the whole data set.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The rate schedule of "sgd", as scikit-learn's (other solvers ignore it):
        "constant" keeps ``learning_rate_init``; "invscaling" runs each epoch after the
        first of a fit at ``learning_rate_init / (t_ + 1) ** power_t``, ``t_`` counting the
        training samples seen before it; "adaptive" divides the rate by 5 whenever
        ``n_iter_no_change + 1`` consecutive epochs fail to improve the monitored value by
        more than ``tol``, and stops only once the rate is at most 1e-6.
    learning_rate_init : float, default=1e-3
        The optimizer's learning rate (its first trial step for "linesearch").
    power_t : float, default=0.5
        The exponent of "invscaling".
    momentum : float, default=0.9
        Momentum of "sgd" (torch's rule, which is scikit-learn's at a constant rate).
    nesterovs_momentum : bool, default=True
        Nesterov momentum for "sgd" (when ``momentum > 0``).
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of the first and second moment estimates of "adam" and "adamw".
    epsilon : float, default=1e-8
        Numerical stability term of "adam", "adamw", "rmsprop" and "adagrad". Adam adds it
        to the bias-corrected root of the second moment (torch's rule), scikit-learn to the
        uncorrected one; the two agree when epsilon is small against the gradients.
    max_iter : int, default=200
        Maximum number of epochs (passes over the training data) of one ``fit``.
    shuffle : bool, default=True
        Shuffle the training data before every epoch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data{stratified} and stop when the
        validation score stops improving (see Notes); the weights of the best epoch are put
        back at the end.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping`` is True, in (0, 1).
    n_iter_no_change : int or np.inf, default=10
        Epochs without an improvement larger than ``tol`` tolerated before training stops
        (see Notes); ``np.inf`` never stops early.
    tol : float, default=1e-4
        Smallest improvement of the monitored value that counts (see Notes).
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the shuffling, the validation split and the
        gradient noise. An int makes ``fit`` reproducible: the same coefficients run after
        run on the same machine and thread count. None draws from numpy's global state.
    warm_start : bool, default=False
        Let ``fit`` continue from the weights of the previous fit (with a fresh optimizer
        state, as in scikit-learn) instead of starting over.
    verbose : bool or int, default=False
        Print the loss of every epoch (and the validation score with ``early_stopping``), and
        why training stopped or lowered the "adaptive" rate, in scikit-learn's words.
    init : str or tuple, default="auto"
        Weight initialisation of :class:`~fastbp.MLP`: "auto" (He normal before ReLU-like
        layers, Xavier uniform otherwise), "xavier_uniform", "xavier_normal", "he_uniform",
        "he_normal", "lecun_normal", "orthogonal", ("normal", std) or ("uniform", limit).
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network; inputs are converted to it.
    clip_norm : float or None, default=None
        Clip the gradients to this global L2 norm before every step.
    grad_noise : float, GradientNoise or None, default=None
        Annealed Gaussian gradient noise: a float is ``eta`` of
        ``GradientNoise(eta, seed from random_state)``; a :class:`~fastbp.GradientNoise` is
        copied at the start of every fit (so fitting never changes it) and keeps its own seed.
    max_fun : int, default=15000
        Accepted for scikit-learn's API; it bounds L-BFGS's loss evaluations, and fastbp has
        no L-BFGS solver.
    n_threads : int or None, default=None
        Threads of fastbp's core during ``fit``, ``partial_fit`` and prediction, in the
        calling thread only: estimators fitting at once in other threads, and the process's
        setting (``fb.set_num_threads``), are never changed. None uses that setting.
    matmul_precision : {"highest", "bfloat16"}, default="highest"
        ``"bfloat16"``: mixed-precision training on CPUs with AVX512-BF16 (float32 only):
        the large products of each epoch take bfloat16 inputs and sum in float32; see
        :class:`~fastbp.Trainer`. Prediction runs in float32 either way.
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of a DataFrame X seen during fit; absent for arrays.
    loss_curve_ : list of float
        Mean training loss of every epoch run so far (warm starts and ``partial_fit`` calls
        add to it), without the L2 penalty.
    loss_ : float
        The last entry of ``loss_curve_``.
    best_loss_ : float or None
        The lowest training loss; None with ``early_stopping``.
    validation_scores_ : list of float or None
        The validation score of every epoch with ``early_stopping``, None without.
    best_validation_score_ : float or None
        The validation score of the weights kept (see Notes), None without
        ``early_stopping``.
    n_iter_ : int
        Epochs run by the last ``fit`` or ``partial_fit`` call.
    t_ : int
        Training samples processed so far, counted once per epoch.
    history_ : History
        fastbp's per-epoch record of the whole run (all warm starts and ``partial_fit``
        calls): losses, learning rates and per-layer gradient statistics, for
        ``fb.diagnose(est.history_)`` and ``fastbp.plot``.
    net_ : MLP
        The fitted network. Its ``weights`` and ``biases`` are writable views: writing to
        them changes the estimator's predictions.
    coefs_, intercepts_ : list of ndarray
        ``coefs_[i]`` of shape (n_in, n_out) and ``intercepts_[i]`` of shape (n_out,), as in
        scikit-learn: read-only views of ``net_``'s parameters (no copies), so they always
        show the current weights; change weights through ``net_.weights`` and
        ``net_.biases``.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of network outputs.
    out_activation_ : str
        The output activation, in scikit-learn's names: {out_activation}.
"""

_NOTES_DOC = """
    Notes
    -----
    Differences from scikit-learn's MLPs beyond those above: ``fit`` and ``partial_fit`` take
    no ``sample_weight``; a sparse X is accepted but converted to a dense array (its memory is
    the dense matrix's); a classifier needs at least two classes in y (or ``classes``).

    Stopping follows scikit-learn's rule: training stops at the ``n_iter_no_change + 1``-th
    consecutive epoch whose monitored value does not beat the best so far by more than
    ``tol``, which is ``fb.EarlyStopping(monitor, patience=n_iter_no_change + 1,
    min_delta=tol)``. Without ``early_stopping`` the monitor is the training loss and the
    last weights are kept; with it, the monitor is the validation score and the weights of
    the best epoch are restored.
{score}
    One difference from scikit-learn remains: the best value only moves on an improvement
    larger than ``tol`` (scikit-learn's moves on any improvement while it counts), so a value
    creeping by less than ``tol`` per epoch stops a little later, and the weights restored
    are those of the last epoch that improved by more than ``tol``. Their score,
    ``best_validation_score_``, falls short of ``max(validation_scores_)`` by ``tol`` at most.
    ``partial_fit`` runs one epoch per call and never stops early.
"""


# ---- parameter checks --------------------------------------------------------------------------
def _check_hidden_layer_sizes(value: Any) -> list[int]:
    sizes = (
        [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    )
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {value!r}")
    sizes = list(sizes)
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"hidden_layer_sizes entries must be ints, got {s!r} in {value!r}")
        if s <= 0:
            raise ValueError(f"hidden_layer_sizes entries must be positive, got {value!r}")
    return [int(s) for s in sizes]


def _fastbp_activation(value: Any) -> Any:
    """scikit-learn's activation names in fastbp's."""
    if isinstance(value, str):
        return ACTIVATION_ALIASES.get(value, value)
    if isinstance(value, (list, tuple)):
        return [ACTIVATION_ALIASES.get(a, a) if isinstance(a, str) else a for a in value]
    return value  # MLP names the problem


def _dense(X: Any) -> np.ndarray:
    """A sparse X (scikit-learn's MLPs take them) as the dense array fastbp's core reads:
    its memory is that of the dense matrix."""
    return X.toarray() if hasattr(X, "toarray") else X


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")


def _check_dtype(value: Any) -> np.dtype:
    try:
        dtype = None if value is None else np.dtype(value)  # np.dtype(None) is float64
    except TypeError:
        dtype = None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return dtype


@contextmanager
def _threads(n_threads: int | None) -> Iterator[None]:
    """fastbp's thread count set to ``n_threads`` for the block, in the calling thread only:
    estimators fitting at once in other threads (GridSearchCV's threading backend) keep their
    own, and the process's count is never touched."""
    if n_threads is None:
        yield
        return
    before = _core.set_local_num_threads(min(n_threads, 2**31 - 1))
    try:
        yield
    finally:
        _core.set_local_num_threads(before)


@contextmanager
def _kept_on_failure(obj: Any, names: tuple[str, ...]) -> Iterator[None]:
    """The attributes ``names`` of ``obj`` (present or not) put back as they were should the
    block raise."""
    before = {name: obj.__dict__[name] for name in names if name in obj.__dict__}
    try:
        yield
    except BaseException:
        for name in names:
            obj.__dict__.pop(name, None)
        obj.__dict__.update(before)
        raise


# Checks of the fitted values read from a file (fastbp.io has decoded them).
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_seed(v: Any) -> bool:
    return _is_int(v) and 0 <= v < SEED_HIGH


def _is_step_count(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= _core.MAX_STEPS


def _is_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_count(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_floats(v: Any) -> bool:
    return isinstance(v, list) and all(_is_float(x) for x in v)


def _is_floats_or_none(v: Any) -> bool:
    return v is None or _is_floats(v)


def _is_float_or_none(v: Any) -> bool:
    return v is None or _is_float(v)


def _is_texts(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.ndim == 1 and all(isinstance(x, str) for x in v)


def _adaptive_record(state: tuple[float, int] | None) -> list[Any] | None:
    """learning_rate="adaptive"'s (best, count) for a file: None where no epoch has set it."""
    if state is None or not np.isfinite(state[0]):
        return None
    return [float(state[0]), int(state[1])]


def _adaptive_state(record: Any) -> tuple[float, int] | None:
    """_adaptive_record's list, checked, back as (best, count)."""
    if record is None:
        return None
    ok = isinstance(record, list) and len(record) == 2 and _is_float(record[0])
    if not (ok and np.isfinite(record[0]) and _is_step_count(record[1])):
        raise ValueError(f"adaptive_state must be [best, count] or None; the file has {record!r}")
    return float(record[0]), int(record[1])


def _saved(record: dict[str, Any], key: str, check: Any, what: str) -> Any:
    """``record[key]`` if ``check`` accepts it (a type or a predicate)."""
    if key not in record:
        raise ValueError(f"{key} is missing from the file")
    value = record[key]
    ok = isinstance(value, check) if isinstance(check, type) else check(value)
    if not ok:
        raise ValueError(f"{key} must be {what}; the file has {repr(value)[:80]}")
    return value


def _generator(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise ValueError(f"rng is not a PCG64 state: {err}") from None
    return rng


class _Targets(NamedTuple):
    """y made into network targets, with what the fit learns about y."""

    Y: np.ndarray  # what Trainer.fit takes
    n_outputs: int
    loss: str
    stratify: bool  # whether the early-stopping split keeps the class proportions
    state: dict[str, Any]  # attributes to set once the fit has succeeded


# A validation score from an epoch's (val_loss, val_accuracy).
ScoreFn = Callable[[float, "float | None"], float]


def _classifier_outputs(n_labels: int, multilabel: bool) -> tuple[int, str]:
    """The network's outputs and loss for a classifier's labels: a sigmoid output per label
    (multilabel y), one sigmoid output for two classes (as scikit-learn's MLP), else softmax."""
    if multilabel:
        return n_labels, "binary_cross_entropy"
    if n_labels == 2:
        return 1, "binary_cross_entropy"
    return n_labels, "cross_entropy"


def _draw_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(SEED_HIGH))


class _VerbosePrinter:
    """Prints each epoch's loss (and validation score) like scikit-learn's verbose MLP."""

    def __init__(self, score: ScoreFn | None, first_epoch: int, loss_scale: float) -> None:
        self.score = score
        self.first_epoch = first_epoch
        self.loss_scale = loss_scale

    def __call__(self, epoch: int, logs: dict[str, Any]) -> None:
        loss = logs["train_loss"] * self.loss_scale
        print(f"Iteration {self.first_epoch + epoch + 1}, loss = {loss:.8f}")
        if self.score is not None and logs["val_loss"] is not None:
            print(f"Validation score: {self.score(logs['val_loss'], logs['val_accuracy']):.6f}")


def _no_improvement(tol: float, n_iter_no_change: Any, early_stopping: bool) -> str:
    """scikit-learn's words for a stop, or for an "adaptive" rate lowered."""
    what = "Validation score" if early_stopping else "Training loss"
    count = f"{n_iter_no_change} consecutive epochs"
    return f"{what} did not improve more than tol={tol:f} for {count}."


class _InverseScaling:
    """scikit-learn's learning_rate="invscaling" of "sgd" as a Trainer lr_schedule: an epoch
    after the first of a fit (or any of ``partial_fit``, which continues one) runs at
    ``base / (t + 1) ** power_t``, t being the training samples seen before it."""

    def __init__(
        self, power_t: float, t_before: int, n_train: int, initial_epoch: int, fresh: bool
    ) -> None:
        self.power_t, self.t_before, self.n_train = power_t, t_before, n_train
        self.initial_epoch, self.fresh = initial_epoch, fresh

    def __call__(self, epoch: int, base_lr: float) -> float:
        i = epoch - self.initial_epoch  # the epoch's index in this fit
        if self.fresh and i == 0:
            return base_lr
        return base_lr / (self.t_before + i * self.n_train + 1) ** self.power_t


class _AdaptiveRate(Callback):
    """scikit-learn's learning_rate="adaptive" of "sgd": after ``n_iter_no_change + 1``
    consecutive epochs without an improvement of ``value(logs)`` by more than ``tol`` (higher
    is better), the rate is divided by 5, or training stops if it is at most 1e-6. As in
    scikit-learn, the best value moves on any improvement."""

    def __init__(
        self,
        value: Callable[[dict[str, Any]], float],
        tol: float,
        patience: Any,
        words: str,
        verbose: bool,
        state: tuple[float, int] = (-np.inf, 0),
    ) -> None:
        self.value, self.tol, self.patience = value, tol, patience
        self.words, self.verbose = words, verbose
        self.best, self.count = state  # partial_fit carries them from call to call

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool:
        value = self.value(logs)
        self.count = self.count + 1 if value < self.best + self.tol else 0
        self.best = max(self.best, value)
        if self.count <= self.patience:
            return False
        optimizer = trainer.optimizer
        if optimizer.lr <= ADAPTIVE_MIN_LR:
            if self.verbose:
                print(self.words + " Learning rate too small. Stopping.")
            return True
        optimizer.lr = optimizer.lr / 5.0
        self.count = 0
        if self.verbose:
            print(self.words + f" Setting learning rate to {optimizer.lr:f}")
        return False


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the training run, the
    prediction pass and the fitted attributes. Subclasses turn y into network targets."""

    # Fitted state, set by fit and partial_fit (annotations only: no attribute before fit).
    net_: MLP
    history_: History
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    t_: int
    _rng: np.random.Generator
    _optimizer_: Optimizer
    _grad_noise_: GradientNoise | None
    _shuffle_seed: int  # of the run that partial_fit continues
    _run_epochs: int  # epochs of that run so far: the next epoch's index
    _adaptive_state: tuple[float, int] | None  # learning_rate="adaptive": (best, count)

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: Any = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0,
        batch_size: Any = 32,
        learning_rate: str = "constant",
        learning_rate_init: float = 1e-3,
        power_t: float = 0.5,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        max_iter: int = 200,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: Any = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: Any = False,
        init: Any = "auto",
        dtype: Any = "float32",
        clip_norm: float | None = None,
        grad_noise: Any = None,
        max_fun: int = 15000,
        n_threads: int | None = None,
        matmul_precision: str = "highest",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.init = init
        self.dtype = dtype
        self.clip_norm = clip_norm
        self.grad_noise = grad_noise
        self.max_fun = max_fun
        self.n_threads = n_threads
        self.matmul_precision = matmul_precision

    # ---- checks ----------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Check the parameters that fastbp's own classes do not check when they are built
        (or that they would name differently); errors name the estimator's parameter."""
        if not isinstance(self.solver, str) or self.solver not in SOLVERS:
            hint = " (L-BFGS is not available; try 'linesearch')" if self.solver == "lbfgs" else ""
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {self.solver!r}{hint}")
        _check_hidden_layer_sizes(self.hidden_layer_sizes)
        _check_dtype(self.dtype)
        real, integral = numbers.Real, numbers.Integral
        check_scalar(self.alpha, "alpha", real, min_val=0)
        if self.alpha > 0 and self.solver == "linesearch":
            raise ValueError("alpha must be 0 with solver='linesearch' (it has no weight decay)")
        if self.batch_size != "auto":
            check_scalar(self.batch_size, "batch_size", integral, min_val=1)
        check_scalar(
            self.learning_rate_init,
            "learning_rate_init",
            real,
            min_val=0,
            include_boundaries="neither",
        )
        if self.learning_rate not in LEARNING_RATES:
            raise ValueError(
                f"learning_rate must be one of {list(LEARNING_RATES)}, got {self.learning_rate!r}"
            )
        check_scalar(self.power_t, "power_t", real, min_val=0)
        check_scalar(self.max_fun, "max_fun", integral, min_val=1)
        check_scalar(self.momentum, "momentum", real, min_val=0, max_val=1)
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            check_scalar(value, name, real, min_val=0, max_val=1, include_boundaries="left")
        check_scalar(self.epsilon, "epsilon", real, min_val=0, include_boundaries="neither")
        check_scalar(self.max_iter, "max_iter", integral, min_val=1)
        check_scalar(self.tol, "tol", real, min_val=0)
        if self.n_iter_no_change != np.inf:
            check_scalar(self.n_iter_no_change, "n_iter_no_change", integral, min_val=1)
        fraction = self.validation_fraction
        check_scalar(
            fraction, "validation_fraction", real, min_val=0, max_val=1, include_boundaries="left"
        )
        for name in ("shuffle", "early_stopping", "warm_start", "nesterovs_momentum"):
            _check_bool(getattr(self, name), name)
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("validation_fraction must be > 0 when early_stopping is True")
        if self.clip_norm is not None:
            check_scalar(self.clip_norm, "clip_norm", real, min_val=0, include_boundaries="neither")
        if self.grad_noise is not None and not isinstance(self.grad_noise, GradientNoise):
            check_scalar(self.grad_noise, "grad_noise", real, min_val=0)
        if self.n_threads is not None:
            check_scalar(self.n_threads, "n_threads", integral, min_val=1)
        check_scalar(self.verbose, "verbose", integral, min_val=0)

    # ---- building blocks of a fit ----------------------------------------------------------
    def _optimizer(self, batch_size: int) -> Optimizer:
        lr, wd = self.learning_rate_init, self.alpha / batch_size
        betas, eps = (self.beta_1, self.beta_2), self.epsilon
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            return SGD(lr, momentum=self.momentum, nesterov=nesterov, weight_decay=wd)
        if self.solver == "adam":
            return Adam(lr, betas=betas, eps=eps, weight_decay=wd)
        if self.solver == "adamw":
            return AdamW(lr, betas=betas, eps=eps, weight_decay=wd)
        if self.solver == "rmsprop":
            return RMSProp(lr, eps=eps, weight_decay=wd)
        if self.solver == "adagrad":
            return AdaGrad(lr, eps=eps, weight_decay=wd)
        return LineSearchSGD(lr)

    def _gradient_noise(self, rng: np.random.Generator) -> GradientNoise | None:
        if self.grad_noise is None:
            return None
        if isinstance(self.grad_noise, GradientNoise):
            return copy.deepcopy(self.grad_noise)
        return GradientNoise(eta=float(self.grad_noise), seed=_draw_seed(rng))

    def _adaptive(self) -> bool:
        return self.solver == "sgd" and self.learning_rate == "adaptive"

    def _early_stopping(self, monitor: str, min_delta: float) -> EarlyStopping | None:
        """EarlyStopping with scikit-learn's semantics for tol and n_iter_no_change (with an
        "adaptive" rate, _AdaptiveRate decides when to stop)."""
        finite = self.n_iter_no_change != np.inf and not self._adaptive()
        if not finite and not self.early_stopping:
            return None
        # Without a finite n_iter_no_change, EarlyStopping only restores the best weights.
        patience = int(self.n_iter_no_change) + 1 if finite else self.max_iter + 1
        return EarlyStopping(monitor, patience, min_delta, restore_best=self.early_stopping)

    def _targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool, classes: Any
    ) -> _Targets:
        raise NotImplementedError

    def _score_monitor(self, val_targets: np.ndarray) -> tuple[str, float, ScoreFn]:
        """The EarlyStopping monitor and min_delta that stand for "the validation score
        improved by more than tol", and the score itself."""
        raise NotImplementedError

    def _loss_scale(self, n_outputs: int) -> float:
        """``loss_curve_``'s loss over the network's (which tol compares on that scale)."""
        return 1.0

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> Any:
        """Train; the estimator's attributes change only once training has run."""
        # validate_data sets n_features_in_ and feature_names_in_ before anything can fail
        with _kept_on_failure(self, ("n_features_in_", "feature_names_in_")):
            return self._fit_checked(X, y, incremental, classes)

    def _fit_checked(self, X: Any, y: Any, incremental: bool, classes: Any) -> Any:
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "net_") or not (incremental or self.warm_start)
        dtype = _check_dtype(self.dtype) if first_pass else self.net_.dtype
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=SPARSE_FORMATS,
            dtype=dtype,
            order="C",
            multi_output=True,
            y_numeric=not isinstance(self, ClassifierMixin),
            reset=first_pass,
        )
        X = _dense(X)
        targets = self._targets(y, first_pass, incremental, classes)
        loss_scale = self._loss_scale(targets.n_outputs)
        Y = targets.Y
        if first_pass:
            seed = check_random_state(self.random_state).randint(SEED_HIGH, dtype=np.int64)
            rng = np.random.default_rng(seed)
            hidden = _check_hidden_layer_sizes(self.hidden_layer_sizes)
            net = MLP(
                [X.shape[1], *hidden, targets.n_outputs],
                activation=_fastbp_activation(self.activation),
                loss=targets.loss,
                init=self.init,
                dtype=dtype,
                seed=_draw_seed(rng),
            )
        else:
            rng, net = self._rng, self.net_
            if net.layer_sizes[-1] != targets.n_outputs:
                raise ValueError(
                    f"y has {targets.n_outputs} outputs, the fitted network has "
                    f"{net.layer_sizes[-1]}: fit again without warm_start"
                )

        validation = score = None
        if self.early_stopping:
            # Only stopping reads the held-out part: a duplicate row in both parts makes it a
            # little optimistic, not misleading, so split's LeakWarning would only be noise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LeakWarning)
                (X, Y), validation, _ = split(
                    X,
                    Y,
                    val=self.validation_fraction,
                    test=0.0,
                    stratify=True if targets.stratify else None,
                    seed=_draw_seed(rng),
                )
            if len(validation[0]) < 2:  # one sample has no R^2, and its accuracy is 0 or 1
                raise ValueError(
                    f"the validation set is too small ({len(validation[0])} sample of "
                    f"{len(validation[0]) + len(X)}): increase validation_fraction "
                    f"({self.validation_fraction}) or the number of samples"
                )
            monitor, min_delta, score = self._score_monitor(validation[1])
        else:
            monitor, min_delta = "train_loss", self.tol / loss_scale
        batch_size = min(AUTO_BATCH if self.batch_size == "auto" else self.batch_size, len(X))
        if incremental and not first_pass:
            # partial_fit continues one run: its optimizer state, noise and shuffle stream
            optimizer, noise = self._optimizer_, self._grad_noise_
            shuffle_seed, initial_epoch = self._shuffle_seed, self._run_epochs
        else:
            optimizer, noise = self._optimizer(batch_size), self._gradient_noise(rng)
            shuffle_seed, initial_epoch = _draw_seed(rng), 0
        callbacks: list[Any] = []
        if self.verbose:
            done = 0 if first_pass else len(self.loss_curve_)
            callbacks.append(_VerbosePrinter(score, done - initial_epoch, loss_scale))
        schedule = None
        words = _no_improvement(self.tol, self.n_iter_no_change, self.early_stopping)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            t_before = 0 if first_pass else self.t_
            fresh = not (incremental and not first_pass)
            schedule = _InverseScaling(self.power_t, t_before, len(X), initial_epoch, fresh)
        adaptive = None
        if self._adaptive() and self.n_iter_no_change != np.inf:
            if score is not None:
                value = lambda logs: score(logs["val_loss"], logs["val_accuracy"])  # noqa: E731
            else:
                value = lambda logs: -logs["train_loss"] * loss_scale  # noqa: E731
            carried = getattr(self, "_adaptive_state", None)  # absent from older pickles
            state = carried if carried and incremental and not first_pass else (-np.inf, 0)
            adaptive = _AdaptiveRate(
                value, self.tol, self.n_iter_no_change, words, self.verbose, state
            )
            callbacks.append(adaptive)
        trainer = Trainer(
            net,
            optimizer,
            batch_size=batch_size,
            epochs=1 if incremental else self.max_iter,
            early_stopping=None if incremental else self._early_stopping(monitor, min_delta),
            clip_norm=self.clip_norm,
            grad_noise=noise,
            shuffle=self.shuffle,
            seed=shuffle_seed,
            lr_schedule=schedule,
            callbacks=callbacks,
            progress=False,
            matmul_precision=self.matmul_precision,
        )
        with _threads(self.n_threads):
            run = trainer.fit(X, Y, validation=validation, initial_epoch=initial_epoch)
        if self.verbose and run.stop_reason == "early_stopping":
            print(words + " Stopping.")

        self.__dict__.update(targets.state)
        self.net_, self._rng, self._optimizer_, self._grad_noise_ = net, rng, optimizer, noise
        self._shuffle_seed, self._run_epochs = shuffle_seed, initial_epoch + run.n_epochs
        self._adaptive_state = None if adaptive is None else (adaptive.best, adaptive.count)
        self._record(run, len(X), first_pass, score, loss_scale)
        if not incremental and run.n_epochs == self.max_iter and run.stopped_epoch is None:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _record(
        self,
        run: History,
        n_train: int,
        first_pass: bool,
        score: ScoreFn | None,
        loss_scale: float,
    ) -> None:
        """The fitted attributes after the training run ``run`` on ``n_train`` samples;
        ``score`` gives the validation scores with early stopping, ``loss_scale`` turns the
        history's losses into ``loss_curve_``'s."""
        if first_pass or self.history_.n_epochs == 0:
            self.history_ = run
        else:
            whole = copy.deepcopy(self.history_)  # a history_ handed out earlier stays as it was
            whole.extend(run)
            if score is None:  # no weights restored: the best epoch is the lowest loss overall
                whole.best_epoch = None
            self.history_ = whole
        self.n_iter_ = run.n_epochs
        self.t_ = (0 if first_pass else self.t_) + run.n_epochs * n_train
        losses = [loss * loss_scale for loss in run.train_loss]
        self.loss_curve_ = ([] if first_pass else self.loss_curve_) + losses
        if score is not None:
            accuracies: list[float | None] = list(run.val_accuracy) or [None] * run.n_epochs
            scores = [score(v, a) for v, a in zip(run.val_loss, accuracies)]
            earlier = None if first_pass else self.validation_scores_
            self.validation_scores_ = (earlier or []) + scores
            # The score of the weights restored, which the best of ``scores`` beats by tol at most.
            best = run.best_epoch
            self.best_validation_score_ = None if best is None else scores[best]
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_, default=float("nan"))
        self._set_derived()

    def _set_derived(self) -> None:
        """The fitted attributes that follow from the others."""
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float("nan")
        self.n_layers_ = len(self.net_.layer_sizes)
        self.n_outputs_ = self.net_.layer_sizes[-1]
        act = self.net_.output_activation
        self.out_activation_ = "logistic" if act == "sigmoid" else act  # scikit-learn's name

    # ---- saving ----------------------------------------------------------------------------
    def save(self, path: Any, include_state: bool = True) -> None:
        """Write the fitted estimator to ``path`` (``.npz``, no pickle inside);
        ``fb.load(path)`` gives it back, predicting the same.

        Parameters
        ----------
        path : str, os.PathLike or binary file object
            Written as given; see :mod:`fastbp.io` for the format.
        include_state : bool, default=True
            Also save the optimizer's state (moments, step count) and ``history_``: then
            ``partial_fit`` on the loaded estimator continues exactly as it would have on
            this one. Without them the file is smaller, and ``partial_fit`` continues from the
            weights with a fresh optimizer state and a fresh ``history_`` (``loss_curve_`` and
            the other fitted attributes are saved either way).
        """
        from .io import write_file

        check_is_fitted(self, "net_")
        _check_bool(include_state, "include_state")
        if type(self) not in (MLPClassifier, MLPRegressor):
            raise TypeError(
                f"only MLPClassifier and MLPRegressor are saved, not a subclass, which "
                f"fb.load could not rebuild; got {type(self).__name__}"
            )
        fitted: dict[str, Any] = {
            "n_features_in_": self.n_features_in_,
            "n_iter_": self.n_iter_,
            "t_": self.t_,
            "loss_curve_": self.loss_curve_,
            "validation_scores_": self.validation_scores_,
            "best_validation_score_": self.best_validation_score_,
            "best_loss_": self.best_loss_,
            "rng": self._rng.bit_generator.state,
            "shuffle_seed": self._shuffle_seed,
            "run_epochs": self._run_epochs,
            "adaptive_state": _adaptive_record(getattr(self, "_adaptive_state", None)),
            **self._saved_targets(),
        }
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = self.feature_names_in_
        write_file(
            path,
            type(self).__name__,
            self.net_,
            optimizer=self._optimizer_,
            optimizer_state=include_state,
            grad_noise=self._grad_noise_,
            history=self.history_ if include_state else None,
            extra={"params": self.get_params(deep=False), "fitted": fitted},
        )

    def _saved_targets(self) -> dict[str, Any]:
        """What the fit learned about y, for :meth:`save`."""
        raise NotImplementedError

    def _restored_targets(self, fitted: dict[str, Any], net: MLP) -> dict[str, Any]:
        """The attributes of :meth:`_saved_targets` from a file, checked against ``net``."""
        raise NotImplementedError

    @classmethod
    def _from_saved(cls, saved: SavedModel) -> Any:
        """The estimator a file describes; ValueError when its record is inconsistent."""
        record = saved.extra or {}
        params = _saved(record, "params", dict, "a dict")
        fitted = _saved(record, "fitted", dict, "a dict")
        names = sorted(cls().get_params(deep=False))
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"{unknown} are not parameters of {cls.__name__} ({names})")
        est = cls(**params)  # one added since the file was written takes its default
        est._check_params()
        est._restore(saved, fitted)
        return est

    def _restore(self, saved: SavedModel, fitted: dict[str, Any]) -> None:
        net = saved.net
        n_in = _saved(fitted, "n_features_in_", _is_count, "a positive int")
        if n_in != net.layer_sizes[0]:
            raise ValueError(f"n_features_in_ is {n_in}, the network has {net.layer_sizes[0]}")
        # the parameters that shaped the network must describe it
        hidden = list(_check_hidden_layer_sizes(self.hidden_layer_sizes))
        activation = _fastbp_activation(self.activation)
        if isinstance(activation, str):
            activation = [activation] * len(hidden)
        shape = (hidden, list(activation), _check_dtype(self.dtype))
        if shape != (net.layer_sizes[1:-1], list(net.activations), net.dtype):
            raise ValueError(
                f"hidden_layer_sizes, activation and dtype ({self.hidden_layer_sizes!r}, "
                f"{self.activation!r}, {self.dtype!r}) do not describe the saved network "
                f"({net.layer_sizes[1:-1]}, {net.activations}, {net.dtype.name})"
            )
        state = {
            "net_": net,
            "_optimizer_": saved.optimizer,
            "_grad_noise_": saved.grad_noise,
            "history_": saved.history or History(net.layer_activations),
            "n_features_in_": n_in,
            "n_iter_": _saved(fitted, "n_iter_", _is_count, "an int >= 0"),
            "t_": _saved(fitted, "t_", _is_count, "an int >= 0"),
            "loss_curve_": _saved(fitted, "loss_curve_", _is_floats, "a list of floats"),
            "validation_scores_": _saved(
                fitted, "validation_scores_", _is_floats_or_none, "a list of floats or None"
            ),
            "best_validation_score_": _saved(
                fitted, "best_validation_score_", _is_float_or_none, "a float or None"
            ),
            "best_loss_": _saved(fitted, "best_loss_", _is_float_or_none, "a float or None"),
            "_shuffle_seed": _saved(fitted, "shuffle_seed", _is_seed, "an int in [0, 2**63 - 1)"),
            "_run_epochs": _saved(
                fitted, "run_epochs", _is_step_count, f"an int in [0, {_core.MAX_STEPS}]"
            ),
            "_rng": _generator(_saved(fitted, "rng", dict, "a PCG64 state")),
            "_adaptive_state": _adaptive_state(fitted.get("adaptive_state")),  # absent before
        }
        if "feature_names_in_" in fitted:
            names = _saved(fitted, "feature_names_in_", _is_texts, "an array of str")
            if len(names) != n_in:
                raise ValueError(f"feature_names_in_ has {len(names)} names for {n_in} features")
            state["feature_names_in_"] = names
        state.update(self._restored_targets(fitted, net))
        self.__dict__.update(state)
        self._set_derived()

    # ---- prediction ------------------------------------------------------------------------
    def _forward(self, X: Any) -> np.ndarray:
        """Validated X through the fitted network: float64 outputs (n_samples, n_outputs_)."""
        check_is_fitted(self, "net_")
        X = validate_data(
            self, X, accept_sparse=SPARSE_FORMATS, dtype=self.net_.dtype, order="C", reset=False
        )
        X = _dense(X)
        with _threads(self.n_threads):
            return self.net_.forward(X).astype(np.float64)

    @property
    def coefs_(self) -> list[np.ndarray]:
        return self._read_only("weights")

    @property
    def intercepts_(self) -> list[np.ndarray]:
        return self._read_only("biases")

    def _read_only(self, name: str) -> list[np.ndarray]:
        """Read-only views of ``net_.weights`` or ``net_.biases``; an AttributeError before
        fit, so that ``hasattr(est, "coefs_")`` tells whether it is fitted."""
        if "net_" not in self.__dict__:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet")
        views = [a.view() for a in getattr(self.net_, name)]
        for v in views:
            v.flags.writeable = False
        return views

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # A fixed random_state makes a fit bit-for-bit reproducible; None does not.
        tags.non_deterministic = self.random_state is None
        tags.input_tags.sparse = True  # densified, as _dense says
        return tags


def _doc(
    intro: str, stratified: str, attributes: str, out_activation: str, score: str, examples: str
) -> str:
    """A class docstring: the shared sections with each estimator's own parts filled in."""
    return (
        intro
        + _PARAMETERS_DOC.replace("{stratified}", stratified)
        + "\n    Attributes\n    ----------\n"
        + attributes
        + _ATTRIBUTES_DOC.replace("{out_activation}", out_activation).lstrip("\n")
        + _NOTES_DOC.replace("{score}\n", score + "\n")
        + examples
    )


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = _doc(
        """Multi-layer perceptron classifier trained by fastbp, with scikit-learn's API.

    Labels may be of any kind numpy can sort (strings, bools, any ints). Two classes use one
    sigmoid output trained with binary cross-entropy, as scikit-learn's MLP does, and
    ``predict_proba`` returns the two columns ``[1 - p, p]``; more classes use a softmax
    output with cross-entropy. A 2-D 0/1 indicator ``y`` is multilabel: one sigmoid output
    per label, ``classes_`` is ``arange(n_labels)`` and ``predict`` returns indicator rows.
""",
        " (stratified by class for single-label y)",
        """    classes_ : ndarray of shape (n_classes,)
        The labels, sorted, in the dtype of the training y; ``arange(n_labels)`` for
        multilabel y.
""",
        '"logistic" (two classes, multilabel)\n        or "softmax"',
        """
    The validation score is the accuracy (monitor ``"val_accuracy"``, ``min_delta=tol``); for
    multilabel y it is the share of labels predicted right, where scikit-learn counts the
    rows with every label right.
""",
        """
    Examples
    --------
    >>> import fastbp as fb
    >>> X, y = fb.datasets.blobs(200, n_classes=3, seed=0)
    >>> clf = fb.MLPClassifier((16,), max_iter=50, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """,
    )

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """Run one epoch over (X, y), keeping the optimizer state of earlier calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        classes : array-like of shape (n_classes,), default=None
            Every label the whole stream will contain: required on the first call (unless
            y is a multilabel indicator), optional later and then equal to ``classes_``.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True, classes=classes)

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a 0/1 indicator matrix for multilabel classification.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def _targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool, classes: Any
    ) -> _Targets:
        """Network targets for y: ``classes_`` is set by a first pass, checked by later ones."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if y.ndim == 2 and not multilabel:
            raise ValueError(
                "a 2-D y must be a 0/1 multilabel indicator matrix; multiclass-multioutput "
                "y is not supported"
            )
        if first_pass:
            if multilabel:
                labels = np.arange(y.shape[1])
            elif incremental:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit")
                labels = np.unique(np.asarray(classes))
            else:
                labels = np.unique(y)
            if not multilabel and len(labels) < 2:
                raise ValueError(
                    f"a classifier needs at least 2 classes; got 1 class: {labels.tolist()}"
                )
            state = {"classes_": labels, "_multilabel": multilabel, "_y_dtype": y.dtype}
        else:
            labels, state = self.classes_, {}
            if multilabel != self._multilabel:
                kind = "multilabel" if self._multilabel else "single-label"
                raise ValueError(f"y must be {kind}, as in the earlier fit")
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), labels):
                raise ValueError(
                    f"classes={classes!r} differs from classes_={labels!r} of the earlier fit"
                )
        n_out, loss = _classifier_outputs(len(labels), multilabel)
        if multilabel:
            if y.shape[1] != len(labels):
                raise ValueError(f"y has {y.shape[1]} labels, the earlier fit had {len(labels)}")
            return _Targets(y, n_out, loss, False, state)
        codes = np.minimum(np.searchsorted(labels, y), len(labels) - 1)
        unknown = labels[codes] != y
        if np.any(unknown):
            raise ValueError(
                f"y has labels not in classes_ {labels.tolist()}: {np.unique(y[unknown]).tolist()}"
            )
        if self.warm_start and not incremental and not first_pass:
            missing = np.setdiff1d(labels, y)
            if missing.size:
                raise ValueError(
                    f"warm_start needs the classes of the earlier fit; y lacks {missing.tolist()}"
                )
        return _Targets(codes.reshape(-1, 1) if n_out == 1 else codes, n_out, loss, True, state)

    def _score_monitor(self, val_targets: np.ndarray) -> tuple[str, float, ScoreFn]:
        return "val_accuracy", self.tol, lambda val_loss, val_accuracy: float(val_accuracy)

    def _saved_targets(self) -> dict[str, Any]:
        return {
            "classes_": self.classes_,
            "multilabel": self._multilabel,
            "y_dtype": self._y_dtype.str,
        }

    def _restored_targets(self, fitted: dict[str, Any], net: MLP) -> dict[str, Any]:
        classes = _saved(fitted, "classes_", np.ndarray, "an array of labels")
        multilabel = _saved(fitted, "multilabel", bool, "a bool")
        y_dtype = _saved(fitted, "y_dtype", str, "a dtype")
        try:
            dtype = np.dtype(y_dtype)
        except TypeError:
            raise ValueError(f"y_dtype must name a dtype; the file has {y_dtype!r}") from None
        if classes.ndim != 1 or len(classes) < (1 if multilabel else 2):
            raise ValueError(f"classes_ must list at least 2 labels; the file has {classes!r}")
        # the network's outputs are in the order of the sorted labels (np.unique at fit)
        if not multilabel and not np.array_equal(np.unique(classes), classes):
            raise ValueError(f"classes_ must be sorted and distinct; the file has {classes!r}")
        n_out, loss = _classifier_outputs(len(classes), multilabel)
        if (net.layer_sizes[-1], net.loss) != (n_out, loss):
            raise ValueError(
                f"{len(classes)} classes need {n_out} outputs and loss {loss!r}; the network "
                f"has {net.layer_sizes[-1]} and {net.loss!r}"
            )
        return {"classes_": classes, "_multilabel": multilabel, "_y_dtype": dtype}

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; rows sum to 1 (for multilabel y, each
            column is the probability of its label and rows need not sum to 1).
        """
        out = self._forward(X)
        if self._multilabel:
            return out
        if out.shape[1] > 1:
            # a float32 softmax's rows sum to 1 within float32's rounding, not float64's
            # (numpy's random choice refuses them): normalised again in float64
            return out / out.sum(axis=1, keepdims=True)
        return np.hstack([1.0 - out, out])

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba` (``-inf`` where a probability is 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``; for multilabel y, 0/1 rows in the dtype of the training y.
        """
        out = self._forward(X)
        if self._multilabel:
            return (out > 0.5).astype(self._y_dtype)
        codes = (out[:, 0] > 0.5).astype(np.intp) if out.shape[1] == 1 else out.argmax(axis=1)
        return self.classes_[codes]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = _doc(
        """Multi-layer perceptron regressor trained by fastbp, with scikit-learn's API.

    The network has an identity output and trains on the squared-error loss
    ``1/2 * sum_k (o_k - y_k)^2`` per sample; ``loss_curve_`` reports it as scikit-learn does,
    divided by the number of outputs (on which scale ``tol`` is compared). A 1-D y gives 1-D
    predictions, as does a column vector y (with scikit-learn's DataConversionWarning); a 2-D
    y of several columns gives 2-D predictions. scikit-learn's ``loss="poisson"`` is not
    available (there is no ``loss`` parameter).
""",
        "",
        "",
        '"identity"',
        """
    The validation score is R^2 over the outputs together, ``1 - SSE / SST``
    (``r2_score(..., multioutput="variance_weighted")``): scikit-learn's score for one
    output, while for several it averages the outputs' R^2 instead. R^2 being affine in the
    validation loss, the monitor is ``"val_loss"`` with ``min_delta = tol * SST / (2 * n_val)``,
    the same test.
""",
        """
    Examples
    --------
    >>> import fastbp as fb
    >>> X, y = fb.datasets.regression_sine(200, seed=0)
    >>> reg = fb.MLPRegressor((32,), max_iter=50, random_state=0).fit(X, y.ravel())
    >>> reg.predict(X[:3]).shape
    (3,)
    """,
    )

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """Run one epoch over (X, y), keeping the optimizer state of earlier calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True)

    def _targets(
        self, y: np.ndarray, first_pass: bool, incremental: bool, classes: Any
    ) -> _Targets:
        if y.ndim == 2 and y.shape[1] == 1:  # as scikit-learn: a warning, and 1-D y
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        state = {"_y_1d": y.ndim == 1} if first_pass else {}
        return _Targets(Y, Y.shape[1], "mse", False, state)

    def _loss_scale(self, n_outputs: int) -> float:
        # scikit-learn's squared loss is the mean over the outputs too; fastbp's the sum
        return 1.0 / n_outputs

    def _score_monitor(self, val_targets: np.ndarray) -> tuple[str, float, ScoreFn]:
        # R^2 over the outputs together is 1 - 2 * val_loss / var, var being the variance of
        # the validation targets summed over outputs: it gains tol when val_loss falls by
        # tol * var / 2.
        var = float(np.var(val_targets, axis=0, dtype=np.float64).sum())

        def r2(val_loss: float, val_accuracy: float | None) -> float:
            if var == 0:  # scikit-learn's r2_score convention for a constant y
                return 1.0 if val_loss == 0 else 0.0
            return 1.0 - 2.0 * val_loss / var

        return "val_loss", self.tol * var / 2, r2

    def _saved_targets(self) -> dict[str, Any]:
        return {"y_1d": self._y_1d}

    def _restored_targets(self, fitted: dict[str, Any], net: MLP) -> dict[str, Any]:
        y_1d = _saved(fitted, "y_1d", bool, "a bool")
        if net.loss != "mse" or (y_1d and net.layer_sizes[-1] != 1):
            raise ValueError(
                f"a regressor's network has loss 'mse' (and one output for 1-D y); the file's "
                f"has {net.loss!r} and {net.layer_sizes[-1]} outputs"
            )
        return {"_y_1d": y_1d}

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs), float64
            1-D when the training y was 1-D.
        """
        out = self._forward(X)
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def from_saved(saved: SavedModel) -> MLPClassifier | MLPRegressor:
    """The estimator that a model file's parts describe (:func:`fastbp.load` calls this).

    Raises
    ------
    ValueError
        The estimator's record in the file is incomplete or does not fit its network.
    """
    cls = MLPClassifier if saved.kind == "MLPClassifier" else MLPRegressor
    return cls._from_saved(saved)
