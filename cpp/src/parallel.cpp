// The only place with OpenMP pragmas: one parallel region per step over every element of every
// tensor, split into contiguous per-thread ranges whose boundaries fall on 64-byte lines of the
// parameter buffer. Compiled for the baseline ISA.
#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "adaptopt/kernels.h"

namespace adaptopt {
namespace {

std::atomic<int> g_threads{0};
// Below this many elements in a step, one thread does the work: waking a team costs more than
// the parallel speedup (set from bench measurements; see README).
std::atomic<std::size_t> g_threshold{1u << 15};

std::size_t elem_size(DType d) { return d == DType::F64 ? 8 : d == DType::F32 ? 4 : 2; }

// GNU libgomp's thread pool does not survive fork(): a child that enters a parallel region
// after the parent used one waits forever. A forked child therefore runs every step on its
// own thread.
std::atomic<bool> g_forked_child{false};
void on_fork_child() { g_forked_child.store(true, std::memory_order_relaxed); }
const bool g_atfork_registered = pthread_atfork(nullptr, nullptr, &on_fork_child) == 0;

}  // namespace

int get_num_threads() {
  if (g_forked_child.load(std::memory_order_relaxed)) return 1;
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = std::max(1, omp_get_max_threads());  // honours OMP_NUM_THREADS
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n, std::memory_order_relaxed); }
std::size_t parallel_threshold() { return g_threshold.load(std::memory_order_relaxed); }
void set_parallel_threshold(std::size_t e) { g_threshold.store(e, std::memory_order_relaxed); }

static int threads_for(std::size_t total) {
  const std::size_t threshold = std::max<std::size_t>(parallel_threshold(), 1);
  return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()),
                                                std::max<std::size_t>(total / threshold, 1)));
}

double grad_sumsq(const TensorRef* ts, std::size_t count, bool* nonfinite) {
  // Fixed blocks of each tensor, summed one by one in block order: the same additions in the
  // same order whatever the thread count.
  constexpr std::size_t kBlock = 1u << 15;
  const KernelTable& tab = active_table();
  std::vector<std::size_t> first(count + 1, 0);
  std::size_t total = 0;
  for (std::size_t k = 0; k < count; ++k) {
    first[k + 1] = first[k] + (ts[k].n + kBlock - 1) / kBlock;
    total += ts[k].n;
  }
  const std::size_t nblocks = first[count];
  std::vector<double> sums(nblocks, 0.0), bad(nblocks, 0.0);
  auto block = [&](std::size_t b) {
    const std::size_t k = static_cast<std::size_t>(std::upper_bound(first.begin(), first.end(), b) - first.begin()) - 1;
    const std::size_t lo = (b - first[k]) * kBlock;
    tab.sumsq[static_cast<int>(ts[k].dtype)](ts[k].g, lo, std::min(lo + kBlock, ts[k].n), &sums[b], &bad[b]);
  };
  const int nthreads = threads_for(total);
  if (nthreads <= 1) {
    for (std::size_t b = 0; b < nblocks; ++b) block(b);
  } else {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(nblocks); ++b) block(static_cast<std::size_t>(b));
  }
  double s = 0, z = 0;
  for (std::size_t b = 0; b < nblocks; ++b) {
    s += sums[b];
    z += bad[b];
  }
  *nonfinite = z != 0;  // NaN != 0
  return s;
}

void run_step(const TensorRef* ts, const Hyper* const* hs, std::size_t count, StepStats* stats,
              std::size_t ngroups) {
  auto run = [&](std::size_t k, std::size_t lo, std::size_t hi, StepStats* st) {
    if (lo < hi) ts[k].fn(*hs[k], ts[k], lo, hi, st ? &st[ts[k].group] : nullptr);
  };
  std::size_t total = 0;
  for (std::size_t k = 0; k < count; ++k) total += ts[k].n;
  const int nthreads = threads_for(total);
  if (nthreads <= 1) {
    for (std::size_t k = 0; k < count; ++k) run(k, 0, ts[k].n, stats);
    return;
  }
  // Statistics per thread and group, merged in thread order afterwards.
  std::vector<StepStats> per_thread(stats ? static_cast<std::size_t>(nthreads) * ngroups : 0);
  std::vector<std::size_t> start(count + 1, 0);
  for (std::size_t k = 0; k < count; ++k) start[k + 1] = start[k] + ts[k].n;

  // Global element offset where thread `part` of `parts` begins, moved forward to the next
  // 64-byte line of that tensor's parameter buffer so no line is written by two threads.
  auto boundary = [&](int part, int parts) -> std::size_t {
    if (part <= 0) return 0;
    if (part >= parts) return total;
    const std::size_t raw = static_cast<std::size_t>(
        (static_cast<unsigned __int128>(total) * static_cast<unsigned>(part)) / static_cast<unsigned>(parts));
    const std::size_t k = static_cast<std::size_t>(std::upper_bound(start.begin(), start.end(), raw) - start.begin()) - 1;
    const std::size_t es = elem_size(ts[k].dtype);
    std::size_t local = raw - start[k];
    const auto addr = reinterpret_cast<std::uintptr_t>(ts[k].p) + local * es;
    const std::size_t mis = addr % 64;
    if (mis != 0 && mis % es == 0) local += (64 - mis) / es;
    const std::size_t gran = ts[k].granule;  // 8-bit state: whole blocks
    if (gran > 1) local = (local + gran - 1) / gran * gran;
    return start[k] + std::min(local, ts[k].n);
  };

#pragma omp parallel num_threads(nthreads)
  {
    const int parts = omp_get_num_threads();
    const int me = omp_get_thread_num();
    StepStats* mine = stats ? &per_thread[static_cast<std::size_t>(me) * ngroups] : nullptr;
    const std::size_t lo = boundary(me, parts), hi = boundary(me + 1, parts);
    if (lo < hi) {
      std::size_t k = static_cast<std::size_t>(std::upper_bound(start.begin(), start.end(), lo) - start.begin()) - 1;
      for (; k < count && start[k] < hi; ++k) {
        const std::size_t b = std::max(lo, start[k]) - start[k];
        const std::size_t e = std::min(hi, start[k + 1]) - start[k];
        run(k, b, e, mine);
      }
    }
  }
  for (std::size_t i = 0; i < per_thread.size(); ++i) stats[i % ngroups].merge(per_thread[i]);
}

}  // namespace adaptopt
