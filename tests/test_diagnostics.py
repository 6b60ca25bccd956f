"""fastbp.diagnostics.diagnose: verdicts on synthetic gradient profiles and on real runs."""

import json

import numpy as np
import pytest

from fastbp.diagnostics import (
    DEAD_SHARE,
    EXPLODING_RATIO,
    GRAD_SCALE_LIMIT,
    LOGIT_RMS_LIMIT,
    MAX_UPDATE_RATIO,
    SATURATION_SHARE,
    SIGNAL_GROWTH,
    VANISHING_RATIO,
    diagnose,
)
from fastbp.history import History


def make_history(grad_norms, activation="sigmoid", train_loss=None, output="softmax", **per_layer):
    """A History whose epochs carry the given (epochs, n_layers) statistics."""
    grad_norms = np.asarray(grad_norms, dtype=float)
    n_epochs, n_layers = grad_norms.shape
    h = History([activation] * (n_layers - 1) + [output])
    losses = np.linspace(1.4, 1.0, n_epochs) if train_loss is None else train_loss
    for e in range(n_epochs):
        stats = {"train_loss": losses[e], "grad_norms": grad_norms[e], "lr": 0.1}
        stats["update_ratios"] = np.full(n_layers, 1e-2)
        for key, values in per_layer.items():
            stats[key] = np.asarray(values, dtype=float)[e]
        h.record(stats)
    return h


def profile(per_layer_factor, n_layers=6, n_epochs=8, seed=0):
    """Gradient norms changing by ``per_layer_factor`` per layer towards the input, with noise."""
    rng = np.random.default_rng(seed)
    depth_from_output = np.arange(n_layers)[::-1]
    base = 0.5 * per_layer_factor**depth_from_output
    return base * rng.uniform(0.8, 1.25, size=(n_epochs, n_layers))


def test_healthy_profile_is_not_flagged():
    report = diagnose(make_history(profile(1.0), activation="relu"))
    assert report.healthy
    assert report.vanishing == report.exploding == report.dead == report.saturated == []
    assert report.remedies == []
    assert all(layer.verdict == "healthy" for layer in report.layers)
    assert "No gradient problems found." in str(report)


def test_vanishing_profile_is_flagged_in_its_first_layers():
    # Each layer towards the input gets 1/20 of the gradient of the next: layer l has
    # 20**-(5 - l) of the output layer's, below the 1e-2 threshold for l = 0..3.
    report = diagnose(make_history(profile(1 / 20, n_layers=6)))
    assert report.vanishing == [0, 1, 2, 3]
    assert report.exploding == []
    assert not report.healthy
    assert [layer.verdict for layer in report.layers[3:]] == ["vanishing", "healthy", "healthy"]
    np.testing.assert_allclose(report.layers[0].ratio, 20.0**-5, rtol=0.6)


def test_exploding_profile_is_flagged_in_its_first_layers():
    report = diagnose(make_history(profile(20.0, n_layers=6), activation="relu"))
    assert report.exploding == [0, 1, 2, 3]  # ratios 20**5 ... 20**2 > 1e2; layer 4: 20
    assert report.vanishing == []
    assert report.layers[0].peak_ratio > EXPLODING_RATIO


def test_one_epoch_of_exploding_gradients_is_enough():
    grad = profile(1.0)
    grad[4, 0] = 1e3 * grad[4, -1]
    report = diagnose(make_history(grad, activation="relu"))
    assert report.exploding == [0]
    assert report.layers[0].ratio < 2  # the early median alone would have missed it


def test_non_finite_gradient_norm_flags_its_layer():
    grad = profile(1.0)
    grad[2, 1] = np.inf
    grad[5, 3] = np.nan
    report = diagnose(make_history(grad, activation="relu"))
    assert report.exploding == [1, 3]
    assert not report.diverged


def test_gradients_infinite_from_the_start_are_exploding_not_missing():
    grad = profile(1.0)
    grad[:, 0] = np.inf
    report = diagnose(make_history(grad, activation="relu"))
    assert report.exploding == [0]
    assert np.isnan(report.layers[0].grad_norm)


