// The CUDA backend's module: the same names and calls as the CPU core's (cpp/bindings.cpp), so
// that fastbp's Python layer runs either through one interface (python/fastbp/_backend.py).
// Built twice from this file: fastbp._cuda over CudaExec (a GPU), and, for the tests of the
// backend's logic on machines without one, fastbp._cuda_emu over HostExec
// (FASTBP_CUDA_EMULATION). Like cpp/bindings.cpp it converts, checks and forwards only.
//
// Differences from the CPU module: parameters and gradients are not numpy views (they live on
// the device): get_params / set_params copy; inputs and targets may be numpy arrays (copied in
// for the call) or DeviceArray objects (copied once, reused: Trainer.fit uploads its data
// once); the configuration objects are the CPU module's OptimConfig and EpochConfig, read by
// attribute.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "device_train.hpp"
#include "py_calls.hpp"
#include "py_convert.hpp"

#ifdef FASTBP_CUDA_EMULATION
#include "host_exec.hpp"
using Exec = fastbp::device::HostExec;
#define FASTBP_DEVICE_MODULE _cuda_emu
#else
#include "cuda_exec.hpp"
using Exec = fastbp::device::CudaExec;
#define FASTBP_DEVICE_MODULE _cuda
#endif

namespace py = pybind11;
using namespace fastbp;
using namespace fastbp::device;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

// ---- arrays on the device ----

enum class Kind { float32, float64, int32 };

template <class T>
constexpr Kind kind_of() {
  if constexpr (std::is_same_v<T, float>) return Kind::float32;
  if constexpr (std::is_same_v<T, double>) return Kind::float64;
  return Kind::int32;
}

const char* kind_name(Kind k) {
  return k == Kind::float32 ? "float32" : k == Kind::float64 ? "float64" : "int32";
}

// A C-contiguous 1-D or 2-D array copied to a device once: a data set that several calls
// read (the epochs of one fit). Labels remember their range, so that a network can check
// them without reading them back.
class DeviceArray {
 public:
  DeviceArray(py::array a, int device) : device_(device) {
    const char kind = a.dtype().kind();
    const auto size = a.dtype().itemsize();
    if (kind == 'f' && size == 4)
      kind_ = Kind::float32;
    else if (kind == 'f' && size == 8)
      kind_ = Kind::float64;
    else if (kind == 'i' && size == 4)
      kind_ = Kind::int32;
    else
      throw py::type_error("DeviceArray holds float32, float64 or int32 arrays, got " +
                           std::string(py::str(a.dtype())));
    require(a.ndim() == 1 || a.ndim() == 2, "DeviceArray holds 1-D or 2-D arrays");
    require(bool(a.flags() & py::array::c_style), "DeviceArray needs a C-contiguous array");
    rows_ = long(a.shape(0));
    cols_ = a.ndim() == 2 ? long(a.shape(1)) : 0;
    const std::size_t bytes = std::size_t(a.nbytes());
    buffer_ = DeviceBuffer<unsigned char, Exec>(bytes, device);
    if (kind_ == Kind::int32 && rows_ > 0) {
      const int32_t* p = static_cast<const int32_t*>(a.data());
      const std::size_t n = bytes / sizeof(int32_t);
      label_min_ = label_max_ = p[0];
      for (std::size_t i = 1; i < n; ++i) {
        label_min_ = std::min(label_min_, p[i]);
        label_max_ = std::max(label_max_, p[i]);
      }
    }
    py::gil_scoped_release release;
    Exec::upload_sync(buffer_.get(), a.data(), bytes, device);
  }
  DeviceArray(std::size_t n, Kind kind, int device)
      : buffer_(n * (kind == Kind::float64 ? 8 : 4), device),
        device_(device),
        kind_(kind),
        rows_(long(n)) {}

