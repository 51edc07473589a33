// The thread pool behind pool_run (see pool.h). Compiled for the baseline ISA.
//
// Publication. The pool holds two job slots; job `g` uses slots[g & 1]. The caller (one at a
// time: `busy`) writes the slot, resets one 64-bit word per participant range to (g << 32 | first
// chunk), then stores g into `gen`, the futex word idle workers wait on. A participant claims
// chunk i of range r by a compare-and-swap of ranges[r] from (g, i) to (g, i + 1), only if i is
// below the range's end. A worker that read `gen` long ago and wakes up late cannot claim
// anything of a later job: its CAS expects its own generation, and every range word ever used
// is reset to the new generation at each publication. Slot fields are atomics written with
// release and read with acquire, so a late worker that reads a slot being rewritten (two jobs
// later) also sees the resets that make its CAS fail.
//
// Completion. Workers add each chunk they ran to slots[g & 1].done; the caller, after its claim
// loop found every range exhausted, waits until `done` counts every chunk it did not run
// itself: only chunks that somebody claimed and is running. It spins briefly, then sets the
// wait bit and sleeps on `done`; the worker that sees the bit wakes it.
//
// Idle workers spin (pause, checking `gen`) for min(budget, the last job's duration), where the
// budget is kSpinCapNs, halved each time a spin found nothing and the next job came much later
// (the host does other work between steps: spinning only takes its cores) and restored when a
// job arrives during or soon after the spin (back-to-back steps). Then they sleep on the futex.
// A worker never spins on the CPU the last caller ran on.
//
// CPU placement. Right after a host's BLAS or OpenMP work, that library's threads still spin on
// the other CPUs, so the OS often wakes our worker on the caller's own CPU, where the two take
// turns and nothing runs in parallel. A worker that finds itself there moves (its affinity for
// the job: every CPU it may use but the caller's; restored after the job); if there is no other
// CPU it steps aside, and the caller stops waking workers for 1, 2, 4 ... 64 jobs.
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>

#if defined(__linux__) && !defined(ADAPTOPT_POOL_NO_FUTEX)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ADAPTOPT_FUTEX 1
#else
#include <condition_variable>
#include <mutex>
#define ADAPTOPT_FUTEX 0
#endif

namespace adaptopt {

#if defined(ADAPTOPT_POOL_STRESS_HOOK)
// cpp/tests/pool_stress.cpp defines it: random delays where a worker may be preempted.
void pool_stress_hook(int where);
#define POOL_HOOK(where) pool_stress_hook(where)
#else
#define POOL_HOOK(where) ((void)0)
#endif

namespace {

constexpr std::uint32_t kWaitBit = 1u << 31;   // in Slot::done: the caller sleeps on it
constexpr std::size_t kMaxChunks = kWaitBit - 1;
constexpr std::int64_t kDoneSpinNs = 20'000;   // caller's spin for in-flight chunks before sleeping
constexpr std::int64_t kMinSpinNs = 500;       // below this a worker does not bother spinning
constexpr int kMaxSkipWakes = 64;              // longest run of jobs that wake nobody (see pool_run)

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

inline std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The CPU the calling thread runs on (-1 if unknown): glibc reads it from rseq or the vDSO.
inline int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

using Word = std::atomic<std::uint32_t>;
static_assert(sizeof(Word) == 4 && Word::is_always_lock_free, "futex words are plain 32-bit ints");

#if ADAPTOPT_FUTEX
// Sleeps while `w` holds `expected` (may return spuriously: callers re-check).
void wait_on(Word& w, std::uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void wake_all(Word& w) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}
void reset_waits_after_fork() {}
#else
// One mutex and condition variable for the few wait words; leaked so they outlive static
// destruction, re-created in a forked child (a parent thread may have held the mutex).
std::mutex* g_wait_mu = new std::mutex;
std::condition_variable* g_wait_cv = new std::condition_variable;
void wait_on(Word& w, std::uint32_t expected) {
  std::unique_lock<std::mutex> lock(*g_wait_mu);
  if (w.load(std::memory_order_seq_cst) == expected) g_wait_cv->wait(lock);
}
void wake_all(Word&) {
  { std::lock_guard<std::mutex> lock(*g_wait_mu); }  // a waiter is either before its check or waiting
  g_wait_cv->notify_all();
}
void reset_waits_after_fork() {
  g_wait_mu = new std::mutex;
  g_wait_cv = new std::condition_variable;
}
#endif

struct alignas(64) Range {
  std::atomic<std::uint64_t> word{0};  // (generation << 32) | next chunk; generation 0 is never used
};

struct Slot {
  std::atomic<ChunkBody> body{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<std::uint32_t> nchunks{0};
  std::atomic<std::uint32_t> parts{0};
  alignas(64) Word done{0};
};

struct Pool {
  alignas(64) Word gen{0};
  alignas(64) std::atomic<int> sleepers{0};
  alignas(64) std::atomic<bool> busy{false};
  std::atomic<int> workers{0};
  std::atomic<int> ranges_used{0};
  std::atomic<std::int64_t> last_job_ns{kSpinCapNs};
  // The CPU the caller of the current job last claimed a chunk on.
  alignas(64) std::atomic<int> caller_cpu{-1};
  std::atomic<std::uint64_t> jobs{0}, chunks_by_workers{0}, serial_fallbacks{0}, wait_ns{0}, long_waits{0},
      stepped_aside{0}, moved_off{0}, wakes_skipped{0};
  // Wake-up backoff, touched only by the holder of `busy`.
  int skip_wakes = 0, skip_next = 1;
  Slot slots[2];
  Range ranges[kPoolMaxThreads];
};

// Leaked: workers may still sleep on it while the process exits.
Pool& the_pool() {
  static Pool* p = new Pool;
  return *p;
}

inline std::uint32_t range_begin(std::uint32_t r, std::uint32_t parts, std::uint32_t n) {
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(r) * n / parts);
}

// A worker thread's own state.
struct Worker {
  std::uint32_t id = 0;  // 1-based participant number
#if defined(__linux__)
  cpu_set_t allowed;  // its affinity when it started
  bool have_allowed = false;
  bool moved = false;  // its affinity currently excludes the caller's CPU

