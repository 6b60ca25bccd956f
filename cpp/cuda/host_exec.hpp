// The host executor: the CUDA backend's primitives (executor.hpp) on host memory, each the loop
// over the same per-thread functions (device_ops.hpp) that a CUDA kernel runs one thread of.
// GEMM goes through the same row-major to column-major mapping as the cuBLAS call, into a
// column-major reference product. While capturing, operations are recorded instead of run and
// a replay runs them again: what a batch reads must come from memory (EpochState), exactly as
// in a CUDA graph, or the emulated epoch goes wrong too.
#pragma once
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "executor.hpp"

namespace fastbp {
namespace device {

class HostExec {
 public:
  static constexpr bool emulated = true;
  explicit HostExec(int device) { (void)device; }
  HostExec(const HostExec&) = delete;
  HostExec& operator=(const HostExec&) = delete;

  static int device_count(std::string* why) {
    if (why) *why = "";
    return 1;
  }
  static std::string device_name(int) { return "host emulation of the CUDA backend"; }
  static std::string driver_version() { return ""; }
  static std::string runtime_version() { return ""; }
  static std::string cublas_version() { return ""; }
  void set_tf32(bool) {}
  void activate() const {}

  // ---- memory ----
  static void* allocate(std::size_t bytes, int) {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void release(void* p, int) noexcept { std::free(p); }
  static void upload_sync(void* dst, const void* src, std::size_t bytes, int) {
    std::memcpy(dst, src, bytes);
  }
  static void download_sync(void* dst, const void* src, std::size_t bytes, int) {
    std::memcpy(dst, src, bytes);
  }
  void upload(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, std::size_t bytes) {
    run([=] { std::memmove(dst, src, bytes); });
  }
  void zero(void* dst, std::size_t bytes) {
    run([=] { std::memset(dst, 0, bytes); });
  }
  // rows x width bytes between pitched buffers
  void upload_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                   std::size_t width, std::size_t rows) {
    copy_rows_now(dst, dpitch, src, spitch, width, rows);
  }
  void copy_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                 std::size_t width, std::size_t rows) {
    run([=] { copy_rows_now(dst, dpitch, src, spitch, width, rows); });
  }
  void synchronize() {}

  // ---- graphs ----
  class Graph {
   public:
    bool valid() const { return !calls_.empty(); }

   private:
    friend class HostExec;
    std::vector<std::function<void()>> calls_;
  };
  bool graphs_supported() const { return true; }
  void begin_capture() { recording_ = &capture_.calls_; }
  Graph end_capture() {
    recording_ = nullptr;
    return std::exchange(capture_, Graph());
  }
  void abort_capture() noexcept {
    recording_ = nullptr;
    capture_ = Graph();
  }
  void launch(const Graph& g) {
    for (const auto& call : g.calls_) call();
  }

  // ---- kernels ----
  template <class T>
  void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
            int ldb, T beta, T* C, int ldc) {
    const ColumnMajorGemm g = as_column_major(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
    run([=] { column_major_gemm<T>(g, alpha, beta); });
  }

  template <class T>
  void activation_forward(Act act, const T* z, int n, int cols, T* a, int lda, const int* stop) {
    run([=] {
      if (stopped(stop)) return;
      with_activation(act, [&](auto kind) {
        using A = decltype(kind);
        if constexpr (A::hidden) {
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < cols; ++j)
              a[std::size_t(i) * lda + j] = A::forward(z[std::size_t(i) * cols + j]);
        }
      });
    });
  }

