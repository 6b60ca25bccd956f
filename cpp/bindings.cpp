// The only file that knows pybind11: converts arguments, checks shapes, releases the GIL and
// forwards to the core. No arithmetic lives here. One short bind_* function per concept
// (network, optimizers, training, tables and build information) at the end, each listing its
// names; the conversions they use come first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include "gemm.hpp"
#include "gemm_packed.hpp"
#include "py_calls.hpp"
#include "py_convert.hpp"
#include "train.hpp"

namespace py = pybind11;
using namespace fastbp;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
void check_inputs(const Network<T>& net, const Array<T>& X) {
  check_input_shape(long(X.ndim()), X.ndim() == 2 ? X.shape(0) : 0, X.ndim() == 2 ? X.shape(1) : 0,
                    net.n_in());
  // The core counts rows in a long: 32 bits on Windows.
  require(static_cast<unsigned long long>(X.shape(0)) <=
              static_cast<unsigned long long>(std::numeric_limits<long>::max()),
          "X has more rows than this platform's core can count");
}

// One batch's rows are ints (the forward and backward index them with BLAS's 32-bit ints).
void check_batch_rows(long n) {
  require(n <= kMaxDim,
          "X has " + std::to_string(n) + " rows, more than one batch may have (2**31 - 2**16)");
}

// Y is either int32 class labels (n,) or (n, n_out) values of the network's dtype
// (py_convert.hpp's host_targets, which checks them).
template <class T>
struct HeldTarget {
  HostTargets<T> held;
  Target<T> target;
};

template <class T>
HeldTarget<T> make_target(const Network<T>& net, const py::array& Y, long n) {
  HeldTarget<T> h{host_targets<T>(Y, n, net.n_out(), net.loss()), {}};
  h.target.labels = h.held.label_data;
  h.target.dense = h.held.dense_data;
  return h;
}

// Runs f with the GIL released and the network's lock held: one computation per network at a
// time, two networks in parallel. Nothing in f may touch Python objects. Subnormals are flushed
// (or not) as set_flush_denormals says, on this thread for the call only (denormals.hpp).
template <class T, class F>
auto locked_without_gil(Network<T>& net, F&& f) {
  return without_gil_holding(net.mutex(), [&] {
    net.settle_after_fork();
    const DenormalScope fp;
    return f();
  });
}

// The same with the optimizer state's lock too, taken after the network's (always in that
// order): an epoch or a step writes the state's buffers without the GIL.
template <class T, class F>
auto locked_without_gil(Network<T>& net, const OptimizerState<T>& opt, F&& f) {
  return locked_without_gil(net, [&] {
    std::lock_guard<ForkSafeMutex> lock(opt.mutex());
    return f();
  });
}

template <class T>
py::array_t<T> view(py::object owner, T* ptr, std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape, ptr, owner);  // no copy: owner keeps the memory alive
}

// --- Network ---

// Sizes arrive as 64-bit ints, so that one beyond 32 bits gets this message, not pybind11's
// "incompatible constructor arguments".
template <class T>
Network<T>* make_network(const std::vector<long long>& sizes,
                         const std::vector<std::string>& hidden, const std::string& output,
                         const std::string& loss) {
  std::vector<int> checked;
  for (long long s : sizes) {
    require(s > 0 && s <= Network<T>::kMaxSize,
            "layer_sizes entries must lie in [1, 2**31 - 2**16] (BLAS's dimensions are 32-bit "
            "ints, less room for the products' blocking), got " +
                std::to_string(s));
    checked.push_back(int(s));
  }
  std::vector<Act> acts;
  for (const std::string& h : hidden) acts.push_back(parse_activation(h));
  return new Network<T>(std::move(checked), acts, parse_activation(output), parse_loss(loss));
}

