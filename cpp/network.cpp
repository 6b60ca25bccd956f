#include "network.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "gemm.hpp"
#include "gemm_packed.hpp"

namespace fastbp {

// With the user's OMP_WAIT_POLICY=active, libgomp's threads spin between regions. Read when
// the module loads (a function's static would be set up under a lock, which a fork in the
// middle would leave taken in the child).
static const bool g_omp_threads_spin = [] {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  return policy && (std::string(policy) == "active" || std::string(policy) == "ACTIVE");
}();

// f(t, team, r0, r1) on each thread t of an OpenMP team of `threads` (it may start fewer),
// rows [r0, r1) being thread t's share of n: rows are independent through the forward and
// backward chains, so a team splits a batch by rows and meets only where it must.
template <class T, class F>
static void row_team(int threads, int n, F&& f) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const DenormalScope fp;  // a worker thread too computes as the setting says
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    f(t, team, Network<T>::share(n, t, team), Network<T>::share(n, t + 1, team));
  }
#else
  (void)threads;
  f(0, 1, 0, n);
#endif
}

template <class T>
Network<T>::Network(std::vector<int> sizes, std::vector<Act> hidden, Act out, Loss loss)
    : sizes_(std::move(sizes)), loss_(loss) {
  Layout layout = check_layout(sizes_, hidden, out, loss, kMaxParams);
  acts_ = std::move(layout.acts);
  w_off_ = std::move(layout.w_off);
  const std::size_t total = layout.n_params;
  params_.assign(total, T(0));
  grads_.assign(total, T(0));
  z_.resize(n_layers());
  a_.resize(n_layers());
  dz_.resize(n_layers());
}

template <class T>
void Network<T>::set_bf16_products(bool on) {
  require(!on || std::is_same_v<T, float>, "bfloat16 products need a float32 network");
  require(!on || bf16_supported(), "bfloat16 products need a CPU with AVX512-BF16");
  if (on != bf16_) release_packed();  // copies in the other precision's format
  bf16_ = on;
}

template <class T>
void Network<T>::settle_after_fork() {
  const std::uint64_t now = fork_generation();
  if (generation_ == now) return;
  generation_ = now;
  release_packed();
  bf16_ = false;  // outside an epoch a network's products are never in bfloat16
}

template <class T>
void Network<T>::prepare_packed(int n, int parts, bool split) {
  if constexpr (std::is_same_v<T, float>) {
    release_packed();
    if (!own_gemm_built()) return;
    const int rows = n / std::max(parts, 1);  // the fewest a part gets
    packed_w_.resize(n_layers());
    packed_wt_.resize(n_layers());
    bool any = false;
    auto keep = [&](LineVector<std::uint32_t>& copy, bool wanted, int K, int N) {
      copy.assign(wanted ? packed_b_words(bf16_, K, N) : 0, 0);  // what is never packed stays 0
      any = any || wanted;
    };
    for (int l = 0; l < n_layers(); ++l) {
      const int in = sizes_[l], out = sizes_[l + 1];
      // X W_l, except the first layer's when split by inputs (first_layer_part)
      keep(packed_w_[l], !(l == 0 && split) && packed_worth(bf16_, false, rows, out, in), in, out);
      keep(packed_wt_[l], l > 0 && packed_worth(bf16_, true, rows, in, out), out, in);  // dZ W_l^T
    }
    if (!any) release_packed();  // pack_part has nothing to do
  } else {
    (void)n, (void)parts, (void)split;
  }
}

template <class T>
void Network<T>::release_packed() {
  packed_w_.clear();
  packed_wt_.clear();
}

template <class T>
void Network<T>::pack_part(int part, int parts) {
  if constexpr (std::is_same_v<T, float>) {
    if (packed_w_.empty()) return;  // not prepared
    for (int l = 0; l < n_layers(); ++l) {
      const int in = sizes_[l], out = sizes_[l + 1];
      const int r0 = share(in, part, parts), r1 = share(in, part + 1, parts);
      const float* W = params_.data() + w_off_[l];
      if (!packed_w_[l].empty()) pack_rows(bf16_, W, in, out, r0, r1, packed_w_[l].data());
      if (!packed_wt_[l].empty())
        pack_rows_transposed(bf16_, W, in, out, r0, r1, packed_wt_[l].data());
    }
  } else {
    (void)part, (void)parts;
  }
}

template <class T>
void Network<T>::ensure_capacity(int n) {
  if (n <= capacity_) return;
  for (int l = 0; l < n_layers(); ++l) {
    const std::size_t size = std::size_t(n) * sizes_[l + 1];
    z_[l].resize(size);
    a_[l].resize(size);
    dz_[l].resize(size);
  }
  capacity_ = n;
}