  Kind kind() const { return kind_; }
  int device() const { return device_; }
  long rows() const { return rows_; }
  long cols() const { return cols_; }
  int ndim() const { return cols_ ? 2 : 1; }
  std::size_t nbytes() const { return buffer_.size(); }
  int32_t label_min() const { return label_min_; }
  int32_t label_max() const { return label_max_; }
  template <class T>
  T* data() const {
    return reinterpret_cast<T*>(buffer_.get());
  }
  py::tuple shape() const {
    if (cols_) return py::make_tuple(rows_, cols_);
    return py::make_tuple(rows_);
  }
  py::array to_numpy() const {
    std::vector<py::ssize_t> shape{rows_};
    if (cols_) shape.push_back(cols_);
    py::array out(py::dtype(kind_name(kind_)), shape);
    Exec::download_sync(out.mutable_data(), buffer_.get(), nbytes(), device_);
    return out;
  }

 private:
  DeviceBuffer<unsigned char, Exec> buffer_;
  int device_ = 0;
  Kind kind_ = Kind::float32;
  long rows_ = 0, cols_ = 0;
  int32_t label_min_ = 0, label_max_ = 0;
};

// ---- the network and what stays with it ----

template <class T>
struct Net {
  DeviceNetwork<T, Exec> net;
  EpochWorkspace<T, Exec> ws;
  Net(std::vector<int> sizes, const std::vector<std::string>& hidden, const std::string& output,
      const std::string& loss, int device, bool allow_tf32)
      : net(std::move(sizes), acts(hidden), parse_activation(output), parse_loss(loss), device,
            allow_tf32) {}
  static std::vector<Act> acts(const std::vector<std::string>& names) {
    std::vector<Act> out;
    for (const std::string& h : names) out.push_back(parse_activation(h));
    return out;
  }
};

// Runs f with the GIL released and the network's lock held (as the CPU module), counted as a
// call in the module for the interpreter's exit to wait for (py_calls.hpp).
template <class T, class F>
auto locked_without_gil(Net<T>& n, F&& f) {
  return without_gil_holding(n.net.mutex(), std::forward<F>(f));
}

// The same with the optimizer state's lock too, after the network's (always in that order).
template <class T, class F>
auto locked_without_gil(Net<T>& n, const DeviceOptimizerState<T, Exec>& opt, F&& f) {
  return locked_without_gil(n, [&] {
    std::lock_guard<std::timed_mutex> lock(opt.mutex());
    return f();
  });
}

// Inputs: a DeviceArray, or anything numpy converts (kept alive by `hold`).
template <class T>
Rows<T> input_rows(const DeviceNetwork<T, Exec>& net, py::handle X, Array<T>& hold, long* n) {
  if (py::isinstance<DeviceArray>(X)) {
    const DeviceArray& d = X.cast<const DeviceArray&>();
    require(d.kind() == kind_of<T>(), std::string("X is a DeviceArray of ") + kind_name(d.kind()) +
                                          ", the network's dtype is " + kind_name(kind_of<T>()));
    require(d.device() == net.device(), "X is on another device than the network");
    check_input_shape(d.ndim(), d.rows(), d.cols(), net.n_in());
    *n = d.rows();
    return {d.data<T>(), true};
  }
  hold = Array<T>::ensure(X);
  require(bool(hold), "X must be a numeric array");
  check_input_shape(long(hold.ndim()), hold.ndim() == 2 ? hold.shape(0) : 0,
                    hold.ndim() == 2 ? hold.shape(1) : 0, net.n_in());
  *n = long(hold.shape(0));
  return {hold.data(), false};
}

// Targets: int32 labels (n,) or (n, n_out) values of the network's dtype, as a DeviceArray
// or a numpy array.
template <class T>
struct HeldTargets {
  HostTargets<T> held;  // numpy targets, held for the call (py_convert.hpp)
  Targets<T> targets;
};

