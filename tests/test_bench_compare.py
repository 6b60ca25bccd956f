"""bench/compare.py's --rounds: the table's s/epoch is the median over the rounds, and each
round's ratio compares the libraries of that round only; how many epochs a library is timed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import compare  # noqa: E402


def run(config, peer, rnd, s, gflops=None):
    r = dict(config=config, peer=peer, round=rnd, s_per_epoch=s, epochs_timed=3, loss=0.5)
    r["gflops"] = gflops if gflops is not None else 10.0 / s
    r["gemm_share"] = r["gflops"] / 100.0
    return r


def test_merge_takes_the_median_round_and_rescales_the_rates():
    results = [
        run("wide", "fastbp", 0, 4.0),
        run("wide", "jax", 0, 3.0),
        run("wide", "fastbp", 1, 8.0),  # a slow minute
        run("wide", "jax", 1, 6.0),
        run("wide", "fastbp", 2, 3.9),
        run("wide", "jax", 2, 4.1),
        dict(config="wide", peer="torch", round=0, error="n/a: not installed"),
    ]
    merged = {r["peer"]: r for r in compare.merge_rounds(results)}
    assert merged["fastbp"]["s_per_epoch"] == 4.0
    assert merged["fastbp"]["round_s"] == [4.0, 8.0, 3.9]
    assert merged["jax"]["s_per_epoch"] == 4.1
    assert merged["jax"]["gflops"] == pytest.approx(10.0 / 4.1)
    assert merged["jax"]["gemm_share"] == pytest.approx(10.0 / 4.1 / 100)
    assert merged["fastbp"]["epochs_timed"] == 9
    assert merged["torch"]["error"].startswith("n/a")
    # each round against itself: the slow round keeps its ratio
    assert compare.round_ratios(results, "wide") == pytest.approx([0.75, 0.75, 4.1 / 3.9])


def test_a_round_without_fastbp_or_without_peers_gives_no_ratio():
    results = [
        run("tiny-online", "fastbp", 0, 0.002),
        dict(config="tiny-online", peer="jax", round=0, error="FAILED"),
        run("tiny-online", "fastbp", 1, 0.002),
        run("tiny-online", "jax", 1, 0.008),
        run("tiny-online", "torch", 1, 1.0),
    ]
    assert compare.round_ratios(results, "tiny-online") == [None, pytest.approx(4.0)]
    assert compare.round_ratios(results, "wide") == [None, None]


def test_merge_keeps_every_rounds_times_and_the_noisiest_rounds_noise():
    quiet, noisy = run("wide", "fastbp", 0, 4.0), run("wide", "fastbp", 1, 4.2)
    quiet.update(times=[4.0, 4.1], foreign_cpus=0.01, steal_cpus=0.0, foreign_s=0.1)
    noisy.update(times=[4.2, 4.3], foreign_cpus=0.5, steal_cpus=0.1, foreign_s=9.0)
    (m,) = compare.merge_rounds([quiet, noisy])
    assert m["times"] == [4.0, 4.1, 4.2, 4.3]
    assert (m["foreign_cpus"], m["steal_cpus"], m["foreign_s"]) == (0.5, 0.1, 9.0)
    assert compare.fmt_noise(m).endswith("!")


def test_report_prints_each_rounds_ratio(capsys):
    results = [
        run("mnist-like", peer, k, s)
        for k, pair in enumerate([(0.46, 0.70), (0.48, 0.53)])
        for peer, s in zip(("fastbp", "jax"), pair)
    ]
    results.append(run("mnist-like", "fastbp", 2, 0.47))
    results.append(dict(config="mnist-like", peer="jax", round=2, error="FAILED: timeout"))
    compare.report_compare(results, ["fastbp", "jax"])
    out = capsys.readouterr().out
    assert "median of 3 rounds" in out
    assert "1.52 1.10 - (median 1.31)" in out


def test_bf16_accuracy_run_trains_in_the_asked_precision_and_holds_out_the_rest(restore_threads):
    import fastbp as fb

    if not fb.build_info()["bfloat16"]:
        pytest.skip("this CPU has no AVX512-BF16")
    cfg = dict(
        layers=[64, 128, 4],
        activation="relu",
        batch=64,
        optimizer=("adam", dict(lr=1e-3)),
        loss="cross_entropy",
    )
    X, y = compare.make_data(cfg, 1500)
    got = {}
    for prec in ("highest", "bfloat16"):
        spec = dict(train=1000, epochs=3, matmul_precision=prec, seed=1)
        got[prec] = compare.bf16_accuracy_run(cfg, X, y, 1, spec)
    for r in got.values():
        assert 0.4 < r["test_accuracy"] <= 1.0  # 4 classes: well above chance
    # the same start and shuffling; only the products' precision differs
    assert got["highest"]["train_loss"] != got["bfloat16"]["train_loss"]
    assert got["bfloat16"]["train_loss"] == pytest.approx(got["highest"]["train_loss"], rel=0.05)


def test_packed_gemm_script_compares_the_kernels_with_openblas(capsys):
    import fastbp as fb

    if not fb.build_info()["own_gemm"]:
        pytest.skip("this core runs float32 products in OpenBLAS")
    import packed_gemm

    assert packed_gemm.ratio(24, 40, 33, False, True, repeats=1, seconds=0.0) > 0
    packed_gemm.main(["--rows", "12", "--sizes", "32"])
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("M=")] == ["M=12"] * 3


@pytest.mark.parametrize(
    "warmup, epochs, budget, expected",
    [
        (1.0, 3, compare.Budget(40.0, 0.5), 3),  # --epochs when they fill --min-time
        (0.002, 3, compare.Budget(40.0, 0.5), 250),  # a 2 ms epoch: enough to fill 0.5 s
        (0.3, 3, compare.Budget(40.0, 0.5), 3),  # 2 of 0.3 s would fill it: never fewer
        (0.2, 3, compare.Budget(40.0, 0.7), 4),  # ceil(0.7 / 0.2)
        (15.0, 3, compare.Budget(40.0, 0.5), 2),  # a slow peer: within --run-budget
        (100.0, 3, compare.Budget(40.0, 0.5), 1),  # slower than the budget: one epoch
        (0.001, 1, compare.Budget(0.01, 0.5), 10),  # --run-budget wins over --min-time
        (0.002, 1, compare.Budget(40.0), 1),  # no --min-time (--quick): --epochs
    ],
)
def test_timed_epochs_fill_min_time_within_the_budget(warmup, epochs, budget, expected):
    assert compare.n_timed_epochs(warmup, epochs, budget) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0"], "--threads: must be at least 1"),
        (["--threads", "-2"], "--threads: must be at least 1"),
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--min-time", "-1"], "--min-time: must be a finite number >= 0"),
        (["--run-budget", "nan"], "--run-budget: must be a finite number >= 0"),
        (["--peers", ","], "name at least one library"),
    ],
)
def test_bad_options_are_refused_before_any_run(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_torch_peer_takes_torchs_fused_update():
    pytest.importorskip("torch")
    for name in ("deep-narrow", "mnist-like"):  # SGD with momentum, Adam
        _, opt, _ = compare.torch_model(compare.CONFIGS[name], threads=1)
        assert opt.defaults.get("fused") or opt.defaults.get("foreach")


def test_the_noise_column_needs_a_few_ticks():
    short = dict(foreign_cpus=7.3, steal_cpus=0.0, foreign_s=0.001, wall_s=0.002)
    assert compare.fmt_noise(short) == "-"  # 0.2 ticks of /proc/stat: no average to give
    long = dict(foreign_cpus=0.5, steal_cpus=0.0, foreign_s=0.5, wall_s=1.0)
    assert compare.fmt_noise(long) == "0.50!"
