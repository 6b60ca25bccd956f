#!/usr/bin/env python
"""The GPU comparison against issue 14's goals, from one or more JSON files of
``bench/compare.py --device cuda --json PATH`` (later files add peers to earlier ones):

    python bench/gpu_summary.py out/bench.json out/bench_compile.json

Per configuration: fastbp's seconds per epoch, each PyTorch variant's, the best variant, the
speed-up over it, fastbp's share of the measured float32 GEMM rate, and the goal
(deep-narrow >= 10x, mnist-like >= 3x, wide >= 1.2x and >= 60% of the GEMM rate).
Exit status 0 in any case: this reports, the numbers decide.
"""

from __future__ import annotations

import json
import sys
from typing import Any

GOALS = {"deep-narrow": (10.0, None), "mnist-like": (3.0, None), "wide": (1.2, 0.60)}
TORCH = ("torch", "torch.compile", "torch.cudagraph")


def load(paths: list[str]) -> tuple[dict[tuple[str, str], dict[str, Any]], float | None]:
    by: dict[tuple[str, str], dict[str, Any]] = {}
    gemm = None
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as err:
            print(f"({path}: {err})")
            continue
        g = data.get("gemm")
        gemm = gemm or (g.get("gflops") if isinstance(g, dict) else g)
        for r in data.get("merged") or data.get("results", []):  # merged: --rounds > 1
            by[(r["config"], r["peer"])] = r
    return by, gemm


def fmt(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3f}s" if s >= 0.1 else f"{s * 1e3:.2f}ms"


def main(paths: list[str]) -> int:
    by, gemm = load(paths)
    if not by:
        print("no benchmark results")
        return 0
    configs = list(dict.fromkeys(c for c, _ in by))
    print(f"float32 GEMM rate measured: {gemm:.0f} GFLOP/s" if gemm else "GEMM rate: not measured")
    head = ["config", "fastbp"] + list(TORCH) + ["best torch", "x best", "%GEMM", "goal", "met"]
    rows = []
    for c in configs:
        fb = by.get((c, "fastbp"), {}).get("s_per_epoch")
        times = {p: by.get((c, p), {}).get("s_per_epoch") for p in TORCH}
        timed = {p: t for p, t in times.items() if t}
        best = min(timed.items(), key=lambda kv: kv[1]) if timed else None
        ratio = best[1] / fb if best and fb else None
        share = by.get((c, "fastbp"), {}).get("gemm_share")
        goal, share_goal = GOALS.get(c, (None, None))
        met = "-"
        if goal is not None and ratio is not None:
            ok = ratio >= goal and (share_goal is None or (share or 0) >= share_goal)
            met = "yes" if ok else "NO"
        rows.append(
            [c, fmt(fb)]
            + [fmt(times[p]) if times[p] else "n/a" for p in TORCH]
            + [best[0] if best else "-", f"{ratio:.2f}x" if ratio else "-"]
            + [f"{100 * share:.0f}%" if share else "-"]
            + [
                (f">= {goal}x" if goal else "-")
                + (f", >= {100 * share_goal:.0f}% GEMM" if share_goal else ""),
                met,
            ]
        )
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    failed = [
        (c, p, str(r.get("error", ""))[:120]) for (c, p), r in by.items() if "s_per_epoch" not in r
    ]
    for c, p, e in failed:
        print(f"  {c} {p}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