template <class T>
HeldTargets<T> make_targets(const DeviceNetwork<T, Exec>& net, py::handle Y, long n) {
  HeldTargets<T> h;
  if (py::isinstance<DeviceArray>(Y)) {
    const DeviceArray& d = Y.cast<const DeviceArray&>();
    require(d.device() == net.device(), "Y is on another device than the network");
    h.targets.on_device = true;
    if (d.kind() == Kind::int32) {
      require(d.ndim() == 1 && d.rows() == n, "Y must have one label per row of X");
      check_labels(net.loss(), net.n_out(), d.label_min(), d.label_max());
      h.targets.labels = d.data<int32_t>();
    } else {
      require(d.kind() == kind_of<T>(), std::string("Y is a DeviceArray of ") +
                                            kind_name(d.kind()) + ", the network's dtype is " +
                                            kind_name(kind_of<T>()));
      require(d.ndim() == 2 && d.rows() == n && d.cols() == net.n_out(),
              "Y must have shape (n_samples, n_out) matching X");
      h.targets.dense = d.data<T>();
    }
    return h;
  }
  h.held = host_targets<T>(Y, n, net.n_out(), net.loss());
  h.targets.labels = h.held.label_data;
  h.targets.dense = h.held.dense_data;
  return h;
}

// The CPU module's OptimConfig and EpochConfig, read by attribute (any object with those
// attributes does): each field of their lists from the attribute of its name of `c` into `out`.
#define FASTBP_READ_FIELD(type, name, value) out.name = c.attr(#name).cast<type>();

OptimConfig optim_config(py::handle c) {
  OptimConfig out;
  out.kind = Optim(py::int_(c.attr("kind")).cast<int>());
  FASTBP_OPTIM_FIELDS(FASTBP_READ_FIELD)
  require(int(out.kind) >= 0 && int(out.kind) <= int(Optim::line_search), "unknown optimizer kind");
  return out;
}

EpochConfig epoch_config(py::handle c) {
  EpochConfig out;
  FASTBP_EPOCH_FIELDS(FASTBP_READ_FIELD)
  return out;
}

// ---- Network ----

template <class T>
py::array_t<T> host_copy(Net<T>& n, bool grads) {
  py::array_t<T> out(py::ssize_t(n.net.n_params()));
  T* o = out.mutable_data();
  locked_without_gil(n, [&] { grads ? n.net.get_grads(o) : n.net.get_params(o); });
  return out;
}

template <class T>
void set_flat(Net<T>& n, py::handle values, bool grads) {
  if (py::isinstance<DeviceArray>(values)) {
    require(!grads, "gradients are set from host arrays");
    const DeviceArray& d = values.cast<const DeviceArray&>();
    require(d.kind() == kind_of<T>() && d.ndim() == 1 && std::size_t(d.rows()) == n.net.n_params(),
            "params must be a (n_params,) array of the network's dtype");
    require(d.device() == n.net.device(), "params are on another device than the network");
    const T* p = d.data<T>();
    locked_without_gil(n, [&] { n.net.copy_params_from(p); });
    return;
  }
  const Array<T> a = Array<T>::ensure(values);
  require(bool(a) && a.ndim() == 1 && std::size_t(a.shape(0)) == n.net.n_params(),
          std::string(grads ? "grads" : "params") + " must be a (n_params,) array of " +
              std::to_string(n.net.n_params()) + " numbers");
  const T* p = a.data();
  locked_without_gil(n, [&] { grads ? n.net.set_grads(p) : n.net.set_params(p); });
}

template <class T>
Array<T> forward(Net<T>& n, py::handle X) {
  Array<T> hold;
  long rows = 0;
  const Rows<T> x = input_rows(n.net, X, hold, &rows);
  Array<T> out({py::ssize_t(rows), py::ssize_t(n.net.n_out())});
  T* o = out.mutable_data();
  locked_without_gil(n, [&] { n.net.forward(x, rows, o); });
  return out;
}

template <class T>
py::tuple backward(Net<T>& n, py::handle X, py::handle Y) {
  Array<T> hold;
  long rows = 0;
  const Rows<T> x = input_rows(n.net, X, hold, &rows);
  require(rows < (1L << 31), "X has too many rows for one batch");
  const HeldTargets<T> y = make_targets(n.net, Y, rows);
  const LossSums s = locked_without_gil(n, [&] { return n.net.backward(x, y.targets, int(rows)); });
  return py::make_tuple(s.loss, s.correct);
}