// Rows [r0, r1) of every layer: Z_l = A_{l-1} W_l + b_l, A_l = f_l(Z_l), where X is (n, n_in)
// and Z_l, A_l are (n, n_l). Rows are independent, so row ranges can run on different threads.
template <class T>
void Network<T>::forward_rows(const T* X, int r0, int r1, int first) {
  const int m = r1 - r0;
  for (int l = first; l < n_layers(); ++l) {
    const int in = sizes_[l], out = sizes_[l + 1];
    T* z = z_[l].data() + std::size_t(r0) * out;
    gemm<T>(false, false, m, out, in, T(1), layer_input(X, l) + std::size_t(r0) * in, in,
            params_.data() + w_off_[l], out, T(0), z, out, params_.data() + b_offset(l), bf16_,
            packed(packed_w_, l));
    activation_forward(acts_[l], z, a_[l].data() + std::size_t(r0) * out, m, out);
  }
}

// A forward pass meets once, at its end: split by rows once each thread gets enough of them
// for its products to run at full speed (below that, each product is split by panels).
template <class T>
void Network<T>::forward_batch(const T* X, int n) {
  ensure_capacity(n);
  const int threads = std::min(batch_threads(n, g_omp_threads_spin), n / kMinForwardRows);
  if (threads < 2) {
    forward_rows(X, 0, n);
    return;
  }
  row_team<T>(threads, n, [&](int, int, int r0, int r1) { forward_rows(X, r0, r1); });
}

template <class T>
static Target<T> rows_from(Target<T> y, long first, int k) {
  Target<T> t;
  if (y.labels) t.labels = y.labels + first;
  if (y.dense) t.dense = y.dense + first * k;
  return t;
}

// Loss sums over rows [r0, r1); with a gradient, dZ of the output layer for those rows.
template <class T>
LossSums Network<T>::loss_rows(Target<T> y, int r0, int r1, T scale, bool gradient) {
  const int L = n_layers(), k = n_out();
  const std::size_t off = std::size_t(r0) * k;
  return loss_forward_backward<T>(loss_, acts_[L - 1], z_[L - 1].data() + off,
                                  a_[L - 1].data() + off, rows_from(y, r0, k), r1 - r0, k, scale,
                                  gradient ? dz_[L - 1].data() + off : nullptr);
}

// Rows [r0, r1) of every layer's dZ, last to first: dZ_{l-1} = (dZ_l W_l^T) * f'(Z_{l-1}).
// Like the forward pass, each row depends on that row alone.
template <class T>
void Network<T>::backprop_rows(int r0, int r1) {
  const int m = r1 - r0;
  for (int l = n_layers() - 1; l > 0; --l) {
    const int in = sizes_[l], out = sizes_[l + 1];
    const std::size_t off = std::size_t(r0) * in;
    T* dprev = dz_[l - 1].data() + off;
    gemm<T>(false, true, m, in, out, T(1), dz_[l].data() + std::size_t(r0) * out, out,
            params_.data() + w_off_[l], out, T(0), dprev, in, nullptr, bf16_,
            packed(packed_wt_, l));
    activation_backward(acts_[l - 1], z_[l - 1].data() + off, a_[l - 1].data() + off, dprev, m, in);
  }
}

