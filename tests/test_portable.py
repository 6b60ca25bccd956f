"""One installation for every CPU: the core variants, the choice among them, and the proof that
the installed package runs on older x86-64 CPUs (emulated by qemu-x86_64, which CI installs).

A variant is a whole copy of the core compiled for one x86-64 microarchitecture level; a process
loads exactly one (fastbp/_dispatch.py). Each check that trains runs in a fresh interpreter:
a process cannot switch variants once it has loaded one.
"""

import json
import os
import platform
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastbp import _dispatch

IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
QEMU = shutil.which("qemu-x86_64")

# Trains a small network in a fresh interpreter; prints the variant, losses and weights as JSON.
# tanh and sigmoid reach the vectorised exp of the core, SGD with momentum keeps the weights a
# smooth function of the arithmetic (Adam's normalised steps would amplify rounding).
TRAIN = """
import json
import numpy as np
import fastbp as fb
fb.set_num_threads(1)
rng = np.random.default_rng(0)
X = rng.standard_normal((240, 6))
y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int32)
out = {"info": fb.build_info()}
for dtype in ("float32", "float64"):
    net = fb.MLP([6, 16, 16, 2], activation=["tanh", "sigmoid"], loss="cross_entropy",
                 dtype=dtype, seed=0)
    hist = fb.Trainer(net, fb.SGD(0.1, momentum=0.9), batch_size=16, epochs=6, seed=0,
                      progress=False).fit(X.astype(dtype), y)
    out[dtype] = {"loss": [float(v) for v in hist.train_loss],
                  "weights": [w.tolist() for w in net.weights]}
# a product large enough for fastbp's own float32 kernels in the AVX-512 core (128 x 128 x 256)
big = fb.MLP([256, 128, 48], activation="tanh", seed=1)
out["forward"] = big.forward(rng.standard_normal((128, 256)).astype(np.float32)).tolist()
print(json.dumps(out))
"""

# The variants a CPU model of qemu can run, best first (qemu's TCG emulates AVX2, not AVX-512).
QEMU_CPUS = {"Haswell": ("v3", "v2", "baseline"), "Nehalem": ("v2", "baseline")}


