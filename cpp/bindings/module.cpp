// pybind11 module `adaptopt._core`: the rule registry and constants Python reads (it mirrors
// nothing by hand), the Hyper and Group objects, the step and the ISA/thread controls.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "buffers.h"
#include "rules/registry.h"
#include "step.h"

namespace py = pybind11;
using namespace adaptopt;
using namespace adaptopt::bindings;

namespace {

std::string isa_list() {
  std::string s;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) s += (s.empty() ? "" : ", ") + std::string(isa_name(static_cast<Isa>(i)));
  return s;
}

void set_isa(const std::string& name) {
  Isa isa;
  if (!isa_from_name(name.c_str(), &isa))
    throw py::value_error("unknown ISA '" + name + "' (expected one of: scalar, avx2, avx512)");
  if (!isa_supported(isa))
    throw std::runtime_error("ISA '" + name + "' is not supported by this CPU/OS (available: " + isa_list() + ")");
  set_active_isa(isa);
}

const RuleInfo& info_of(int rule) {
  if (rule < 0 || rule >= kNumRules) throw py::value_error("unknown rule id " + std::to_string(rule));
  return rule_info(static_cast<RuleId>(rule));
}

std::vector<std::string> flag_names(unsigned bits) {
  static const char* const names[] = {
#define AO_X(name) #name,
      AO_FLAGS(AO_X)
#undef AO_X
  };
  std::vector<std::string> out;
  for (int i = 0; i < kNumFlags; ++i)
    if (bits >> i & 1u) out.emplace_back(names[i]);
  return out;
}

