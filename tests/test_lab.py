"""fastbp.lab: each classic result holds at the labs' reduced (quick) sizes; the registry, the
options, the report and the plots; and the `fastbp lab` command."""

import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp.cli import main
from fastbp.lab import Check, LabResult
from fastbp.lab._base import hidden_forward

NAMES = ["glorot2010", "he2015", "neelakantan2015", "pascanu2013", "smith2017"]


@pytest.fixture(scope="module")
def quick():
    """Every lab run once at its quick sizes (~20 s in all on 2 cores), shared by the tests."""
    return {name: fb.lab.run(name, quick=True) for name in NAMES}


# ---- the claims, at reduced sizes -------------------------------------------------------------
def test_glorot2010_top_sigmoid_layer_saturates_and_stays(quick):
    r = quick["glorot2010"]
    assert r.reproduced
    run = r.values["standard"][0]
    means = run["means"]  # (epochs + 1, depth): epoch 0 is before training
    assert abs(means[0, -1] - 0.5) < 0.05  # starts in the middle
    assert means[5, -1] < 0.05  # saturated within five epochs
    assert means[5, :-1].min() > 0.4  # the lower layers are not
    assert np.nanmax(run["train_accuracy"]) < 0.4  # and nothing is learnt meanwhile
    spread = r.values["tanh_std_at_init"]
    assert spread["standard"][-1] / spread["standard"][0] < 0.5
    assert spread["xavier"][-1] / spread["xavier"][0] > 0.5
    # the common belief that Xavier init prevents the saturation is tested but does not decide
    xavier = r.checks[-1]
    assert not xavier.decides and "not claimed by the paper" in xavier.claim


def test_he2015_signal_halves_per_layer_with_1_over_fan_in(quick):
    r = quick["he2015"]
    assert r.reproduced
    factor = r.values["per_layer_factor"]
    assert 0.4 < factor["1/fan_in"] < 0.6 and 0.85 < factor["2/fan_in"] < 1.15
    small = r.values["second_moments"]["1/fan_in"]
    assert small[-1] / small[0] < 1e-6  # ~2^-29 over 30 layers
    best = {k: [v["best_accuracy"] for v in runs.values()] for k, runs in r.values["runs"].items()}
    assert min(best["2/fan_in"]) >= 0.6 and max(best["1/fan_in"]) < 0.35


def test_neelakantan2015_noise_trains_what_plain_sgd_cannot(quick):
    r = quick["neelakantan2015"]
    assert r.reproduced
    assert r.values["trained"] == {"no noise": 0, "noise": 1}


def test_pascanu2013_clipping_prevents_divergence(quick):
    r = quick["pascanu2013"]
    assert r.reproduced
    diverged = r.values["diverged"]
    assert diverged["unclipped"] >= 2 and diverged["clip_norm=10"] == 0
    unclipped = r.values["runs"]["unclipped"]
    assert any(run["history"].stop_reason == "non_finite" for run in unclipped.values())


def test_smith2017_range_test_beats_the_default_rate(quick):
    r = quick["smith2017"]
    assert r.reproduced
    plain = r.values["summary"]["SGD"]
    assert plain["mean_epochs_range_test"] < plain["mean_epochs_default"]
    assert [c.decides for c in r.checks] == [True, False]


# ---- the pieces the labs stand on -------------------------------------------------------------
def test_hidden_forward_matches_the_core(rng):
    """The labs' float64 pass over the hidden layers, finished by hand with the output layer,
    gives the core's forward output."""
    X = rng.normal(size=(16, 5))
    for act in ("sigmoid", "tanh", "relu"):
        net = fb.MLP([5, 7, 6, 3], activation=act, loss="mse", dtype="float64", seed=1)
        pre, post = hidden_forward(net, X)
        assert [z.shape for z in pre] == [(16, 7), (16, 6)]
        out = post[-1] @ net.weights[-1] + net.biases[-1]
        np.testing.assert_allclose(out, net.forward(X), rtol=1e-12, atol=1e-12)


def test_same_seed_same_numbers():
    a = fb.lab.run("pascanu2013", quick=True, seed=3)
    b = fb.lab.run("pascanu2013", quick=True, seed=3)
    for arm in a.values["runs"]:
        for s in a.values["runs"][arm]:
            ha, hb = a.values["runs"][arm][s]["history"], b.values["runs"][arm][s]["history"]
            assert ha.train_loss == hb.train_loss
    assert list(a.values["runs"]["unclipped"]) == [3, 4, 5]  # seeds seed, seed + 1, ...


