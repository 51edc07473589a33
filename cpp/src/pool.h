// adaptopt's own thread pool, used only by parallel.cpp. One job at a time: the caller publishes
// `nchunks` chunks split into one contiguous range per participant and works as participant 0;
// N-1 pthreads join when they are awake. Every participant claims chunks of its own range first,
// then the unclaimed chunks of the others, one compare-and-swap per chunk, so a worker that has
// not started (asleep, or preempted by another process) holds nothing up: the caller waits only
// for chunks that somebody actually claimed. Idle workers spin for at most about the last job's
// length (capped at kSpinCapNs), then sleep on a futex (a condition variable off Linux).
#pragma once

#include <cstddef>
#include <cstdint>

namespace adaptopt {

// Runs body(ctx, c) once for every c in [0, nchunks). Which thread runs which chunk is not
// fixed: results must not depend on it (callers merge per-chunk partials in chunk order).
using ChunkBody = void (*)(void* ctx, std::size_t chunk);

struct PoolOptions {
  // Participants wanted, the caller included (clamped to kPoolMaxThreads and to nchunks).
  int threads = 1;
  // Wake sleeping workers. False: only workers still spinning from an earlier job join, so a
  // short job that follows other work (the workers went to sleep meanwhile) costs no wake-up.
  bool wake = true;
};

constexpr int kPoolMaxThreads = 256;
// Build-time knobs, only for measuring the spin policy (bench/README.md): the cap of an idle
// worker's spin and whether the budget adapts (halves while jobs come far apart).
#ifndef ADAPTOPT_POOL_SPIN_CAP_NS
#define ADAPTOPT_POOL_SPIN_CAP_NS 50000
#endif
#ifndef ADAPTOPT_POOL_SPIN_ADAPTIVE
#define ADAPTOPT_POOL_SPIN_ADAPTIVE 1
#endif
constexpr std::int64_t kSpinCapNs = ADAPTOPT_POOL_SPIN_CAP_NS;

// Returns after every chunk has run. The calling thread always takes part; when another thread
// is already running a job on the pool, the caller runs all its chunks itself, in order.
void pool_run(std::size_t nchunks, const PoolOptions& opt, ChunkBody body, void* ctx);

// Test and benchmark introspection.
struct PoolStats {
  int workers;                 // threads spawned (in this process: a forked child starts at 0)
  int sleeping;                // of which asleep on the futex now
  std::uint64_t jobs;          // jobs published
  std::uint64_t chunks_by_workers;  // chunks run by workers (the rest ran on callers)
  std::uint64_t serial_fallbacks;   // calls that found the pool busy and ran on their own thread
  std::uint64_t wait_ns;            // time callers waited for chunks in flight on workers
  std::uint64_t long_waits;         // jobs whose caller waited over 100 us (a worker preempted?)
  std::uint64_t stepped_aside;      // times a worker left a job because it ran on the caller's CPU
  std::uint64_t moved_off;          // times a worker moved off the caller's CPU to work elsewhere
  std::uint64_t wakes_skipped;      // jobs that left sleeping workers asleep (backoff, see pool_run)
};
PoolStats pool_stats();

}  // namespace adaptopt
