// The CUDA executor's runtime side: device, stream, memory, cuBLAS, graphs (the kernels are in
// kernels.cu).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda_check.cuh"
#include "cuda_exec.hpp"

namespace fastbp {
namespace device {

namespace {
// cuBLAS wants a workspace of its own for graph capture; 32 MiB is what it asks for on Hopper.
constexpr std::size_t kBlasWorkspace = std::size_t(32) << 20;

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
cublasHandle_t as_blas(void* h) { return static_cast<cublasHandle_t>(h); }
}  // namespace

CudaExec::CudaExec(int device) : device_(device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  cudaStream_t stream = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = stream;
  cublasHandle_t handle = nullptr;
  const cublasStatus_t created = cublasCreate(&handle);
  if (created != CUBLAS_STATUS_SUCCESS) {
    cudaStreamDestroy(stream);
    check_blas(created, "cublasCreate");
  }
  blas_ = handle;
  try {
    check_blas(cublasSetStream(handle, stream), "cublasSetStream");
    workspace_ = allocate(kBlasWorkspace, device);
    check_blas(cublasSetWorkspace(handle, workspace_, kBlasWorkspace), "cublasSetWorkspace");
    check_blas(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  } catch (...) {
    cublasDestroy(handle);
    release(workspace_, device);
    cudaStreamDestroy(stream);
    throw;
  }
}

namespace {
// At interpreter exit Python may free networks after the CUDA runtime has begun unloading:
// then nothing is released (the process is ending), rather than calling into it.
bool runtime_alive(int device) {
  const cudaError_t err = cudaSetDevice(device);
  if (err == cudaSuccess) return true;
  cudaGetLastError();
  return false;
}
}  // namespace

CudaExec::~CudaExec() {
  if (!runtime_alive(device_)) return;
  cudaStreamSynchronize(as_stream(stream_));
  cublasDestroy(as_blas(blas_));
  release(workspace_, device_);
  cudaStreamDestroy(as_stream(stream_));
}

int CudaExec::device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // not sticky: leave no error behind
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

std::string CudaExec::device_name(int device) {
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

namespace {
std::string cuda_version_text(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

std::string CudaExec::driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess || v == 0) {
    cudaGetLastError();
    return "";
  }
  return cuda_version_text(v);
}

std::string CudaExec::runtime_version() {
  int v = 0;
  check(cudaRuntimeGetVersion(&v), "cudaRuntimeGetVersion");
  return cuda_version_text(v);
}

std::string CudaExec::cublas_version() {
  int major = 0, minor = 0, patch = 0;
  check_blas(cublasGetProperty(MAJOR_VERSION, &major), "cublasGetProperty");
  check_blas(cublasGetProperty(MINOR_VERSION, &minor), "cublasGetProperty");
  check_blas(cublasGetProperty(PATCH_LEVEL, &patch), "cublasGetProperty");
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

void CudaExec::activate() const { check(cudaSetDevice(device_), "cudaSetDevice"); }

void CudaExec::set_tf32(bool allow) {
  check_blas(
      cublasSetMathMode(as_blas(blas_), allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
      "cublasSetMathMode");
}

int CudaExec::grid_for(std::size_t n, int threads) const {
  const std::size_t blocks = (n + std::size_t(threads) - 1) / std::size_t(threads);
  const std::size_t most = std::size_t(sms_) * 32;  // grid-stride loops cover the rest
  return int(blocks < 1 ? 1 : (blocks < most ? blocks : most));
}

// ---- memory ----

void* CudaExec::allocate(std::size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw DeviceOutOfMemory("CUDA device " + std::to_string(device) + " is out of memory (" +
                            std::to_string(bytes) + " bytes requested)");
  }
  check(err, "cudaMalloc");
  return p;
}

void CudaExec::release(void* p, int device) noexcept {
  if (!p || !runtime_alive(device)) return;
  cudaFree(p);
}

void CudaExec::upload_sync(void* dst, const void* src, std::size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cudaStreamLegacy), "cudaMemcpy");
  check(cudaStreamSynchronize(cudaStreamLegacy), "cudaStreamSynchronize");
}

void CudaExec::download_sync(void* dst, const void* src, std::size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cudaStreamLegacy), "cudaMemcpy");
  check(cudaStreamSynchronize(cudaStreamLegacy), "cudaStreamSynchronize");
}

void CudaExec::upload(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream_)),
        "cudaMemcpyAsync (to the device)");
}

