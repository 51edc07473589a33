// Thread counts and the parallel driver of a step: every element of every tensor in fixed chunks
// of the concatenated tensors, run on adaptopt's own pool (pool.h). The chunk boundaries depend
// only on the tensor sizes, never on the thread count, and per-chunk partial results (statistics,
// sums of squares) are merged in chunk order, so results are bit-identical for any thread count
// and whichever thread ran a chunk. Compiled for the baseline ISA.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "adaptopt/kernels.h"
#include "pool.h"

#ifndef ADAPTOPT_VERSION
#define ADAPTOPT_VERSION "unknown"
#endif

namespace adaptopt {
namespace {

std::atomic<int> g_threads{0};
// Below this many elements in a step, one thread does the work: waking a team costs more than
// the parallel speedup (set from bench measurements; see README).
std::atomic<std::size_t> g_threshold{1u << 15};

// OMP_NUM_THREADS (its first entry, as OpenMP reads it) if set to a positive number, else the
// CPUs this process may run on.
int default_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && n >= 1 && (*end == '\0' || *end == ',' || *end == ' ')) {
      return static_cast<int>(std::min<long>(n, 1 << 20));
    }
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

int get_num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n <= 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n, std::memory_order_relaxed); }
std::size_t parallel_threshold() { return g_threshold.load(std::memory_order_relaxed); }
void set_parallel_threshold(std::size_t e) { g_threshold.store(e, std::memory_order_relaxed); }

namespace {

// Chunks: [c * size, (c + 1) * size) of the tensors laid end to end, each tensor starting on a
// multiple of kAlign elements of that layout, so every chunk boundary inside a tensor falls on a
// whole 8-bit state block and a whole number of 64-byte lines past the buffer's start. A chunk
// is at least kMinChunk elements (one claim per chunk stays far below a chunk's work) and there
// are at most about kMaxChunks of them (bounds the per-chunk partials of large steps). The layout
// depends on the tensor sizes only, never on the thread count.
constexpr std::size_t kAlign = 256;
static_assert(kAlign % kQBlockElements == 0 && kAlign % 64 == 0, "chunk boundaries must fall on whole blocks");
constexpr std::size_t kMinChunk = 4096;
constexpr std::size_t kMaxChunks = 8192;

struct Plan {
  const TensorRef* ts;
  std::size_t count;
  std::vector<std::size_t> start;  // start[k] = where tensor k begins in the layout
  std::size_t total = 0, size = 0, nchunks = 0;  // total: elements (without the alignment gaps)

  Plan(const TensorRef* t, std::size_t n) : ts(t), count(n), start(n + 1, 0) {
    for (std::size_t k = 0; k < n; ++k) {
      start[k + 1] = start[k] + (t[k].n + kAlign - 1) / kAlign * kAlign;
      total += t[k].n;
    }
    const std::size_t span = start[n];
    size = std::max(kMinChunk, ((span + kMaxChunks - 1) / kMaxChunks + kAlign - 1) / kAlign * kAlign);
    nchunks = (span + size - 1) / size;
  }

  // Calls f(k, begin, end) for every non-empty piece [begin, end) of tensor k in chunk c, in
  // tensor order.
  template <class F>
  void pieces(std::size_t c, F&& f) const {
    const std::size_t lo = c * size, hi = lo + size;
    std::size_t k = static_cast<std::size_t>(std::upper_bound(start.begin(), start.end(), lo) - start.begin()) - 1;
    for (; k < count && start[k] < hi; ++k) {
      const std::size_t b = std::max(lo, start[k]) - start[k];
      const std::size_t e = std::min(hi - start[k], ts[k].n);
      if (b < e) f(k, b, e);
    }
  }
};

int threads_for(std::size_t total) {
  const std::size_t threshold = std::max<std::size_t>(parallel_threshold(), 1);
  return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(get_num_threads()),
                                                std::max<std::size_t>(total / threshold, 1)));
}

template <class F>
void trampoline(void* f, std::size_t c) {
  (*static_cast<F*>(f))(c);
}

// Runs chunk(c) for every chunk, on the pool when `threads` > 1.
template <class F>
void for_chunks(const Plan& plan, int threads, F& chunk) {
  if (threads <= 1 || plan.nchunks <= 1) {
    for (std::size_t c = 0; c < plan.nchunks; ++c) chunk(c);
    return;
  }
  PoolOptions opt;
  opt.threads = threads;
  pool_run(plan.nchunks, opt, &trampoline<F>, &chunk);
}

}  // namespace