// Part `part` of `parts` of layer l's gradients over all n rows: rows [i0, i1) of
// gW_l = A_{l-1}^T dZ_l (n_in x n_out) and entries [j0, j1) of gb_l = column sums of dZ_l.
// The parts are disjoint, so threads can fill them at once. With sq, sq[0] and sq[1] receive
// the sums of squares of the part's weight and bias entries.
template <class T>
void Network<T>::layer_gradient(const T* X, int l, int n, int part, int parts, double* sq) {
  const int in = sizes_[l], out = sizes_[l + 1];
  const int i0 = share(in, part, parts), i1 = share(in, part + 1, parts);
  const int j0 = share(out, part, parts), j1 = share(out, part + 1, parts);
  const T* dz = dz_[l].data();
  T* gw = grads_.data() + w_off_[l] + std::size_t(i0) * out;
  const T* x = layer_input(X, l);
  if (n == 1 && out == 1) {  // one row, one output: gW is the column x dz
    const T d = dz[0];
#pragma omp simd
    for (int i = i0; i < i1; ++i) gw[i - i0] = x[i] * d;
  } else if (n == 1) {  // one row: the outer product x^T dz, each entry one product as in the GEMM
    for (int i = i0; i < i1; ++i) {
      const T xi = x[i];
      T* row = gw + std::size_t(i - i0) * out;
#pragma omp simd
      for (int j = 0; j < out; ++j) row[j] = xi * dz[j];
    }
  } else if (i1 > i0) {
    gemm<T>(true, false, i1 - i0, out, n, T(1), x + i0, in, dz, out, T(0), gw, out, nullptr, bf16_);
  }
  T* gb = grads_.data() + b_offset(l);
  double sq_b = 0;
  if (n == 1) {  // one row (online learning): gb is that row
    std::copy(dz + j0, dz + j1, gb + j0);
    if (sq) sq_b = sum_squares(dz + j0, std::size_t(j1 - j0));
  } else {
    std::fill(gb + j0, gb + j1, T(0));
    for (int i = 0; i < n; ++i) {
      const T* row = dz + std::size_t(i) * out;
#pragma omp simd
      for (int j = j0; j < j1; ++j) gb[j] += row[j];
    }
    if (sq) sq_b = sum_squares(gb + j0, std::size_t(j1 - j0));
  }
  if (!sq) return;
  sq[1] = sq_b;
  const std::size_t entries = std::size_t(i1 - i0) * out;
  if (n == 1) {
    // One row: gW = x^T dz, whose sum of squares is |x|^2 |dz|^2, without a pass over gW;
    // unless an entry of gW may have overflowed in T (its square would pass max^2) or every
    // entry may have flushed to zero: then the pass reports what gW holds, inf or 0.
    const double q = sum_squares(x + i0, std::size_t(i1 - i0)) *
                     (j0 == 0 && j1 == out ? sq_b : sum_squares(dz, std::size_t(out)));
    constexpr double big = double(std::numeric_limits<T>::max()) / 2;
    constexpr double tiny = double(std::numeric_limits<T>::min());
    if (q <= big * big && q >= double(entries) * tiny * tiny) {
      sq[0] = q;
      return;
    }
  }
  sq[0] = sum_squares(gw, entries);
}

template <class T>
void Network<T>::reserve(int n, int parts) {
  ensure_capacity(n);
  if (!split_first_layer(n, parts)) return;
  first_part_.resize(std::max<std::size_t>(first_part_.size(), parts));
  for (LineVector<T>& part : first_part_)
    if (part.size() < std::size_t(n) * sizes_[1]) part.resize(std::size_t(n) * sizes_[1]);
}

// Worth it where W_0 is large against a part's product, which every part writes whole and the
// others read in part: many inputs per batch row. Measured on 2 threads: mnist-like (784
// inputs, 128 rows) 5-10% faster an epoch; wide (1024 inputs, 512 rows) no faster, so it is left
// out (at least 4 inputs a row) and spared the parts' 8 MB.
template <class T>
bool Network<T>::split_first_layer(int n, int parts) const {
  return parts > 1 && n > 0 && sizes_[0] >= 4 * n && sizes_[0] / parts >= kMinSplitInputs &&
         w_size(0) * sizeof(T) >= kSplitFirstBytes;
}

// The part's share of the first product over all n rows: X[:, i0:i1] W_0[i0:i1, :], where
// [i0, i1) are the part's rows of W_0 (those of its gradient part and of its update).
template <class T>
void Network<T>::first_layer_part(const T* X, int n, int part, int parts) {
  const int in = sizes_[0], out = sizes_[1];
  const int i0 = share(in, part, parts), i1 = share(in, part + 1, parts);
  gemm<T>(false, false, n, out, i1 - i0, T(1), X + i0, in,
          params_.data() + w_offset(0) + std::size_t(i0) * out, out, T(0), first_part_[part].data(),
          out, nullptr, bf16_);
}

template <class T>
LossSums Network<T>::rows_pass(const T* X, Target<T> y, int n, int r0, int r1, int split) {
  if (split > 0) {  // Z_0 = the parts' products summed in part order, + b_0
    const int out = sizes_[1];
    const T* b = params_.data() + b_offset(0);
    for (int r = r0; r < r1; ++r) {
      T* z = z_[0].data() + std::size_t(r) * out;
      std::copy(b, b + out, z);
      for (int p = 0; p < split; ++p) {
        const T* part = first_part_[p].data() + std::size_t(r) * out;
#pragma omp simd
        for (int j = 0; j < out; ++j) z[j] += part[j];
      }
    }
    const std::size_t off = std::size_t(r0) * out;
    activation_forward(acts_[0], z_[0].data() + off, a_[0].data() + off, r1 - r0, out);
  }
  forward_rows(X, r0, r1, split > 0 ? 1 : 0);
  const LossSums s = loss_rows(y, r0, r1, T(1) / T(n), true);
  backprop_rows(r0, r1);
  return s;
}

template <class T>
void Network<T>::gradient_part(const T* X, int n, int part, int parts, double* sq) {
  const int L = n_layers();
  double layer_sq[2];
  if (sq) sq[L] = 0;
  for (int l = 0; l < L; ++l) {
    layer_gradient(X, l, n, part, parts, sq ? layer_sq : nullptr);
    if (!sq) continue;
    sq[l] = layer_sq[0];
    sq[L] += layer_sq[0] + layer_sq[1];
  }
}

