"""fastbp.history.History: recording, shapes, best epoch, dict and JSON round trips."""

import json
import math
import os

import numpy as np
import pytest

from fastbp.history import HIST_BINS, History

ACTIVATIONS = ["relu", "relu", "softmax"]
PER_LAYER = (
    "grad_norms",
    "grad_norms_max",
    "update_ratios",
    "saturation",
    "dead",
    "preactivation_mean",
    "preactivation_std",
    "activation_mean",
    "activation_std",
)


def epoch_stats(i, val=True):
    stats = {
        "train_loss": 1.0 / (i + 1),
        "lr": 0.1,
        "time": 0.01,
        "grad_norms": [1.0 + i, 2.0, 3.0],
        "grad_norms_max": [2.0, 4.0, 6.0],
        "update_ratios": [1e-3, 2e-3, 3e-3],
        "saturation": [np.nan, np.nan, np.nan],
        "dead": [0.0, 0.25, np.nan],
        "preactivation_mean": [0.1 * i, -0.2, 0.3],
        "preactivation_std": [1.0, 2.0 + i, 3.0],
        "activation_mean": [0.5, 0.6, 0.25],
        "activation_std": [0.7, 0.8 + i, 0.4],
        "activation_hist": np.full((3, HIST_BINS), 1 / HIST_BINS),
        "train_accuracy": 0.5,
    }
    if val:
        stats["val_loss"] = [0.9, 0.5, 0.7][i % 3]
        stats["val_accuracy"] = 0.4
    return stats


def filled(n=3, val=True):
    h = History(ACTIVATIONS)
    for i in range(n):
        h.record(epoch_stats(i, val))
    return h


def test_empty_history_has_zero_rows_of_the_right_width():
    h = History(ACTIVATIONS)
    assert len(h) == 0 and h.n_epochs == 0 and h.n_layers == 3
    for name in PER_LAYER:
        assert getattr(h, name).shape == (0, 3)
    assert h.activation_hist.shape == (0, 3, HIST_BINS)
    assert h.train_loss == [] and h.val_loss == []
    assert h.best_epoch is None and h.stopped_epoch is None and h.stop_reason is None


def test_record_appends_one_row_per_epoch():
    h = filled(4)
    assert len(h) == 4
    assert h.grad_norms.shape == (4, 3) and h.grad_norms.dtype == np.float64
    np.testing.assert_array_equal(h.grad_norms[:, 0], [1, 2, 3, 4])
    assert h.train_loss == [1.0, 0.5, 1 / 3, 0.25]
    assert h.lr == [0.1] * 4 and h.epoch_time == [0.01] * 4
    assert np.isnan(h.saturation).all() and h.dead[2, 1] == 0.25


def test_forward_statistics_are_recorded_per_layer_and_bin():
    h = filled(3)
    assert h.activation_std.shape == h.preactivation_mean.shape == (3, 3)
    np.testing.assert_array_equal(h.activation_std[:, 1], [0.8, 1.8, 2.8])
    np.testing.assert_array_equal(h.preactivation_mean[:, 0], [0.0, 0.1, 0.2])
    assert h.activation_hist.shape == (3, 3, HIST_BINS)
    np.testing.assert_allclose(h.activation_hist.sum(axis=2), 1.0)
    unrecorded = History(ACTIVATIONS)
    unrecorded.record({"train_loss": 1.0})
    assert np.isnan(unrecorded.activation_hist).all() and unrecorded.activation_hist.shape[2] == 20


def test_a_histogram_of_the_wrong_shape_is_refused():
    h = History(ACTIVATIONS)
    for bad in (
        np.zeros((3, HIST_BINS - 1)),
        np.zeros((2, HIST_BINS)),
        [[0.0] * HIST_BINS] * 3 + [[]],
    ):
        with pytest.raises(ValueError, match="activation_hist"):
            h.record({"train_loss": 1.0, "activation_hist": bad})
    assert len(h) == 0


def test_version_2_records_load_with_nan_forward_statistics():
    """Version 2 had no forward statistics; its files still load, and extend newer ones."""
    data = filled(2).to_dict()
    data["version"] = 2
    forward = ("preactivation_mean", "preactivation_std", "activation_mean", "activation_std")
    for key in (*forward, "activation_hist"):
        del data[key]
    old = History.from_json(json.dumps(data))
    np.testing.assert_array_equal(old.grad_norms, filled(2).grad_norms)
    for key in forward:
        assert getattr(old, key).shape == (2, 3) and np.isnan(getattr(old, key)).all()
    assert old.activation_hist.shape == (2, 3, HIST_BINS) and np.isnan(old.activation_hist).all()
    old.extend(filled(1))
    np.testing.assert_array_equal(old.activation_std[2], filled(1).activation_std[0])
    assert np.isnan(old.activation_std[:2]).all()