def test_epochs_without_recorded_gradients_are_ignored():
    grad = profile(1.0)
    grad[3, :] = np.nan  # a whole row of NaN: nothing recorded that epoch
    assert diagnose(make_history(grad, activation="relu")).healthy


def test_non_finite_loss_flags_every_layer_as_exploding():
    loss = np.linspace(1.4, 1.0, 8)
    loss[-1] = np.nan
    report = diagnose(make_history(profile(1.0), activation="relu", train_loss=loss))
    assert report.diverged
    assert report.exploding == list(range(6))
    assert "diverged" in str(report)


def test_trainer_stop_on_non_finite_counts_as_diverged_even_without_epochs():
    h = make_history(profile(1.0), activation="relu")
    h.stop_reason = "non_finite"
    assert diagnose(h).exploding == list(range(6))
    empty = History(["relu", "softmax"])
    empty.stop_reason = "non_finite"
    report = diagnose(empty)
    assert report.exploding == [0, 1] and report.diverged
    assert "Clip gradients" in str(report)


def test_update_larger_than_the_weights_flags_exploding():
    updates = np.full((8, 6), 1e-2)
    updates[1, 2] = 3 * MAX_UPDATE_RATIO
    report = diagnose(make_history(profile(1.0), activation="relu", update_ratios=updates))
    assert report.exploding == [2]


def test_dead_relu_layer_is_flagged_but_never_the_output_layer():
    dead = np.zeros((8, 6))
    dead[:, 3] = 0.8
    dead[:, 5] = 0.9  # the output layer: ignored
    report = diagnose(make_history(profile(1.0), activation="relu", dead=dead))
    assert report.dead == [3]
    assert report.layers[3].verdict == "dead"
    assert any("leaky_relu" in r for r in report.remedies)


def test_saturation_is_judged_on_the_last_epochs():
    saturation = np.zeros((8, 6))
    saturation[-5:, 1] = 0.9  # saturated at the end
    saturation[:3, 2] = 0.9  # saturated only early on, recovered since
    report = diagnose(make_history(profile(1.0), saturation=saturation))
    assert report.saturated == [1]


def test_a_layer_keeps_every_flag_and_its_verdict_follows_precedence():
    grad = profile(1 / 20)
    saturation = np.full((8, 6), 0.95)
    grad[0, 0] = np.inf
    report = diagnose(make_history(grad, saturation=saturation))
    assert report.layers[0].flags == ("exploding", "vanishing", "saturated")
    assert report.layers[0].verdict == "exploding"
    assert report.layers[1].flags == ("vanishing", "saturated")
    assert report.layers[1].verdict == "vanishing"
    assert report.layers[4].verdict == "saturated"
    assert report.saturated == [0, 1, 2, 3, 4]  # not the output layer
    assert "exploding (+vanishing, saturated)" in str(report)


def test_vanishing_is_judged_on_the_first_epochs():
    grad = profile(1.0, n_epochs=20)
    grad[8:, 0] *= 1e-4  # the first layer's gradient collapses late, in 12 of 20 epochs
    report = diagnose(make_history(grad, activation="relu"))
    assert report.vanishing == []
    assert report.layers[0].final_ratio < 1e-3 < 0.5 < report.layers[0].ratio  # seen at the end
    np.testing.assert_allclose(
        report.layers[0].final_grad_norm, np.median(grad[-5:, 0]), rtol=1e-12
    )
    assert diagnose(make_history(grad, activation="relu"), window=20).vanishing == [0]


def test_thresholds_can_be_overridden_and_are_reported():
    # Ratios 0.027, 0.09, 0.3, 1 (times noise within [0.64, 1.56]).
    report = diagnose(make_history(profile(0.3, n_layers=4)), vanishing_ratio=0.15)
    assert report.vanishing == [0, 1]
    assert report.thresholds["vanishing_ratio"] == 0.15
    assert diagnose(make_history(profile(0.3, n_layers=4))).vanishing == []
    assert "vs output < 0.15" in str(report)