// Threads for a batch-parallel backward: each thread takes a slice of the rows through the
// whole forward and backward chain (rows are independent), then a part of every layer's
// gradient. The batch must carry enough work to pay for meeting twice.
template <class T>
int Network<T>::batch_threads(int n, bool spinning) const {
  const int threads = std::min(num_threads(), n / kMinRowsPerThread);
  if (threads < 2 || in_parallel()) return 1;
  double macs = 0;  // forward, input gradient and weight gradient: about 3x the forward
  for (int l = 0; l < n_layers(); ++l) macs += 3.0 * n * sizes_[l] * sizes_[l + 1];
  return macs >= (spinning ? kBatchParallelMacsSpinning : kBatchParallelMacs) ? threads : 1;
}

template <class T>
void Network<T>::forward(const T* X, long n, T* out, StopCheck* stop) {
  const int k = n_out();
  for (long r = 0; r < n; r += kChunk) {
    if (r > 0 && stop && stop->requested()) return;
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    std::copy(a_.back().data(), a_.back().data() + std::size_t(m) * k, out + r * k);
  }
}

template <class T>
LossSums Network<T>::evaluate(const T* X, Target<T> y, long n, StopCheck* stop) {
  LossSums total;
  const int k = n_out();
  for (long r = 0; r < n; r += kChunk) {
    if (r > 0 && stop && stop->requested()) break;
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    const LossSums s = loss_rows(rows_from(y, r, k), 0, m, T(0), false);
    total.loss += s.loss;
    total.correct += s.correct;
  }
  return total;
}

template <class T>
LossSums Network<T>::backward(const T* X, Target<T> y, int n) {
  ensure_capacity(n);
  const int threads = batch_threads(n, g_omp_threads_spin);
  if (threads == 1) {
    const LossSums s = rows_pass(X, y, n, 0, n);
    gradient_part(X, n, 0, 1, nullptr);
    return s;
  }
  partial_.assign(threads, LossSums());
  row_team<T>(threads, n, [&](int t, int team, int r0, int r1) {
    partial_[t] = rows_pass(X, y, n, r0, r1);
#pragma omp barrier
    gradient_part(X, n, t, team, nullptr);
  });
  LossSums s;
  for (const LossSums& p : partial_) {  // summed in thread order: deterministic
    s.loss += p.loss;
    s.correct += p.correct;
  }
  return s;
}

template <class T>
void Network<T>::weight_grad_norms(double* out) const {
  for (int l = 0; l < n_layers(); ++l)
    out[l] = std::sqrt(sum_squares(grads_.data() + w_off_[l], w_size(l)));
}

// One forward pass over X, chunk by chunk; each layer's statistics gather over the chunks.
template <class T>
LayerStats Network<T>::layer_stats(const T* X, long n) {
  LayerStatsBuilder stats(std::vector<int>(sizes_.begin() + 1, sizes_.end()), acts_);
  long width = 0;  // entries per row, all layers together
  for (int l = 0; l < n_layers(); ++l) width += sizes_[l + 1];
  for (long r = 0; r < n; r += kChunk) {
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    // The layers' statistics are independent: a team takes them a layer at a time, each layer
    // on one thread in chunk order, so the sums do not depend on the team.
    const int threads =
        width * m >= kParallelMin && !in_parallel() ? std::min(num_threads(), n_layers()) : 1;
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
    for (int l = 0; l < n_layers(); ++l) {
      const DenormalScope fp;
      stats.add(l, z_[l].data(), a_[l].data(), m);
    }
  }
  return stats.finish(n);
}

template class Network<float>;
template class Network<double>;

namespace {
std::atomic<int> g_threads{0};                 // 0: not set, use the OpenMP default
thread_local int t_threads = 0;                // the calling thread's own count; 0: none
const int g_max_threads = blas_max_threads();  // read when the module loads
}  // namespace

int max_threads() { return forked_child() ? 1 : g_max_threads; }

// The threads a count asks for (0: OpenMP's default), within max_threads().
static int threads_for(int n) {
#ifdef _OPENMP
  return std::min(n > 0 ? n : omp_get_max_threads(), max_threads());
#else
  (void)n;
  return 1;
#endif
}

int num_threads() { return threads_for(t_threads > 0 ? t_threads : g_threads.load()); }

int set_num_threads(int n) {
  require(n >= 1, "n must be >= 1");
  g_threads = n;
  return threads_for(n);  // the process's count, whatever the calling thread's own
}

int set_local_num_threads(int n) {
  require(n >= 0, "n must be >= 0");
  const int before = t_threads;
  t_threads = n;
  return before;
}

}  // namespace fastbp
