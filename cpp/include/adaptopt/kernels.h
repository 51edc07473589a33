// ISA-agnostic declarations shared by the dispatcher, the parallel driver, the bindings and the
// per-ISA kernel files. Nothing here depends on an instruction set.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adaptopt {

// Probe is the bandwidth probe: the same buffers and passes as an update, trivial arithmetic.
enum class Algo : int { RMSprop = 0, Adagrad = 1, Adadelta = 2, Adam = 3, Probe = 4, Sgd = 5 };
constexpr int kNumAlgos = 6;

enum class DType : int { F32 = 0, F64 = 1 };

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kNumIsas = 3;

// Option bits of Hyper::flags.
enum : unsigned {
  kCentered = 1u << 0,
  kNesterov = 1u << 1,
  kEpsInSqrt = 1u << 2,
  kMaximize = 1u << 3,
  kAmsgrad = 1u << 4,
  kDecoupled = 1u << 5,
};

// Hyperparameters of one param group, as the user gave them (validated in Python).
// a = alpha (RMSprop), rho (Adadelta), beta1 (Adam); b = beta2 (Adam), lr_decay (Adagrad),
// dampening (SGD). grad_scale multiplies every gradient first (gradient clipping); 1 = off.
struct Hyper {
  Algo algo = Algo::RMSprop;
  double lr = 0, a = 0, b = 0, eps = 0, weight_decay = 0, momentum = 0;
  unsigned flags = 0;
  double grad_scale = 1.0;
};

// Up to three state buffers per parameter, in the order each algorithm defines:
//   RMSprop: square_avg, momentum_buffer, grad_avg   Adagrad: sum
//   Adadelta: square_avg, acc_delta                   Adam: exp_avg, exp_avg_sq, max_exp_avg_sq
//   SGD: momentum_buffer
constexpr int kMaxSlots = 3;

// One tensor (or one row of a sparse update) of one step. c0/c1 are the step-dependent
// scalars, computed in double by the driver (Adagrad: c0 = clr; Adam: c0 = lr / bc1,
// c1 = 1 / sqrt(bc2); SGD: c0 = 1 on the first step, which copies g into the momentum buffer).
struct TensorRef {
  void* p = nullptr;
  const void* g = nullptr;
  void* s[kMaxSlots] = {nullptr, nullptr, nullptr};
  std::size_t n = 0;
  DType dtype = DType::F32;
  double c0 = 0, c1 = 0;
  std::uint32_t group = 0;  // index of its param group, for per-group statistics
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

// Updates elements [begin, end) of one tensor; adds to *stats unless it is null.
using ChunkFn = void (*)(const Hyper&, const TensorRef&, std::size_t begin, std::size_t end, StepStats* stats);

// Adds the sum of squares of g[begin, end) (in double) to *sum, and 0*g to *nonfinite, which
// becomes NaN when any element is NaN or infinite.
using SumsqFn = void (*)(const void* g, std::size_t begin, std::size_t end, double* sum, double* nonfinite);

struct KernelTable {
  const char* name;
  ChunkFn fn[kNumAlgos][2];  // [algo][dtype]
  SumsqFn sumsq[2];          // [dtype]
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

// parallel.cpp: the one OpenMP region per step.
int get_num_threads();
void set_num_threads(int n);
std::size_t parallel_threshold();
void set_parallel_threshold(std::size_t elements);
// Sets t.c0/t.c1 for the step number `step` (1 for the first update), in double.
void fill_step_scalars(TensorRef& t, const Hyper& h, std::int64_t step);
// Updates every element of every tensor in one parallel region (or none below the threshold).
// hypers[i] applies to tensors[i]. Results do not depend on the thread count. With `stats`,
// stats[g] receives the statistics of group g (tensors[i].group < ngroups).
void run_step(const TensorRef* tensors, const Hyper* const* hypers, std::size_t count,
              StepStats* stats = nullptr, std::size_t ngroups = 0);
// Sum of squares of every gradient element, accumulated in double over fixed blocks in a fixed
// order, so the result does not depend on the thread count. *nonfinite is set when any
// gradient element is NaN or infinite.
double grad_sumsq(const TensorRef* tensors, std::size_t count, bool* nonfinite);

}  // namespace adaptopt

namespace adaptopt {
// Applies ADAPTOPT_ISA if set. Returns false with *error set when the name is unknown or the
// ISA is not usable on this CPU; the best supported ISA stays active then.
bool apply_isa_env(const char** error_name, bool* unknown);
}  // namespace adaptopt
