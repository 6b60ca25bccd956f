// The CUDA executor: the primitives of executor.hpp on one GPU, in one stream per executor
// (one per network: two networks train in two threads without sharing anything), with a cuBLAS
// handle bound to that stream and a workspace of its own (so that cuBLAS calls can be captured
// into CUDA graphs). No CUDA type appears here: the bindings, compiled by the host compiler,
// include this header; everything CUDA lives in cuda_exec.cu and kernels.cu.
//
// Errors: a failing CUDA or cuBLAS call throws std::runtime_error naming the call and the
// error; running out of device memory throws DeviceOutOfMemory (a MemoryError in Python).
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

#include "executor.hpp"

namespace fastbp {
namespace device {

struct DeviceOutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class CudaExec {
 public:
  static constexpr bool emulated = false;
  explicit CudaExec(int device);
  ~CudaExec();
  CudaExec(const CudaExec&) = delete;
  CudaExec& operator=(const CudaExec&) = delete;

  // Devices usable now (0 with the reason in *why when there is none: no driver, no GPU).
  static int device_count(std::string* why);
  static std::string device_name(int device);
  // Versions at run time: the driver's and the CUDA runtime's ("13.0"; the driver's "" when
  // there is none), and cuBLAS's ("13.0.2") from the library loaded.
  static std::string driver_version();
  static std::string runtime_version();
  static std::string cublas_version();
  // TF32 tensor-core products for float32 GEMMs (10-bit mantissa inputs), or full float32.
  void set_tf32(bool allow);
  int device() const { return device_; }
  // Makes this executor's device the calling thread's current one: every entry point of a
  // network calls it first (threads may have other current devices).
  void activate() const;
  int multiprocessors() const { return sms_; }

  // ---- memory ----
  static void* allocate(std::size_t bytes, int device);
  static void release(void* p, int device) noexcept;
  // Whole copies outside any stream, complete when they return.
  static void upload_sync(void* dst, const void* src, std::size_t bytes, int device);
  static void download_sync(void* dst, const void* src, std::size_t bytes, int device);
  // In the stream: upload returns once src may be reused; download once dst holds the data.
  void upload(void* dst, const void* src, std::size_t bytes);
  void download(void* dst, const void* src, std::size_t bytes);
  void copy(void* dst, const void* src, std::size_t bytes);
  void zero(void* dst, std::size_t bytes);
  void upload_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                   std::size_t width, std::size_t rows);
  void copy_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                 std::size_t width, std::size_t rows);
  void synchronize();

  // ---- graphs: a batch's launches captured once, replayed per batch ----
  class Graph {
   public:
    Graph() = default;
    Graph(Graph&& o) noexcept : exec_(o.exec_) { o.exec_ = nullptr; }
    Graph& operator=(Graph&& o) noexcept;
    ~Graph();
    bool valid() const { return exec_ != nullptr; }

   private:
    friend class CudaExec;
    void* exec_ = nullptr;  // cudaGraphExec_t
  };
  bool graphs_supported() const { return true; }
  void begin_capture();
  Graph end_capture();
  void abort_capture() noexcept;  // leaves capture mode after a failure inside it
  void launch(const Graph& g);

  // ---- kernels (kernels.cu); see executor.hpp ----
  void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc);
  void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
            const double* B, int ldb, double beta, double* C, int ldc);
  template <class T>
  void activation_forward(Act act, const T* z, int n, int cols, T* a, int lda, const int* stop);
  template <class T>
  void activation_backward(Act act, const T* z, const T* a, int lda, T* d, int n, int cols,
                           const int* stop);
  template <class T>
  void dense_forward(const DenseForward<T>& f);
  template <class T>
  void dense_backward(const DenseBackward<T>& b);
  template <class T>
  void output(const OutputArgs<T>& o);
  template <class T>
  void gather(const GatherArgs<T>& g);
  template <class T>
  void fill_inputs(T* buf, int rows, int ld, int n_in);
  template <class T>
  void segment_sums(const T* x, const T* x0, const SegmentPlan& plan, double* partials,
                    const int* stop);
  void finish(const FinishArgs& f);
  template <class Rule, class T>
  void update(const UpdateArgs<Rule, T>& u);
  template <class T>
  void step_from(T* p, const T* p0, const T* g, T t, std::size_t n);
  template <class T>
  void flag_nonfinite(const T* x, std::size_t n, int* flag);

  // For the kernels' launchers.
  void* stream() const { return stream_; }
  int grid_for(std::size_t n, int threads) const;

 private:
  int device_ = 0;
  int sms_ = 1;
  void* stream_ = nullptr;     // cudaStream_t
  void* blas_ = nullptr;       // cublasHandle_t
  void* workspace_ = nullptr;  // cuBLAS workspace
};

// The GEMM rate the benchmark compares against: the best of `reps` timed (n x n) products on
// random data, in GFLOP/s (2 n^3 per product), through the same cuBLAS calls as the network.
double gemm_gflops(int device, int n, int reps, bool float64, bool tf32);

}  // namespace device
}  // namespace fastbp
