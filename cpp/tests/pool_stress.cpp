// Stress test of the thread pool (cpp/src/pool.cpp) on its own, for ThreadSanitizer builds:
// several caller threads publish jobs of random sizes and thread counts, with random pauses
// between them (so workers go through spinning, sleeping and late wake-ups), and check that
// every chunk of every job ran exactly once and that the caller saw every chunk's write.
// Built and run by .ci/pool_tsan.sh (also with -DADAPTOPT_POOL_NO_FUTEX for the
// condition-variable fallback).
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "pool.h"

namespace {

struct Job {
  std::vector<int> hits;        // written by whichever thread runs the chunk
  std::atomic<int> running{0};  // chunks in flight, to catch a chunk run twice at once
  unsigned work = 0;
};

void body(void* ctx, std::size_t c) {
  auto* job = static_cast<Job*>(ctx);
  job->running.fetch_add(1, std::memory_order_relaxed);
  volatile unsigned x = 0;
  for (unsigned i = 0; i < job->work; ++i) x = x + i;
  job->hits[c] += 1;
  job->running.fetch_sub(1, std::memory_order_relaxed);
}

std::atomic<long> g_failures{0};

int cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
  return static_cast<int>(std::thread::hardware_concurrency());
}

void caller(unsigned seed, int jobs) {
  std::mt19937 rng(seed);
  for (int j = 0; j < jobs; ++j) {
    Job job;
    const std::size_t n = 1 + rng() % 300;
    job.hits.assign(n, 0);
    job.work = rng() % 4 == 0 ? rng() % 20000 : rng() % 200;
    adaptopt::PoolOptions opt;
    opt.threads = 1 + static_cast<int>(rng() % 4);
    opt.wake = rng() % 3 != 0;
    adaptopt::pool_run(n, opt, &body, &job);
    for (std::size_t c = 0; c < n; ++c)
      if (job.hits[c] != 1) {
        std::fprintf(stderr, "job %d chunk %zu of %zu ran %d times\n", j, c, n, job.hits[c]);
        g_failures.fetch_add(1);
      }
    const unsigned pause = rng() % 8;
    if (pause == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    else if (pause == 1) std::this_thread::yield();
  }
}

}  // namespace

#if defined(ADAPTOPT_POOL_STRESS_HOOK)
// Called by workers between reading the generation, reading the job slot and claiming a chunk:
// now and then a delay long enough for the caller to finish the job and publish the next ones,
// so late workers meet slots and ranges of later jobs.
namespace adaptopt {
void pool_stress_hook(int) {
  thread_local std::minstd_rand rng(std::hash<std::thread::id>()(std::this_thread::get_id()));
  const unsigned r = rng() % 64;
  if (r == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
  else if (r < 4) std::this_thread::yield();
}
}  // namespace adaptopt
#endif

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 3000;
  const int callers = argc > 2 ? std::atoi(argv[2]) : 3;
  std::vector<std::thread> ts;
  for (int i = 0; i < callers; ++i) ts.emplace_back(caller, 1234u + static_cast<unsigned>(i), jobs);
  for (auto& t : ts) t.join();
  const adaptopt::PoolStats s = adaptopt::pool_stats();
  std::printf("pool_stress: %d callers x %d jobs; workers %d, jobs on the pool %llu, chunks by workers %llu, "
              "serial fallbacks %llu, moved off the caller's CPU %llu, stepped aside %llu, wake-ups skipped "
              "%llu, failures %ld\n",
              callers, jobs, s.workers, static_cast<unsigned long long>(s.jobs),
              static_cast<unsigned long long>(s.chunks_by_workers),
              static_cast<unsigned long long>(s.serial_fallbacks), static_cast<unsigned long long>(s.moved_off),
              static_cast<unsigned long long>(s.stepped_aside), static_cast<unsigned long long>(s.wakes_skipped),
              g_failures.load());
  // With one CPU, workers always find themselves on the caller's CPU and step aside.
  if (s.chunks_by_workers == 0 && std::thread::hardware_concurrency() > 1 && cpus() > 1) {
    std::fprintf(stderr, "pool_stress: no chunk ran on a worker\n");
    return 1;
  }
  return g_failures.load() == 0 ? 0 : 1;
}
