"""MLPClassifier and MLPRegressor: scikit-learn's own estimator checks, the model-selection
tools, labels of every kind, reproducibility, incremental training and errors."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp as fb  # noqa: E402

# Short fits are the point of most tests here: not converging is expected.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Not strict: where the core's own register-blocked kernels compute the small products (a row's
# result independent of its neighbours) the check passes; through OpenBLAS it does not.
FLOAT32_ROWS = (
    "float32 BLAS products round differently with the number of rows (~1e-6 relative); "
    "the check demands 1e-7"
)
NO_PARTIAL_FIT_EARLY_STOPPING = "partial_fit refuses early_stopping=True, as scikit-learn's MLP"
PARTIAL_FIT_CHECKS = (
    "check_fit_score_takes_y",
    "check_n_features_in_after_fitting",
    "check_estimators_partial_fit_n_features",
)

CHECKED = [
    fb.MLPClassifier(max_iter=30, random_state=0),
    fb.MLPRegressor(max_iter=30, random_state=0),
    fb.MLPClassifier(
        (16, 8), solver="sgd", learning_rate_init=0.05, max_iter=30, random_state=0, dtype="float64"
    ),
    fb.MLPRegressor(
        (16,),
        solver="rmsprop",
        learning_rate_init=1e-2,
        alpha=1e-3,
        max_iter=30,
        random_state=0,
        dtype="float64",
        clip_norm=1.0,
        grad_noise=1e-4,
        n_threads=1,
    ),
    fb.MLPClassifier(
        (16,),
        solver="linesearch",
        learning_rate_init=1.0,
        activation="tanh",
        max_iter=20,
        random_state=0,
        dtype="float64",
    ),
    fb.MLPClassifier(
        (16,),
        solver="adamw",
        learning_rate_init=1e-2,
        early_stopping=True,
        validation_fraction=0.2,  # the checks' smallest data sets: 2 of 10 held out
        max_iter=30,
        random_state=0,
        dtype="float64",
    ),
    fb.MLPRegressor(
        (16,),
        solver="adagrad",
        learning_rate_init=0.05,
        early_stopping=True,
        validation_fraction=0.2,  # the checks' smallest data sets: 2 of 10 held out
        max_iter=30,
        random_state=0,
        dtype="float64",
    ),
]


def expected_failures(est):
    """Every check an estimator is expected to fail, with the reason."""
    failures = {}
    if est.dtype == "float32":
        failures["check_methods_subset_invariance"] = FLOAT32_ROWS
    if est.early_stopping:
        failures.update(dict.fromkeys(PARTIAL_FIT_CHECKS, NO_PARTIAL_FIT_EARLY_STOPPING))
    return failures


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clf_data():
    X, y = make_classification(
        n_samples=300, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=300, n_features=6, noise=0.1, random_state=0)
    return X, y / y.std()


def small_clf(**kw):
    params = dict(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=1e-2, random_state=0)
    return fb.MLPClassifier(**{**params, **kw})


def small_reg(**kw):
    params = dict(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=1e-2, random_state=0)
    return fb.MLPRegressor(**{**params, **kw})


# ---- the package -----------------------------------------------------------------------------
def test_import_fastbp_does_not_import_sklearn():
    code = "import fastbp, sys; assert 'sklearn' not in sys.modules; fastbp.MLP([2, 1])"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_exports():
    from fastbp import estimators

    assert fb.MLPClassifier is estimators.MLPClassifier
    assert fb.MLPRegressor is estimators.MLPRegressor
    with pytest.raises(AttributeError, match="no attribute 'MLPClassifer'"):
        fb.MLPClassifer  # noqa: B018
    assert is_classifier(fb.MLPClassifier()) and is_regressor(fb.MLPRegressor())


def test_tags():
    from sklearn.utils import get_tags

    assert get_tags(fb.MLPClassifier()).non_deterministic
    assert not get_tags(fb.MLPClassifier(random_state=0)).non_deterministic
    assert get_tags(fb.MLPClassifier()).classifier_tags.multi_label
    assert get_tags(fb.MLPRegressor()).target_tags.multi_output
    assert not get_tags(fb.MLPRegressor()).input_tags.allow_nan


# ---- scikit-learn's tools --------------------------------------------------------------------
def test_pipeline_grid_search_and_cross_validation(clf_data):
    X, y = clf_data
    pipe = make_pipeline(StandardScaler(), small_clf())
    assert pipe.fit(X, y).score(X, y) > 0.8
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)], "mlpclassifier__alpha": [0, 1]},
        cv=3,
    )
    grid.fit(X, y)
    assert grid.best_score_ > 0.7
    assert grid.best_estimator_[-1].hidden_layer_sizes in [(4,), (16,)]
    search = RandomizedSearchCV(
        small_clf(),
        {"learning_rate_init": [1e-3, 1e-2], "solver": ["adam", "sgd"]},
        n_iter=3,
        cv=3,
        random_state=0,
    )
    search.fit(X, y)
    assert set(search.best_params_) == {"learning_rate_init", "solver"}
    scores = cross_val_score(small_reg(), *make_regression(200, 4, random_state=1), cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_clone_keeps_parameters_and_drops_the_fit(clf_data):
    est = small_clf(grad_noise=fb.GradientNoise(0.01, seed=3)).fit(*clf_data)
    copy = clone(est)
    assert copy.get_params().keys() == est.get_params().keys()
    assert copy.grad_noise is not est.grad_noise and copy.grad_noise.seed == 3
    assert not hasattr(copy, "net_") and not hasattr(copy, "coefs_")
    with pytest.raises(NotFittedError):
        copy.predict(clf_data[0])


@pytest.mark.parametrize("make", [small_clf, small_reg])
def test_pickle_round_trip_predicts_identically(make, clf_data):
    X, y = clf_data
    est = make().fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    for a, b in zip(loaded.coefs_, est.coefs_):
        np.testing.assert_array_equal(a, b)
    assert loaded.loss_curve_ == est.loss_curve_
    loaded.partial_fit(X, y)  # the optimizer's state travels too: training goes on exactly
    est.partial_fit(X, y)
    assert loaded.loss_curve_ == est.loss_curve_
    for a, b in zip(loaded.coefs_ + loaded.intercepts_, est.coefs_ + est.intercepts_):
        np.testing.assert_array_equal(a, b)


# ---- labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels",
    [
        np.array(["cat", "dog"]),
        np.array([1, 2]),
        np.array([False, True]),
        np.array([-3, 7]),
        np.array(["a", "b", "c"]),
        np.array([-1, 0, 5, 10]),
    ],
    ids=["str", "1-2", "bool", "negative", "str-3", "int-4"],
)
def test_labels_of_any_kind(labels):
    X, codes = fb.datasets.blobs(240, n_classes=len(labels), seed=1)
    y = labels[codes]
    est = small_clf().fit(X, y)
    np.testing.assert_array_equal(est.classes_, labels)
    assert est.classes_.dtype == y.dtype
    pred = est.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(labels)
    assert est.score(X, y) > 0.9
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), len(labels)) and proba.dtype == np.float64
    # rows sum to 1 in float64 (the network is float32), as numpy's random choice needs
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=0, atol=4e-16)
    rng = np.random.default_rng(0)
    assert all(rng.choice(len(labels), p=row) < len(labels) for row in proba[:50])
    np.testing.assert_array_equal(pred, labels[proba.argmax(axis=1)])
    with np.errstate(divide="ignore"):  # float32 probabilities can round to 0
        np.testing.assert_allclose(est.predict_log_proba(X), np.log(proba))
    binary = len(labels) == 2
    assert est.out_activation_ == ("logistic" if binary else "softmax")  # scikit-learn's names
    assert est.n_outputs_ == (1 if binary else len(labels))
    assert est.coefs_[-1].shape == (16, est.n_outputs_)


def test_multilabel_indicator_targets():
    X, codes = fb.datasets.blobs(300, n_classes=4, seed=2)
    Y = np.stack([codes % 2, codes // 2, (codes == 3)], axis=1).astype(np.int64)
    est = small_clf(max_iter=60).fit(X, Y)
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    pred = est.predict(X)
    assert pred.shape == Y.shape and pred.dtype == Y.dtype
    proba = est.predict_proba(X)
    assert proba.shape == Y.shape and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(np.int64))
    assert est.score(X, Y) > 0.8  # subset accuracy
    assert est.out_activation_ == "logistic"


def test_regressor_target_shapes(reg_data):
    X, y = reg_data
    est = small_reg().fit(X, y)
    assert est.predict(X).shape == (len(X),) and est.predict(X).dtype == np.float64
    assert est.score(X, y) > 0.8
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning, match="column-vector y"):  # as scikit-learn's
        column = small_reg().fit(X, y[:, None])
    assert column.predict(X).shape == (len(X),)
    Y = np.stack([y, -y, 2 * y], axis=1)
    multi = small_reg().fit(X, Y)
    assert multi.predict(X).shape == (len(X), 3) and multi.score(X, Y) > 0.8
    assert multi.out_activation_ == "identity" and multi.n_outputs_ == 3


def test_dataframes_and_feature_names(clf_data):
    pd = pytest.importorskip("pandas")
    X, y = clf_data
    columns = [f"f{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=columns)
    est = small_clf().fit(df, pd.Series(y))
    np.testing.assert_array_equal(est.feature_names_in_, columns)
    assert est.n_features_in_ == X.shape[1]
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(est.predict(df), est.predict(X))
    renamed = df.rename(columns={"f0": "other"})
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(renamed)
    assert not hasattr(small_clf().fit(X, y), "feature_names_in_")


# ---- training behaviour ----------------------------------------------------------------------
@pytest.mark.parametrize("make", [small_clf, small_reg])
def test_random_state_reproduces_a_fit(make, clf_data):
    X, y = clf_data
    a, b = make(grad_noise=0.01).fit(X, y), make(grad_noise=0.01).fit(X, y)
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    other = make(random_state=1).fit(X, y)
    assert not np.array_equal(other.coefs_[0], a.coefs_[0])


def test_partial_fit_keeps_the_optimizer_state(clf_data):
    """Two partial_fit epochs in order equal one two-epoch fit, Adam's moments included."""
    X, y = clf_data
    params = dict(shuffle=False, n_iter_no_change=np.inf)
    full = small_clf(max_iter=2, **params).fit(X, y)
    inc = small_clf(**params)
    inc.partial_fit(X, y, classes=np.unique(y)).partial_fit(X, y)
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.n_iter_ == 1 and inc.t_ == 2 * len(X) and len(inc.loss_curve_) == 2


