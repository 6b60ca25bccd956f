"""Thread count control, thread-count independence, concurrent networks, GIL release."""

import threading
import time

import numpy as np
import pytest
import reference as ref


def _net_and_data(fb, dtype, seed=0, sizes=(64, 256, 128, 10), n=512):
    rng = np.random.default_rng(seed)
    net = fb.MLP(list(sizes), activation="tanh", loss="cross_entropy", dtype=dtype, seed=seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n)
    return net, X, y


def test_set_get_num_threads_round_trip(fb, restore_threads):
    assert isinstance(restore_threads, int) and restore_threads >= 1
    single = fb.build_info()["openmp"] is None  # then there is one thread, whatever is asked
    for n in (1, 2, 3, 1):
        fb.set_num_threads(n)
        assert fb.get_num_threads() == (1 if single else n)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_results_independent_of_thread_count(fb, restore_threads, dtype):
    results = []
    for n in (1, 2):
        fb.set_num_threads(n)
        net, X, y = _net_and_data(fb, dtype)
        out = net.forward(X)
        loss = net.backward(X, y)
        results.append((out.copy(), loss, net.grads.copy(), net.grad_norms()))
    (o1, l1, g1, n1), (o2, l2, g2, n2) = results
    rtol, atol = (1e-12, 1e-15) if dtype == "float64" else (1e-5, 1e-7)
    np.testing.assert_allclose(o2, o1, rtol=rtol, atol=atol)
    assert l2 == pytest.approx(l1, rel=rtol)
    np.testing.assert_allclose(g2, g1, rtol=rtol, atol=atol * 10)
    np.testing.assert_allclose(n2, n1, rtol=rtol)
    # and the same thread count twice gives the same bits
    net, X, y = _net_and_data(fb, dtype)
    net.backward(X, y)
    assert net.grads.tobytes() == g2.tobytes()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_stats_independent_of_thread_count(fb, restore_threads, dtype):
    # 2500 rows: two chunks, each split by rows over a team, then by layers for the statistics
    stats = []
    for n in (1, 2, 2):
        fb.set_num_threads(n)
        net, X, _ = _net_and_data(fb, dtype, sizes=(32, 64, 64, 64, 10), n=2500)
        stats.append(net.layer_stats(X))
    one, two, again = stats
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=rtol, atol=1e-6, err_msg=key)
        np.testing.assert_array_equal(again[key], two[key], err_msg=key)  # the same bits


def test_optimizer_step_independent_of_thread_count(fb, restore_threads):
    finals = []
    for n in (1, 2):
        fb.set_num_threads(n)
        net, X, y = _net_and_data(fb, "float64", sizes=(16, 64, 4), n=128)
        opt = fb.Adam(lr=0.01)
        for _ in range(5):
            net.backward(X, y)
            fb.clip_grad_norm(net, 0.5)
            opt.step(net)
        finals.append(net.params.copy())
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-10, atol=1e-13)


def _train_steps(fb, net, X, y, steps):
    opt = fb.SGD(lr=0.05, momentum=0.9)
    losses = []
    for t in range(steps):
        sl = slice((t * 64) % X.shape[0], (t * 64) % X.shape[0] + 64)
        losses.append(net.backward(X[sl], y[sl]))
        opt.step(net)
    return losses, net.forward(X), net.params.copy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_networks_in_two_python_threads(fb, dtype):
    steps = 15
    nets = [_net_and_data(fb, dtype, seed=s, sizes=(32, 128, 64, 5), n=256) for s in (1, 2)]
    sequential = [_train_steps(fb, net.copy(), X, y, steps) for net, X, y in nets]

    results = [None, None]
    errors = []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            net, X, y = nets[i]
            barrier.wait()
            results[i] = _train_steps(fb, net.copy(), X, y, steps)
        except BaseException as e:  # pragma: no cover - surfaced below
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for i in range(2):
            losses, out, params = results[i]
            s_losses, s_out, s_params = sequential[i]
            rtol = 1e-12 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(losses, s_losses, rtol=rtol)
            np.testing.assert_allclose(out, s_out, rtol=rtol, atol=1e-7)
            np.testing.assert_allclose(params, s_params, rtol=rtol, atol=1e-7)