// [(W_0, b_0), (W_1, b_1), ...] as views of the parameter (or gradient) buffer.
template <class T>
py::list layer_views(py::object self, bool grads) {
  Network<T>& net = self.cast<Network<T>&>();
  T* base = grads ? net.grads() : net.params();
  const auto& s = net.sizes();
  py::list out;
  for (int l = 0; l < net.n_layers(); ++l)
    out.append(py::make_tuple(view<T>(self, base + net.w_offset(l), {s[l], s[l + 1]}),
                              view<T>(self, base + net.b_offset(l), {s[l + 1]})));
  return out;
}

template <class T>
Array<T> forward(Network<T>& net, Array<T> X) {
  check_inputs(net, X);
  const long n = long(X.shape(0));
  Array<T> out({py::ssize_t(n), py::ssize_t(net.n_out())});
  T* o = out.mutable_data();
  const T* x = X.data();
  PythonStop stop;
  locked_without_gil(net, [&] { net.forward(x, n, o, &stop.check()); });
  stop.raise_if_stopped(true);
  return out;
}

template <class T>
auto backward(Network<T>& net, Array<T> X, py::array Y) {
  check_inputs(net, X);
  const long n = long(X.shape(0));
  check_batch_rows(n);
  HeldTarget<T> y = make_target(net, Y, n);
  const T* x = X.data();
  const LossSums s = locked_without_gil(net, [&] { return net.backward(x, y.target, int(n)); });
  return py::make_tuple(s.loss, s.correct);
}

template <class T>
auto evaluate(Network<T>& net, Array<T> X, py::array Y) {
  check_inputs(net, X);
  const long n = long(X.shape(0));
  HeldTarget<T> y = make_target(net, Y, n);
  const T* x = X.data();
  PythonStop stop;
  const LossSums s =
      locked_without_gil(net, [&] { return net.evaluate(x, y.target, n, &stop.check()); });
  stop.raise_if_stopped(true);
  return py::make_tuple(s.loss, s.correct);
}

template <class T>
LayerStats run_layer_stats(Network<T>& net, Array<T> X) {
  check_inputs(net, X);
  const T* x = X.data();
  const long n = long(X.shape(0));
  return locked_without_gil(net, [&] { return net.layer_stats(x, n); });
}

template <class T>
py::array_t<double> weight_grad_norms(Network<T>& net) {
  py::array_t<double> out(net.n_layers());
  double* o = out.mutable_data();
  locked_without_gil(net, [&] { net.weight_grad_norms(o); });
  return out;
}

template <class T>
py::array_t<T> params_view(py::object self) {
  Network<T>& net = self.cast<Network<T>&>();
  return view<T>(self, net.params(), {py::ssize_t(net.n_params())});
}

template <class T>
py::array_t<T> grads_view(py::object self) {
  Network<T>& net = self.cast<Network<T>&>();
  return view<T>(self, net.grads(), {py::ssize_t(net.n_params())});
}

template <class T>
double clip_grads_by_norm(Network<T>& net, double max_norm) {
  return locked_without_gil(net,
                            [&] { return clip_grad_norm(net.grads(), net.n_params(), max_norm); });
}

template <class T>
void clip_grads_by_value(Network<T>& net, double value) {
  locked_without_gil(net, [&] { clip_grad_value(net.grads(), net.n_params(), value); });
}

template <class T>
void add_noise_to_grads(Network<T>& net, double eta, double gamma, uint64_t seed, int64_t t) {
  locked_without_gil(net,
                     [&] { add_gradient_noise(net.grads(), net.n_params(), eta, gamma, seed, t); });
}