def test_default_thresholds_are_the_documented_constants():
    t = diagnose(make_history(profile(1.0))).thresholds
    assert t == {
        "vanishing_ratio": VANISHING_RATIO,
        "exploding_ratio": EXPLODING_RATIO,
        "max_update_ratio": MAX_UPDATE_RATIO,
        "saturation_share": SATURATION_SHARE,
        "dead_share": DEAD_SHARE,
        "signal_growth": SIGNAL_GROWTH,
        "logit_rms_limit": LOGIT_RMS_LIMIT,
        "grad_scale_limit": GRAD_SCALE_LIMIT,
    }
    assert (VANISHING_RATIO, EXPLODING_RATIO, MAX_UPDATE_RATIO) == (1e-2, 1e2, 10.0)
    assert (SIGNAL_GROWTH, LOGIT_RMS_LIMIT, GRAD_SCALE_LIMIT) == (1e2, 1e3, 1e3)


# --------------------------------------------------------------------------------------------
# Verdicts on scale: the forward signal, the logits, the gradients against the loss gradient.


def signal(per_layer_factor, n_layers=6, n_epochs=8, first=1.0, seed=0):
    """Pre-activation (mean, std) changing by ``per_layer_factor`` per layer, with noise."""
    rng = np.random.default_rng(seed)
    rms = first * per_layer_factor ** np.arange(n_layers) * rng.uniform(0.9, 1.1, (n_epochs, 1))
    return {"preactivation_mean": 0.6 * rms, "preactivation_std": 0.8 * rms}


def test_a_signal_growing_with_depth_is_flagged_where_it_passes_the_threshold():
    # x6 per layer: layer l's signal is 6**l times layer 0's, past 100 from layer 3 on
    report = diagnose(make_history(profile(1.0), activation="relu", **signal(6.0)))
    assert report.exploding_activations == [3, 4, 5]
    assert report.exploding == [] and report.vanishing_activations == []
    np.testing.assert_allclose(report.layers[3].signal_ratio, 216, rtol=0.25)
    np.testing.assert_allclose(report.layers[0].signal, 1.0, rtol=0.1)  # hypot(0.6, 0.8)
    assert report.layers[3].verdict == "exploding_activations"
    text = str(report)
    assert "exploding activations" in text and "Exploding activations: layers 3, 4, 5." in text
    assert "Initialise to the layer width" in text and "Clip gradients" in text
    assert "Standardize the inputs" in text


def test_a_signal_shrinking_with_depth_is_flagged():
    report = diagnose(make_history(profile(1.0), activation="relu", **signal(0.2)))
    assert report.vanishing_activations == [3, 4, 5]  # 0.2**3 = 8e-3 < 1e-2
    assert report.exploding_activations == []
    assert "Initialise to the layer width" in str(report)


def test_a_constant_signal_is_healthy_whatever_its_absolute_size_in_hidden_layers():
    # an identity output: only the growth with depth counts, not the size itself
    report = diagnose(
        make_history(profile(1.0), activation="relu", output="identity", **signal(1.0, first=1e4))
    )
    assert report.healthy, str(report)


def test_huge_logits_are_flagged_on_a_softmax_or_sigmoid_output_only():
    stats = signal(1.0)
    for key in stats:
        stats[key][:, -1] *= 2e3  # logits of RMS 2e3; the growth from layer 0 alone is 2e3 too
    report = diagnose(make_history(profile(1.0), activation="relu", **stats), signal_growth=1e4)
    assert report.exploding_activations == [5]
    sigmoid_out = make_history(profile(1.0), activation="relu", output="sigmoid", **stats)
    assert diagnose(sigmoid_out, signal_growth=1e4).exploding_activations == [5]
    regression = make_history(profile(1.0), activation="relu", output="identity", **stats)
    assert diagnose(regression, signal_growth=1e4).healthy


def test_gradients_far_beyond_what_the_loss_allows_are_exploding_even_at_ratio_one():
    # every layer's gradient 5e5, as the output layer's: no ratio shows it
    grad = profile(1.0) * 1e6
    report = diagnose(make_history(grad, activation="relu"))
    assert report.exploding == list(range(6))
    assert all(layer.ratio < 2 for layer in report.layers)
    np.testing.assert_allclose(report.layers[0].grad_scale, 5e5, rtol=0.3)