def test_concurrent_forward_matches_reference(fb):
    """Many threads, each with its own small float64 network, checked against the reference."""
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(6):
        sizes = [5, 7 + i, 3]
        Ws, bs = ref.random_params(sizes, rng)
        X = rng.normal(size=(50, 5))
        net = fb.MLP(sizes, activation="gelu", loss="mse", dtype="float64", seed=i)
        ref.load_params(net, Ws, bs)
        jobs.append((net, X, ref.mlp_output(X, Ws, bs, "gelu", "identity")))
    errors = []

    def work(net, X, expected):
        try:
            for _ in range(30):
                np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-14)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]


def test_gil_released_during_backward(fb, restore_threads):
    """While a long backward runs in a worker thread, the main thread keeps executing Python.

    If the GIL were held for the whole call the main thread could not run a single bytecode
    between the call's start and end. Robust to slow machines: the batch grows until one call
    takes >= 0.3 s, and the assertion only asks for a loose share of the call's duration.
    """
    fb.set_num_threads(1)  # leave a core for the main thread
    rng = np.random.default_rng(0)
    net = fb.MLP([64, 512, 512, 10], activation="tanh", loss="cross_entropy", seed=0)
    n = 256
    while True:
        X = rng.normal(size=(n, 64)).astype(np.float32)
        y = rng.integers(0, 10, size=n)
        t0 = time.perf_counter()
        net.backward(X, y)
        dt = time.perf_counter() - t0
        if dt >= 0.3 or n >= 1 << 17:
            break
        n *= 2
    window = {}

    def work():
        window["start"] = time.perf_counter()
        net.backward(X, y)
        window["end"] = time.perf_counter()

    # the main thread spins; it keeps every 64th time stamp and every stall longer than 2 ms
    stamps, stalls = [], []
    count = 0
    worker = threading.Thread(target=work)
    prev = time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        if now - prev > 0.002:
            stalls.append((prev, now))
        prev = now
        count += 1
        if count % 64 == 0:
            stamps.append(now)
    worker.join()
    start, end = window["start"], window["end"]
    duration = end - start
    inside = 64 * sum(1 for s in stamps if start < s < end)
    # (one 5 ms switch interval is ~10^4 iterations; a call holding the GIL allows ~that)
    assert inside > 50000, f"main thread ran ~{inside} iterations during a {duration:.3f} s call"
    # the longest stall of the main thread inside the call is a small part of it
    worst = max([min(b, end) - max(a, start) for a, b in stalls] + [0.0])
    assert worst < 0.5 * duration, f"main thread stalled {worst:.3f} s of {duration:.3f} s"


def test_build_info(fb):
    info = fb.build_info()
    assert isinstance(info, dict)
    for key in ("compiler", "openmp", "blas", "blas_core", "simd", "cuda", "version"):
        assert key in info, key
    assert info["cuda"] is False or isinstance(info["cuda"], dict)  # test_cuda.py checks it
    assert isinstance(info["version"], str) and info["version"]
    if hasattr(fb, "__version__"):
        assert info["version"] == fb.__version__


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_team_buffers_start_on_a_cache_line(fb, dtype):
    # A team splits the parameters and gradients into parts whose sizes are whole cache lines
    # when the layers' are; that keeps two threads from writing one line only if the buffers
    # start on one (common.hpp, LineVector). glibc's own alignment is 16 bytes: a large block
    # starts 16 bytes into a page, a small one on any 16.
    for sizes in ([3, 5, 2], [64, 64, 10], [10, 30, 30, 1], [784, 256, 128, 10]):
        net = fb.MLP(sizes, dtype=dtype)
        assert net.core.params.ctypes.data % 64 == 0, sizes
        assert net.core.grads.ctypes.data % 64 == 0, sizes


def test_gradient_noise_independent_of_thread_count(fb, restore_threads):
    """Counter-based streams: the same seed gives the same noise at any thread count."""
    out = []
    for n in (1, 2):
        fb.set_num_threads(n)
        net = fb.MLP([300, 200, 50], dtype="float32", seed=0)
        net.grads[...] = 0.0
        noise = fb.GradientNoise(eta=0.1, seed=11)
        noise.apply(net)
        noise.apply(net)
        out.append(net.grads.copy())
    assert out[0].tobytes() == out[1].tobytes()


# The epoch loop runs one team of threads for the whole epoch: each thread takes a slice of
# every batch's rows, then a part of every layer's gradient, and clips, perturbs and updates
# that part itself. It must give what the per-batch calls give on one thread.
TEAM_SIZES = (16, 128, 96, 3)  # 3 * 64 rows * (16*128 + 128*96 + 96*3) MACs: above the team cut


