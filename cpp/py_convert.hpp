// Conversions between the core's structures and Python's, one for both modules: the CPU core's
// (bindings.cpp) and the CUDA backend's (cuda/bindings.cpp), so that both speak the same dicts.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common.hpp"
#include "layer_stats.hpp"
#include "losses.hpp"
#include "optimizers.hpp"
#include "train.hpp"

namespace fastbp {

// Inputs X of `ndim` dimensions, `rows` x `cols`, for a network of n_in inputs, or an error
// naming the problem (both modules, numpy arrays and device arrays alike).
inline void check_input_shape(long ndim, long long rows, long long cols, int n_in) {
  require(ndim == 2, "X must be 2-D (n_samples, n_features), got " + std::to_string(ndim) + "-D");
  require(cols == n_in, "X has " + std::to_string(cols) + " features, the network expects " +
                            std::to_string(n_in));
  require(rows > 0, "X is empty: at least one sample is needed");
}

// Labels y in [lo, hi] for a network of n_out outputs and this loss, or an error naming the
// problem: a loss that takes no labels, or a label out of range.
inline void check_labels(Loss loss, int n_out, int32_t lo, int32_t hi) {
  const std::string mismatch = loss_labels_mismatch(loss);
  require(mismatch.empty(), mismatch);
  require(lo >= 0 && hi < n_out, "Y has a label out of range [0, n_out)");
}

// Targets given as a numpy array (or anything numpy converts), held for the call: int32 class
// labels (n,), copied and checked (the core indexes with them, without the GIL: another Python
// thread may write the caller's array meanwhile, and must not make a checked label stray out
// of range), or (n, n_out) values of the network's dtype T. Exactly one of the two pointers is
// set (a default array_t is an empty array, not none: the pointers say which one holds the
// targets).
template <class T>
struct HostTargets {
  pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast> dense;
  std::vector<int32_t> labels;
  const T* dense_data = nullptr;
  const int32_t* label_data = nullptr;
};

template <class T>
HostTargets<T> host_targets(pybind11::handle Y, long n, int n_out, Loss loss) {
  HostTargets<T> h;
  if (pybind11::isinstance<pybind11::array_t<int32_t>>(Y)) {
    const auto given =
        pybind11::array_t<int32_t, pybind11::array::c_style | pybind11::array::forcecast>::ensure(
            Y);
    require(given.ndim() == 1 && given.shape(0) == n, "Y must have one label per row of X");
    h.labels.assign(given.data(), given.data() + n);
    const int32_t* p = h.labels.data();
    int32_t lo = n > 0 ? p[0] : 0, hi = lo;
    for (long i = 1; i < n; ++i) {
      lo = std::min(lo, p[i]);
      hi = std::max(hi, p[i]);
    }
    check_labels(loss, n_out, lo, hi);
    h.label_data = p;  // a move of h keeps the vector's buffer where it is
  } else {
    h.dense = decltype(h.dense)::ensure(Y);
    require(bool(h.dense), "Y must be a numeric array");
    require(h.dense.ndim() == 2 && h.dense.shape(0) == n && h.dense.shape(1) == n_out,
            "Y must have shape (n_samples, n_out) matching X");
    h.dense_data = h.dense.data();
  }
  return h;
}

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

// ---- and back: an optimizer's state from Python (load_state_dict) ----

inline std::string type_name(pybind11::handle h) {
  return pybind11::str(pybind11::type::of(h).attr("__name__"));
}

// state["step"]: a Python or numpy int >= 0.
inline long step_from_python(pybind11::handle step) {
  require(!pybind11::isinstance<pybind11::bool_>(step) && PyIndex_Check(step.ptr()),
          "state['step'] must be an int, got " + type_name(step));
  const auto index = pybind11::reinterpret_steal<pybind11::object>(PyNumber_Index(step.ptr()));
  if (!index) throw pybind11::error_already_set();
  int overflow = 0;
  const long long n = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  // checked before it is narrowed to a long (32 bits on Windows)
  require(overflow == 0 && n >= 0 && n <= kMaxSteps,
          "state['step'] must be an int >= 0 and at most " + std::to_string(kMaxSteps) + ", got " +
              std::string(pybind11::str(index)));
  return long(n);
}

// One of state["buffers"]: a 1-D array of real numbers, converted to T.
template <class T>
LineVector<T> buffer_from_python(const std::string& name, pybind11::handle values) {
  const std::string what = "state['buffers']['" + name + "']";
  const pybind11::array a = pybind11::array::ensure(values);
  require(bool(a), what + " must be an array of numbers");
  const char kind = a.dtype().kind();
  require(kind == 'f' || kind == 'i' || kind == 'u',
          what + " must hold real numbers, got dtype " + std::string(pybind11::str(a.dtype())));
  require(a.ndim() == 1, what + " must be 1-D, got " + std::to_string(a.ndim()) + "-D");
  const auto converted =
      pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast>::ensure(a);
  return LineVector<T>(converted.data(), converted.data() + converted.shape(0));
}

// The inverse of state_dict_to_python, checking types; the core checks names and lengths.
template <class T>
OptimizerStateDict<T> state_dict_from_python(pybind11::handle h) {
  require(pybind11::isinstance<pybind11::dict>(h), "state must be a dict, as state_dict() returns");
  const auto d = pybind11::reinterpret_borrow<pybind11::dict>(h);
  for (const auto& item : d) {
    const std::string key = pybind11::str(item.first);
    require(key == "step" || key == "momentum_fresh" || key == "buffers",
            "state has an unknown key '" + key + "' (expected step, momentum_fresh, buffers)");
  }
  for (const char* key : {"step", "momentum_fresh", "buffers"})
    require(d.contains(key), std::string("state lacks the key '") + key + "'");
  OptimizerStateDict<T> s;
  s.step = step_from_python(d["step"]);
  const pybind11::object fresh = d["momentum_fresh"];
  require(pybind11::isinstance<pybind11::bool_>(fresh) ||
              pybind11::isinstance(fresh, pybind11::module_::import("numpy").attr("bool_")),
          "state['momentum_fresh'] must be a bool, got " + type_name(fresh));
  s.momentum_fresh = fresh.cast<bool>();
  const pybind11::object buffers = d["buffers"];
  require(pybind11::isinstance<pybind11::dict>(buffers),
          "state['buffers'] must be a dict {name: array}");
  for (const auto& item : pybind11::reinterpret_borrow<pybind11::dict>(buffers)) {
    require(pybind11::isinstance<pybind11::str>(item.first), "state['buffers'] keys must be str");
    const std::string name = pybind11::str(item.first);
    s.buffers[name] = buffer_from_python<T>(name, item.second);
  }
  return s;
}

}  // namespace fastbp