def test_missing_optional_stats_are_nan_or_empty():
    h = History(["tanh", "identity"])
    h.record({"train_loss": 2.0})
    assert h.val_loss == [] and h.train_accuracy == [] and h.val_accuracy == []
    assert math.isnan(h.lr[0]) and math.isnan(h.epoch_time[0])
    assert h.grad_norms.shape == (1, 2) and np.isnan(h.grad_norms).all()


def test_optional_series_stay_aligned_with_epochs():
    h = History(["identity"])
    h.record({"train_loss": 1.0})
    h.record({"train_loss": 1.0, "val_loss": 0.5})
    h.record({"train_loss": 1.0, "val_loss": None})
    assert len(h.val_loss) == 3
    assert math.isnan(h.val_loss[0]) and h.val_loss[1] == 0.5 and math.isnan(h.val_loss[2])


def test_best_epoch_is_lowest_validation_loss_else_training_loss():
    assert filled(3).best_epoch == 1  # val losses 0.9, 0.5, 0.7
    assert filled(3, val=False).best_epoch == 2  # train losses fall every epoch
    h = History(["identity"])
    h.record({"train_loss": float("nan")})
    assert h.best_epoch is None


def test_best_epoch_can_be_set_and_reset():
    h = filled(3)
    h.best_epoch = 0
    assert h.best_epoch == 0
    h.best_epoch = None
    assert h.best_epoch == 1


def test_record_rejects_bad_stats():
    h = History(ACTIVATIONS)
    with pytest.raises(ValueError, match="unknown keys \\['gradnorms'\\]"):
        h.record({"train_loss": 1.0, "gradnorms": [1, 2, 3]})
    with pytest.raises(ValueError, match="train_loss"):
        h.record({"lr": 0.1})
    with pytest.raises(ValueError, match=r"grad_norms must have shape \(3,\)"):
        h.record({"train_loss": 1.0, "grad_norms": [1.0, 2.0]})
    for not_a_dict in (["train_loss"], 1.0, "train_loss", None):
        with pytest.raises(TypeError, match="stats must be a dict"):
            h.record(not_a_dict)
    assert len(h) == 0  # a rejected epoch leaves nothing behind


def test_constructor_rejects_bad_activations():
    with pytest.raises(TypeError, match="layer_activations"):
        History("relu")
    with pytest.raises(ValueError, match="layer_activations"):
        History([])


def assert_same(a, b):
    assert a.layer_activations == b.layer_activations and a.n_layers == b.n_layers
    for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "epoch_time"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))  # NaN == NaN here
    for name in (*PER_LAYER, "activation_hist"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.best_epoch, a.stopped_epoch, a.stop_reason) == (
        b.best_epoch,
        b.stopped_epoch,
        b.stop_reason,
    )


def with_non_finite_values():
    h = filled(3)
    h.record({**epoch_stats(3), "train_loss": float("nan"), "grad_norms": [np.inf, -np.inf, 1.0]})
    h.stopped_epoch, h.stop_reason = 3, "early_stopping"
    return h


def test_extend_equals_recording_every_epoch_in_one_history():
    whole, head, tail = History(ACTIVATIONS), History(ACTIVATIONS), History(ACTIVATIONS)
    for i in range(5):
        whole.record(epoch_stats(i))
        (head if i < 3 else tail).record(epoch_stats(i))
    tail.stopped_epoch, tail.stop_reason = 1, "callback"
    whole.stopped_epoch, whole.stop_reason = 4, "callback"
    head.extend(tail)
    assert head.to_json() == whole.to_json()  # JSON: NaN is null, so equal to itself
    assert tail.n_epochs == 2  # other is left as it was


def test_extend_pads_a_series_recorded_in_one_part_with_nan():
    head, tail = filled(2, val=False), filled(3, val=True)
    head.extend(tail)
    assert head.n_epochs == 5 and len(head.val_loss) == 5
    assert np.isnan(head.val_loss[:2]).all() and head.val_loss[2:] == tail.val_loss
    head, tail = filled(2, val=True), filled(3, val=False)
    head.extend(tail)
    assert head.val_loss[:2] == [0.9, 0.5] and np.isnan(head.val_loss[2:]).all()