def _team_epochs(fb, monkeypatch, threads, make_opt, epochs=3, **fit):
    import fastbp.train

    used = []
    real = fastbp.train._core.train_epoch

    def recording(*args):
        stats = real(*args)
        used.append(stats["threads"])
        return stats

    fb.set_num_threads(threads)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, TEAM_SIZES[0]))  # 64-row batches, the last of 44
    Y = np.tanh(X[:, :3] @ rng.normal(size=(3, 3)))
    net = fb.MLP(list(TEAM_SIZES), activation="tanh", dtype="float64", seed=5)
    start = net.copy()
    with monkeypatch.context() as patch:
        patch.setattr(fastbp.train._core, "train_epoch", recording)
        fit = {"shuffle": True, **fit}
        history = fb.Trainer(
            net, make_opt(), batch_size=64, epochs=epochs, seed=1, progress=False, **fit
        ).fit(X, Y)
    return start, net, history, used, X, Y


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda fb: fb.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda fb: fb.Adam(0.01),
        lambda fb: fb.AdamW(0.01, weight_decay=0.1),
        lambda fb: fb.RMSProp(0.005, momentum=0.5, centered=True),
        lambda fb: fb.AdaGrad(0.05),
    ],
)
@pytest.mark.parametrize("fit", [{}, dict(clip_norm=0.5, clip_value=0.02)])
def test_team_epoch_equals_one_thread(fb, openmp, restore_threads, monkeypatch, make_opt, fit):
    one = _team_epochs(fb, monkeypatch, 1, lambda: make_opt(fb), **fit)
    two = _team_epochs(fb, monkeypatch, 2, lambda: make_opt(fb), **fit)
    assert one[3] == [1, 1, 1] and two[3] == [2, 2, 2]  # the team really ran
    np.testing.assert_allclose(two[1].params, one[1].params, rtol=1e-11, atol=1e-14)
    for key in ("train_loss", "grad_norms", "grad_norms_max", "update_ratios"):
        np.testing.assert_allclose(getattr(two[2], key), getattr(one[2], key), rtol=1e-11)
    assert np.abs(two[1].params - two[0].params).max() > 1e-3  # it did train


def test_team_epoch_with_noise_equals_the_manual_sequence(fb, openmp, restore_threads, monkeypatch):
    noise = fb.GradientNoise(eta=0.05, seed=9)
    start, net, history, used, X, Y = _team_epochs(
        fb,
        monkeypatch,
        2,
        lambda: fb.SGD(0.05, momentum=0.9),
        epochs=2,
        grad_noise=noise,
        shuffle=False,
        clip_norm=1.0,
    )
    assert used == [2, 2] and noise.t == 10
    fb.set_num_threads(1)
    manual, opt, manual_noise = (
        start.copy(),
        fb.SGD(0.05, momentum=0.9),
        fb.GradientNoise(eta=0.05, seed=9),
    )
    for _ in range(2):
        for i in range(0, 300, 64):
            manual.backward(X[i : i + 64], Y[i : i + 64])
            fb.clip_grad_norm(manual, 1.0)
            manual_noise.apply(manual)
            opt.step(manual)
    np.testing.assert_allclose(net.params, manual.params, rtol=1e-11, atol=1e-14)


def test_team_epoch_stops_before_a_non_finite_step(fb, openmp, restore_threads, monkeypatch):
    # a learning rate far too large: the team must stop together and keep finite weights
    with pytest.warns(fb.NonFiniteWarning):
        start, net, history, used, X, Y = _team_epochs(
            fb, monkeypatch, 2, lambda: fb.SGD(50.0, momentum=0.9), epochs=50
        )
    assert set(used) == {2} and history.stop_reason == "non_finite"
    assert np.isfinite(net.params).all()


