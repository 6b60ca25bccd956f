"""The command line: `fastbp demo` tells the vanishing-gradient story and writes its plots;
`fastbp info` reports the build."""

import json
import subprocess
import sys

import pytest

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
    assert "grad_norms_compare.png" in pngs and "lr_find.png" in pngs
    assert len(pngs) == 10
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_plots_writes_nothing(tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["demo", "--epochs", "3", "--no-plots", "--out", str(out)]) == 0
    assert not out.exists()
    assert "healthy" in capsys.readouterr().out


def test_demo_reports_the_gradient_ratio_that_diagnose_reports(capsys):
    assert main(["demo", "--epochs", "12", "--patience", "12", "--no-plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    run_row = next(line for line in lines if line.startswith("sigmoid, SGD"))
    diagnosis = lines.index("Diagnosis of 'sigmoid, SGD':")
    layer0 = next(line for line in lines[diagnosis:] if line.split()[:2] == ["0", "sigmoid"])
    assert run_row.split()[5] == layer0.split()[3]  # first/last grad == layer 0's vs output


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
    import numpy as np

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
    import numpy as np

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
