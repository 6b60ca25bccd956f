// LayerStats (layer_stats.hpp) as Python sees them, one conversion for both modules: the CPU
// core's (bindings.cpp) and the CUDA backend's (cuda/bindings.cpp).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "layer_stats.hpp"

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

}  // namespace fastbp