def test_batch_parallel_backward_with_fewer_threads_than_asked():
    # OpenMP may start fewer threads than requested (OMP_THREAD_LIMIT, OMP_DYNAMIC): the rows
    # must then be split over the team it started, or some rows are never computed.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np, fastbp as fb
        fb.set_num_threads(2)
        rng = np.random.default_rng(0)
        net = fb.MLP([4, 8, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=0)
        X = rng.normal(size=(64, 4)); y = rng.integers(0, 3, 64)
        print(net.backward(X, y) - net.compute_loss(X, y))
        # the epoch loop's team, too: one thread must then do every batch alone
        net = fb.MLP([16, 128, 96, 3], activation="tanh", dtype="float64", seed=5)
        X = rng.normal(size=(300, 16)); Y = np.tanh(X[:, :3])
        ref = net.copy()
        h = fb.Trainer(net, fb.Adam(0.01), batch_size=64, epochs=2, shuffle=False,
                       progress=False).fit(X, Y)
        opt = fb.Adam(0.01)
        for _ in range(2):
            for i in range(0, 300, 64):
                ref.backward(X[i:i + 64], Y[i:i + 64]); opt.step(ref)
        print(np.abs(net.params - ref.params).max())
    """)
    import os

    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split()
    assert abs(float(first)) < 1e-12
    assert float(second) < 1e-12


def test_import_leaves_the_environment_as_it_was():
    # the sleeping-threads policy is set only while the core's OpenMP runtime starts
    import subprocess
    import sys

    code = "import os, fastbp; print('OMP_WAIT_POLICY' in os.environ)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# A process that runs fastbp among others (a Dask worker, a joblib worker, a program that
# limits its libraries with threadpoolctl) sets its share of the CPUs through OpenMP: fastbp's
# default thread count is OpenMP's, so it must follow both ways of setting it. Run in fresh
# interpreters: once fb.set_num_threads(n) has been called, n holds instead.
THREAD_PROBE = """
import json, os
import numpy as np
import fastbp as fb
import fastbp.train

teams = []
real = fastbp.train._core.train_epoch

def recording(*args):
    stats = real(*args)
    teams.append(stats["threads"])
    return stats

fastbp.train._core.train_epoch = recording

def epoch_team():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 16))
    net = fb.MLP([16, 128, 96, 3], activation="tanh", dtype="float64", seed=0)
    fb.Trainer(net, fb.SGD(0.01), batch_size=64, epochs=1, progress=False).fit(X, X[:, :3])
    return teams[-1]

out = {"default": [fb.get_num_threads(), epoch_team()]}
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    pass
else:
    with threadpool_limits(1):
        out["limited"] = [fb.get_num_threads(), epoch_team()]
    out["after"] = [fb.get_num_threads(), epoch_team()]
print(json.dumps(out))
"""


def _probe_threads(**env):
    import json
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
    done = subprocess.run(
        [sys.executable, "-c", THREAD_PROBE],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_default_thread_count_follows_omp_num_threads():
    assert _probe_threads(OMP_NUM_THREADS="1")["default"] == [1, 1]
    assert _probe_threads(OMP_NUM_THREADS="2")["default"] == [2, 2]  # even on one CPU


def test_the_default_thread_count_follows_threadpoolctl():
    pytest.importorskip("threadpoolctl")
    out = _probe_threads()
    assert out["limited"] == [1, 1]  # the team of an epoch, not only the reported number
    assert out["after"] == out["default"]


# --- the team's bound -----------------------------------------------------------------------
# Every thread of a team calls BLAS at once, and OpenBLAS aborts the process when more threads
# call it at once than it has buffers for: 4000 threads printed "too many memory regions"
# hundreds of times, then crashed.


def test_set_num_threads_beyond_the_bound_is_clamped(fb, openmp, restore_threads):
    bound = fb.build_info()["max_threads"]
    assert 1 <= bound <= 64
    with pytest.warns(RuntimeWarning, match=f"at most {bound} threads"):
        fb.set_num_threads(bound + 1)
    assert fb.get_num_threads() == bound
    fb.set_num_threads(bound)  # the bound itself is granted without a word
    assert fb.get_num_threads() == bound


def test_thousands_of_threads_train_instead_of_crashing(openmp):
    from isolated import describe, run_python

    done = run_python("""
        import warnings
        import numpy as np, fastbp as fb
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40000, 64)).astype(np.float32); y = rng.integers(0, 10, 40000)
        net = fb.MLP([64, 128, 10], loss="cross_entropy", seed=0)
        fb.set_num_threads(1)
        one = net.backward(X, y)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fb.set_num_threads(4000)
        print(abs(net.backward(X, y) - one) / one, len(caught), fb.get_num_threads())
    """)
    assert done.returncode == 0, describe(done)
    assert "memory regions" not in done.stdout + done.stderr
    relative, warned, threads = done.stdout.split()
    assert float(relative) < 1e-5
    assert int(warned) == 1 and 1 < int(threads) <= 64


def test_the_openmp_default_is_clamped_too(openmp):
    from isolated import describe, run_python

    env = dict(__import__("os").environ, OMP_NUM_THREADS="4000")
    done = run_python(
        """
        import numpy as np, fastbp as fb
        rng = np.random.default_rng(0)
        X = rng.normal(size=(40000, 64)).astype(np.float32); y = rng.integers(0, 10, 40000)
        net = fb.MLP([64, 128, 10], loss="cross_entropy", seed=0)
        print(net.backward(X, y), fb.get_num_threads())
        """,
        env=env,
    )
    assert done.returncode == 0, describe(done)
    loss, threads = done.stdout.split()
    assert np.isfinite(float(loss)) and 1 < int(threads) <= 64


# --- fork -----------------------------------------------------------------------------------
# libgomp's thread pool does not survive fork(): once the parent had trained with a team, a
# forked child hung forever in its first parallel region. A child now runs on one thread.

needs_fork = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork()")

_FORK_SETUP = """
    import os, warnings
    import numpy as np, fastbp as fb
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 64)).astype(np.float32); y = rng.integers(0, 10, 2048)

    def train(threads=None):
        if threads is not None:
            fb.set_num_threads(threads)
        net = fb.MLP([64, 256, 256, 10], loss="cross_entropy", seed=0)
        fb.Trainer(net, fb.SGD(0.05, momentum=0.9), batch_size=256, epochs=2, seed=0,
                   progress=False).fit(X, y)
        return net.params.copy()

    one = train(1)  # what a one-thread team computes
    team = train(2)  # the parent starts OpenMP's pool
