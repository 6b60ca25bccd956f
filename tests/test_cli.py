"""The command line: `fastbp demo` tells the vanishing-gradient story and writes its plots;
`fastbp info` reports the build."""

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp as fb
from fastbp.cli import main


def test_demo_prints_tables_and_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "8", "--patience", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # the one-backward table: sigmoid's first layer gets orders of magnitude less gradient
    assert "One backward pass" in text
    ratio_line = next(line for line in text.splitlines() if line.startswith("first/last layer"))
    sigmoid_ratio = float(ratio_line.split("sigmoid ")[1].split()[0])
    assert sigmoid_ratio < 1e-2
    for run in ("sigmoid, SGD", "sigmoid, momentum", "sigmoid, grad noise", "ReLU + He, SGD"):
        assert run in text
    assert "vanishing" in text and "Remedies to try" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "grad_norms_by_run.png" in pngs and "relu_he_sgd_lr_find.png" in pngs
    for run in ("sigmoid_sgd", "sigmoid_momentum", "sigmoid_grad_noise", "relu_he_sgd"):
        assert f"{run}_loss_curves.png" in pngs and f"{run}_grad_norm_heatmap.png" in pngs
    assert len(pngs) == 10
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_plots_writes_nothing(tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["demo", "--epochs", "3", "--no-plots", "--out", str(out)]) == 0
    assert not out.exists()
    assert "healthy" in capsys.readouterr().out


