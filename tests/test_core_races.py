"""The core called directly (fastbp._core), with what another Python thread, a fork or a hostile
argument can do while it computes without the GIL: it never crashes, never reads out of bounds
and never leaves a network or an optimizer state half-changed."""

import os
import threading
import time

import numpy as np
import pytest

from fastbp import _core

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads


def epoch_setup(n=200_000, sizes=(8, 16, 4), kind="adam"):
    rng = np.random.default_rng(0)
    net = _core.Network32(list(sizes), ["relu"] * (len(sizes) - 2), "softmax", "cross_entropy")
    net.params[:] = (rng.standard_normal(net.n_params) * 0.1).astype(np.float32)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    Y = rng.integers(0, sizes[-1], n).astype(np.int32)
    opt = _core.OptimizerState32(net.n_params)
    config = _core.OptimConfig()
    config.kind = getattr(_core.Optim, kind)
    config.lr = 1e-3
    ec = _core.EpochConfig()
    ec.batch_size = 32
    return net, opt, config, X, Y, ec


def test_labels_written_by_another_thread_during_an_epoch_stay_in_range():
    # The labels were checked, then read in place without the GIL: another thread writing
    # 2**30 into them sent the loss's index far out of the network's buffers (a segfault).
    from isolated import describe, run_python

    done = run_python(
        """
        import threading, time, numpy as np
        from fastbp import _core
        import test_core_races as t
        net, opt, config, X, Y, ec = t.epoch_setup(400_000)
        before = np.array(net.params)
        def poison():  # once the epoch runs (its labels checked), not before
            while np.array_equal(net.params, before):
                time.sleep(0.001)
            Y[:] = 1 << 30
        threading.Thread(target=poison).start()
        stats = _core.train_epoch(net, opt, config, X, Y, np.empty(net.n_params, np.float32), ec)
        print("finite" if np.isfinite(stats["loss"]) else "not finite", flush=True)
    """,
        env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)},
    )
    assert done.returncode == 0 and done.stdout == "finite\n", describe(done)


def running_epoch(net, opt, config, X, Y, ec):
    """An epoch on another thread, returned once it has taken a step (the parameters moved)."""
    before = np.array(net.params)
    start = np.empty(net.n_params, np.float32)
    epoch = threading.Thread(
        target=_core.train_epoch, args=(net, opt, config, X, Y, start, ec), daemon=True
    )
    epoch.start()
    while np.array_equal(net.params, before) and epoch.is_alive():
        time.sleep(0.001)
    return epoch


def buffers(opt):
    return {k: v.copy() for k, v in opt.state_dict()["buffers"].items()}


def test_an_optimizer_state_is_read_and_replaced_between_epochs_only():
    # state_dict and load_state_dict wait for a running epoch: load_state_dict used to free the
    # buffers the epoch was updating (a use after free), state_dict to copy them half-stepped.
    net, opt, config, X, Y, ec = epoch_setup(3_000_000)  # an epoch of ~0.7 s
    _core.train_epoch(net, opt, config, X[:64], Y[:64], np.empty(net.n_params, np.float32), ec)
    saved = opt.state_dict()
    epoch = running_epoch(net, opt, config, X, Y, ec)
    assert epoch.is_alive()  # 93,750 steps: it runs for a while yet
    during = opt.state_dict()  # waits for the epoch's end
    epoch.join()
    after = buffers(opt)
    assert during["step"] == 2 + len(X) // ec.batch_size
    for name, values in during["buffers"].items():
        np.testing.assert_array_equal(values, after[name])  # the end's, not a moment's
    epoch = running_epoch(net, opt, config, X, Y, ec)
    assert epoch.is_alive()
    opt.load_state_dict(saved)  # after the epoch, whole
    epoch.join()
    assert opt.state_dict()["step"] == 2
    for name, values in saved["buffers"].items():
        np.testing.assert_array_equal(opt.state_dict()["buffers"][name], values)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork()")