Hyper make_hyper(int rule, double lr, double weight_decay, unsigned flags, const std::vector<double>& params) {
  const RuleInfo& info = info_of(rule);
  if (flags & ~info.flags)
    throw py::value_error(std::string(info.name) + " does not take the option flags " +
                          py::str(py::cast(flag_names(flags & ~info.flags))).cast<std::string>());
  if (params.size() != info.fields.size())
    throw py::value_error(std::string(info.name) + ": expected " + std::to_string(info.fields.size()) +
                          " hyperparameters, got " + std::to_string(params.size()));
  Hyper h;
  h.rule = info.id;
  h.common.lr = lr;
  h.common.weight_decay = weight_decay;
  h.common.flags = flags;
  set_params(h, params.data(), params.size());
  return h;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "adaptopt native core: fused SIMD optimizer kernels and their rule registry";
  m.attr("__version__") = ADAPTOPT_VERSION;

  const char* bad = nullptr;
  bool unknown = false;
  if (!apply_isa_env(&bad, &unknown)) {
    if (unknown)
      throw py::value_error(std::string("ADAPTOPT_ISA: unknown ISA '") + bad +
                            "' (expected one of: scalar, avx2, avx512)");
    throw py::import_error(std::string("ADAPTOPT_ISA: ISA '") + bad + "' is not supported by this CPU/OS (available: " +
                           isa_list() + ")");
  }

  // -- the registry ---------------------------------------------------------------------------
  py::class_<RuleInfo>(m, "RuleInfo", "One update rule as the native core defines it.")
      .def_property_readonly("id", [](const RuleInfo& r) { return static_cast<int>(r.id); })
      .def_property_readonly("name", [](const RuleInfo& r) { return std::string(r.name); })
      .def_property_readonly(
          "fields", [](const RuleInfo& r) { return std::vector<std::string>(r.fields.begin(), r.fields.end()); },
          "Named hyperparameters besides lr and weight_decay, in Hyper order.")
      .def_property_readonly(
          "slots", [](const RuleInfo& r) { return std::vector<std::string>(r.slots.begin(), r.slots.end()); },
          "State buffers (torch's names), in slot order.")
      .def_property_readonly(
          "state",
          [](const RuleInfo& r) {
            std::vector<std::pair<std::string, double>> out;
            for (const auto& s : r.state) out.emplace_back(s.name, s.initial);
            return out;
          },
          "Per-parameter scalar state: (name, initial value).")
      .def_property_readonly("flags", [](const RuleInfo& r) { return flag_names(r.flags); },
                             "Option flags the rule accepts.")
      .def_property_readonly("eager_state", [](const RuleInfo& r) { return r.eager_state; },
                             "State is created at construction (torch's Adagrad).")
      .def_property_readonly(
          "unsigned_slots",
          [](const RuleInfo& r) {
            std::vector<bool> out;
            for (std::size_t s = 0; s < r.slots.size(); ++s) out.push_back(r.unsigned_slots >> s & 1u);
            return out;
          },
          "Per slot: never negative (its 8-bit code has no sign).");
  m.def("rules", [] { return all_rules(); }, "Every update rule, in id order.");
  {
    py::dict flags;
#define AO_X(name) flags[#name] = flag::name;
    AO_FLAGS(AO_X)
#undef AO_X
    m.attr("FLAGS") = flags;
  }
  m.attr("MAX_SLOTS") = kMaxSlots;
  m.attr("Q8_BLOCK") = kQBlockElements;
  m.def("q8_encode", [](py::array_t<float, py::array::c_style | py::array::forcecast> x, bool is_unsigned) {
    const std::size_t n = static_cast<std::size_t>(x.size());
    py::array_t<std::uint8_t> codes(x.request().shape);
    py::array_t<float> absmax(static_cast<py::ssize_t>((n + kQBlockElements - 1) / kQBlockElements));
    active_table().q8_encode[is_unsigned ? 1 : 0](x.data(), n, codes.mutable_data(), absmax.mutable_data());
    return py::make_tuple(codes, absmax);
  }, py::arg("values"), py::arg("unsigned"),
        "8-bit codes (same shape) and absmax per block of float32 values (a copy is encoded).");
  m.def("q8_decode", [](py::array_t<std::uint8_t, py::array::c_style> codes,
                        py::array_t<float, py::array::c_style> absmax, bool is_unsigned) {
    const std::size_t n = static_cast<std::size_t>(codes.size());
    if (static_cast<std::size_t>(absmax.size()) != (n + kQBlockElements - 1) / kQBlockElements)
      throw py::value_error("absmax: expected one value per block of " + std::to_string(kQBlockElements));
    py::array_t<float> x(codes.request().shape);
    active_table().q8_decode[is_unsigned ? 1 : 0](codes.data(), absmax.data(), n, x.mutable_data());
    return x;
  }, py::arg("codes"), py::arg("absmax"), py::arg("unsigned"), "float32 values of 8-bit codes.");
  m.def("set_bfloat16_dtype", [](py::dtype dt) { set_bfloat16_type_num(dt.num()); }, py::arg("dtype"),
        "Registers ml_dtypes.bfloat16's NumPy dtype as the bfloat16 storage type.");

  py::enum_<StepStatus>(m, "StepStatus", "What a step did.")
      .value("nothing", StepStatus::nothing, "no parameter had a gradient")
      .value("applied", StepStatus::applied)
      .value("skipped", StepStatus::skipped, "skipped: a gradient was not finite");

  py::class_<StepStats>(m, "StepStats", "Statistics of one param group's update, from the update pass.")
      .def_readonly("grad_sq", &StepStats::grad_sq, "sum of squared gradients (as given)")
      .def_readonly("update_sq", &StepStats::update_sq, "sum of squared applied updates")
      .def_readonly("lr_sum", &StepStats::lr_sum, "sum of the effective per-element learning rates")
      .def_readonly("lr_min", &StepStats::lr_min)
      .def_readonly("lr_max", &StepStats::lr_max)
      .def_readonly("count", &StepStats::count, "elements updated");

  py::class_<Hyper>(m, "Hyper", "The validated hyperparameters of one param group, packed for the kernels.")
      .def(py::init(&make_hyper), py::arg("rule"), py::arg("lr"), py::arg("weight_decay"), py::arg("flags"),
           py::arg("params"))
      .def_property_readonly("rule", [](const Hyper& h) { return static_cast<int>(h.rule); })
      .def_property_readonly("lr", [](const Hyper& h) { return h.common.lr; })
      .def_property_readonly("params",
                             [](const Hyper& h) {
                               std::vector<double> out;
                               for (std::size_t i = 0; i < rule_info(h.rule).fields.size(); ++i)
                                 out.push_back(param_value(h, i));
                               return out;
                             })
      .def_property_readonly(
          "needed",
          [](const Hyper& h) {
            std::vector<bool> out;
            const unsigned bits = needed_slots(h);
            for (std::size_t s = 0; s < rule_info(h.rule).slots.size(); ++s) out.push_back(bits >> s & 1u);
            return out;
          },
          "Per slot: does an update with these hyperparameters read and write it?")
      .def_property_readonly(
          "slot_init",
          [](const Hyper& h) {
            std::vector<double> out;
            for (std::size_t s = 0; s < rule_info(h.rule).slots.size(); ++s) out.push_back(slot_init(h, static_cast<int>(s)));
            return out;
          },
          "Per slot: the value a new buffer starts at.");

  py::class_<Group>(m, "Group", py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                      // The group holds the param and state arrays: the garbage collector must see
                      // those references, or a cycle through a param is never collected.
                      auto* type = &heap_type->ht_type;
                      type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                      type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
                        Py_VISIT(Py_TYPE(self));
                        if (!py::detail::is_holder_constructed(self)) return 0;
                        return py::cast<const Group&>(py::handle(self)).traverse(visit, arg);
                      };
                      type->tp_clear = [](PyObject* self) {
                        if (py::detail::is_holder_constructed(self)) py::cast<Group&>(py::handle(self)).clear();
                        return 0;
                      };
                    }))
      .def(py::init<int, py::list, py::list, py::array, py::object, std::string, std::size_t, py::object, py::object,
                    int, int, py::object, std::uint64_t>(),
           py::arg("rule"), py::arg("params"), py::arg("states"), py::arg("steps"), py::arg("rule_state") = py::none(),
           py::arg("param_label") = "params", py::arg("first_index") = 0, py::arg("slot_labels") = py::none(),
           py::arg("fresh") = py::none(), py::arg("state_kind") = 0, py::arg("mode") = 0,
           py::arg("masters") = py::none(), py::arg("seed") = 0)
      .def("__len__", &Group::size)
      .def("arrays", &Group::arrays, py::arg("i"), "[param, slot 0 or None, ...] of param i.");

  m.def("multi_step", &multi_step, py::arg("groups"), py::arg("hypers"), py::arg("grads"),
        py::arg("max_norm") = -1.0, py::arg("skip_nonfinite") = false, py::arg("want_norm") = false,
        py::arg("want_stats") = false, py::arg("counts") = py::none(), py::arg("on_apply") = py::none(),
        py::arg("grad_scale") = 1.0,
        "Validate every gradient, then update every group in one parallel region with the GIL released.\n"
        "max_norm >= 0 clips by the global gradient norm (of the gradients as given). grad_scale multiplies\n"
        "every gradient inside the kernels (with the clipping coefficient; statistics see the gradients as\n"
        "given). Returns (norm or None, StepStatus, list of\n"
        "StepStats per group or None). counts (int64[2]: applied, skipped steps) and on_apply ((object,\n"
        "name, value) set when the step applies) are updated inside the call, atomically with the step.");
  py::class_<Plan>(m, "Plan", py::custom_type_setup([](PyHeapTypeObject* heap_type) {
                     auto* type = &heap_type->ht_type;  // holds groups, dicts, params: GC-visible
                     type->tp_flags |= Py_TPFLAGS_HAVE_GC;
                     type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
                       Py_VISIT(Py_TYPE(self));
                       if (!py::detail::is_holder_constructed(self)) return 0;
                       return py::cast<const Plan&>(py::handle(self)).traverse(visit, arg);
                     };
                     type->tp_clear = [](PyObject* self) {
                       if (py::detail::is_holder_constructed(self)) py::cast<Plan&>(py::handle(self)).clear();
                       return 0;
                     };
                   }),
                   "A step planned once, checked each time with pointer comparisons.")
      .def(py::init<py::list, py::array>(), py::arg("entries"), py::arg("counts"))
      .def("step", &Plan::step, py::arg("grads"), py::arg("max_norm"), py::arg("skip_nonfinite"),
           py::arg("want_stats"),
           "multi_step's result, or None (nothing done) when a group, its params or a planned value changed.");

  m.def("commit", &commit, py::arg("ops"),
        "Apply ('setattr', obj, name, value), ('replace', dict, mapping) and ('copyto', dst, src)\n"
        "operations all at once (all checked first), with no Python code running in between.");
  m.def("set_sparse_rows_type", &set_sparse_rows_type, py::arg("type"),
        "The class of sparse-row gradients; only its instances are taken as (indices, values).");

  py::class_<Probe>(m, "Probe", "The bandwidth probe: one pass over p, g and the state arrays per run().")
      .def(py::init<py::array, py::array, py::list, int, py::object>(), py::arg("p"), py::arg("g"), py::arg("states"),
           py::arg("state_kind") = 0, py::arg("master") = py::none())
      .def("run", &Probe::run);

  m.def("find_overlap", [](py::list arrays) -> std::optional<std::pair<std::size_t, std::size_t>> {
    std::vector<Interval> iv;
    static const std::string kArrays = "arrays";
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      const View v = check_array(arrays[i], Name{kArrays, i}, false);
      iv.push_back(interval_of(v, std::to_string(i)));
    }
    auto [a, b] = sort_and_find_overlap(iv);
    if (a == nullptr) return std::nullopt;
    const std::size_t i = std::stoul(a->label), j = std::stoul(b->label);
    return std::make_pair(std::min(i, j), std::max(i, j));
  }, py::arg("arrays"), "Indices (i, j) of two arrays whose memory overlaps, or None.");

  // -- ISA and threads ------------------------------------------------------------------------
  m.def("isa", [] { return std::string(isa_name(active_isa())); }, "Name of the active kernel ISA.");
  m.def("available_isas", [] {
    std::vector<std::string> out;
    for (int i = 0; i < kNumIsas; ++i)
      if (isa_supported(static_cast<Isa>(i))) out.emplace_back(isa_name(static_cast<Isa>(i)));
    return out;
  }, "ISAs usable on this CPU and OS, lowest first.");
  m.def("set_isa", &set_isa, py::arg("name"), "Select the kernel ISA (must be in available_isas()).");
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("parallel_threshold", &parallel_threshold);
  m.def("set_parallel_threshold", [](std::size_t e) { set_parallel_threshold(e); }, py::arg("elements"));
}
