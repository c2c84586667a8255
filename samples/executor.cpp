// Counts the primes below tasks × 10000 on a ProcessPoolExecutor: one future per block of 10000
// numbers, collected with as_completed and a live progress line, then checked against a sieve.
//
//   executor [tasks=100] [workers=CPUs]
//
// Blocks higher up take longer (trial division), so the futures finish out of order; as_completed
// hands each one over as soon as it is done.
#include "args.hpp"

#include <multiproc/executor.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

namespace mp = multiproc;

namespace {

constexpr long kBlock = 10000;

// The primes in [lo, hi), by trial division: runs in a worker.
long count_primes(long lo, long hi) {
  long count = 0;
  for (long n = lo < 2 ? 2 : lo; n < hi; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n; ++d) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    if (prime) ++count;
  }
  return count;
}

// The primes below n, by a sieve: the check, in this process.
long sieve(long n) {
  std::vector<bool> composite(static_cast<std::size_t>(n), false);
  long count = 0;
  for (long i = 2; i < n; ++i) {
    if (composite[static_cast<std::size_t>(i)]) continue;
    ++count;
    for (long j = i * i; j < n; j += i) composite[static_cast<std::size_t>(j)] = true;
  }
  return count;
}

}  // namespace

int main(int argc, char** argv) {
  const sample::Args args(argc, argv, "usage: executor [tasks>=1] [workers>=1]");
  const long tasks = args.get(1, 100, 1, 100000);
  const int workers = args.get_int(2, mp::cpu_count(), 1);

  mp::ProcessPoolExecutor executor(workers);
  const auto start = std::chrono::steady_clock::now();
  std::vector<mp::Future<long>> futures;
  for (long i = 0; i < tasks; ++i) futures.push_back(executor.submit(count_primes, i * kBlock, (i + 1) * kBlock));

  long total = 0;
  long done = 0;
  for (const mp::Future<long>& f : mp::as_completed(futures)) {
    total += f.result();
    ++done;
    std::printf("\r  %ld/%ld done, %ld primes so far", done, tasks, total);
    std::fflush(stdout);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");

  const long expected = sieve(tasks * kBlock);
  std::printf("%ld primes below %ld with %d workers in %.3f s (%s)\n", total, tasks * kBlock,
              workers, seconds, total == expected ? "checked" : "WRONG");
  return total == expected ? 0 : 1;
}