  // Leaves `cpu` for one of the other CPUs it may use; false if there is none.
  bool move_off(int cpu) {
    if (!have_allowed) return false;
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0 || pthread_setaffinity_np(pthread_self(), sizeof others, &others) != 0)
      return false;
    moved = true;
    return true;
  }
  void restore() {
    if (moved) pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed);
    moved = false;
  }
#else
  bool move_off(int) { return false; }
  void restore() {}
#endif
};

// Claims and runs chunks of job g: range `me` first, then the others in turn. Returns the
// number run. The caller (self == nullptr, me = 0) counts its chunks itself and keeps
// caller_cpu current; a worker adds each chunk to slot.done (and wakes a sleeping caller), and
// before each claim checks that it is not on the caller's CPU (see the top of this file): it
// moves once, else it stops and sets *aside.
std::uint32_t claim_and_run(Pool& P, std::uint32_t me, std::uint32_t parts, std::uint32_t n, std::uint32_t g,
                            ChunkBody body, void* ctx, Slot* done_slot, Worker* self, bool* aside) {
  std::uint32_t ran = 0;
  int last_cpu = P.caller_cpu.load(std::memory_order_relaxed);
  bool tried_move = false;
  for (std::uint32_t k = 0; k < parts; ++k) {
    const std::uint32_t r = (me + k) % parts;
    const std::uint32_t end = range_begin(r + 1, parts, n);
    std::atomic<std::uint64_t>& w = P.ranges[r].word;
    std::uint64_t cur = w.load(std::memory_order_relaxed);
    for (;;) {
      if (static_cast<std::uint32_t>(cur >> 32) != g) return ran;  // job g is over
      const std::uint32_t i = static_cast<std::uint32_t>(cur);
      if (i >= end) break;
      const int cpu = current_cpu();
      if (self == nullptr) {
        if (cpu != last_cpu) P.caller_cpu.store(last_cpu = cpu, std::memory_order_relaxed);
      } else if (cpu >= 0 && cpu == P.caller_cpu.load(std::memory_order_relaxed)) {
        if (!tried_move) {
          tried_move = true;
          if (self->move_off(cpu)) {
            P.moved_off.fetch_add(1, std::memory_order_relaxed);
            continue;  // now on another CPU (the kernel migrates the thread at once)
          }
        }
        P.stepped_aside.fetch_add(1, std::memory_order_relaxed);
        *aside = true;
        return ran;
      }
      POOL_HOOK(2);
      if (w.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        body(ctx, i);
        ++ran;
        if (done_slot != nullptr) {
          const std::uint32_t prev = done_slot->done.fetch_add(1, std::memory_order_acq_rel);
          if (prev & kWaitBit) wake_all(done_slot->done);
        }
        cur = w.load(std::memory_order_relaxed);
      }
    }
  }
  return ran;
}