def test_partial_fit_calls_continue_one_run(reg_data):
    """k partial_fit calls on the same data are the k epochs of one fit: the shuffle stream
    and the gradient noise continue from call to call, and history_ reads as one run."""
    X, y = reg_data
    params = dict(n_iter_no_change=np.inf, grad_noise=1e-3, batch_size=16)
    full = small_reg(max_iter=3, **params).fit(X, y)
    inc = small_reg(**params)
    for _ in range(3):
        inc.partial_fit(X, y)
    for a, b in zip(full.coefs_ + full.intercepts_, inc.coefs_ + inc.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert inc.loss_curve_ == full.loss_curve_ and inc.history_.lr == full.history_.lr
    assert inc.history_.best_epoch == int(np.argmin(full.loss_curve_))


def test_partial_fit_over_chunks(clf_data):
    X, y = clf_data
    labels = np.array(["x", "y", "z"])[y]
    est = small_clf()
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X[:50], labels[:50])
    chunks = np.array_split(np.arange(len(X)), 6)
    for epoch in range(5):
        for idx in chunks:
            est.partial_fit(X[idx], labels[idx], classes=["x", "y", "z"] if epoch == 0 else None)
    assert est.n_iter_ == 1 and len(est.loss_curve_) == 30 and est.history_.n_epochs == 30
    assert est.t_ == 5 * len(X)
    assert est.score(X, labels) > 0.8
    assert np.mean(est.loss_curve_[-6:]) < np.mean(est.loss_curve_[:6])
    with pytest.raises(ValueError, match="not in classes_"):
        est.partial_fit(X[:5], np.array(["w"] * 5))
    with pytest.raises(ValueError, match="differs from classes_"):
        est.partial_fit(X[:5], labels[:5], classes=["x", "y"])
    with pytest.raises(ValueError, match="early_stopping"):
        small_clf(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_classes_absent_from_the_first_chunk():
    X, y = fb.datasets.blobs(200, n_classes=3, seed=4)
    est = small_clf()
    est.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    assert est.predict_proba(X).shape == (200, 3)
    est.partial_fit(X, y)
    assert set(est.predict(X)) <= {0, 1, 2}


def test_warm_start_continues_from_the_previous_weights(reg_data):
    """With a stateless optimizer (SGD without momentum), 3 epochs then 2 warm-started
    epochs are exactly 5 epochs."""
    X, y = reg_data
    params = dict(solver="sgd", momentum=0.0, shuffle=False, n_iter_no_change=np.inf)
    five = small_reg(max_iter=5, **params).fit(X, y)
    warm = small_reg(max_iter=3, warm_start=True, **params).fit(X, y)
    warm.set_params(max_iter=2).fit(X, y)
    for a, b in zip(five.coefs_ + five.intercepts_, warm.coefs_ + warm.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert warm.n_iter_ == 2 and len(warm.loss_curve_) == 5 and warm.t_ == 5 * len(X)
    np.testing.assert_allclose(warm.loss_curve_, five.loss_curve_)
    cold = small_reg(max_iter=2, **params).fit(X, y)
    assert cold.loss_curve_[0] > warm.loss_curve_[3]


def test_a_failed_fit_leaves_the_fitted_estimator_as_it_was(clf_data):
    X, y = clf_data
    est = small_clf().fit(X, y)
    coef, proba = est.coefs_[0].copy(), est.predict_proba(X)
    est.set_params(early_stopping=True, validation_fraction=0.9)
    with pytest.raises(ValueError, match="too few"):
        est.fit(X[:2], np.array(["a", "b"]))  # the split leaves no training part
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    np.testing.assert_array_equal(est.coefs_[0], coef)
    np.testing.assert_array_equal(est.predict_proba(X), proba)
    # a refit on fewer features that fails keeps the fitted feature count and names
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = small_clf(max_iter=2).fit(frame, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        est.fit(frame.iloc[:, :5], np.zeros(len(y)))
    assert est.n_features_in_ == 8 and list(est.feature_names_in_) == list(frame.columns)
    assert est.predict(frame).shape == (len(y),)  # no "expecting 5 features"
    # and a first fit that fails leaves nothing that looks fitted
    fresh = small_clf()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fresh.fit(X, np.zeros(len(y)))
    assert not hasattr(fresh, "n_features_in_")


def test_no_hidden_layer_is_a_linear_model(reg_data):
    X, y = reg_data
    est = small_reg(hidden_layer_sizes=(), max_iter=100).fit(X, y)
    assert [c.shape for c in est.coefs_] == [(6, 1)] and est.n_layers_ == 2
    assert est.score(X, y) > 0.99  # make_regression is linear


def test_coefs_are_read_only_views_of_the_network(clf_data):
    X, y = clf_data
    est = small_clf().fit(X, y)
    coef = est.coefs_[0]
    assert np.shares_memory(coef, est.net_.weights[0]) and not coef.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        coef[0, 0] = 1.0
    before = coef.copy()
    est.partial_fit(X, y)
    assert not np.array_equal(before, coef)  # the view follows training
    assert [c.shape for c in est.coefs_] == [(8, 16), (16, 3)]
    assert [b.shape for b in est.intercepts_] == [(16,), (3,)]
    assert est.n_layers_ == 3


@pytest.mark.parametrize(
    "solver, alpha, momentum, nesterov, steps, rtol",
    [
        ("sgd", 50.0, 0.0, False, 1, 1e-10),
        ("sgd", 0.0, 0.9, True, 4, 1e-10),
        ("sgd", 0.0, 0.9, False, 4, 1e-10),
        ("adam", 0.0, 0.9, False, 4, 1e-8),
    ],
    ids=["alpha", "nesterov", "momentum", "adam"],
)
def test_steps_match_sklearn(solver, alpha, momentum, nesterov, steps, rtol, reg_data):
    """Full-batch steps from the same weights match scikit-learn's: the L2 penalty alpha,
    (Nesterov) momentum and Adam mean the same. With alpha the biases start at 0, where
    fastbp's decay of them (scikit-learn has none) is 0, and one step is taken."""
    from sklearn.neural_network import MLPRegressor

    X, y = reg_data
    params = dict(
        solver=solver,
        epsilon=1e-12,  # where Adam adds it differs (torch's rule and scikit-learn's)
        momentum=momentum,
        nesterovs_momentum=nesterov,
        learning_rate_init=0.01,
        batch_size=len(X),
        shuffle=False,
        alpha=alpha,
        max_iter=1,
        warm_start=True,
        random_state=0,
        n_iter_no_change=np.inf,
    )
    ours = fb.MLPRegressor((8,), dtype="float64", **params).fit(X, y)
    for b in ours.net_.biases:
        b[...] = 0
    theirs = MLPRegressor(hidden_layer_sizes=(8,), **params).fit(X, y)
    theirs.coefs_ = [np.array(c) for c in ours.coefs_]
    theirs.intercepts_ = [np.zeros(b.shape) for b in ours.intercepts_]
    ours.set_params(max_iter=steps).fit(X, y)
    theirs.set_params(max_iter=steps).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)
    if alpha == 0:  # scikit-learn's loss_curve_ includes the penalty, fastbp's does not
        np.testing.assert_allclose(ours.loss_curve_[1:], theirs.loss_curve_[1:], rtol=rtol)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_tol_and_n_iter_no_change_stop_like_sklearn(early_stopping, clf_data):
    """With a learning rate too small to change anything, both libraries run exactly
    n_iter_no_change + 2 epochs."""
    from sklearn.neural_network import MLPClassifier

    X, y = clf_data
    params = dict(
        learning_rate_init=1e-10,
        n_iter_no_change=4,
        early_stopping=early_stopping,
        max_iter=50,
        random_state=0,
    )
    theirs = MLPClassifier((8,), **params).fit(X, y)
    ours = fb.MLPClassifier((8,), **params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 6
    assert ours.history_.stop_reason == "early_stopping"
    if early_stopping:
        assert ours.best_loss_ is None and len(ours.validation_scores_) == 6
        assert ours.best_validation_score_ == ours.validation_scores_[0]
    else:
        assert ours.validation_scores_ is None and ours.best_validation_score_ is None
        assert ours.best_loss_ == min(ours.loss_curve_)


@pytest.fixture
def held_out(monkeypatch):
    """The validation part of the estimator's last split, as it saw it."""
    from fastbp import estimators

    parts = {}
    original = estimators.split

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        parts["val"] = result.val
        return result

    monkeypatch.setattr(estimators, "split", spy)
    return parts


def test_early_stopping_regressor_scores_are_r2(reg_data, held_out):
    from sklearn.metrics import r2_score

    X, y = reg_data
    Y = np.stack([y, 3 * y**2], axis=1)
    est = small_reg(max_iter=200, early_stopping=True, validation_fraction=0.2).fit(X, Y)
    X_val, Y_val = held_out["val"]
    r2 = r2_score(Y_val, est.predict(X_val), multioutput="variance_weighted")
    np.testing.assert_allclose(est.best_validation_score_, r2, rtol=1e-5)
    est = small_reg(max_iter=200, early_stopping=True, validation_fraction=0.2).fit(X, y)
    X_val, y_val = held_out["val"]
    np.testing.assert_allclose(
        est.best_validation_score_, r2_score(y_val[:, 0], est.predict(X_val)), rtol=1e-5
    )
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ < 200
    assert scores[-1] > 0.9
    best = est.history_.best_epoch
    assert est.best_validation_score_ == scores[best] >= max(scores) - est.tol
    # the restored weights score best_validation_score_; at epoch 0 they did much worse
    assert scores[best] - scores[0] > 0.1


def test_early_stopping_classifier_scores_are_accuracy(held_out):
    X, y = fb.datasets.spirals(600, seed=0)
    labels = np.array(["arm0", "arm1", "arm2"])[y]
    est = small_clf(max_iter=100, early_stopping=True, validation_fraction=0.25).fit(X, labels)
    X_val, codes_val = held_out["val"]
    assert np.bincount(codes_val).tolist() == [50, 50, 50]  # stratified
    accuracy = np.mean(est.predict(X_val) == est.classes_[codes_val])
    assert est.best_validation_score_ == pytest.approx(accuracy)


def test_diagnose_reads_the_history(clf_data):
    est = small_clf(activation="logistic").fit(*clf_data)
    assert est.history_.n_epochs == est.n_iter_ == 30
    assert est.history_.layer_activations == ["sigmoid", "softmax"]
    report = fb.diagnose(est.history_)
    assert "layer" in str(report)


def test_accuracy_on_digits_matches_sklearn():
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    params = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    theirs = make_pipeline(StandardScaler(), MLPClassifier(**params, batch_size=32))
    ours = make_pipeline(StandardScaler(), fb.MLPClassifier(**params))
    acc_theirs = theirs.fit(X_train, y_train).score(X_test, y_test)
    acc_ours = ours.fit(X_train, y_train).score(X_test, y_test)
    assert acc_ours > 0.93
    assert acc_ours > acc_theirs - 0.03


def test_n_threads_holds_in_the_fitting_thread_only(clf_data, monkeypatch):
    import threading

    from fastbp import estimators

    before = fb.get_num_threads()
    n = 1 if before > 1 else 2
    seen = []
    fit = estimators.Trainer.fit

    def spy(self, *args, **kwargs):
        elsewhere = []  # another Python thread meanwhile: the process's count
        other = threading.Thread(target=lambda: elsewhere.append(fb.get_num_threads()))
        other.start()
        other.join()
        seen.append((fb.get_num_threads(), elsewhere[0]))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(estimators.Trainer, "fit", spy)
    est = small_clf(n_threads=n).fit(*clf_data)
    assert seen == [(n, before)] and fb.get_num_threads() == before
    # set_num_threads while an estimator's count holds: the process's count, kept after it
    with estimators._threads(n):
        fb.set_num_threads(3)
        assert fb.get_num_threads() == n
    assert fb.get_num_threads() == 3
    fb.set_num_threads(before)
    est.predict(clf_data[0])
    assert fb.get_num_threads() == before


def test_gradient_noise_parameter_is_not_mutated(clf_data):
    noise = fb.GradientNoise(0.01, seed=5)
    est = small_clf(grad_noise=noise).fit(*clf_data)
    assert noise.t == 0 and est.grad_noise is noise
    again = small_clf(grad_noise=noise).fit(*clf_data)
    np.testing.assert_array_equal(est.coefs_[0], again.coefs_[0])


def test_verbose_prints_each_epoch(clf_data, capsys):
    small_clf(max_iter=3, verbose=True, early_stopping=True).fit(*clf_data)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and out[1].startswith("Validation score: ")
    assert len(out) == 6


def test_convergence_warning_when_max_iter_is_reached(clf_data):
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        small_clf(max_iter=2).fit(*clf_data)


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(solver="bogus"), ValueError, "solver must be one of"),
        (dict(solver="lbfgs"), ValueError, "linesearch"),
        (dict(hidden_layer_sizes=(0,)), ValueError, "hidden_layer_sizes"),
        (dict(hidden_layer_sizes=-3), ValueError, "hidden_layer_sizes"),
        (dict(hidden_layer_sizes="10"), TypeError, "hidden_layer_sizes"),
        (dict(hidden_layer_sizes=(4.5,)), TypeError, "hidden_layer_sizes"),
        (dict(activation="swish"), ValueError, "activation"),
        (dict(activation=["relu", "tanh"]), ValueError, "activation"),
        (dict(init="zeros"), ValueError, "init"),
        (dict(dtype="int32"), ValueError, "dtype"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(alpha=0.1, solver="linesearch"), ValueError, "alpha"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size="big"), TypeError, "batch_size"),
        (dict(learning_rate_init=0.0), ValueError, "learning_rate_init"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(momentum=1.5), ValueError, "momentum"),
        (dict(beta_2=1.0), ValueError, "beta_2"),
        (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
        (dict(validation_fraction=1.0), ValueError, "validation_fraction"),
        (dict(early_stopping=True, validation_fraction=0.0), ValueError, "validation_fraction"),
        # 1 of 300 samples held out: no score to stop on
        (dict(early_stopping=True, validation_fraction=0.001), ValueError, "too small"),
        (dict(shuffle="yes"), TypeError, "shuffle"),
        (dict(clip_norm=0.0), ValueError, "clip_norm"),
        (dict(grad_noise="lots"), TypeError, "grad_noise"),
        (dict(n_threads=0), ValueError, "n_threads"),
        (dict(matmul_precision="fp8"), ValueError, "matmul_precision"),
        (dict(matmul_precision="bfloat16", dtype="float64"), ValueError, "matmul_precision"),
    ],
)
def test_bad_parameters_name_the_parameter(params, error, match, clf_data):
    est = small_clf(**params)  # __init__ only stores
    with pytest.raises(error, match=match):
        est.fit(*clf_data)