def test_for_mse_the_gradient_scale_is_relative_to_the_error():
    # gradients of 5e5 with a loss of 1e12 (errors of ~1.4e6): what the loss makes, not a blow-up
    grad = profile(1.0) * 1e6
    loss = np.full(8, 1e12)
    big_error = make_history(grad, activation="relu", output="identity", train_loss=loss)
    report = diagnose(big_error)
    assert report.exploding == [] and report.healthy
    np.testing.assert_allclose(report.layers[0].grad_scale, 5e5 / np.sqrt(2e12), rtol=0.3)
    small_error = make_history(grad, activation="relu", output="identity")  # loss ~1
    assert diagnose(small_error).exploding == list(range(6))


def test_records_without_forward_statistics_raise_no_forward_flags():
    report = diagnose(make_history(profile(1.0), activation="relu"))  # as a version 2 record
    assert report.healthy
    assert np.isnan(report.layers[2].signal) and np.isnan(report.layers[2].signal_ratio)


def test_brief_names_each_problem_and_its_layers():
    report = diagnose(make_history(profile(1 / 20, n_layers=6), **signal(6.0)))
    assert report.brief == ("exploding activations in layers 3-5; vanishing in layers 0-3")
    assert diagnose(make_history(profile(1.0), activation="relu")).brief == "healthy"


def test_report_text_has_one_row_per_layer_and_names_the_remedies():
    report = diagnose(make_history(profile(1 / 20, n_layers=6)))
    text = str(report)
    rows = [line for line in text.splitlines() if line.strip().split(" ")[0].isdigit()]
    assert len(rows) == 6
    assert rows[0].split()[:2] == ["0", "sigmoid"] and rows[0].endswith("vanishing")
    for remedy in ("ReLU-family", "he_normal", "momentum", "GradientNoise"):
        assert remedy in text
    assert "Vanishing: layers 0, 1, 2, 3." in text


def test_to_dict_is_plain_and_complete():
    report = diagnose(make_history(profile(1 / 20)))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["vanishing"] == [0, 1, 2, 3] and data["healthy"] is False
    assert len(data["layers"]) == 6 and data["layers"][0]["flags"] == ["vanishing"]
    assert data["layers"][0]["verdict"] == "vanishing"
    assert data["remedies"] == report.remedies


def test_bad_input_raises():
    with pytest.raises(ValueError, match="no epochs"):
        diagnose(History(["relu", "softmax"]))
    with pytest.raises(ValueError, match="window"):
        diagnose(make_history(profile(1.0)), window=0)
    unrecorded = History(["relu", "softmax"])
    unrecorded.record({"train_loss": 1.0})
    with pytest.raises(ValueError, match="grad_norms"):
        diagnose(unrecorded)
    for growth in (0, 0.5, 1):  # str(report) divided by 0; 0.5 flagged a layer both ways
        with pytest.raises(ValueError, match="signal_growth"):
            diagnose(make_history(profile(1.0)), signal_growth=growth)


# Real training runs on the demo data: the thresholds must separate these robustly.
# An 8-hidden-layer net of width 32; each run takes well under a second.

DEPTH8 = [20] + [32] * 8 + [4]


@pytest.fixture(scope="module")
def demo_split(fb):
    from fastbp.datasets import load_demo

    X, y = load_demo()
    return fb.split(X, y, stratify=True, seed=0)