template <class T>
py::tuple evaluate(Net<T>& n, py::handle X, py::handle Y) {
  Array<T> hold;
  long rows = 0;
  const Rows<T> x = input_rows(n.net, X, hold, &rows);
  const HeldTargets<T> y = make_targets(n.net, Y, rows);
  const LossSums s = locked_without_gil(n, [&] { return n.net.evaluate(x, y.targets, rows); });
  return py::make_tuple(s.loss, s.correct);
}

template <class T>
LayerStats run_layer_stats(Net<T>& n, py::handle X) {
  Array<T> hold;
  long rows = 0;
  const Rows<T> x = input_rows(n.net, X, hold, &rows);
  return locked_without_gil(n, [&] { return n.net.layer_stats(x, rows); });
}

template <class T>
py::array_t<double> weight_grad_norms(Net<T>& n) {
  py::array_t<double> out(n.net.n_layers());
  double* o = out.mutable_data();
  locked_without_gil(n, [&] { n.net.weight_grad_norms(o); });
  return out;
}

const char* path_name(LayerPath p) {
  return p == LayerPath::blas ? "blas" : p == LayerPath::fused ? "fused" : "auto";
}

LayerPath parse_path(const std::string& s) {
  if (s == "auto") return LayerPath::automatic;
  if (s == "blas") return LayerPath::blas;
  if (s == "fused") return LayerPath::fused;
  throw std::invalid_argument("layer_path must be 'auto', 'blas' or 'fused', got '" + s + "'");
}

template <class T>
void bind_network(py::module_& m, const std::string& suffix) {
  using N = Net<T>;
  py::class_<N>(m, ("Network" + suffix).c_str())
      .def(py::init<std::vector<int>, const std::vector<std::string>&, const std::string&,
                    const std::string&, int, bool>(),
           py::arg("sizes"), py::arg("hidden"), py::arg("output"), py::arg("loss"),
           py::arg("device") = 0, py::arg("allow_tf32") = false)
      .def_property_readonly("n_layers", [](const N& n) { return n.net.n_layers(); })
      .def_property_readonly("sizes", [](const N& n) { return n.net.sizes(); })
      .def_property_readonly("n_params", [](const N& n) { return n.net.n_params(); })
      .def_property_readonly("device", [](const N& n) { return n.net.device(); })
      .def_property(
          "allow_tf32", [](const N& n) { return n.net.allow_tf32(); },
          [](N& n, bool allow) { locked_without_gil(n, [&] { n.net.set_allow_tf32(allow); }); })
      .def_property(
          "use_graphs", [](const N& n) { return n.net.use_graphs(); },
          [](N& n, bool use) { n.net.set_use_graphs(use); },
          "Replay each full batch from a CUDA graph (FASTBP_CUDA_GRAPHS=0 turns it off)")
      .def_property(
          "layer_path", [](const N& n) { return std::string(path_name(n.net.layer_path())); },
          [](N& n, const std::string& p) { n.net.set_layer_path(parse_path(p)); },
          "'auto' (by size), 'blas' (cuBLAS) or 'fused' (small-layer kernels)")
      .def_property_readonly("graphs_captured", [](const N& n) { return n.ws.graphs_captured; })
      .def(
          "get_params", [](N& n) { return host_copy(n, false); }, "A host copy of the parameters")
      .def(
          "get_grads", [](N& n) { return host_copy(n, true); }, "A host copy of the gradients")
      .def(
          "set_params", [](N& n, py::handle v) { set_flat(n, v, false); }, py::arg("params"))
      .def(
          "set_grads", [](N& n, py::handle v) { set_flat(n, v, true); }, py::arg("grads"))
      .def(
          "snapshot",
          [](N& n) {
            auto copy =
                std::make_unique<DeviceArray>(n.net.n_params(), kind_of<T>(), n.net.device());
            T* p = copy->template data<T>();
            locked_without_gil(n, [&] { n.net.copy_params_to(p); });
            return copy;
          },
          "A device copy of the parameters")
      .def("params_finite",
           [](N& n) { return locked_without_gil(n, [&] { return n.net.params_finite(); }); })
      .def("forward", &forward<T>, py::arg("X"))
      .def("backward", &backward<T>, py::arg("X"), py::arg("Y"))
      .def("evaluate", &evaluate<T>, py::arg("X"), py::arg("Y"))
      .def(
          "activation_stats",
          [](N& n, py::handle X) { return activation_stats_tuple(run_layer_stats(n, X)); },
          py::arg("X"))
      .def(
          "layer_stats", [](N& n, py::handle X) { return layer_stats_dict(run_layer_stats(n, X)); },
          py::arg("X"))
      .def("weight_grad_norms", &weight_grad_norms<T>)
      .def(
          "clip_grad_norm",
          [](N& n, double max_norm) {
            return locked_without_gil(n, [&] { return n.net.clip_grad_norm(max_norm); });
          },
          py::arg("max_norm"))
      .def(
          "clip_grad_value",
          [](N& n, double value) { locked_without_gil(n, [&] { n.net.clip_grad_value(value); }); },
          py::arg("value"))
      .def(
          "add_gradient_noise",
          [](N& n, double eta, double gamma, uint64_t seed, int64_t t) {
            locked_without_gil(n, [&] { n.net.add_gradient_noise(eta, gamma, seed, t); });
          },
          py::arg("eta"), py::arg("gamma"), py::arg("seed"), py::arg("t"));
}