template <class T>
void bind_network(py::module_& m, const std::string& suffix) {
  using Net = Network<T>;
  py::class_<Net>(m, ("Network" + suffix).c_str())
      .def(py::init(&make_network<T>), py::arg("sizes"), py::arg("hidden"), py::arg("output"),
           py::arg("loss"))
      .def_property_readonly("n_layers", &Net::n_layers)
      .def_property_readonly("sizes", &Net::sizes)
      .def_property_readonly("n_params", &Net::n_params)
      .def_property_readonly("params", &params_view<T>)
      .def_property_readonly("grads", &grads_view<T>)
      .def("layer_views", &layer_views<T>, py::arg("grads"))
      .def("forward", &forward<T>, py::arg("X"))
      .def("backward", &backward<T>, py::arg("X"), py::arg("Y"),
           "Fill the gradients of the batch-mean loss; (loss sum, correct)")
      .def("evaluate", &evaluate<T>, py::arg("X"), py::arg("Y"),
           "(loss sum, correct) over the rows, without gradients")
      .def(
          "activation_stats",
          [](Network<T>& net, Array<T> X) {
            return activation_stats_tuple(run_layer_stats(net, X));
          },
          py::arg("X"))
      .def(
          "layer_stats",
          [](Network<T>& net, Array<T> X) { return layer_stats_dict(run_layer_stats(net, X)); },
          py::arg("X"))
      .def("weight_grad_norms", &weight_grad_norms<T>)
      .def("clip_grad_norm", &clip_grads_by_norm<T>, py::arg("max_norm"))
      .def("clip_grad_value", &clip_grads_by_value<T>, py::arg("value"))
      .def("add_gradient_noise", &add_noise_to_grads<T>, py::arg("eta"), py::arg("gamma"),
           py::arg("seed"), py::arg("t"));
}

// --- Optimizers ---