// Worker `self` joins job g if it is one of its participants. Returns true if it stepped aside
// (it ran on the caller's CPU and could not move).
bool join_job(Pool& P, Worker& self, std::uint32_t g) {
  Slot& s = P.slots[g & 1];
  POOL_HOOK(0);
  // Acquire pairs with the release stores in pool_run: if any field read here comes from a later
  // job, the range resets of the job after g are visible below and every CAS for g fails.
  const ChunkBody body = s.body.load(std::memory_order_acquire);
  void* const ctx = s.ctx.load(std::memory_order_acquire);
  const std::uint32_t n = s.nchunks.load(std::memory_order_acquire);
  const std::uint32_t parts = s.parts.load(std::memory_order_acquire);
  POOL_HOOK(1);
  if (self.id >= parts) return false;
  bool aside = false;
  const std::uint32_t ran = claim_and_run(P, self.id, parts, n, g, body, ctx, &s, &self, &aside);
  self.restore();
  if (ran) P.chunks_by_workers.fetch_add(ran, std::memory_order_relaxed);
  return aside;
}

struct WorkerStart {
  std::uint32_t id;
  std::uint32_t seen;
};

void* worker_main(void* arg) {
  const WorkerStart start = *static_cast<WorkerStart*>(arg);
  delete static_cast<WorkerStart*>(arg);
#if defined(__linux__)
  char name[16];
  std::snprintf(name, sizeof name, "adaptopt-%u", start.id);
  pthread_setname_np(pthread_self(), name);
#endif
  Pool& P = the_pool();
  Worker self;
  self.id = start.id;
#if defined(__linux__)
  self.have_allowed = pthread_getaffinity_np(pthread_self(), sizeof self.allowed, &self.allowed) == 0;
#endif
  std::uint32_t seen = start.seen;
  std::int64_t budget = kSpinCapNs;
  bool aside = false;  // the last job found this worker on the caller's CPU: sleep at once
  for (;;) {
    std::uint32_t g = P.gen.load(std::memory_order_acquire);
    if (g == seen) {
      const std::int64_t limit =
          aside ? 0 : ADAPTOPT_POOL_SPIN_ADAPTIVE ? std::min(budget, P.last_job_ns.load(std::memory_order_relaxed)) : kSpinCapNs;
      const std::int64_t t0 = now_ns();
      if (limit >= kMinSpinNs) {
        // Spinning on the CPU of the thread that will publish the next job would delay it.
        while (g == seen && now_ns() - t0 < limit &&
               current_cpu() != P.caller_cpu.load(std::memory_order_relaxed)) {
          for (int i = 0; i < 16 && g == seen; ++i) {
            cpu_relax();
            g = P.gen.load(std::memory_order_acquire);
          }
        }
      }
      if (g != seen) {
        budget = kSpinCapNs;  // a job came while spinning: keep spinning
      } else {
        P.sleepers.fetch_add(1, std::memory_order_seq_cst);
        while ((g = P.gen.load(std::memory_order_seq_cst)) == seen) wait_on(P.gen, seen);
        P.sleepers.fetch_sub(1, std::memory_order_relaxed);
        // Came soon after the spin ended: a longer spin would have caught it. Much later: the
        // host works between jobs, so spin less (down to not at all).
        const bool soon = now_ns() - t0 < 2 * kSpinCapNs;
        budget = soon ? kSpinCapNs : budget / 2;
      }
    }
    seen = g;
    aside = join_job(P, self, g);
  }
  return nullptr;
}

// Spawns workers up to `want` (called by the busy holder). Workers block every signal: the
// interpreter's handlers run on its own threads.
void ensure_workers(Pool& P, int want) {
  int have = P.workers.load(std::memory_order_relaxed);
  if (have >= want) return;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (; have < want; ++have) {
    auto* start = new WorkerStart{static_cast<std::uint32_t>(have + 1), P.gen.load(std::memory_order_relaxed)};
    pthread_t t;
    if (pthread_create(&t, &attr, &worker_main, start) != 0) {
      delete start;  // fewer workers: the others take over its range
      break;
    }
  }
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  P.workers.store(have, std::memory_order_relaxed);
}