  template <class T>
  void activation_backward(Act act, const T* z, const T* a, int lda, T* d, int n, int cols,
                           const int* stop) {
    run([=] {
      if (stopped(stop)) return;
      with_activation(act, [&](auto kind) {
        using A = decltype(kind);
        if constexpr (A::hidden && !std::is_same_v<A, Identity>) {
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < cols; ++j) {
              const std::size_t e = std::size_t(i) * cols + j;
              d[e] *= A::derivative(z[e], a[std::size_t(i) * lda + j]);
            }
        }
      });
    });
  }

  template <class T>
  void dense_forward(const DenseForward<T>& f) {
    run([=] {
      if (stopped(f.stop)) return;
      with_activation(f.act, [&](auto kind) {
        using A = decltype(kind);
        if constexpr (A::hidden) {
          for (int i = 0; i < f.n; ++i)
            for (int j = 0; j < f.n_out; ++j)
              dense_forward_entry<A>(f.in, f.ld_in, f.wb, f.n_in, f.n_out, f.z, f.a, f.lda, i, j);
        }
      });
    });
  }

  template <class T>
  void dense_backward(const DenseBackward<T>& b) {
    run([=] {
      if (stopped(b.stop)) return;
      for (int r = 0; r <= b.n_in; ++r)
        for (int j = 0; j < b.n_out; ++j)
          weight_grad_entry(b.in, b.ld_in, b.dz, b.n, b.n_out, b.gwb, r, j);
      if (!b.dprev) return;
      with_activation(b.act_prev, [&](auto kind) {
        using A = decltype(kind);
        if constexpr (A::hidden) {
          for (int i = 0; i < b.n; ++i)
            for (int c = 0; c < b.n_in; ++c)
              input_grad_entry<A>(b.dz, b.wb, b.n_out, b.z_prev, b.in, b.ld_in, b.n_in, b.dprev, i,
                                  c);
        }
      });
    });
  }

  template <class T>
  void output(const OutputArgs<T>& o) {
    run([=] {
      if (stopped(o.stop)) return;
      with_loss(o.loss, [&](auto lk) {
        using L = decltype(lk);
        with_activation(o.act, [&](auto ak) {
          using A = decltype(ak);
          if constexpr (loss_allows<L, A>()) {
            const bool with_loss_rows = o.targets || o.labels;
            for (int i = 0; i < o.n; ++i) {
              const std::size_t r = std::size_t(i) * o.k;
              output_row<L, A>(o.z + r, o.a + r, o.k, o.targets ? o.targets + r : nullptr,
                               o.labels ? o.labels + i : nullptr, o.scale,
                               o.dz ? o.dz + r : nullptr, with_loss_rows ? o.row_loss + i : nullptr,
                               with_loss_rows ? o.row_correct + i : nullptr);
            }
          }
        });
      });
    });
  }

  template <class T>
  void gather(const GatherArgs<T>& g) {
    run([=] {
      if (stopped(g.stop)) return;
      const long long first = g.state ? g.state->batch * g.batch_size : g.first;
      for (int i = 0; i < g.n; ++i) {
        const long long r = g.order[first + i];
        std::memcpy(g.x_out + std::size_t(i) * g.ld_x, g.X + std::size_t(r) * g.d,
                    sizeof(T) * std::size_t(g.d));
        if (g.labels) g.labels_out[i] = g.labels[r];
        if (g.Y)
          std::memcpy(g.y_out + std::size_t(i) * g.k, g.Y + std::size_t(r) * g.k,
                      sizeof(T) * std::size_t(g.k));
      }
    });
  }

  // Zeros, and a column of ones at n_in: what a layer input holds outside its values.
  template <class T>
  void fill_inputs(T* buf, int rows, int ld, int n_in) {
    run([=] {
      std::memset(buf, 0, sizeof(T) * std::size_t(rows) * ld);
      for (int i = 0; i < rows; ++i) buf[std::size_t(i) * ld + n_in] = T(1);
    });
  }

  // x0 null: partials[b] = sum of x^2 over block b; else partials[b] = sum (x - x0)^2 and
  // partials[n_blocks + b] = sum x0^2.
  template <class T>
  void segment_sums(const T* x, const T* x0, const SegmentPlan& plan, double* partials,
                    const int* stop) {
    const SegmentPlan p = plan;
    run([=] {
      if (stopped(stop)) return;
      for (int b = 0; b < p.n_blocks; ++b) {
        double s = 0, s0 = 0;
        for (long long i = p.begin[b]; i < p.end[b]; ++i) add_segment_terms(x, x0, i, s, s0);
        partials[b] = s;
        if (x0) partials[p.n_blocks + b] = s0;
      }
    });
  }

  void finish(const FinishArgs& f) {
    run([=] {
      if (f.state->stop) return;
      for (int s = 0; s < f.plan.n_segments; ++s) {
        double sum = 0;
        for (int b = f.plan.first[s]; b < f.plan.first[s + 1]; ++b) sum += f.partials[b];
        f.seg_sq[s] = sum;
      }
      double loss = 0, correct = 0;
      for (int i = 0; i < f.n; ++i) {
        loss += f.row_loss[i];
        correct += f.row_correct[i];
      }
      finish_batch(*f.state, f.seg_sq, loss, correct, f.n, f.norm_sum, f.norm_max);
    });
  }

  template <class Rule, class T>
  void update(const UpdateArgs<Rule, T>& u) {
    run([=] {
      if (u.state && u.state->stop) return;
      const BatchPlan<Rule> plan = u.plans[u.state ? u.state->current : 0];
      const Transform tr = u.state ? transform_of(*u.state) : u.transform;
      for (std::size_t i = 0; i < u.n; ++i) update_entry(plan, tr, u.p, u.g, i);
    });
  }

  // p = p0 - t g (a line-search trial)
  template <class T>
  void step_from(T* p, const T* p0, const T* g, T t, std::size_t n) {
    run([=] {
      for (std::size_t i = 0; i < n; ++i) p[i] = p0[i] - t * g[i];
    });
  }

  // *flag = 1 if some x[i] is not finite (the caller zeroes it)
  template <class T>
  void flag_nonfinite(const T* x, std::size_t n, int* flag) {
    run([=] {
      for (std::size_t i = 0; i < n; ++i)
        if (!(x[i] - x[i] == 0)) *flag = 1;
    });
  }

  static Transform transform_of(const EpochState& s) {
    Transform t;
    t.clip_coef = s.clip_coef;
    t.clip_value = s.clip_value;
    t.noise = s.noise != 0;
    return t;
  }

 private:
  template <class F>
  void run(F&& f) {
    if (recording_)
      recording_->emplace_back(std::forward<F>(f));
    else
      f();
  }
  static bool stopped(const int* stop) { return stop && *stop; }
  static void copy_rows_now(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                            std::size_t width, std::size_t rows) {
    for (std::size_t r = 0; r < rows; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                   width);
  }
  // C (m x n, column-major) = alpha op(A) op(B) + beta C: the BLAS definition, plainly.
  template <class T>
  static void column_major_gemm(const ColumnMajorGemm& g, T alpha, T beta) {
    const T* A = static_cast<const T*>(g.a);
    const T* B = static_cast<const T*>(g.b);
    T* C = static_cast<T*>(g.c);
    for (int j = 0; j < g.n; ++j)
      for (int i = 0; i < g.m; ++i) {
        T acc = 0;
        for (int p = 0; p < g.k; ++p) {
          const T a = g.trans_a ? A[std::size_t(i) * g.lda + p] : A[std::size_t(p) * g.lda + i];
          const T b = g.trans_b ? B[std::size_t(p) * g.ldb + j] : B[std::size_t(j) * g.ldb + p];
          acc += a * b;
        }
        T& c = C[std::size_t(j) * g.ldc + i];
        c = beta == T(0) ? alpha * acc : alpha * acc + beta * c;
      }
  }

  std::vector<std::function<void()>>* recording_ = nullptr;
  Graph capture_;
};

}  // namespace device
}  // namespace fastbp
