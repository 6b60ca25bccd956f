// The core's epoch without Python: train_epoch on one of bench/compare.py's configurations with
// random data, best and each epoch's seconds. For profiling (perf, per-phase timers patched into
// cpp/train.cpp) and for A/B runs of two checkouts side by side, where Python's noise would hide
// a few percent. Not part of the build. From the repository root, with scipy-openblas32
// installed, the native module's flags: link-time optimisation (without it tiny-online's epoch
// takes 1.7x as long) and 256-bit vectors for the optimizers (CMakeLists.txt):
//
//   INC=$(python -c "import scipy_openblas32 as s; print(s.get_include_dir())")
//   LIB=$(python -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
//   FLAGS="-O3 -march=native -flto=auto -std=c++17 -fopenmp -fno-math-errno -fno-trapping-math"
//   g++ $FLAGS -mprefer-vector-width=256 -Icpp -c cpp/optimizers.cpp -o /tmp/optimizers.o
//   SRC="bench/core_epoch.cpp cpp/network.cpp cpp/gemm.cpp cpp/gemm_packed.cpp cpp/train.cpp
//        /tmp/optimizers.o"
//   g++ $FLAGS -Icpp -I$INC $SRC -L$LIB -lscipy_openblas -Wl,-rpath,$LIB -o /tmp/core_epoch
//   env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/core_epoch mnist-like 5 2
//
// As under Python, subnormals are flushed (the default) and OpenMP's idle threads sleep unless
// OMP_WAIT_POLICY says otherwise (fastbp/__init__.py).
// Arguments: configuration (deep-narrow, mnist-like, wide, tiny-online), epochs, threads, and
// `bf16` for bfloat16 products (Trainer(matmul_precision="bfloat16")).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "denormals.hpp"
#include "train.hpp"

using namespace fastbp;

namespace {

struct Config {
  const char* name;
  std::vector<int> sizes;
  Act hidden, out;
  Loss loss;
  int batch;
  long samples;
  Optim optimizer;
  double lr, momentum;
};

const Config kConfigs[] = {
    {"deep-narrow",
     {64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 10},
     Act::sigmoid,
     Act::softmax,
     Loss::cross_entropy,
     32,
     10000,
     Optim::sgd,
     0.01,
     0.9},
    {"mnist-like",
     {784, 256, 128, 10},
     Act::relu,
     Act::softmax,
     Loss::cross_entropy,
     128,
     60000,
     Optim::adam,
     1e-3,
     0},
    {"wide",
     {1024, 2048, 2048, 10},
     Act::relu,
     Act::softmax,
     Loss::cross_entropy,
     512,
     20000,
     Optim::adam,
     1e-3,
     0},
    {"tiny-online",
     {2, 16, 16, 1},
     Act::tanh,
     Act::identity,
     Loss::mse,
     1,
     5000,
     Optim::sgd,
     0.01,
     0},
};

}  // namespace

int main(int argc, char** argv) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);  // before OpenMP starts, as `import fastbp` does
  const DenormalScope flush;                // the caller's thread, as bindings.cpp's calls
  const char* name = argc > 1 ? argv[1] : "mnist-like";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 5;
  const Config* cfg = nullptr;
  for (const Config& c : kConfigs)
    if (std::strcmp(c.name, name) == 0) cfg = &c;
  if (!cfg || epochs < 1) {
    std::fprintf(stderr,
                 "usage: core_epoch {deep-narrow,mnist-like,wide,tiny-online} EPOCHS [THREADS]\n");
    return 2;
  }
  if (argc > 3) set_num_threads(std::atoi(argv[3]));

  const int L = int(cfg->sizes.size()) - 1;
  Network<float> net(cfg->sizes, std::vector<Act>(L - 1, cfg->hidden), cfg->out, cfg->loss);
  std::mt19937 rng(0);
  for (int l = 0; l < L; ++l) {  // Glorot-uniform weights, zero biases
    const float a = std::sqrt(6.0f / float(cfg->sizes[l] + cfg->sizes[l + 1]));
    std::uniform_real_distribution<float> w(-a, a);
    for (std::size_t i = 0; i < net.w_size(l); ++i) net.params()[net.w_offset(l) + i] = w(rng);
  }
  const int d = cfg->sizes.front(), k = cfg->sizes.back();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> X(std::size_t(cfg->samples) * d), Y;
  std::vector<int32_t> labels;
  for (float& v : X) v = normal(rng);
  Target<float> y;
  if (cfg->loss == Loss::mse) {
    Y.resize(std::size_t(cfg->samples) * k);
    for (float& v : Y) v = normal(rng);
    y.dense = Y.data();
  } else {
    labels.resize(std::size_t(cfg->samples));
    for (long i = 0; i < cfg->samples; ++i) labels[i] = int32_t(rng() % unsigned(k));
    y.labels = labels.data();
  }

  OptimizerState<float> opt(net.n_params());
  OptimConfig oc;
  oc.kind = cfg->optimizer;
  oc.lr = cfg->lr;
  oc.momentum = cfg->momentum;
  EpochConfig ec;
  ec.batch_size = cfg->batch;
  ec.bf16_products = argc > 4 && std::strcmp(argv[4], "bf16") == 0;
  std::vector<float> p_start(net.n_params());
  double best = 1e30;
  for (int e = 0; e <= epochs; ++e) {  // epoch 0 warms up
    ec.epoch = e;
    StopCheck stop;
    const auto t0 = std::chrono::steady_clock::now();
    const EpochStats s =
        train_epoch(net, opt, oc, X.data(), cfg->samples, y, ec, p_start.data(), stop);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (e > 0) best = std::min(best, dt);
    std::printf("epoch %d: %.4f s, loss %.5f, %d threads\n", e, dt, s.loss, s.threads);
  }
  std::printf("%s: best %.4f s/epoch (%.0f ns/sample)\n", cfg->name, best,
              best / double(cfg->samples) * 1e9);
  return 0;
}