def test_extend_shifts_a_best_epoch_set_by_early_stopping_and_else_derives_it():
    head, tail = filled(3), filled(3)
    tail.best_epoch = 2
    head.extend(tail)
    assert head.best_epoch == 5
    head, tail = filled(3), filled(3)  # val_loss 0.9, 0.5, 0.7 twice: the first 0.5 wins
    head.best_epoch = 0
    head.extend(tail)
    assert head.best_epoch == 1 and head.stopped_epoch is None


def test_extend_with_itself_doubles_the_record():
    h = filled(3)
    h.best_epoch = 1
    expected = History.from_json(h.to_json())
    expected.extend(History.from_json(h.to_json()))
    h.extend(h)  # once looped until memory ran out: the lists grew as they were read
    assert h.n_epochs == 6 and h.to_json() == expected.to_json()
    assert h.best_epoch == 4


def test_a_derived_best_epoch_is_derived_again_after_a_round_trip():
    # train losses 1.0, 0.1, 0.5 then 0.9, 0.8: the best epoch of the whole run is 1, also
    # when the second part went through JSON (which once froze its own best epoch, 0, as
    # if early stopping had set it)
    head, tail = History(ACTIVATIONS), History(ACTIVATIONS)
    for loss in (1.0, 0.1, 0.5):
        head.record({"train_loss": loss})
    for loss in (0.9, 0.8):
        tail.record({"train_loss": loss})
    head.extend(History.from_json(tail.to_json()))
    assert head.best_epoch == 1
    tail.best_epoch = 0  # set: kept through the round trip, shifted by extend
    again = History.from_json(tail.to_json())
    assert again.best_epoch == 0 and History.from_dict(again.to_dict()).best_epoch == 0


def test_a_rejected_record_leaves_no_half_epoch():
    h = filled(2)
    before = h.to_json()
    for stats in (
        {"train_loss": 1.0, "lr": "x"},
        {"train_loss": 1.0, "time": 0.1, "val_loss": "bad"},
        {"train_loss": 1.0, "grad_norms": [1.0]},  # one layer short
    ):
        with pytest.raises(ValueError):
            h.record(stats)
        assert h.to_json() == before
    assert History.from_json(before).n_epochs == 2


def test_extend_rejects_another_network_and_other_types():
    with pytest.raises(ValueError, match="layer_activations"):
        filled(1).extend(History(["tanh", "identity"]))
    with pytest.raises(TypeError, match="History"):
        filled(1).extend(epoch_stats(0))


def test_dict_round_trip():
    h = with_non_finite_values()
    assert_same(History.from_dict(h.to_dict()), h)


def test_json_round_trip_keeps_nan_and_infinity():
    h = with_non_finite_values()
    text = h.to_json()
    data = json.loads(text)  # strict JSON: no bare NaN / Infinity tokens
    assert "NaN" not in text and data["train_loss"][3] is None
    assert data["grad_norms"][3][:2] == ["Infinity", "-Infinity"]
    back = History.from_json(text)
    assert_same(back, h)
    assert math.isnan(back.train_loss[3]) and back.grad_norms[3, 0] == np.inf


def test_json_file_round_trip(tmp_path):
    h = filled(2)
    path = tmp_path / "history.json"
    text = h.to_json(path)
    assert path.read_text(encoding="utf-8") == text
    assert_same(History.from_json(path), h)
    assert_same(History.from_json(str(path)), h)


def test_a_file_named_like_json_text_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h = filled(2)
    h.to_json("{run}.json")
    assert_same(History.from_json("{run}.json"), h)
    assert_same(History.from_json(h.to_json()), h)  # text stays text
    with pytest.raises(ValueError, match="not valid JSON"):
        History.from_json("{run2}.json")  # no such file: JSON text, and not valid


def test_empty_history_round_trips():
    back = History.from_json(History(ACTIVATIONS).to_json())
    assert len(back) == 0 and back.grad_norms.shape == (0, 3)


def test_version_1_records_are_read():
    """Version 1 named the layer activations "activations"; files written then still load."""
    h = filled(2)
    data = h.to_dict()
    data["version"] = 1
    data["activations"] = data.pop("layer_activations")
    assert_same(History.from_json(json.dumps(data)), h)