"""


@needs_fork
def test_a_forked_child_trains_on_one_thread_and_the_parent_is_unaffected(openmp):
    from isolated import describe, run_python

    done = run_python(
        _FORK_SETUP
        + """
    pid = os.fork()
    if pid == 0:
        try:
            same = np.array_equal(train(), one)  # hung here: the parent's pool is gone
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fb.set_num_threads(2)
            ok = fb.get_num_threads() == 1 and len(caught) == 1 and "fork" in str(caught[0].message)
            os._exit(0 if same and ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), fb.get_num_threads(), np.array_equal(train(), team))
    """,
        timeout=60,
    )
    assert done.returncode == 0, describe(done)
    assert done.stdout.split() == ["0", "2", "True"], describe(done)


@needs_fork
@pytest.mark.parametrize("how", ["multiprocessing", "joblib"])
def test_fork_based_worker_pools_train(openmp, how):
    from isolated import describe, run_python

    if how == "joblib":
        pytest.importorskip("joblib")
        pool = """
    from joblib import Parallel, delayed
    results = Parallel(n_jobs=2, backend="multiprocessing")(delayed(work)(i) for i in range(2))
    """
    else:
        pool = """
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(2) as p:
        results = p.map(work, range(2))
    """
    done = run_python(
        _FORK_SETUP
        + """
    def work(i):
        return fb.get_num_threads(), np.array_equal(train(), one)
    """
        + pool
        + """
    print(results == [(1, True), (1, True)], np.array_equal(train(), team))
    """,
        timeout=60,
    )
    assert done.returncode == 0, describe(done)
    assert done.stdout.split() == ["True", "True"], describe(done)


@needs_fork
def test_a_child_forked_while_a_thread_trains_can_use_that_network(openmp):
    # The training thread holds the network's lock at the fork; it does not exist in the child.
    from isolated import describe, run_python

    done = run_python(
        _FORK_SETUP
        + """
    import threading, time
    net = fb.MLP([64, 256, 256, 10], loss="cross_entropy", seed=0)
    started = threading.Event()
    trainer = fb.Trainer(net, fb.SGD(0.05), batch_size=64, epochs=6, progress=False,
                         callbacks=[lambda epoch, logs: started.set()])
    worker = threading.Thread(target=trainer.fit, args=(X, y))
    worker.start()
    started.wait(60)
    time.sleep(0.05)  # inside an epoch, the lock held
    pid = os.fork()
    if pid == 0:
        try:
            out = net.forward(X[:8])
            os._exit(0 if out.shape == (8, 10) and np.isfinite(out).all() else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    worker.join()
    print(os.waitstatus_to_exitcode(status))
    """,
        timeout=60,
    )
    assert done.returncode == 0, describe(done)
    assert done.stdout.split() == ["0"], describe(done)