def test_a_child_forked_during_an_epoch_computes_with_its_parameters():
    # The child of a fork in the middle of an epoch kept that epoch's packed weight copies (and
    # bfloat16 products), so its forward read the weights of the moment of the fork, whatever
    # parameters it set afterwards.
    from isolated import describe, run_python

    done = run_python("""
        import os, threading, time, numpy as np
        from fastbp import _core
        rng = np.random.default_rng(0)
        sizes = [512, 512, 512, 10]
        net = _core.Network32(sizes, ["relu", "relu"], "identity", "mse")
        net.params[:] = (rng.standard_normal(net.n_params) * 0.05).astype(np.float32)
        X = rng.standard_normal((20000, 512)).astype(np.float32)
        Y = rng.standard_normal((20000, 10)).astype(np.float32)
        opt = _core.OptimizerState32(net.n_params)
        config = _core.OptimConfig(); config.kind = _core.Optim.sgd; config.lr = 1e-3
        ec = _core.EpochConfig(); ec.batch_size = 256
        start = np.empty(net.n_params, np.float32)
        P = (rng.standard_normal(net.n_params) * 0.05).astype(np.float32)
        Xt = X[:300].copy()

        def reference():
            a, off = Xt.astype(np.float64), 0
            for l in range(3):
                i, o = sizes[l], sizes[l + 1]
                a = a @ P[off:off + i * o].reshape(i, o) + P[off + i * o:off + i * o + o]
                off += i * o + o
                a = np.maximum(a, 0) if l < 2 else a
            return a

        stop = False
        def train():
            while not stop:
                _core.train_epoch(net, opt, config, X, Y, start, ec)
        threading.Thread(target=train, daemon=True).start()
        time.sleep(0.5)
        pid = os.fork()
        if pid == 0:
            net.params[:] = P
            ref = reference()
            err = np.abs(net.forward(Xt) - ref).max() / np.abs(ref).max()
            os._exit(0 if err < 1e-4 else 1)
        _, status = os.waitpid(pid, 0)
        stop = True
        print("child", os.waitstatus_to_exitcode(status), flush=True)
    """)
    assert done.returncode == 0 and done.stdout == "child 0\n", describe(done)


def test_start_params_must_be_written_in_place():
    net, opt, config, X, Y, ec = epoch_setup(256)
    n = net.n_params
    for bad in (
        np.zeros(2 * n, np.float32)[::2],  # strided: pybind11 would have copied it
        np.zeros(n, np.float64),  # another dtype: converted, likewise
        np.zeros(n, ">f4"),  # float32 of the other byte order
        net.params,  # the parameters themselves: the update ratios would all be 0
    ):
        with pytest.raises(ValueError, match="start_params"):
            _core.train_epoch(net, opt, config, X, Y, bad, ec)
    readonly = np.zeros(n, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="start_params"):
        _core.train_epoch(net, opt, config, X, Y, readonly, ec)
    good = np.zeros(n, np.float32)
    before = np.array(net.params)
    _core.train_epoch(net, opt, config, X, Y, good, ec)
    np.testing.assert_array_equal(good, before)  # the epoch's start, written where asked


def test_step_counts_stay_far_from_overflow():
    net, opt, config, X, Y, ec = epoch_setup(64)  # 2 batches of 32
    start = np.empty(net.n_params, np.float32)
    top = _core.MAX_STEPS  # 2**62 - 1 (2**30 - 1 where a long has 32 bits)
    for step in (2**63 - 1, 2**62 + 2**32, top + 1):  # none wraps to an accepted value
        with pytest.raises(ValueError, match="state\\['step'\\] must be an int >= 0 and at most"):
            opt.load_state_dict({"step": step, "momentum_fresh": False, "buffers": {}})
    opt.load_state_dict({"step": top - 2, "momentum_fresh": False, "buffers": {}})
    _core.train_epoch(net, opt, config, X, Y, start, ec)  # Adam's bias corrections: no overflow
    assert np.isfinite(net.params).all() and opt.steps == top
    with pytest.raises(ValueError, match="would pass its limit"):
        _core.train_epoch(net, opt, config, X, Y, start, ec)
    again = _core.OptimizerState32(net.n_params)
    again.load_state_dict(opt.state_dict())  # what the core counted, it loads
    ec.noise_t = 2**63 - 1
    with pytest.raises(ValueError, match="noise_t"):
        _core.train_epoch(net, _core.OptimizerState32(net.n_params), config, X, Y, start, ec)


def test_sums_of_squares_do_not_depend_on_which_thread_finishes_first():
    # OpenMP's reduction added the threads' sums in the order they finished: with 3 or more
    # threads the last bits of a gradient norm changed from call to call.
    import fastbp as fb

    before = fb.get_num_threads()
    fb.set_num_threads(8)
    try:
        net = fb.MLP([600, 400, 1], dtype="float64", seed=0)
        X = np.random.default_rng(0).normal(size=(8, 600))
        net.backward(X, np.zeros((8, 1)))
        norms = {float(fb.clip_grad_norm(net, 1e300)) for _ in range(200)}
    finally:
        fb.set_num_threads(before)
    assert len(norms) == 1, norms