// Waits until slot.done counts `want` chunks; returns the time waited (0 if none).
std::int64_t wait_done(Word& done, std::uint32_t want) {
  std::uint32_t v = done.load(std::memory_order_acquire);
  if (v == want) return 0;
  const std::int64_t t0 = now_ns();
  do {
    for (int i = 0; i < 16 && v != want; ++i) {
      cpu_relax();
      v = done.load(std::memory_order_acquire);
    }
  } while (v != want && now_ns() - t0 < kDoneSpinNs);
  while ((v & ~kWaitBit) != want) {
    if (!(v & kWaitBit)) {
      if (!done.compare_exchange_weak(v, v | kWaitBit, std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      v |= kWaitBit;
    }
    wait_on(done, v);
    v = done.load(std::memory_order_acquire);
  }
  return now_ns() - t0;
}

void run_serial(std::size_t nchunks, ChunkBody body, void* ctx) {
  for (std::size_t c = 0; c < nchunks; ++c) body(ctx, c);
}

// A forked child has only the thread that forked: no workers, and no job in flight.
void after_fork_in_child() {
  reset_waits_after_fork();
  Pool& P = the_pool();
  P.workers.store(0, std::memory_order_relaxed);
  P.sleepers.store(0, std::memory_order_relaxed);
  P.busy.store(false, std::memory_order_relaxed);
}
const bool g_atfork_registered = [] {
  the_pool();
  return pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0;
}();

}  // namespace

void pool_run(std::size_t nchunks, const PoolOptions& opt, ChunkBody body, void* ctx) {
  std::size_t parts = static_cast<std::size_t>(std::clamp(opt.threads, 1, kPoolMaxThreads));
  parts = std::min(parts, nchunks);
  if (parts <= 1 || nchunks > kMaxChunks) return run_serial(nchunks, body, ctx);
  Pool& P = the_pool();
  bool idle = false;
  if (!P.busy.compare_exchange_strong(idle, true, std::memory_order_acquire, std::memory_order_relaxed)) {
    P.serial_fallbacks.fetch_add(1, std::memory_order_relaxed);
    return run_serial(nchunks, body, ctx);  // another thread's job is running: same chunks, in order
  }
  ensure_workers(P, static_cast<int>(parts) - 1);
  const auto n = static_cast<std::uint32_t>(nchunks);
  const auto np = static_cast<std::uint32_t>(parts);
  std::uint32_t g = P.gen.load(std::memory_order_relaxed) + 1;
  if (g == 0) g = 1;  // generation 0 is the ranges' initial value
  Slot& s = P.slots[g & 1];
  // Release: a late worker that reads one of these also sees the previous publication's range
  // resets (see join_job).
  s.body.store(body, std::memory_order_release);
  s.ctx.store(ctx, std::memory_order_release);
  s.nchunks.store(n, std::memory_order_release);
  s.parts.store(np, std::memory_order_release);
  s.done.store(0, std::memory_order_relaxed);
  const int used = std::max(P.ranges_used.load(std::memory_order_relaxed), static_cast<int>(parts));
  P.ranges_used.store(used, std::memory_order_relaxed);
  const std::uint64_t tag = static_cast<std::uint64_t>(g) << 32;
  for (std::uint32_t r = 0; r < static_cast<std::uint32_t>(used); ++r)
    P.ranges[r].word.store(tag | (r < np ? range_begin(r, np, n) : 0xffffffffu), std::memory_order_relaxed);
  P.caller_cpu.store(current_cpu(), std::memory_order_relaxed);
  const std::uint64_t aside0 = P.stepped_aside.load(std::memory_order_relaxed);
  const std::int64_t t0 = now_ns();
  P.gen.store(g, std::memory_order_seq_cst);  // publishes everything above
  // Contention-aware wake-ups: when the workers woken for a job stepped aside (on the caller's
  // CPU, with nowhere else to go) and ran nothing, the next 1, 2, 4 ... 64 jobs wake nobody
  // (workers still spinning join all the same); then one wakes them again to probe. A job they
  // help resets the backoff.
  bool wake = opt.wake && P.sleepers.load(std::memory_order_seq_cst) > 0;
  if (wake && P.skip_wakes > 0) {
    --P.skip_wakes;
    wake = false;
    P.wakes_skipped.fetch_add(1, std::memory_order_relaxed);
  }
  if (wake) wake_all(P.gen);
  const std::uint32_t mine = claim_and_run(P, 0, np, n, g, body, ctx, nullptr, nullptr, nullptr);
  const std::int64_t waited = wait_done(s.done, n - mine);
  if (wake) {
    if (mine < n) {
      P.skip_next = 1;
    } else if (P.stepped_aside.load(std::memory_order_relaxed) != aside0) {
      P.skip_wakes = P.skip_next;
      P.skip_next = std::min(2 * P.skip_next, kMaxSkipWakes);
    }
  }
  if (waited) {
    P.wait_ns.fetch_add(static_cast<std::uint64_t>(waited), std::memory_order_relaxed);
    if (waited > 100'000) P.long_waits.fetch_add(1, std::memory_order_relaxed);
  }
  P.jobs.fetch_add(1, std::memory_order_relaxed);
  P.last_job_ns.store(now_ns() - t0, std::memory_order_relaxed);
  P.busy.store(false, std::memory_order_release);
}

PoolStats pool_stats() {
  Pool& P = the_pool();
  return PoolStats{P.workers.load(),          P.sleepers.load(), P.jobs.load(), P.chunks_by_workers.load(),
                   P.serial_fallbacks.load(), P.wait_ns.load(),  P.long_waits.load(),
                   P.stepped_aside.load(), P.moved_off.load(),   P.wakes_skipped.load()};
}

}  // namespace adaptopt