// ---- Optimizers ----

template <class T>
void bind_optimizers(py::module_& m, const std::string& suffix) {
  using Opt = DeviceOptimizerState<T, Exec>;
  py::class_<Opt>(m, ("OptimizerState" + suffix).c_str())
      .def(py::init<std::size_t, int>(), py::arg("n_params"), py::arg("device") = 0)
      .def_property_readonly("steps", &Opt::steps)
      .def_property_readonly("device", &Opt::device)
      .def("state_dict",
           [](const Opt& opt) {
             OptimizerStateDict<T> d =
                 without_gil_holding(opt.mutex(), [&] { return opt.state_dict(); });
             return state_dict_to_python(d);
           })
      .def(
          "load_state_dict",
          [](Opt& opt, py::handle d) {
            const OptimizerStateDict<T> state = state_dict_from_python<T>(d);
            without_gil_holding(opt.mutex(), [&] { opt.load_state_dict(state); });
          },
          py::arg("state"))
      .def(
          "step",
          [](Opt& opt, Net<T>& n, py::handle config) {
            const OptimConfig c = optim_config(config);
            require(opt.size() == n.net.n_params(),
                    "the optimizer state belongs to another network");
            require(opt.device() == n.net.device(), "the optimizer state is on another device");
            require_steps_left(opt.steps(), 1, "a step");
            locked_without_gil(n, opt, [&] { opt.step(n.net, c); });
          },
          py::arg("net"), py::arg("config"));
}

// ---- Training ----

// The data of an epoch on the device: DeviceArrays as they are, numpy arrays copied for the
// call (into `held`).
template <class T>
DeviceData<T> device_data(Net<T>& n, py::handle X, py::handle Y,
                          std::vector<std::unique_ptr<DeviceArray>>& held) {
  auto on_device = [&](py::handle a) -> py::object {
    if (py::isinstance<DeviceArray>(a)) return py::reinterpret_borrow<py::object>(a);
    py::array arr = py::array::ensure(a, py::array::c_style);
    require(bool(arr), "X and Y must be arrays");
    held.push_back(std::make_unique<DeviceArray>(arr, n.net.device()));
    return py::cast(held.back().get(), py::return_value_policy::reference);
  };
  const py::object x = on_device(X);
  Array<T> unused;
  long rows = 0;
  const Rows<T> r = input_rows(n.net, x, unused, &rows);
  const py::object y = on_device(Y);
  const HeldTargets<T> t = make_targets(n.net, y, rows);
  DeviceData<T> d;
  d.X = r.data;
  d.N = rows;
  d.y = t.targets;
  return d;
}