def train(fb, demo_split, activation, init, lr, epochs, seed):
    net = fb.MLP(DEPTH8, activation=activation, init=init, loss="cross_entropy", seed=seed)
    trainer = fb.Trainer(
        net, fb.SGD(lr, momentum=0.9), epochs=epochs, batch_size=32, progress=False, seed=seed
    )
    return trainer.fit(*demo_split.train, validation=demo_split.val)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_sigmoid_network_has_vanishing_gradients(fb, demo_split, seed):
    report = diagnose(
        train(fb, demo_split, "sigmoid", "xavier_uniform", lr=0.1, epochs=5, seed=seed)
    )
    assert {0, 1, 2} <= set(report.vanishing)
    assert not {6, 7, 8} & set(report.vanishing)
    assert report.exploding == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_deep_relu_network_with_he_init_is_healthy(fb, demo_split, seed):
    # lr 0.02 with momentum 0.9: at lr 0.1 this network destabilises within ~10 epochs
    # (loss back to chance, units die, sometimes NaN), which diagnose rightly reports.
    history = train(fb, demo_split, "relu", "he_normal", lr=0.02, epochs=10, seed=seed)
    report = diagnose(history)
    assert report.healthy, str(report)
    assert history.train_loss[-1] < 0.6 * history.train_loss[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_network_with_large_init_explodes_and_saturates(fb, demo_split, seed):
    history = train(fb, demo_split, "tanh", ("normal", 3.0), lr=0.1, epochs=5, seed=seed)
    report = diagnose(history)
    assert {0, 1} <= set(report.exploding)
    assert not report.diverged
    assert report.saturated == list(range(8))


def test_relu_network_with_large_init_diverges(fb, demo_split):
    with pytest.warns(fb.NonFiniteWarning):
        history = train(fb, demo_split, "relu", ("normal", 1.0), lr=0.1, epochs=5, seed=0)
    report = diagnose(history)
    assert report.diverged
    assert report.exploding == list(range(9))


def blobs16(fb):
    """Issue 12's data: 16 standardized features, 2 classes."""
    X, y = fb.datasets.blobs(1000, n_features=16, n_classes=2, seed=0)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


@pytest.mark.parametrize("optimizer", ["adam", "tiny sgd"])
def test_relu_network_at_a_fixed_unit_scale_is_a_forward_explosion(fb, optimizer):
    # Issue 12: 16-64x8-2 ReLU with N(0, 1) weights has logits near 1e5 and gradients near 5e5
    # in every layer. Adam's bounded steps keep it finite; with SGD at 1e-6 the saturated
    # softmax zeroes most gradients, so only the forward statistics can tell.
    X, y = blobs16(fb)
    net = fb.MLP(
        [16] + [64] * 8 + [2], activation="relu", loss="cross_entropy", init=("normal", 1.0), seed=0
    )
    opt = fb.Adam(1e-3) if optimizer == "adam" else fb.SGD(1e-6)
    history = fb.Trainer(net, opt, epochs=5, progress=False, seed=0).fit(X, y)
    report = diagnose(history)
    assert not report.diverged
    assert report.layers[-1].signal > LOGIT_RMS_LIMIT  # the logits
    assert {4, 5, 6, 7, 8} <= set(report.exploding_activations)
    if optimizer == "adam":
        assert report.exploding == list(range(9))
        assert all(0.1 < layer.ratio < 10 for layer in report.layers)  # no ratio sees it
    text = str(report)
    assert "Initialise to the layer width" in text and "Clip gradients" in text


def standardized(X):
    return ((X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)).astype(np.float32)


def healthy_data(fb, name):
    if name == "demo":
        return fb.datasets.load_demo()
    if name == "spirals":
        return fb.datasets.spirals(1000, seed=0)
    if name == "digits":
        datasets = pytest.importorskip("sklearn.datasets")
        X, y = datasets.load_digits(return_X_y=True)
        return standardized(X), y
    rng = np.random.default_rng(0)  # generated: 100 Gaussian features, a linear boundary
    X = rng.standard_normal((1000, 100)).astype(np.float32)
    return X, (X @ rng.standard_normal(100) > 0).astype(np.int64)


@pytest.mark.parametrize("data", ["demo", "spirals", "digits", "gauss100"])
@pytest.mark.parametrize(
    "activation, init", [("relu", "he_normal"), ("tanh", "xavier_uniform"), ("elu", "lecun_normal")]
)
def test_healthy_networks_raise_no_alarm(fb, data, activation, init):
    # 8 hidden layers of 32, SGD with momentum, as in the calibration runs (see diagnose).
    X, y = healthy_data(fb, data)
    sp = fb.split(X, y, val=0.2, test=0.0, seed=0)
    net = fb.MLP(
        [X.shape[1]] + [32] * 8 + [int(y.max()) + 1],
        activation=activation,
        init=init,
        loss="cross_entropy",
        seed=0,
    )
    trainer = fb.Trainer(net, fb.SGD(0.01, momentum=0.9), epochs=6, progress=False, seed=0)
    history = trainer.fit(*sp.train, validation=sp.val)
    report = diagnose(history)
    assert report.healthy, str(report)
    assert all(0.01 < layer.signal_ratio < 100 for layer in report.layers)
