// Error checks for the CUDA runtime and cuBLAS: a failure throws, naming the call.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_exec.hpp"

namespace fastbp {
namespace device {

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  cudaGetLastError();  // clears the error unless it is sticky (then every later call fails too)
  const std::string message = std::string(what) + " failed: " + cudaGetErrorName(err) + " (" +
                              cudaGetErrorString(err) + ")";
  if (err == cudaErrorMemoryAllocation) throw DeviceOutOfMemory(message);
  throw std::runtime_error(message);
}

inline void check_blas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const std::string message = std::string(what) + " failed: " + cublasGetStatusName(status) + " (" +
                              cublasGetStatusString(status) + ")";
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw DeviceOutOfMemory(message);
  throw std::runtime_error(message);
}

// After a kernel launch: a bad configuration shows here, a fault at the next synchronisation.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace device
}  // namespace fastbp