void CudaExec::download(void* dst, const void* src, std::size_t bytes) {
  if (bytes > 0)
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream_)),
          "cudaMemcpyAsync (to the host)");
  synchronize();
}

void CudaExec::copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream_)),
        "cudaMemcpyAsync (on the device)");
}

void CudaExec::zero(void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  check(cudaMemsetAsync(dst, 0, bytes, as_stream(stream_)), "cudaMemsetAsync");
}

void CudaExec::upload_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                           std::size_t width, std::size_t rows) {
  if (rows == 0 || width == 0) return;
  check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyHostToDevice,
                          as_stream(stream_)),
        "cudaMemcpy2DAsync (to the device)");
}

void CudaExec::copy_rows(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                         std::size_t width, std::size_t rows) {
  if (rows == 0 || width == 0) return;
  check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice,
                          as_stream(stream_)),
        "cudaMemcpy2DAsync (on the device)");
}

void CudaExec::synchronize() {
  check(cudaStreamSynchronize(as_stream(stream_)), "cudaStreamSynchronize");
}

// ---- graphs ----

CudaExec::Graph& CudaExec::Graph::operator=(Graph&& o) noexcept {
  if (this != &o) {
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = o.exec_;
    o.exec_ = nullptr;
  }
  return *this;
}

CudaExec::Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

void CudaExec::begin_capture() {
  // Thread-local mode: only this thread's calls that would break the capture are refused.
  check(cudaStreamBeginCapture(as_stream(stream_), cudaStreamCaptureModeThreadLocal),
        "cudaStreamBeginCapture");
}

CudaExec::Graph CudaExec::end_capture() {
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(as_stream(stream_), &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0ULL);
  cudaGraphDestroy(graph);
  check(err, "cudaGraphInstantiate");
  Graph g;
  g.exec_ = exec;
  return g;
}

void CudaExec::abort_capture() noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(as_stream(stream_), &status) == cudaSuccess &&
      status != cudaStreamCaptureStatusNone) {
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(as_stream(stream_), &graph);
    if (graph) cudaGraphDestroy(graph);
  }
  cudaGetLastError();
}

void CudaExec::launch(const Graph& g) {
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec_), as_stream(stream_)),
        "cudaGraphLaunch");
}

// ---- GEMM ----

namespace {

// cuBLAS's GEMM for each dtype: the same call, another name.
cublasStatus_t blas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const float* alpha, const float* a, int lda, const float* b,
                         int ldb, const float* beta, float* c, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
cublasStatus_t blas_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                         int k, const double* alpha, const double* a, int lda, const double* b,
                         int ldb, const double* beta, double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// The row-major product C = alpha op(A) op(B) + beta C as cuBLAS's column-major one.
template <class T>
void row_major_gemm(void* blas, bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda,
                    const T* B, int ldb, T beta, T* C, int ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const ColumnMajorGemm g = as_column_major(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
  check_blas(blas_gemm(as_blas(blas), g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                       g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k, &alpha,
                       static_cast<const T*>(g.a), g.lda, static_cast<const T*>(g.b), g.ldb, &beta,
                       static_cast<T*>(g.c), g.ldc),
             sizeof(T) == 4 ? "cublasSgemm" : "cublasDgemm");
}

}  // namespace

void CudaExec::gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  row_major_gemm(blas_, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void CudaExec::gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                    const double* B, int ldb, double beta, double* C, int ldc) {
  row_major_gemm(blas_, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace device
}  // namespace fastbp