def test_bad_data_gives_clear_errors(clf_data):
    X, y = clf_data
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small_clf().fit(bad, y)
    est = small_clf().fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="7 features, but MLPClassifier is expecting 8"):
        est.predict(X[:, :7])
    with pytest.raises(ValueError, match="2 classes"):
        small_clf().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        small_clf().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        small_clf().fit(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        small_clf().fit(X, y[:-1])
    with pytest.raises(ValueError, match="outputs"):
        small_reg(warm_start=True).fit(X, y).fit(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="warm_start"):
        small_clf(warm_start=True).fit(X, y).fit(X[y < 2], y[y < 2])


@pytest.mark.skipif(not fb.build_info()["bfloat16"], reason="this CPU has no AVX512-BF16")
def test_matmul_precision_bfloat16_trains_in_mixed_precision():
    # Products large enough for the bfloat16 kernels: 128 features, 256 hidden units, batches
    # of 128 rows on one thread.
    X, y = make_classification(
        n_samples=1200, n_features=128, n_informative=20, n_classes=4, random_state=0
    )
    est = {}
    for prec in ("highest", "bfloat16"):
        est[prec] = fb.MLPClassifier(
            (256,),
            batch_size=128,
            max_iter=15,
            random_state=0,
            n_threads=1,
            matmul_precision=prec,
        ).fit(X[:900], y[:900])
    assert est["bfloat16"].get_params()["matmul_precision"] == "bfloat16"
    w32, w16 = (est[p].net_.weights[0] for p in ("highest", "bfloat16"))
    assert not np.array_equal(w32, w16)  # the bfloat16 run rounded its products
    s32, s16 = (est[p].score(X[900:], y[900:]) for p in ("highest", "bfloat16"))
    assert s32 > 0.45  # 4 classes: chance is 0.25
    assert abs(s16 - s32) <= 0.05


def test_sparse_input_is_densified_as_scikit_learn_takes_it(clf_data):
    sparse = pytest.importorskip("scipy.sparse")
    X, y = clf_data
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # mostly zeros
    dense = small_clf().fit(X, y)
    for fmt in ("csr", "csc", "coo"):
        est = small_clf().fit(getattr(sparse, f"{fmt}_matrix")(X), y)
        np.testing.assert_array_equal(est.coefs_[0], dense.coefs_[0])  # the same fit, bit for bit
        np.testing.assert_array_equal(
            est.predict_proba(sparse.csr_matrix(X)), dense.predict_proba(X)
        )


def test_learning_rate_power_t_and_max_fun_are_scikit_learns_parameters():
    est = fb.MLPClassifier(learning_rate="adaptive", power_t=0.25, max_fun=10)
    params = est.get_params()
    assert (params["learning_rate"], params["power_t"], params["max_fun"]) == ("adaptive", 0.25, 10)
    from sklearn.base import clone
    from sklearn.neural_network import MLPClassifier as SkMLP

    assert set(SkMLP().get_params()) <= set(clone(est).get_params())  # every sklearn name
    for bad, error in (
        (dict(learning_rate="optimal"), "learning_rate must be one of"),
        (dict(power_t=-1.0), "power_t"),
        (dict(max_fun=0), "max_fun"),
    ):
        with pytest.raises(ValueError, match=error):
            fb.MLPClassifier(**bad).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_invscaling_runs_each_epoch_at_scikit_learns_rate(reg_data):
    X, y = reg_data
    est = small_reg(
        solver="sgd",
        learning_rate="invscaling",
        power_t=0.5,
        momentum=0.0,
        learning_rate_init=0.05,
        max_iter=4,
        n_iter_no_change=np.inf,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    n = len(X)
    expected = [0.05] + [0.05 / (e * n + 1) ** 0.5 for e in (1, 2, 3)]
    np.testing.assert_allclose(est.history_.lr, expected, rtol=1e-12)
    est.partial_fit(X, y)  # continues the run: 4 n samples seen
    assert est.history_.lr[-1] == pytest.approx(0.05 / (4 * n + 1) ** 0.5, rel=1e-12)
    # other solvers ignore it, as scikit-learn's
    adam = small_reg(learning_rate="invscaling", max_iter=2, n_iter_no_change=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert adam.fit(X, y).history_.lr == [adam.learning_rate_init] * 2


def test_adaptive_divides_the_rate_by_5_after_a_plateau_then_stops(reg_data, capsys):
    X, y = reg_data
    # a rate so small that no epoch improves the loss by tol: a plateau from the start
    est = small_reg(
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=1e-5,
        tol=1.0,
        n_iter_no_change=2,
        max_iter=100,
        verbose=True,
    )
    est.fit(X, y)
    lr = est.history_.lr
    # the first epoch sets the best loss; n_iter_no_change + 1 = 3 epochs without improvement
    # lower the rate: 1e-5, then 2e-6, then 4e-7 <= 1e-6, which stops (scikit-learn 1.9 runs
    # these settings for the same 10 epochs, lowering after epochs 4 and 7)
    assert lr == pytest.approx([1e-5] * 4 + [2e-6] * 3 + [4e-7] * 3, rel=1e-12)
    assert est.n_iter_ == 10
    out = capsys.readouterr().out
    assert (
        "Training loss did not improve more than tol=1.000000 for 2 consecutive epochs. "
        "Setting learning rate to 0.000002" in out
    )
    assert "Learning rate too small. Stopping." in out


def test_verbose_says_why_training_stopped(reg_data, capsys):
    X, y = reg_data
    small_reg(learning_rate_init=1e-7, tol=1.0, n_iter_no_change=2, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert out.strip().endswith(
        "Training loss did not improve more than tol=1.000000 for 2 consecutive epochs. Stopping."
    )


def test_multi_output_loss_curve_is_scikit_learns_mean_over_outputs(reg_data):
    X, y = reg_data
    Y = np.stack([y, -y, 2 * y, y], axis=1)
    est = small_reg(max_iter=3, n_iter_no_change=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, Y)
    np.testing.assert_allclose(est.loss_curve_, np.array(est.history_.train_loss) / 4, rtol=1e-15)
    # the loss of the fitted weights, as scikit-learn's squared_loss: mean over all entries / 2
    est2 = small_reg(max_iter=1, n_iter_no_change=np.inf, learning_rate_init=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est2.fit(X, Y)
    assert est2.loss_ == pytest.approx(((est2.predict(X) - Y) ** 2).mean() / 2, rel=1e-3)


def test_adaptive_lowers_the_rate_across_partial_fit_calls(reg_data):
    """As scikit-learn's partial_fit: the plateau count runs on from call to call."""
    X, y = reg_data
    est = small_reg(
        solver="sgd", learning_rate="adaptive", learning_rate_init=1e-5, tol=1.0, n_iter_no_change=2
    )
    for _ in range(5):
        est.partial_fit(X, y)
    assert est.history_.lr == pytest.approx([1e-5] * 4 + [2e-6], rel=1e-12)