double grad_sumsq(const TensorRef* ts, std::size_t count, bool* nonfinite) {
  const KernelTable& tab = active_table();
  const Plan plan(ts, count);
  // Per chunk: its pieces summed in order; then the chunks summed in order.
  std::vector<double> sums(plan.nchunks, 0.0), bad(plan.nchunks, 0.0);
  auto chunk = [&](std::size_t c) {
    plan.pieces(c, [&](std::size_t k, std::size_t b, std::size_t e) {
      tab.sumsq[static_cast<int>(ts[k].dtype)](ts[k].g, b, e, &sums[c], &bad[c]);
    });
  };
  for_chunks(plan, threads_for(plan.total), chunk);
  double s = 0, z = 0;
  for (std::size_t c = 0; c < plan.nchunks; ++c) {
    s += sums[c];
    z += bad[c];
  }
  *nonfinite = z != 0;  // NaN != 0
  return s;
}

void run_step(const TensorRef* ts, const Hyper* const* hs, std::size_t count, StepStats* stats,
              std::size_t ngroups) {
  (void)ngroups;
  if (stats == nullptr) {
    std::size_t total = 0;
    for (std::size_t k = 0; k < count; ++k) total += ts[k].n;
    const int threads = threads_for(total);
    if (threads <= 1) {  // an update is elementwise: no chunking needed without statistics
      for (std::size_t k = 0; k < count; ++k)
        if (ts[k].n) ts[k].fn(*hs[k], ts[k], 0, ts[k].n, nullptr);
      return;
    }
  }
  const Plan plan(ts, count);
  // Statistics of piece (chunk c, tensor k) go to part[c + k]: unique, and increasing in
  // (c, k), since a chunk starts in the tensor where the previous one ended or later.
  std::vector<StepStats> part(stats ? plan.nchunks + count : 0);
  auto chunk = [&](std::size_t c) {
    plan.pieces(c, [&](std::size_t k, std::size_t b, std::size_t e) {
      ts[k].fn(*hs[k], ts[k], b, e, stats ? &part[c + k] : nullptr);
    });
  };
  for_chunks(plan, threads_for(plan.total), chunk);
  if (stats)
    for (std::size_t c = 0; c < plan.nchunks; ++c)
      plan.pieces(c, [&](std::size_t k, std::size_t, std::size_t) { stats[ts[k].group].merge(part[c + k]); });
}

}  // namespace adaptopt

// For threadpoolctl (python/adaptopt/_threadpool.py), which finds _core among the loaded
// libraries and calls these through ctypes.
#define ADAPTOPT_EXPORT extern "C" __attribute__((visibility("default")))
ADAPTOPT_EXPORT int adaptopt_get_num_threads(void) { return adaptopt::get_num_threads(); }
ADAPTOPT_EXPORT void adaptopt_set_num_threads(int n) {
  if (n >= 1) adaptopt::set_num_threads(n);
}
ADAPTOPT_EXPORT const char* adaptopt_version(void) { return ADAPTOPT_VERSION; }
// Pool counters for tests and benchmarks: workers spawned in this process, asleep now, jobs,
// chunks run by workers, calls that ran serially because the pool was busy, ns callers waited
// for chunks in flight, jobs that waited over 100 us, times a worker stepped aside (it ran on
// the caller's CPU), times one moved off it, jobs that did not wake sleeping workers (backoff).
ADAPTOPT_EXPORT void adaptopt_pool_stats(long long out[10]) {
  const adaptopt::PoolStats s = adaptopt::pool_stats();
  out[0] = s.workers;
  out[1] = s.sleeping;
  out[2] = static_cast<long long>(s.jobs);
  out[3] = static_cast<long long>(s.chunks_by_workers);
  out[4] = static_cast<long long>(s.serial_fallbacks);
  out[5] = static_cast<long long>(s.wait_ns);
  out[6] = static_cast<long long>(s.long_waits);
  out[7] = static_cast<long long>(s.stepped_aside);
  out[8] = static_cast<long long>(s.moved_off);
  out[9] = static_cast<long long>(s.wakes_skipped);
}
