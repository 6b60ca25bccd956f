"""Sweeps on a Dask cluster: a real LocalCluster of two worker processes runs scikit-learn's
GridSearchCV over the estimators and fb.lr_sweep's candidates, with the results of a run in
this process, and each worker's fastbp keeps to the one thread Dask gives it."""

import logging
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastbp as fb  # noqa: E402

pytestmark = [
    # Short fits are the point here; Dask's own sockets and ports are not under test.
    pytest.mark.filterwarnings("ignore:.*maximum iterations"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore:Port .* is already in use"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def worker_threads():
    import fastbp

    return os.environ.get("OMP_NUM_THREADS"), fastbp.get_num_threads()


def test_each_worker_runs_fastbp_on_the_thread_dask_gives_it(client):
    # The nanny sets OMP_NUM_THREADS=1 before it starts a worker (its pre-spawn-environ),
    # and fastbp's default is OpenMP's, so a worker's fastbp does not compete with its
    # neighbours for the CPUs.
    assert set(client.run(worker_threads).values()) == {("1", 1)}


def ran_on_the_workers(client, tasks):
    """Whether the recorded tasks (joblib sends its calls in batches of its choosing) ran on
    the cluster's workers."""
    workers = set(client.scheduler_info()["workers"])
    return bool(tasks.data) and {t["worker"] for t in tasks.data} <= workers


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(
        n_samples=240, n_features=6, n_informative=4, n_classes=3, flip_y=0.1, random_state=0
    )
    return X, y


def test_grid_search_under_the_dask_backend_finds_what_it_finds_here(client, problem):
    X, y = problem
    grid = {"hidden_layer_sizes": [(4,), (32,)], "learning_rate_init": [1e-3, 3e-2]}
    est = fb.MLPClassifier(max_iter=15, batch_size=16, random_state=0, dtype="float64")
    here = GridSearchCV(est, grid, cv=3).fit(X, y)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        there = GridSearchCV(est, grid, cv=3).fit(X, y)
    assert ran_on_the_workers(client, tasks)
    assert there.best_params_ == here.best_params_
    scores = here.cv_results_["mean_test_score"]
    assert len(set(np.round(scores, 6))) == 4  # no tie decides the best
    np.testing.assert_allclose(there.cv_results_["mean_test_score"], scores, rtol=1e-9)
    np.testing.assert_array_equal(there.predict(X), here.predict(X))


def test_lr_sweep_on_dask_equals_the_threaded_sweep(client, problem):
    X, y = problem
    sp = fb.split(X, y, val=0.25, test=0.0, stratify=True, seed=0)
    net = fb.MLP([6, 16, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=0)
    kwargs = dict(lrs=(1e-3, 1e-2, 1e-1, 1.0), epochs=10, patience=3, seed=4)
    threaded = fb.lr_sweep(net, *sp.train, sp.val, n_jobs=2, **kwargs)
    with distributed.get_task_stream(client) as tasks:
        remote = fb.lr_sweep(net, *sp.train, sp.val, backend="dask", **kwargs)
    assert ran_on_the_workers(client, tasks)
    assert remote.best_lr == threaded.best_lr
    for lr in kwargs["lrs"]:
        np.testing.assert_allclose(
            remote.histories[lr].val_loss, threaded.histories[lr].val_loss, rtol=1e-9
        )
    assert [r["epochs"] for r in remote.rows] == [r["epochs"] for r in threaded.rows]
