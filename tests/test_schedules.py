"""Learning-rate schedules: closed forms, a hand simulation, and torch.optim.lr_scheduler fed the
same metric sequences. (How the Trainer applies them: test_train.py.)"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastbp as fb


class FakeHistory:
    """The attributes a schedule reads from a History."""

    def __init__(self):
        self.val_loss, self.val_accuracy, self.train_loss, self.train_accuracy = [], [], [], []


def rates(schedule, base_lr, metrics=None, monitor="val_loss", epochs=None):
    """The rate of each epoch, as the Trainer asks for it: before the epoch, with the metric
    values of the epochs before it."""
    schedule.reset()
    history = FakeHistory()
    out = []
    for epoch in range(len(metrics) if metrics is not None else epochs):
        out.append(schedule.lr(epoch, base_lr, history))
        if metrics is not None:
            getattr(history, monitor).append(metrics[epoch])
    return out


def torch_rates(make_scheduler, base_lr, epochs, metrics=None):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(metrics[epoch]) if metrics is not None else sched.step()
    return out


def test_step_lr():
    got = rates(fb.StepLR(3, gamma=0.5), 0.4, epochs=10)
    assert got == [0.4 * 0.5 ** (e // 3) for e in range(10)]
    expected = torch_rates(lambda s, o: s.StepLR(o, step_size=3, gamma=0.5), 0.4, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_exponential_lr():
    got = rates(fb.ExponentialLR(0.8), 0.1, epochs=12)
    np.testing.assert_allclose(got, [0.1 * 0.8**e for e in range(12)], rtol=1e-14)
    expected = torch_rates(lambda s, o: s.ExponentialLR(o, gamma=0.8), 0.1, 12)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_cosine_annealing_lr():
    got = rates(fb.CosineAnnealingLR(8, eta_min=0.001), 0.1, epochs=12)
    closed = [0.001 + 0.099 * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(9)]
    np.testing.assert_allclose(got[:9], closed, rtol=1e-14)
    assert got[0] == 0.1 and got[4] == pytest.approx(0.0505, rel=1e-14)
    assert got[8:] == [pytest.approx(0.001, rel=1e-14)] * 4  # held at eta_min after T_max
    expected = torch_rates(lambda s, o: s.CosineAnnealingLR(o, T_max=8, eta_min=0.001), 0.1, 9)
    np.testing.assert_allclose(got[:9], expected, rtol=1e-12)


def test_reduce_lr_on_plateau_by_hand():
    # patience 2: the third epoch in a row that does not beat the best by more than min_delta
    # cuts the rate, from the next epoch on; cooldown 1 ignores the epoch after a cut.
    metrics = [1.0, 0.97, 0.99, 0.96, 0.99, 0.98, 0.97, 0.96, 0.90, 0.9, 0.9]
    sched = fb.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.05, cooldown=1)
    #                         e0   e1   e2   e3   e4   e5   e6   e7   e8    e9    e10
    assert rates(sched, 1.0, metrics) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    sched = fb.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.05, cooldown=0)
    assert rates(sched, 1.0, metrics) == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    sched = fb.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=0)
    assert rates(sched, 1.0, metrics) == [1.0] * 7 + [0.5] * 4  # 0.97 and 0.96 now count


def test_reduce_lr_on_plateau_min_lr_eps_and_accuracy():
    metrics = [0.5] * 12
    got = rates(
        fb.ReduceLROnPlateau("val_accuracy", factor=0.1, patience=0, min_lr=0.02),
        1.0,
        metrics,
        monitor="val_accuracy",
    )
    assert got == [1.0, 1.0, 0.1, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02]
    # a cut smaller than eps is skipped, as in torch; so is a "cut" up to a larger min_lr
    assert rates(fb.ReduceLROnPlateau(factor=0.5, patience=0), 1e-8, metrics) == [1e-8] * 12
    assert rates(fb.ReduceLROnPlateau(patience=0, min_lr=0.5), 0.1, metrics) == [0.1] * 12
    # rising accuracy is an improvement, rising loss is not
    rising = [0.1 * e for e in range(6)]
    assert (
        rates(fb.ReduceLROnPlateau("val_accuracy", patience=0), 1.0, rising, monitor="val_accuracy")
        == [1.0] * 6
    )
    assert rates(fb.ReduceLROnPlateau("val_loss", patience=0), 1.0, rising)[-1] < 1e-3


def test_reduce_lr_on_plateau_reset_and_repeated_calls():
    sched = fb.ReduceLROnPlateau(factor=0.5, patience=1)
    metrics = [1.0, 1.0, 1.0, 1.0, 1.0]
    first = rates(sched, 1.0, metrics)
    assert rates(sched, 1.0, metrics) == first  # reset() forgets the previous run
    history = FakeHistory()
    history.val_loss = metrics
    sched.reset()
    once = sched.lr(5, 1.0, history)
    assert sched.lr(5, 1.0, history) == once  # a metric value is consumed once
    assert once == first[-1] * 0.5


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(-3, 3), min_size=1, max_size=40),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    factor=st.sampled_from([0.1, 0.5, 0.9]),
    min_delta=st.sampled_from([0.0, 0.05, 0.25]),
    min_lr=st.sampled_from([0.0, 1e-3, 0.05]),
    accuracy=st.booleans(),
)
def test_reduce_lr_on_plateau_matches_torch(
    steps, patience, cooldown, factor, min_delta, min_lr, accuracy
):
    pytest.importorskip("torch")
    # a random walk with ties and small moves, so that min_delta matters
    metrics = list(np.cumsum(np.array(steps) * 0.1) + 5.0)
    monitor = "val_accuracy" if accuracy else "val_loss"
    sched = fb.ReduceLROnPlateau(
        monitor,
        factor=factor,
        patience=patience,
        min_delta=min_delta,
        cooldown=cooldown,
        min_lr=min_lr,
    )
    got = rates(sched, 0.1, metrics, monitor=monitor)
    expected = torch_rates(
        lambda s, o: s.ReduceLROnPlateau(
            o,
            mode="max" if accuracy else "min",
            factor=factor,
            patience=patience,
            threshold=min_delta,
            threshold_mode="abs",
            cooldown=cooldown,
            min_lr=min_lr,
        ),
        0.1,
        len(metrics),
        metrics,
    )
    assert got == expected


@pytest.mark.parametrize(
    "make, error, name",
    [
        (lambda: fb.StepLR(0), ValueError, "step_size"),
        (lambda: fb.StepLR(1.5), TypeError, "step_size"),
        (lambda: fb.StepLR(2, gamma=0), ValueError, "gamma"),
        (lambda: fb.ExponentialLR(-0.5), ValueError, "gamma"),
        (lambda: fb.ExponentialLR("0.5"), TypeError, "gamma"),
        (lambda: fb.CosineAnnealingLR(0), ValueError, "T_max"),
        (lambda: fb.CosineAnnealingLR(5, eta_min=-1e-3), ValueError, "eta_min"),
        (lambda: fb.ReduceLROnPlateau("accuracy"), ValueError, "monitor"),
        (lambda: fb.ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
        (lambda: fb.ReduceLROnPlateau(factor=0.0), ValueError, "factor"),
        (lambda: fb.ReduceLROnPlateau(patience=-1), ValueError, "patience"),
        (lambda: fb.ReduceLROnPlateau(min_delta=-0.1), ValueError, "min_delta"),
        (lambda: fb.ReduceLROnPlateau(cooldown=0.5), TypeError, "cooldown"),
        (lambda: fb.ReduceLROnPlateau(min_lr=-1.0), ValueError, "min_lr"),
        (lambda: fb.ReduceLROnPlateau(eps=float("inf")), ValueError, "eps"),
    ],
)
def test_schedules_reject_bad_arguments(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_a_rate_that_overflows_a_float_is_a_value_error():
    # ExponentialLR(2.0) at epoch 2000: 2.0 ** 2000 raised OverflowError in the middle of fit
    net = fb.MLP([2, 1], seed=0)
    trainer = fb.Trainer(net, fb.SGD(0.1), epochs=1, lr_schedule=fb.ExponentialLR(2.0))
    X, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match="learning rate at epoch 2000 overflows"):
        trainer.fit(X, y, initial_epoch=2000)


def test_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        fb.LRSchedule().lr(0, 0.1, FakeHistory())