template <class T>
py::dict run_train_epoch(Net<T>& n, DeviceOptimizerState<T, Exec>& opt, py::handle config,
                         py::handle X, py::handle Y, py::handle start, py::handle epoch,
                         py::handle /*stop*/) {
  const OptimConfig c = optim_config(config);
  const EpochConfig ec = epoch_config(epoch);
  require(!ec.bf16_products,
          "matmul_precision='bfloat16' is a CPU mode: the CUDA backend has none");
  std::vector<std::unique_ptr<DeviceArray>> held;
  const DeviceData<T> data = device_data(n, X, Y, held);
  require(opt.device() == n.net.device(), "the optimizer state is on another device");
  // start_params: a DeviceArray (n_params,), or a numpy array filled from the device after.
  std::unique_ptr<DeviceArray> scratch;
  T* p0 = nullptr;
  py::array_t<T, py::array::c_style> host_start;
  if (py::isinstance<DeviceArray>(start)) {
    const DeviceArray& d = start.cast<const DeviceArray&>();
    require(d.kind() == kind_of<T>() && d.ndim() == 1 && std::size_t(d.rows()) == n.net.n_params(),
            "start_params must be a (n_params,) array of the network's dtype");
    p0 = d.data<T>();
  } else {
    host_start = py::array_t<T, py::array::c_style>::ensure(start);
    // It is written into: a converted copy would take the parameters nowhere.
    require(bool(host_start) && host_start.ptr() == start.ptr() && host_start.ndim() == 1 &&
                std::size_t(host_start.shape(0)) == n.net.n_params() && host_start.writeable(),
            "start_params must be a writeable contiguous (n_params,) array of the network's "
            "dtype");
    scratch = std::make_unique<DeviceArray>(n.net.n_params(), kind_of<T>(), n.net.device());
    p0 = scratch->data<T>();
  }
  require_epoch_counts(opt.steps(), data.N, ec);
  const EpochStats s = locked_without_gil(
      n, opt, [&] { return DeviceTrainer<T, Exec>(n.net, n.ws).epoch(opt, c, data, ec, p0); });
  if (scratch) {
    T* out = host_start.mutable_data();
    locked_without_gil(n, [&] { n.net.download(out, p0, n.net.n_params()); });
  }
  return stats_dict(s);
}

template <class T>
py::tuple run_line_search_step(Net<T>& n, py::handle config, py::handle X, py::handle Y) {
  const OptimConfig c = optim_config(config);
  Array<T> hold;
  long rows = 0;
  const Rows<T> x = input_rows(n.net, X, hold, &rows);
  require(rows < (1L << 31), "X has too many rows for one batch");
  const HeldTargets<T> y = make_targets(n.net, Y, rows);
  const auto [loss0, step] = locked_without_gil(n, [&] {
    DeviceNetwork<T, Exec>& net = n.net;
    const int m = int(rows);
    net.exec().activate();
    net.reserve(m);
    net.stage_inputs(x, 0, m);
    const Targets<T> t = net.stage_targets(y.targets, 0, m);
    net.forward_batch(m, nullptr);
    net.output_batch(t, m, true, nullptr);
    net.backward_batch(m, nullptr);
    const double loss = net.row_sums(m).loss / double(m);
    double taken = 0;
    if (std::isfinite(loss)) taken = DeviceTrainer<T, Exec>(net, n.ws).search(c, m, loss, t);
    return std::make_pair(loss, taken);
  });
  return py::make_tuple(loss0, step);
}