// A field of a configuration list (FASTBP_OPTIM_FIELDS, FASTBP_EPOCH_FIELDS) as an attribute of
// `config`, the py::class_ of its struct.
#define FASTBP_BIND_FIELD(ctype, name, value) \
  config.def_readwrite(#name, &decltype(config)::type::name);

void bind_optimizer_config(py::module_& m) {
  py::enum_<Optim> kinds(m, "Optim");
#define FASTBP_VALUE(id, Rule) kinds.value(#id, Optim::id);
  FASTBP_OPTIMIZERS(FASTBP_VALUE)
#undef FASTBP_VALUE
  kinds.value("line_search", Optim::line_search);

  py::class_<OptimConfig> config(m, "OptimConfig");
  config.def(py::init<>()).def_readwrite("kind", &OptimConfig::kind);
  FASTBP_OPTIM_FIELDS(FASTBP_BIND_FIELD)
}

template <class T>
void bind_optimizers(py::module_& m, const std::string& suffix) {
  using Opt = OptimizerState<T>;
  py::class_<Opt>(m, ("OptimizerState" + suffix).c_str())
      .def(py::init<std::size_t>(), py::arg("n_params"))
      .def_property_readonly("steps", &Opt::steps)
      .def("state_dict",
           [](const Opt& opt) {
             OptimizerStateDict<T> d =
                 without_gil_holding(opt.mutex(), [&] { return opt.state_dict(); });
             return state_dict_to_python(d);
           })
      .def(
          "load_state_dict",
          [](Opt& opt, py::handle d) {
            OptimizerStateDict<T> state = state_dict_from_python<T>(d);
            without_gil_holding(opt.mutex(), [&] { opt.load_state_dict(std::move(state)); });
          },
          py::arg("state"))
      .def(
          "step",
          [](Opt& opt, Network<T>& net, const OptimConfig& c) {
            require(opt.size() == net.n_params(), "the optimizer state belongs to another network");
            require_steps_left(opt.steps(), 1, "a step");
            locked_without_gil(net, opt, [&] { opt.step(c, net.params(), net.grads()); });
          },
          py::arg("net"), py::arg("config"));
}

// --- Training ---

void bind_epoch_config(py::module_& m) {
  py::class_<EpochConfig> config(m, "EpochConfig");
  config.def(py::init<>());
  FASTBP_EPOCH_FIELDS(FASTBP_BIND_FIELD)
}

template <class T>
auto run_line_search_step(Network<T>& net, const OptimConfig& c, Array<T> X, py::array Y) {
  check_inputs(net, X);
  const long n = long(X.shape(0));
  check_batch_rows(n);
  HeldTarget<T> y = make_target(net, Y, n);
  const T* x = X.data();
  PythonStop stop;
  const auto [loss0, step] = locked_without_gil(
      net, [&] { return line_search_batch(net, c, x, y.target, int(n), stop.check()); });
  stop.raise_if_stopped(true);
  return py::make_tuple(loss0, step);
}

template <class T>
py::dict run_train_epoch(Network<T>& net, OptimizerState<T>& opt, const OptimConfig& c, Array<T> X,
                         py::array Y, py::array start, const EpochConfig& ec,
                         const StopToken* token) {
  check_inputs(net, X);
  const long n = long(X.shape(0));
  HeldTarget<T> y = make_target(net, Y, n);
  // written in place: never a converted copy (the caller would read zeros), nor the network's
  // own buffers
  require(py::isinstance<py::array_t<T>>(start) && start.ndim() == 1 &&
              std::size_t(start.shape(0)) == net.n_params() &&
              (start.flags() & py::array::c_style) && start.writeable(),
          "start_params must be a writeable C-contiguous (n_params,) array of the network's "
          "dtype");
  const auto apart = [&](const T* buffer) {
    const auto at = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const std::uintptr_t bytes = net.n_params() * sizeof(T);
    return at(start.data()) + bytes <= at(buffer) || at(start.data()) >= at(buffer) + bytes;
  };
  require(apart(net.params()) && apart(net.grads()),
          "start_params must not be the network's parameters or gradients");
  require_epoch_counts(opt.steps(), n, ec);
  const T* x = X.data();
  T* p0 = static_cast<T*>(start.mutable_data());
  PythonStop stop(token);
  const EpochStats s = locked_without_gil(
      net, opt, [&] { return train_epoch(net, opt, c, x, n, y.target, ec, p0, stop.check()); });
  stop.raise_if_stopped(false);  // a shorter epoch is a result: stats["stopped"] says why
  return stats_dict(s);
}

template <class T>
void bind_training(py::module_& m) {
  m.def("line_search_step", &run_line_search_step<T>, py::arg("net"), py::arg("config"),
        py::arg("X"), py::arg("Y"));
  m.def("train_epoch", &run_train_epoch<T>, py::arg("net"), py::arg("optimizer"), py::arg("config"),
        py::arg("X"), py::arg("Y"), py::arg("start_params"), py::arg("epoch_config"),
        py::arg("stop") = py::none());
}

void bind_stopping(py::module_& m) {
  py::class_<StopToken>(m, "StopToken")
      .def(py::init<>())
      .def("set", [](StopToken& t) { t.flag.store(true); })
      .def("clear", [](StopToken& t) { t.flag.store(false); })
      .def_property_readonly("is_set", [](const StopToken& t) { return t.flag.load(); });
  m.def("shutting_down", &shutting_down);
  m.def("_shut_down", &shut_down);
  py::module_::import("atexit").attr("register")(m.attr("_shut_down"));
}

// --- Tables, threads, build ---

py::list activation_table_to_python() {
  py::list out;
  for (const ActivationInfo& a : activation_table()) {
    py::dict d;
    d["name"] = a.name;
    d["hidden"] = a.hidden;
    d["auto_init"] = a.auto_init;
    d["hist_edges"] = std::vector<double>(a.hist_edges.begin(), a.hist_edges.end());
    out.append(d);
  }
  return out;
}

py::list loss_table_to_python() {
  py::list out;
  for (const LossInfo& l : loss_table()) {
    py::dict d;
    d["name"] = l.name;
    d["output"] = l.output;
    d["fused"] = l.fused;
    d["labels"] = l.labels;
    d["classification"] = l.classification;
    out.append(d);
  }
  return out;
}

std::string simd_flags() {
  std::string s;
#ifdef __AVX512F__
  s += "avx512f ";
#endif
#ifdef __AVX2__
  s += "avx2 ";
#endif
#ifdef __FMA__
  s += "fma ";
#endif
#ifdef __SSE4_2__
  s += "sse4.2 ";
#endif
#ifdef __ARM_NEON
  s += "neon ";
#endif
  if (!s.empty()) s.pop_back();
  return s;
}

py::dict build_info() {
  py::dict d;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = std::string("unknown");
#endif
#ifdef _OPENMP
  d["openmp"] = std::to_string(_OPENMP);
#else
  d["openmp"] = py::none();
#endif
  d["blas"] = std::string("OpenBLAS (scipy-openblas32)");
  d["blas_core"] = blas_core_name();
  d["blas_threads"] = blas_num_threads();
  d["simd"] = simd_flags();
  d["bfloat16"] = bf16_supported();  // Trainer(matmul_precision="bfloat16") runs here
  d["own_gemm"] = own_gemm_built();  // large float32 products in gemm_packed, not OpenBLAS
  d["cuda"] = false;
#ifdef FASTBP_VERSION
  d["version"] = std::string(FASTBP_VERSION);
#endif
#ifdef FASTBP_ISA
  d["isa"] = std::string(FASTBP_ISA);  // the variant this copy of the core was compiled as
#endif
  return d;
}

// For the tests: C (M x N) = alpha op(A) op(B) + beta C by fastbp's packed kernels (float32, or
// bfloat16 inputs), where A and B are the stored matrices (op transposes them where asked), all
// float32 and C-contiguous.
void packed_gemm(bool ta, bool tb, float alpha, const Array<float>& A, const Array<float>& B,
                 float beta, py::array_t<float, py::array::c_style>& C, bool bf16) {
  require(!bf16 || bf16_supported(), "this CPU has no AVX512-BF16");
  require(bf16 || own_gemm_built(), "this core has no float32 packed kernels (below AVX-512)");
  require(A.ndim() == 2 && B.ndim() == 2 && C.ndim() == 2, "A, B and C must be 2-D");
  const int M = int(ta ? A.shape(1) : A.shape(0)), K = int(ta ? A.shape(0) : A.shape(1));
  const int N = int(tb ? B.shape(0) : B.shape(1));
  require((tb ? B.shape(1) : B.shape(0)) == K, "op(A) and op(B) do not match");
  require(C.shape(0) == M && C.shape(1) == N, "C must be (M, N)");
  require(M > 0 && N > 0 && K > 0, "the matrices must not be empty");
  const int lda = int(A.shape(1)), ldb = int(B.shape(1));
  float* c = C.mutable_data();
  if (!gemm_packed(bf16, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, nullptr, beta, c, N))
    throw std::bad_alloc();
}

void bind_info(py::module_& m) {
  m.def("_packed_gemm", &packed_gemm, py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"),
        py::arg("A"), py::arg("B"), py::arg("beta"), py::arg("C"), py::arg("bfloat16"));
  m.def("activation_table", &activation_table_to_python);
  m.def("loss_names", &loss_names);
  m.def("loss_table", &loss_table_to_python);
  m.attr("MAX_STEPS") = py::int_(kMaxSteps);  // step and noise counters (optimizers.hpp)
  m.attr("MAX_DIM") = py::int_(kMaxDim);      // layer widths and batch rows (common.hpp)
  m.def("set_num_threads", &fastbp::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &fastbp::num_threads);
  m.def("set_local_num_threads", &fastbp::set_local_num_threads, py::arg("n"));
  m.def("max_threads", &fastbp::max_threads);
  m.def("forked_child", &fastbp::forked_child);
  m.def("set_flush_denormals", &fastbp::set_flush_denormals, py::arg("flush"));
  m.def("get_flush_denormals", &fastbp::flush_denormals);
  m.def("build_info", &build_info);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastbp's compiled core (private: use the fastbp package)";
  install_fork_handler();
  bind_stopping(m);
  bind_optimizer_config(m);
  bind_epoch_config(m);
  bind_network<float>(m, "32");
  bind_optimizers<float>(m, "32");
  bind_training<float>(m);
  bind_network<double>(m, "64");
  bind_optimizers<double>(m, "64");
  bind_training<double>(m);
  bind_info(m);
}