# ---- registry, options, report ----------------------------------------------------------------
def test_list_names_every_lab_with_one_line():
    labs = fb.lab.list()
    assert list(labs) == NAMES
    for text in labs.values():
        assert isinstance(text, str) and text and "\n" not in text and len(text) <= 100


def test_run_validates_name_and_options():
    with pytest.raises(ValueError, match="name must be one of"):
        fb.lab.run("hinton2006")
    with pytest.raises(TypeError, match="name"):
        fb.lab.run(2015)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['widht'\]"):
        fb.lab.run("he2015", widht=8)
    with pytest.raises(ValueError, match="epochs"):
        fb.lab.run("he2015", epochs=0)
    with pytest.raises(TypeError, match="depth"):
        fb.lab.run("he2015", depth=2.5)
    with pytest.raises(ValueError, match="depth must be >= 2"):
        fb.lab.run("glorot2010", depth=1)
    with pytest.raises(ValueError, match="lr"):
        fb.lab.run("pascanu2013", lr=-1.0)
    with pytest.raises(ValueError, match="seed"):
        fb.lab.run("smith2017", seed=-1)
    with pytest.raises(TypeError, match="quick"):
        fb.lab.run("smith2017", quick="yes")
    with pytest.raises(ValueError, match="target"):
        fb.lab.run("smith2017", target=1.5)


def test_report_states_claim_criteria_numbers_and_verdict(quick):
    for name, r in quick.items():
        text = str(r)
        assert text.startswith(f"{name}: {r.reference}")
        assert "Claim: " in text and "Setup: " in text
        for check in r.checks:
            assert check.criterion[:40] in " ".join(text.split())
        assert "Verdict: reproduced" in text
        assert repr(r).startswith(f"LabResult(name={name!r}, reproduced=True")


def test_a_failed_claim_is_said_plainly():
    checks = [
        Check("the effect appears", "x > 1", "x = 0.5", passed=False),
        Check("a side remark", "y > 1", "y = 2", passed=True, decides=False),
    ]
    r = LabResult("demo", "Someone (2020), A paper", "x grows", "tiny", "", checks, {}, {})
    assert not r.reproduced
    text = " ".join(str(r).split())
    assert "[NOT reproduced] the effect appears" in text
    assert "Verdict: not reproduced here: the effect appears (measured: x = 0.5)" in text
    assert "[reproduced, not part of the verdict] a side remark" in text


def test_plots_are_written_with_names_that_say_what_they_show(quick, tmp_path):
    pytest.importorskip("matplotlib")
    expected = {
        "glorot2010": "activation_mean_per_layer_by_epoch.png",
        "he2015": "preactivation_variance_per_layer.png",
        "neelakantan2015": "train_accuracy_noise_vs_none.png",
        "pascanu2013": "train_loss_clipped_vs_unclipped.png",
        "smith2017": "lr_range_test.png",
    }
    for name, r in quick.items():
        paths = r.save_plots(tmp_path / name)
        assert expected[name] in [p.name for p in paths]
        for p in paths:
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_plots_raise_import_error(quick, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install fastbp\\[plot\\]"):
        quick["smith2017"].save_plots(tmp_path / "none")
    assert not (tmp_path / "none").exists()


# ---- command line -----------------------------------------------------------------------------
def test_cli_lab_list(capsys):
    assert main(["lab", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out


def test_cli_lab_quick_run_prints_report_and_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lab"
    assert main(["lab", "pascanu2013", "--quick", "--seed", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Claim: " in text and "Verdict: reproduced" in text and "seeds 1, 2, 3" in text
    assert (out / "train_loss_clipped_vs_unclipped.png").exists()


def test_cli_lab_without_matplotlib_prints_only(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "lab"
    assert main(["lab", "smith2017", "--quick", "--out", str(out)]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not out.exists()


def test_cli_lab_needs_a_known_name(capsys):
    assert main(["lab"]) == 2
    assert main(["lab", "nope"]) == 2
    err = capsys.readouterr().err
    assert "name a lab" in err and "unknown lab 'nope'" in err and "smith2017" in err