def test_demo_prints_for_each_run_what_diagnose_finds_in_its_history(capsys, monkeypatch):
    # Every history the demo trains, captured on its way out of Trainer.fit: the demo's four
    # runs first (then any reference runs of its note).
    histories = []
    fit = fb.Trainer.fit

    def recording_fit(self, *args, **kwargs):
        histories.append(fit(self, *args, **kwargs))
        return histories[-1]

    monkeypatch.setattr(fb.Trainer, "fit", recording_fit)
    assert main(["demo", "--epochs", "12", "--patience", "12", "--no-plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ("sigmoid, SGD", "sigmoid, momentum", "sigmoid, grad noise", "ReLU + He, SGD")
    row = re.compile(r"^.{20} +\S+ +\d+ +\d+ +\S+ +\S+ +(\S+) +(\S+)  (.+)$")
    for name, history in zip(names, histories):
        report = fb.diagnose(history)
        first, last, verdict = row.match(next(ln for ln in lines if ln.startswith(name))).groups()
        assert verdict == report.brief
        assert first == f"{report.layers[0].ratio:.2e}"
        assert last == f"{report.layers[0].final_ratio:.2e}"
    # not a vacuous comparison: the plain sigmoid run vanishes, the ReLU run does not
    assert fb.diagnose(histories[0]).brief.startswith("vanishing in layers 0-")
    assert fb.diagnose(histories[3]).brief == "healthy"


def test_the_demo_explains_a_remedy_run_that_generalises_less_well_and_only_then():
    import argparse

    from fastbp import cli

    X, y = fb.datasets.load_demo()
    sp = fb.split(X[:600], y[:600], val=0.2, test=0.2, stratify=True, seed=0)
    args = argparse.Namespace(lr=0.3, width=8, batch_size=32, epochs=5, patience=5, seed=0)
    history = fb.History(["relu", "softmax"])
    history.record({"train_loss": 1.0})

    def run(accuracy):
        return cli._Run(0.1, history, None, accuracy)

    worse = {"sigmoid, grad noise": run(0.9), cli.RELU_RUN: run(0.8)}
    note = cli._remedy_note(fb, worse, sp, args)
    assert "lower test accuracy (0.800 against 0.900)" in note
    assert re.search(r"sigmoid reaches \d\.\d{3} and ReLU \d\.\d{3}", note)
    better = {"sigmoid, grad noise": run(0.9), cli.RELU_RUN: run(0.9)}
    assert cli._remedy_note(fb, better, sp, args) == ""


def test_info_is_json_with_the_build(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"compiler", "openmp", "blas", "blas_core", "simd", "cuda"} <= set(info)


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "fastbp", "info"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "blas_core" in done.stdout


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_train_on_a_csv_file(tmp_path, capsys):
    from fastbp.datasets import blobs

    X, y = blobs(n_samples=300, seed=0)
    path = tmp_path / "data.csv"
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(path),
                "--hidden",
                "16",
                "--epochs",
                "30",
                "--lr",
                "0.01",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    accuracy = float(text.split("test: ")[1].split("accuracy ")[1].split()[0])
    assert accuracy > 0.8
    assert (out / "history.json").exists()


def test_train_regression_on_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=200)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert (
        main(
            [
                "train",
                str(tmp_path / "d.npz"),
                "--hidden",
                "",
                "--optimizer",
                "sgd",
                "--lr",
                "0.05",
                "--epochs",
                "100",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert float(text.split("test: loss ")[1].split()[0]) < 0.01


# ---- train --save, predict, and one line for every mistake ---------------------------------

SPECIES = np.array(["red fox", "blue jay", "green frog"])


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    return str(path)


@pytest.fixture
def species_csv(tmp_path):
    from fastbp.datasets import blobs

    X, y = blobs(n_samples=300, seed=0)
    rows = [[f"{a:.6f}", f"{b:.6f}", SPECIES[k]] for (a, b), k in zip(X, y)]
    return write_csv(tmp_path / "species.csv", ["x0", "x1", "species"], rows), X, SPECIES[y]


@pytest.fixture
def price_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.normal(size=200)
    rows = [[*(f"{v:.6f}" for v in x), f"{t:.6f}"] for x, t in zip(X, y)]
    return write_csv(tmp_path / "price.csv", ["a", "b", "c", "price"], rows), X, y


def run_cli(argv, capsys):
    """main(argv): (exit code, stdout, stderr); argparse's exits included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastbp: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "X, y, fragment",
    [
        (np.zeros((4, 2)), np.array(1.0), "y must be a 1-D array"),  # was len() of unsized
        (np.zeros((4, 2)), np.arange(4).astype("datetime64[D]"), "y must be a 1-D array"),
        (np.zeros((4, 2)), np.arange(4) + 1j, "y must be a 1-D array"),
        (np.zeros((4, 2)) + 1j, np.arange(4), "X must be a 2-D array"),  # was a warning
        (np.zeros(4), np.arange(4), "X must be 2-D"),
        (np.zeros((0, 2)), np.zeros(0), "X has no rows"),  # was an IndexError
        (np.zeros((4, 2)), np.arange(3), "X has 4 rows, y has 3"),
    ],
)
def test_bad_npz_data_is_one_line_of_error(X, y, fragment, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", X=X, y=y)
    code, _, err = run_cli(["train", str(tmp_path / "d.npz"), "--epochs", "1"], capsys)
    assert_one_line_error(code, err, fragment)


def test_train_saves_and_predict_speaks_the_users_labels(species_csv, tmp_path, capsys):
    path, X, labels = species_csv
    model = str(tmp_path / "model.npz")
    code, out, _ = run_cli(
        ["train", path, "--hidden", "16", "--epochs", "40", "--lr", "0.01", "--save", model],
        capsys,
    )
    assert code == 0 and f"model saved to {model}" in out
    assert "target 'species' holds text: 3 classes -> loss cross_entropy" in out
    # new data: columns in another order, an id column and no target
    rows = [[f"id{i}", f"{b:.6f}", f"{a:.6f}"] for i, (a, b) in enumerate(X)]
    new = write_csv(tmp_path / "new.csv", ["id", "x1", "x0"], rows)
    code, out, err = run_cli(["predict", model, new], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "species" and len(lines) == len(X) + 1
    assert np.mean(np.array(lines[1:]) == labels) > 0.9
    code, out, _ = run_cli(
        ["predict", model, new, "--proba", "-o", str(tmp_path / "p.csv")], capsys
    )
    assert code == 0 and "300 predictions written" in out
    table = (tmp_path / "p.csv").read_text().splitlines()
    assert table[0].split(",") == sorted(SPECIES)
    proba = np.array([[float(v) for v in line.split(",")] for line in table[1:]])
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(np.array(sorted(SPECIES))[proba.argmax(axis=1)], np.array(lines[1:]))


def test_the_saved_model_carries_the_standardisation_of_the_training_part(
    price_csv, tmp_path, capsys
):
    path, X, y = price_csv
    model = tmp_path / "m.npz"
    code, out, _ = run_cli(
        ["train", path, "--hidden", "8", "--epochs", "5", "--save", str(model)], capsys
    )
    assert code == 0 and "target 'price' holds non-integer numbers: regression" in out
    saved = fb.io.read_file(model)
    assert saved.data["features"] == ["a", "b", "c"] and saved.data["target"] == "price"
    train_part = fb.split(X, y, val=0.15, test=0.15, seed=0).train[0]  # the CLI's split
    np.testing.assert_allclose(saved.data["mean"], train_part.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(saved.data["scale"], train_part.std(axis=0), atol=1e-6)
    code, out, _ = run_cli(["predict", str(model), path], capsys)
    X = np.round(X, 6)  # as written to the CSV
    expected = saved.net.forward((X - saved.data["mean"]) / saved.data["scale"])[:, 0]
    lines = out.splitlines()
    assert lines[0] == "price"
    np.testing.assert_allclose([float(v) for v in lines[1:]], expected, rtol=1e-5, atol=1e-6)
    code, _, err = run_cli(["predict", str(model), path, "--proba"], capsys)
    assert_one_line_error(code, err, "--proba needs a classifier")


def test_predict_takes_an_estimators_file(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from fastbp.datasets import blobs

    X, y = blobs(n_samples=120, seed=1)
    with pytest.warns(Warning, match="maximum iterations"):
        est = fb.MLPClassifier((8,), max_iter=5, random_state=0).fit(X, SPECIES[y])
    est.save(tmp_path / "est.npz")
    data = tmp_path / "x.npz"
    np.savez(data, X=X)
    code, out, _ = run_cli(["predict", str(tmp_path / "est.npz"), str(data)], capsys)
    assert code == 0
    assert out.splitlines()[1:] == list(est.predict(X))


def test_predict_gives_each_label_of_a_multilabel_network(tmp_path, capsys):
    # an MLP saved by hand with several sigmoid outputs: one 0/1 column per output, as
    # net.predict gives, not the index of the largest output
    X = np.random.default_rng(0).normal(size=(6, 3))
    net = fb.MLP([3, 4, 3], loss="binary_cross_entropy", seed=0)
    net.save(tmp_path / "m.npz")
    np.savez(tmp_path / "x.npz", X=X)
    code, out, _ = run_cli(["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npz")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "prediction_0,prediction_1,prediction_2"
    assert [line.split(",") for line in lines[1:]] == net.predict(X).astype(str).tolist()
    args = ["predict", str(tmp_path / "m.npz"), str(tmp_path / "x.npz"), "--proba"]
    code, out, _ = run_cli(args, capsys)
    proba = np.array([line.split(",") for line in out.splitlines()[1:]], dtype=float)
    np.testing.assert_allclose(proba, net.forward(X), rtol=1e-6)


def test_an_integer_target_with_many_values_is_not_taken_for_classes(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    counts = np.round(10 * np.abs(X[:, 0]) * 10).astype(int)  # dozens of distinct integers
    path = write_csv(tmp_path / "c.csv", ["u", "v", "count"], np.column_stack([X, counts]))
    _, out, _ = run_cli(["train", path, "--epochs", "2", "--hidden", "4"], capsys)
    n = len(np.unique(counts))
    assert f"target 'count' holds {n} distinct integers: regression" in out
    assert "(--loss cross_entropy to take them as classes) -> loss mse" in out
    _, out, _ = run_cli(
        ["train", path, "--epochs", "2", "--hidden", "4", "--loss", "cross_entropy"], capsys
    )
    assert "--loss cross_entropy -> loss cross_entropy" in out
    few = write_csv(tmp_path / "f.csv", ["u", "v", "k"], np.column_stack([X, counts % 3]))
    _, out, _ = run_cli(["train", few, "--epochs", "2", "--hidden", "4"], capsys)
    assert "target 'k' holds 3 distinct integers: classes (--loss mse" in out


def test_help_shows_the_defaults_and_every_loss(capsys):
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0
    assert "(default: 64,64)" in out and "None: the optimizer's default" in out
    for loss in fb.validation.LOSSES:
        assert loss in out
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"fastbp {fb.__version__}"


def test_a_first_epoch_that_diverges_is_one_line(price_csv, capsys):
    path, _, _ = price_csv
    code, _, err = run_cli(["train", path, "--lr", "1e6", "--epochs", "3"], capsys)
    assert_one_line_error(code, err, "diverged in the first epoch", "--lr")


def bad_files(tmp):
    files = {
        "empty.csv": "",
        "header_only.csv": "a,b,label\n",
        "short_header.csv": "a,b,label\n0,1.0,2.0,x\n1,2.0,3.0,y\n",
        "long_header.csv": "a,b,c,label\n1.0,2.0,x\n2.0,3.0,y\n",
        "index.csv": ",a,b,label\n0,1.0,2.0,x\n1,2.0,3.0,y\n",
        "text.csv": "a,color,label\n1,red,0\n2,blue,1\n",
        "no_header.csv": "1,2,0\n3,4,1\n",
        "nan.csv": "a,b,label\n1,,0\n2,3,1\n",
        "one_class.csv": "a,b,label\n1,2,0\n2,3,0\n",
        "no_label.csv": "a,b,label\n1,2,x\n2,3,\n",
        "xy.npz": None,
    }
    for name, text in files.items():
        if text is not None:
            (tmp / name).write_text(text)
    np.savez(tmp / "xy.npz", X=np.ones((4, 2)))
    return tmp


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "missing.csv"], ["missing.csv: no such file"]),
        (["train", "empty.csv"], ["empty.csv is empty"]),
        (["train", "header_only.csv"], ["no data rows"]),
        (["train", "short_header.csv"], ["line 2 has 4 values", "names 3 columns"]),
        (["train", "long_header.csv"], ["line 2 has 3 values", "names 4 columns"]),
        (["train", "index.csv"], ["column 1 has no name", "index"]),
        (["train", "text.csv"], ["column 'color' holds 'red' on line 2", "--target"]),
        (["train", "no_header.csv"], ["first row must name the columns"]),
        (["train", "nan.csv"], ["column 'b' is empty on line 2"]),
        (["train", "one_class.csv"], ["single class"]),
        (["train", "no_label.csv"], ["the target 'label' is empty on line 3"]),
        (["train", "xy.npz"], ["must hold an array named 'y'"]),
        (["train", "text.csv", "--target", "colour"], ["--target 'colour' is not a column"]),
        (["train", "text.csv", "--target", "7"], ["--target '7' is not a column"]),
        (["train", "text.csv", "--hidden", "64,,8"], ["--hidden", "positive widths"]),
        (["train", "text.csv", "--hidden", "64,-1"], ["--hidden"]),
        (["train", "text.csv", "--val", "0"], ["--val", "> 0"]),
        (["train", "text.csv", "--val", "1"], ["--val", "< 1"]),
        (["train", "text.csv", "--val", "half"], ["--val", "must be a number"]),
        (["train", "text.csv", "--test", "-0.1"], ["--test"]),
        (["train", "text.csv", "--val", "0.5", "--test", "0.5"], ["--val + --test"]),
        (["train", "text.csv", "--lr", "nan"], ["--lr"]),
        (["train", "text.csv", "--epochs", "0"], ["--epochs"]),
        (["train", "text.csv", "--loss", "hinge"], ["--loss", "invalid choice"]),
        (["train", "text.csv", "--target", "color", "--loss", "mse"], ["numeric target"]),
        (["predict", "missing.npz", "text.csv"], ["missing.npz: no such file"]),
        (["predict", "text.csv", "text.csv"], ["not a fastbp model file"]),
        (["predict"], ["required"]),
    ],
)
def test_every_user_error_is_one_line(argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(bad_files(tmp_path))
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)


def test_predict_names_missing_feature_columns(species_csv, tmp_path, capsys):
    path, _, _ = species_csv
    model = str(tmp_path / "m.npz")
    run_cli(["train", path, "--hidden", "4", "--epochs", "2", "--save", model], capsys)
    other = write_csv(tmp_path / "o.csv", ["x0", "z"], [[1, 2]])
    code, _, err = run_cli(["predict", model, other], capsys)
    assert_one_line_error(code, err, "lacks the feature columns ['x1']")


def test_errors_reach_the_shell_as_one_line_without_traceback(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,label\n0,1.0,2.0,3\n")
    done = subprocess.run(
        [sys.executable, "-m", "fastbp", "train", str(tmp_path / "bad.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("fastbp: error: ")


def test_ctrl_c_saves_what_training_reached(species_csv, tmp_path, capsys, monkeypatch):
    path, _, _ = species_csv
    model = tmp_path / "m.npz"
    train_epoch = fb.Trainer._train_epoch

    def interrupted_at_epoch_3(self, epoch, *args):
        if epoch == 3:
            raise KeyboardInterrupt
        return train_epoch(self, epoch, *args)

    record_epoch = fb.Trainer._record_epoch
    params = []  # each epoch's weights

    def recorded(self, history, index, logs):
        params.append(np.array(self.net.params))
        return record_epoch(self, history, index, logs)

    monkeypatch.setattr(fb.Trainer, "_train_epoch", interrupted_at_epoch_3)
    monkeypatch.setattr(fb.Trainer, "_record_epoch", recorded)
    # a rate at which the validation loss is best before the last epoch run
    argv = ["train", path, "--hidden", "4", "--optimizer", "sgd", "--lr", "20", "--seed", "3"]
    code, _, err = run_cli([*argv, "--save", str(model)], capsys)
    assert code == 130 and len(params) == 3
    # the file holds the weights fit restored: the best epoch's, which the message names
    best = re.fullmatch(
        f"fastbp: interrupted: {re.escape(str(model))} holds the weights of epoch ([0-2]), "
        "the best by validation loss of the 3 run\n",
        err,
    )
    assert best and best.group(1) != "2", err  # the best epoch is not the last one run
    saved = fb.io.read_file(model)
    np.testing.assert_array_equal(saved.net.params, params[int(best.group(1))])
    assert saved.data["classes"].tolist() == sorted(SPECIES)
    code, _, err = run_cli(["train", path, "--hidden", "4"], capsys)
    assert code == 130 and err == "fastbp: interrupted: nothing was saved\n"


def test_ctrl_c_in_a_real_process(species_csv, tmp_path):
    import signal

    path, _, _ = species_csv
    model = tmp_path / "m.npz"
    argv = ["train", path, "--hidden", "4", "--epochs", "1000000", "--patience", "1000000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastbp", *argv, "--save", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # wait until training runs
            if line.startswith("training "):
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fastbp: interrupted: {model} holds the weights of epoch")
    assert fb.load(model).layer_sizes == [2, 4, 3]


def test_each_optimizer_trains_at_its_own_default_rate_unless_lr_is_given():
    from fastbp.cli import SGD_LR, _optimizer

    defaults = {
        "sgd": SGD_LR,
        "momentum": SGD_LR,
        "adam": fb.Adam().lr,
        "adamw": fb.AdamW().lr,
        "rmsprop": fb.RMSProp().lr,
        "adagrad": fb.AdaGrad().lr,
        "linesearch": 1.0,  # its first trial step: it can only shrink from there
    }
    for name, lr in defaults.items():
        assert _optimizer(fb, name, None).lr == lr
        assert _optimizer(fb, name, 0.25).lr == 0.25
    assert _optimizer(fb, "momentum", None).momentum == 0.9
    assert _optimizer(fb, "sgd", None).momentum == 0


def test_an_npz_label_column_of_shape_n_by_1_is_one_label_per_sample(tmp_path, capsys):
    from fastbp.datasets import blobs

    X, y = blobs(n_samples=120, seed=0)
    np.savez(tmp_path / "d.npz", X=X, y=y[:, None])
    code, out, _ = run_cli(["train", str(tmp_path / "d.npz"), "--epochs", "2"], capsys)
    assert code == 0 and "y holds 3 distinct integers: classes" in out


def test_integer_labels_beyond_2_to_the_53_stay_exact():
    from fastbp.cli import _task

    big = ["9007199254740993", "9007199254740995", "9007199254740993", "9007199254740995"]
    for y in (np.array(big), np.array([int(v) for v in big], dtype=np.int64)):
        task = _task(y, "cross_entropy", None)
        assert task.classes.tolist() == ["9007199254740993", "9007199254740995"]
        assert task.Y.tolist() == [0, 1, 0, 1]


def test_features_near_the_float64_limit_are_standardised(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)) * [1e300, 1.0]
    y = (X[:, 0] > 0).astype(int)
    path = write_csv(tmp_path / "big.csv", ["a", "b", "k"], np.column_stack([X, y]).tolist())
    model = str(tmp_path / "m.npz")
    code, out, _ = run_cli(["train", path, "--epochs", "30", "--save", model], capsys)
    assert code == 0
    data = fb.io.read_file(model).data
    assert np.isfinite(data["mean"]).all() and data["scale"][0] == pytest.approx(1e300, rel=0.2)
    assert float(re.search(r"accuracy (\S+)", out).group(1)) > 0.9  # the feature was kept


def test_the_demo_calls_a_ratio_vanishing_only_below_diagnoses_threshold():
    from fastbp.cli import _ratio_words
    from fastbp.diagnostics import VANISHING_RATIO

    assert "vanishing" in _ratio_words(VANISHING_RATIO / 2)
    assert "vanishing" not in _ratio_words(VANISHING_RATIO * 2)


def test_history_without_matplotlib_says_no_plots(species_csv, tmp_path, capsys, monkeypatch):
    import fastbp.plot

    def missing():
        raise ImportError("no matplotlib")

    monkeypatch.setattr(fastbp.plot, "_figure_class", missing)
    path, _, _ = species_csv
    out_dir = tmp_path / "o"
    code, out, _ = run_cli(["train", path, "--epochs", "2", "--out", str(out_dir)], capsys)
    assert code == 0 and "no plots" in out and "plots written" not in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["history.json"]


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["lab", "nosuch"], ["unknown lab 'nosuch'", "he2015"]),
        (["lab"], ["name a lab"]),
        (["lab", "he2015", "--list"], ["--list takes no lab name"]),
        (["lab", "he2015", "--out", "a_file"], ["--out a_file is a file"]),
        (["demo", "--out", "a_file"], ["--out a_file is a file"]),
        (["demo", "--batch-size", "0"], ["--batch-size", ">= 1"]),
        (["demo", "--lr", "-1"], ["--lr", "> 0"]),
        (["demo", "--epochs", "0"], ["--epochs"]),
        (["train", "text.csv", "--lr", "inf"], ["--lr", "must be a finite number"]),
        (["train", "good.csv", "--epochs", "9" * 20], ["epochs must be in [1, 46116860"]),
        (["train", "good.csv", "--hidden", "2000000000,2000000000"], ["GiB"]),
        (["train", "good.csv", "--save", "no_dir/m.npz"], ["--save", "does not exist"]),
        (["train", "good.csv", "--save", "."], ["--save . is a folder"]),
        (["train", "fake.npz"], ["fake.npz: not a readable .npz file (not a zip archive)"]),
        (["train", "XY.NPZ"], ["must hold an array named 'y'"]),  # read as an NPZ
    ],
)
def test_more_user_errors_are_one_line(argv, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(bad_files(tmp_path))
    (tmp_path / "a_file").write_text("")
    (tmp_path / "fake.npz").write_text("X,y\n1,2\n")
    write_csv(tmp_path / "good.csv", ["a", "b", "k"], [[i, i % 3, i % 2] for i in range(40)])
    with open(tmp_path / "XY.NPZ", "wb") as f:  # a path would get ".npz" appended
        np.savez(f, X=np.ones((4, 2)))
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert "training" not in out  # refused before any work
