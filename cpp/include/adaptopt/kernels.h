// ISA-agnostic declarations shared by the dispatcher, the parallel driver, the bindings and the
// per-ISA kernel files. Nothing here depends on an instruction set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rules/rules.def"  // every rule header, at namespace scope, before the lists below

namespace adaptopt {

// Rule ids in rules.def order; the native module exports them to Python by name.
enum class RuleId : int {
#define AO_RULE(Type) Type,
#include "rules/rules.def"
};
constexpr int kNumRules = 0
#define AO_RULE(Type) +1
#include "rules/rules.def"
    ;

// Parameter (and gradient) storage. Update math is in float64 for F64, float32 otherwise.
enum class DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };
constexpr int kNumDTypes = 4;

// State storage: the math type (float32, or float64 for F64 params), bfloat16, or 8-bit codes
// with a float32 absmax per block of kQBlock (storage.h) elements.
enum class StateKind : int { Math = 0, BF16 = 1, Q8 = 2 };
constexpr int kNumStateKinds = 3;
constexpr std::size_t kQBlockElements = 256;

// How a 16-bit parameter is written: rounded to nearest even; through a float32 master copy
// (updated, then rounded into the param); or stochastically rounded.
enum class ParamMode : int { Round = 0, Master = 1, Stochastic = 2 };
constexpr int kNumParamModes = 3;

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kNumIsas = 3;

// Hyperparameters of one param group, validated in Python. `params` holds the rule's named
// hyperparameters (Rule::Params, fields in Rule::kFields order). grad_scale multiplies every
// gradient first (gradient clipping); 1 = off.
struct Hyper {
  RuleId rule = RuleId::RMSprop;
  Common common;
  double grad_scale = 1.0;
  double params[kMaxParams] = {};
};

struct StepStats;
struct TensorRef;

// Updates elements [begin, end) of one tensor; adds to *stats unless it is null.
using ChunkFn = void (*)(const Hyper&, const TensorRef&, std::size_t begin, std::size_t end, StepStats* stats);

// One tensor (or one row of a sparse update) of one step: its buffers (s[k] = state slot k, null
// when absent; q[k] its per-block absmax when 8-bit), the kernel that updates it and the rule's
// per-step scalars (Rule::Scalars, computed in double by the registry for this tensor's step).
struct TensorRef {
  void* p = nullptr;
  const void* g = nullptr;
  void* s[kMaxSlots] = {nullptr, nullptr, nullptr};
  float* q[kMaxSlots] = {nullptr, nullptr, nullptr};
  float* master = nullptr;  // ParamMode::Master: the float32 copy that is updated
  std::size_t n = 0;
  DType dtype = DType::F32;
  StateKind state = StateKind::Math;
  ParamMode mode = ParamMode::Round;
  std::uint32_t group = 0;  // index of its param group, for per-group statistics
  unsigned fresh = 0;       // bit k: slot k was created for this step
  unsigned needed = 0;      // bit k: the update reads and writes slot k
  std::size_t granule = 1;  // chunk boundaries fall on multiples of this many elements (8-bit blocks)
  std::uint64_t key = 0;    // ParamMode::Stochastic: hash of (seed, step)
  std::uint64_t index = 0;  // index of element 0 in its tensor (for the stochastic rounding bits)
  ChunkFn fn = nullptr;
  double scalars[kScalarBytes / sizeof(double)] = {};
};

// Opt-in statistics of one step for one param group, accumulated by the update pass itself:
// sums of squares of the gradients (as given) and of the applied updates (new p - old p), and
// the effective per-element learning rate (the factor of g in the update: lr / denominator).
struct StepStats {
  double grad_sq = 0, update_sq = 0, lr_sum = 0;
  double lr_min = __builtin_inf(), lr_max = -__builtin_inf();
  std::uint64_t count = 0;
  void merge(const StepStats& o) {
    grad_sq += o.grad_sq;
    update_sq += o.update_sq;
    lr_sum += o.lr_sum;
    lr_min = o.lr_min < lr_min ? o.lr_min : lr_min;
    lr_max = o.lr_max > lr_max ? o.lr_max : lr_max;
    count += o.count;
  }
};

// Adds the sum of squares of g[begin, end) (in double) to *sum, and 0*g to *nonfinite, which
// becomes NaN when any element is NaN or infinite.
using SumsqFn = void (*)(const void* g, std::size_t begin, std::size_t end, double* sum, double* nonfinite);

struct KernelTable {
  const char* name;
  // Null where the combination does not exist (16-bit state kinds and modes with F64 params, the
  // master and stochastic modes with 32/64-bit params).
  ChunkFn rule[kNumRules][kNumDTypes][kNumStateKinds][kNumParamModes];
  // The bandwidth probe: reads p (or the master), g and every present state buffer once and
  // writes them once, in their storage widths, with one add per stream (Hyper::common.lr = 0
  // keeps the values).
  ChunkFn probe[kNumDTypes][kNumStateKinds];
  SumsqFn sumsq[kNumDTypes];
  // The 8-bit code on its own ([0]: signed, [1]: unsigned), for state dicts and loads:
  // n float32 values -> codes and an absmax per block, and back.
  void (*q8_encode[2])(const float* x, std::size_t n, std::uint8_t* codes, float* absmax);
  void (*q8_decode[2])(const std::uint8_t* codes, const float* absmax, std::size_t n, float* x);
};

// Defined once per ISA file (only those compiled for this architecture exist).
const KernelTable& kernel_table_scalar();
#if defined(ADAPTOPT_X86)
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();
#endif

// dispatch.cpp: CPU detection and the active table.
bool isa_supported(Isa isa);
const char* isa_name(Isa isa);
bool isa_from_name(const char* name, Isa* out);
Isa active_isa();
void set_active_isa(Isa isa);  // caller checks isa_supported first
const KernelTable& active_table();
// Applies ADAPTOPT_ISA if set. Returns false with *error_name set when the name is unknown or
// the ISA is not usable on this CPU; the best supported ISA stays active then.
bool apply_isa_env(const char** error_name, bool* unknown);

// parallel.cpp: the one parallel region per step.
int get_num_threads();
void set_num_threads(int n);
std::size_t parallel_threshold();
void set_parallel_threshold(std::size_t elements);
// Runs tensors[i].fn over every element of every tensor in one parallel region (or none below
// the threshold). hypers[i] applies to tensors[i]. Results do not depend on the thread count.
// With `stats`, stats[g] receives the statistics of group g (tensors[i].group < ngroups).
void run_step(const TensorRef* tensors, const Hyper* const* hypers, std::size_t count,
              StepStats* stats = nullptr, std::size_t ngroups = 0);
// Sum of squares of every gradient element, accumulated in double over fixed blocks in a fixed
// order, so the result does not depend on the thread count. *nonfinite is set when any
// gradient element is NaN or infinite.
double grad_sumsq(const TensorRef* tensors, std::size_t count, bool* nonfinite);

}  // namespace adaptopt