template <class T>
void bind_training(py::module_& m) {
  m.def("line_search_step", &run_line_search_step<T>, py::arg("net"), py::arg("config"),
        py::arg("X"), py::arg("Y"));
  m.def("train_epoch", &run_train_epoch<T>, py::arg("net"), py::arg("optimizer"), py::arg("config"),
        py::arg("X"), py::arg("Y"), py::arg("start_params"), py::arg("epoch_config"),
        // The CPU module's StopToken, not read: a GPU epoch is queued whole, so Trainer.stop()
        // and Ctrl-C end a fit on the GPU when its epoch ends (the Trainer checks the token there).
        py::arg("stop") = py::none());
}

// ---- arrays, devices, build ----

void bind_arrays(py::module_& m) {
  py::class_<DeviceArray>(m, "DeviceArray",
                          "A numpy array copied to a device (float32, float64 or int32)")
      .def(py::init<py::array, int>(), py::arg("array"), py::arg("device") = 0)
      .def_static(
          "empty",
          [](std::size_t n, const std::string& dtype, int device) {
            require(dtype == "float32" || dtype == "float64", "dtype must be float32 or float64");
            return std::make_unique<DeviceArray>(
                n, dtype == "float32" ? Kind::float32 : Kind::float64, device);
          },
          py::arg("n"), py::arg("dtype"), py::arg("device") = 0)
      .def_property_readonly("shape", &DeviceArray::shape)
      .def_property_readonly("dtype", [](const DeviceArray& d) { return kind_name(d.kind()); })
      .def_property_readonly("device", &DeviceArray::device)
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def("to_numpy", &DeviceArray::to_numpy);
}

py::dict build_info() {
  py::dict d;
  d["emulated"] = Exec::emulated;
#ifdef FASTBP_CUDA_VERSION
  d["cuda_version"] = std::string(FASTBP_CUDA_VERSION);
#endif
#ifdef FASTBP_CUDA_ARCHITECTURES
  d["architectures"] = std::string(FASTBP_CUDA_ARCHITECTURES);
#endif
#ifdef FASTBP_CUBLAS_VERSION
  d["cublas_version"] = std::string(FASTBP_CUBLAS_VERSION);
#endif
  d["cuda_runtime"] = "static";
  d["cuda_runtime_version"] = Exec::runtime_version();
  d["cublas_runtime_version"] = Exec::cublas_version();
  d["driver_version"] = Exec::driver_version();
  return d;
}

void bind_info(py::module_& m) {
  m.def(
      "device_count",
      [] {
        std::string why;
        const int n = Exec::device_count(&why);
        return py::make_tuple(n, why);
      },
      "(number of usable devices, why none when 0)");
  m.def("device_name", &Exec::device_name, py::arg("device") = 0);
  m.def("build_info", &build_info);
#ifndef FASTBP_CUDA_EMULATION
  m.def(
      "gemm_gflops",
      [](int device, int n, int reps, const std::string& dtype, bool tf32) {
        require(n > 0 && reps > 0, "n and reps must be positive");
        py::gil_scoped_release release;
        return gemm_gflops(device, n, reps, dtype == "float64", tf32);
      },
      py::arg("device") = 0, py::arg("n") = 8192, py::arg("reps") = 10,
      py::arg("dtype") = "float32", py::arg("tf32") = false);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const DeviceOutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
#endif
}

}  // namespace

PYBIND11_MODULE(FASTBP_DEVICE_MODULE, m) {
  m.doc() = "fastbp's CUDA backend (private: use fastbp.MLP(..., device='cuda'))";
  bind_arrays(m);
  bind_network<float>(m, "32");
  bind_optimizers<float>(m, "32");
  bind_training<float>(m);
  bind_network<double>(m, "64");
  bind_optimizers<double>(m, "64");
  bind_training<double>(m);
  bind_info(m);
  // The exit waits until no thread is in this module: a GPU fit in a daemon thread finishes
  // its epoch (it is queued whole) instead of returning into a finalising interpreter.
  m.def("_shut_down", &shut_down);
  py::module_::import("atexit").attr("register")(m.attr("_shut_down"));
}
