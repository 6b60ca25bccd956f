// The core's results as Python sees them, one conversion for both modules that return them:
// the CPU core's (bindings.cpp) and the CUDA backend's (cuda/bindings.cpp).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "layer_stats.hpp"
#include "optimizers.hpp"
#include "train.hpp"

namespace fastbp {

inline pybind11::array_t<double> to_array(const std::vector<double>& v) {
  return pybind11::array_t<double>(pybind11::ssize_t(v.size()), v.data());
}

// (saturation, dead), each one entry per weight layer.
inline pybind11::tuple activation_stats_tuple(const LayerStats& s) {
  return pybind11::make_tuple(to_array(s.saturation), to_array(s.dead));
}

// Every statistic by name; activation_hist as (n_layers, kHistBins).
inline pybind11::dict layer_stats_dict(const LayerStats& s) {
  pybind11::dict d;
  d["saturation"] = to_array(s.saturation);
  d["dead"] = to_array(s.dead);
  d["preactivation_mean"] = to_array(s.pre_mean);
  d["preactivation_std"] = to_array(s.pre_std);
  d["activation_mean"] = to_array(s.act_mean);
  d["activation_std"] = to_array(s.act_std);
  const auto layers = pybind11::ssize_t(s.saturation.size());
  d["activation_hist"] = to_array(s.act_hist).reshape({layers, pybind11::ssize_t(kHistBins)});
  return d;
}

// An epoch's statistics (train.hpp, EpochStats). "stopped" says why the epoch ended before its
// last batch: "requested" (the caller's StopToken), "shutdown" (the interpreter's exit), or None.
inline pybind11::dict stats_dict(const EpochStats& s) {
  pybind11::dict d;
  d["loss"] = s.loss;
  d["accuracy"] = s.accuracy;
  d["samples"] = s.samples;
  d["batches"] = s.batches;
  d["grad_norm_mean"] = to_array(s.grad_norm_mean);
  d["grad_norm_max"] = to_array(s.grad_norm_max);
  d["update_ratio"] = to_array(s.update_ratio);
  d["noise_t"] = s.noise_t;
  d["finite"] = s.finite;
  d["mean_step"] = s.mean_step;
  d["threads"] = s.threads;
  d["stopped"] = s.stop == StopReason::requested  ? pybind11::object(pybind11::str("requested"))
                 : s.stop == StopReason::shutdown ? pybind11::object(pybind11::str("shutdown"))
                                                  : pybind11::object(pybind11::none());
  return d;
}

// {"step": int, "momentum_fresh": bool, "buffers": {name: 1-D ndarray (a copy)}}
template <class T>
pybind11::dict state_dict_to_python(const OptimizerStateDict<T>& s) {
  pybind11::dict buffers;
  for (const auto& [name, values] : s.buffers)
    buffers[pybind11::str(name)] =
        pybind11::array_t<T>(pybind11::ssize_t(values.size()), values.data());
  pybind11::dict d;
  d["step"] = s.step;
  d["momentum_fresh"] = s.momentum_fresh;
  d["buffers"] = buffers;
  return d;
}

}  // namespace fastbp
