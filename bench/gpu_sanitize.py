"""A small workout of every kernel of fastbp's CUDA backend, to run under NVIDIA's
compute-sanitizer (memcheck: out-of-bounds and misaligned accesses; racecheck: shared-memory
races in the reductions), as bench/gpu_check.sh does:

    compute-sanitizer --tool memcheck python bench/gpu_sanitize.py

Both layer paths (cuBLAS and the fused small-layer kernels), float32 and float64, labels and
dense targets, every optimizer, clipping and noise, line search, a captured epoch and an
uncaptured one, forward, evaluate and activation statistics. Tiny sizes: the sanitizer is slow.
"""

import numpy as np

import fastbp as fb


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 5))
    labels = rng.integers(0, 3, 70)
    dense = rng.normal(size=(70, 3))
    optimizers = [
        fb.SGD(0.1, momentum=0.9, nesterov=True),
        fb.Adam(0.01),
        fb.AdamW(0.01),
        fb.RMSProp(0.01, centered=True, momentum=0.5),
        fb.AdaGrad(0.1),
        fb.LineSearchSGD(1.0),
    ]
    runs = 0
    for dtype in ("float32", "float64"):
        for path in ("fused", "blas"):
            for loss, y, act in (
                ("cross_entropy", labels, "relu"),
                ("mse", dense, "sigmoid"),
                ("binary_cross_entropy", (dense > 0).astype(float), "gelu"),
            ):
                net = fb.MLP([5, 7, 6, 3], activation=act, loss=loss, dtype=dtype, device="cuda")
                net.core.layer_path = path
                given = optimizers[runs % len(optimizers)]  # each rule in each dtype
                trainer = fb.Trainer(
                    net, type(given)(**given.hyperparameters()), batch_size=16, epochs=2,
                    clip_norm=1.0, clip_value=0.5, grad_noise=fb.GradientNoise(0.01, seed=1),
                    seed=0, progress=False,
                )  # fmt: skip
                trainer.fit(X, y, validation=(X[:20], y[:20]))
                net.forward(X)
                net.activation_stats(X)
                net.backward(X, y)
                fb.clip_grad_norm(net, 0.1)
                net.grad_norms()
                runs += 1
    print("gpu_sanitize: done")


if __name__ == "__main__":
    main()