def python(code, isa=None, cpu=None, env=(), timeout=300):
    """Run ``code`` in a fresh interpreter (under qemu-x86_64 -cpu ``cpu`` if given), with
    FASTBP_ISA set to ``isa`` or unset, and the variables in ``env`` set (or unset: None)."""
    changes = {_dispatch.ENV: isa, **dict(env)}
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    cmd = [sys.executable, "-c", code]
    if cpu is not None:
        cmd = [QEMU, "-cpu", cpu, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def trained(code=TRAIN, **kwargs):
    done = python(code, **kwargs)
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def info(fb):
    return fb.build_info()


@pytest.fixture(scope="module")
def portable(info):
    if "native" in info["isa_built"]:
        pytest.skip("a FASTBP_NATIVE=ON build: one core for the building CPU, by design")
    return info


def test_build_info_names_the_variant_chosen_and_why(info):
    assert info["isa"] in info["isa_built"]
    assert set(info["isa_built"]) <= set(_dispatch.VARIANTS)
    assert info["isa_choice"] == "auto" or info["isa_choice"].startswith("FASTBP_ISA=")
    assert isinstance(info["cpu_features"], list)
    if info["isa_choice"] == "auto" and "native" not in info["isa_built"]:
        # the best variant built whose features the CPU has
        have = set(info["cpu_features"])
        usable = [v for v in info["isa_built"] if set(_dispatch.required_features(v)) <= have]
        assert info["isa"] == usable[0]


def test_build_info_says_how_many_threads(fb, info):
    assert info["threads"] == fb.get_num_threads()
    if info["openmp"] is None:
        assert info["threads"] == 1


def test_version_compiled_in_is_the_installed_one(fb, info):
    from importlib import metadata

    assert fb.__version__ == info["version"] == metadata.version("fastbp")


def test_every_platform_has_a_baseline_core(portable):
    assert "baseline" in portable["isa_built"]
    if IS_X86_64 and portable["compiler"].startswith(("gcc", "clang")):
        assert {"v2", "v3", "v4"} <= set(portable["isa_built"])


HASWELL = ("sse2", "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16", "lahf", "movbe")
HASWELL += ("lzcnt", "bmi1", "bmi2", "osxsave", "avx", "avx2", "fma", "f16c")
ALL = ["v4", "v3", "v2", "baseline"]


@pytest.mark.parametrize(
    "features, best",
    [
        (HASWELL + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"), "v4"),
        (HASWELL + ("avx512f", "avx512cd"), "v3"),  # Knights Landing: AVX-512 without BW/DQ/VL
        (HASWELL, "v3"),
        (tuple(f for f in HASWELL if f != "bmi2"), "v2"),  # AVX2 alone is not v3
        (HASWELL[:8], "v2"),  # Nehalem
        (("sse2", "sse3", "ssse3"), "baseline"),  # Core 2
        ((), "baseline"),  # not x86-64: no features reported, baseline is all there is
    ],
)
def test_auto_choice_is_the_best_level_the_cpu_has(features, best):
    assert _dispatch.choose(ALL, features, None) == best


def test_auto_choice_skips_variants_not_built():
    assert _dispatch.choose(["v2", "baseline"], HASWELL, None) == "v2"
    assert _dispatch.choose(["native"], (), None) == "native"


def test_forced_variant_is_checked():
    assert _dispatch.choose(ALL, HASWELL, "v2") == "v2"
    with pytest.raises(ImportError, match=r"FASTBP_ISA=v4: .* lacks avx512f, avx512bw"):
        _dispatch.choose(ALL, HASWELL, "v4")
    with pytest.raises(ImportError, match=r"FASTBP_ISA=v4: .* no v4 core \(built: v2"):
        _dispatch.choose(["v2", "baseline"], HASWELL, "v4")
    with pytest.raises(ImportError, match=r"FASTBP_ISA='avx2' is not a core variant: .*auto"):
        _dispatch.choose(ALL, HASWELL, "avx2")


def test_bad_setting_stops_the_import_with_its_reason():
    done = python("import fastbp", isa="sse9")
    assert done.returncode != 0
    assert "FASTBP_ISA='sse9' is not a core variant" in done.stderr


def test_only_one_variant_loads_per_process(fb, info):
    assert sys.modules["fastbp._core"] is fb._core
    for variant in info["isa_built"]:
        # Every variant's init function is PyInit__core: under its own name none loads, so
        # nothing can register the core's types a second time.
        with pytest.raises(ImportError, match="PyInit"):
            __import__(f"fastbp._core_{variant}")


def test_idle_threads_sleep_while_the_core_starts(info):
    if info["openmp"] is None:
        pytest.skip("built without OpenMP")
    # The OpenMP runtime starts with the chosen core and shows the settings it read then; the
    # variable is put back as it was.
    code = "import os, fastbp; print('OMP_WAIT_POLICY' in os.environ)"
    done = python(code, env={"OMP_WAIT_POLICY": None, "OMP_DISPLAY_ENV": "verbose"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    # libgomp shows the policy as PASSIVE either way; its spin count tells: 300000 by default,
    # 0 when told passive.
    spin = re.search(r"GOMP_SPINCOUNT\s*=\s*'(\d+)'", done.stderr)
    if spin is None:
        pytest.skip("the OpenMP runtime is not libgomp")
    assert spin.group(1) == "0"


def test_every_variant_this_cpu_runs_trains_the_same(portable):
    have = set(portable["cpu_features"])
    runnable = [v for v in portable["isa_built"] if set(_dispatch.required_features(v)) <= have]
    results = {v: trained(isa=v) for v in runnable}
    ref = results[runnable[-1]]  # the baseline
    for variant, got in results.items():
        assert got["info"]["isa"] == variant
        assert got["info"]["isa_choice"] == f"FASTBP_ISA={variant}"
        # the AVX-512 core runs its large float32 products in fastbp's kernels, the others in
        # OpenBLAS: both train the same network to float32 rounding
        assert got["info"]["own_gemm"] == (variant == "v4"), variant
        for dtype, rtol, atol in (("float32", 1e-4, 1e-5), ("float64", 1e-10, 1e-12)):
            np.testing.assert_allclose(
                got[dtype]["loss"], ref[dtype]["loss"], rtol=rtol, err_msg=f"{variant} {dtype}"
            )
            for w, w_ref in zip(got[dtype]["weights"], ref[dtype]["weights"]):
                np.testing.assert_allclose(w, w_ref, rtol=rtol, atol=atol, err_msg=variant)
        np.testing.assert_allclose(got["forward"], ref["forward"], rtol=1e-5, atol=1e-6)


needs_qemu = pytest.mark.skipif(
    not IS_X86_64 or QEMU is None, reason="needs an x86-64 host with qemu-x86_64 (qemu-user)"
)


@needs_qemu
@pytest.mark.parametrize("cpu", sorted(QEMU_CPUS))
def test_runs_on_an_older_cpu(portable, cpu):
    expected = next(v for v in QEMU_CPUS[cpu] if v in portable["isa_built"])
    got = trained(cpu=cpu)
    assert got["info"]["isa"] == expected
    assert "avx512f" not in got["info"]["cpu_features"]
    for dtype in ("float32", "float64"):
        loss = got[dtype]["loss"]
        assert loss[-1] < 0.8 * loss[0], f"{cpu} {dtype}: {loss}"


@needs_qemu
def test_forcing_a_level_the_cpu_lacks_fails_clearly(portable):
    done = python("import fastbp", isa="v4", cpu="Haswell")
    assert done.returncode != 0
    assert "FASTBP_ISA=v4: this CPU (or its operating system) lacks avx512f" in done.stderr
    assert "Illegal instruction" not in done.stderr


# Instructions a level may not contain: any VEX/EVEX-encoded one (AVX and later: mnemonics
# starting with "v", or operands in ymm/zmm registers) below v3, the SSE4/POPCNT ones below v2,
# 512-bit registers below v4.
AVX = re.compile(r"\tv[a-z0-9]+\s|%[yz]mm")
SSE4 = re.compile(r"\t(round[ps][sd]|pmulld|ptest|p?blendv|pminsd|pmaxsd|pinsrd|popcnt|crc32)\s")
ZMM = re.compile(r"%zmm")


def disassembly(path):
    done = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(
    not IS_X86_64 or shutil.which("objdump") is None or sys.platform != "linux",
    reason="needs objdump on x86-64 Linux",
)
@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("_cpu_features", (AVX, SSE4)),
        ("_core_baseline", (AVX, SSE4)),
        ("_core_v2", (AVX,)),
        ("_core_v3", (ZMM,)),
    ],
)
def test_a_variant_holds_no_instruction_above_its_level(portable, module, forbidden):
    import importlib.util

    spec = importlib.util.find_spec(f"fastbp.{module}")
    if spec is None:
        pytest.skip(f"{module} not built")
    code = disassembly(spec.origin)
    for pattern in forbidden:
        found = pattern.findall(code)
        assert not found, f"{module}: {sorted(set(found))[:10]}"