def test_records_name_the_layer_activations():
    data = filled(1).to_dict()
    assert data["layer_activations"] == ACTIVATIONS and "activations" not in data
    assert data["version"] == 3


def test_from_dict_rejects_other_records_and_ragged_series():
    with pytest.raises(ValueError, match="format"):
        History.from_dict({"format": "something.else", "activations": ["relu"]})
    data = filled(2).to_dict()
    data["lr"] = [0.1]
    with pytest.raises(ValueError, match="'lr'"):
        History.from_dict(data)


def test_from_json_takes_text_paths_and_files(tmp_path):
    h = filled(2)
    path = tmp_path / "h.json"
    h.to_json(path)
    with open(path, encoding="utf-8") as text_file:
        assert_same(History.from_json(text_file), h)
    with open(path, "rb") as binary_file:
        assert_same(History.from_json(binary_file), h)
    assert_same(History.from_json("  \n" + h.to_json()), h)


@pytest.mark.parametrize("source", [0, 2.5, None, b"{}", ["{}"], object()], ids=repr)
def test_from_json_rejects_other_sources_with_type_error(source):
    with pytest.raises(TypeError, match="source"):
        History.from_json(source)


def test_from_json_never_takes_an_int_for_a_file_descriptor():
    # open(fd) would read the file and close the descriptor: History.from_json(1) closed stdout.
    read_end, write_end = os.pipe()
    os.write(write_end, filled(1).to_json().encode())
    os.close(write_end)
    try:
        with pytest.raises(TypeError, match="source"):
            History.from_json(read_end)
        os.fstat(read_end)  # still open
    finally:
        os.close(read_end)


@pytest.mark.parametrize(
    "text", ["{", "{not json}", "[1, 2]", "[]", '{"format": "fastbp.History"}', '"text"', ""]
)
def test_from_json_rejects_what_is_not_a_history_record(text, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        History.from_json(path)
    if text[:1] in ("{", "["):
        with pytest.raises(ValueError):
            History.from_json(text)


WRONG_VALUES = [None, 1, -1, 1.5, True, "x", [], ["x"], [[1.0]], [None], [1.0] * 7, {"a": 1}]


@pytest.mark.parametrize("key", list(filled(2).to_dict()))
def test_malformed_records_give_one_clear_value_error(key):
    """Whatever one entry holds, loading gives a History or a ValueError naming the entry:
    never a KeyError or TypeError from inside."""
    base = filled(2).to_dict()
    variants = [{k: v for k, v in base.items() if k != key}]
    variants += [{**base, key: value} for value in WRONG_VALUES]
    for data in variants:
        for load in (History.from_dict, lambda d: History.from_json(json.dumps(d))):
            try:
                load(data)
            except ValueError as err:
                assert "data" in str(err), err
            except Exception as err:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{key}={data.get(key)!r}: {type(err).__name__}: {err}")


@pytest.mark.parametrize(
    "key, value",
    [
        ("layer_activations", None),
        ("layer_activations", []),
        ("layer_activations", ["relu", 3, "softmax"]),
        ("train_loss", [0.5]),
        ("train_loss", 1.0),
        ("lr", ["fast", 0.1]),
        ("grad_norms", [[1.0, 2.0], [1.0, 2.0]]),
        ("grad_norms", [[1.0, 2.0, [3.0]], [1.0, 2.0, 3.0]]),
        ("activation_hist", [[[0.5] * 20] * 3, [[0.5] * 19] * 3]),
        ("activation_std", [[1.0, 2.0, "x"], [1.0, 2.0, 3.0]]),
        ("best_epoch", 2),
        ("best_epoch", "1"),
        ("stopped_epoch", 3),
        ("stop_reason", "tired"),
        ("version", 99),
    ],
)
def test_each_kind_of_malformed_record_is_named(key, value):
    data = {**filled(2).to_dict(), key: value}
    with pytest.raises(ValueError, match=rf"data\[{key!r}\]|{key}"):
        History.from_dict(data)


def test_repr_is_a_short_summary():
    assert repr(filled(3)) == (
        "History(epochs=3, n_layers=3, train_loss=0.3333, val_loss=0.7, best_epoch=1)"
    )
    assert repr(History(["identity"])) == "History(epochs=0, n_layers=1, best_epoch=None)"
