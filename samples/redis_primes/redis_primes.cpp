// redis_primes <url> [limit=10000000] [workers=3] — counts the primes below `limit` on worker
// programs (redis_primes_worker, started here as separate executables, as if on other hosts),
// SIGKILLs one of them mid-run, and checks the total: exit 0 only if it is exact.
//
//   redis-server --port 6390 &     ./redis_primes redis://127.0.0.1:6390
//
// The killed worker's job returns to the queue when its lease expires (1 s) and another worker
// runs it (max_retries = 2); a result that arrives twice counts once.
#include <multiproc/process.hpp>
#include <multiproc/redis.hpp>

#include "primes.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <numeric>
#include <thread>
#include <string>
#include <vector>

#include <unistd.h>

namespace mp = multiproc;
namespace rd = multiproc::redis;
using namespace std::chrono_literals;

namespace {

// The count of primes below n, by a sieve here: what the workers' total must equal.
long reference(long n) {
  if (n < 3) return 0;
  std::vector<bool> composite(static_cast<std::size_t>(n), false);
  long count = 0;
  for (long i = 2; i < n; ++i) {
    if (composite[static_cast<std::size_t>(i)]) continue;
    ++count;
    for (long j = i * i; j < n; j += i) composite[static_cast<std::size_t>(j)] = true;
  }
  return count;
}

std::string worker_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  return self.substr(0, self.rfind('/') + 1) + "redis_primes_worker";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s redis://host:port[/db] [limit=10000000] [workers=3]\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  const long limit = argc > 2 ? std::atol(argv[2]) : 10000000;
  const int n_workers = argc > 3 ? std::atoi(argv[3]) : 3;
  if (limit < 2 || n_workers < 2) {
    std::fprintf(stderr, "redis_primes: limit must be >= 2 and workers >= 2 (one is killed)\n");
    return 2;
  }
  const std::string pool_name = "primes-" + std::to_string(::getpid());
  try {
    // The workers: separate programs, as they would be on other hosts.
    std::vector<std::unique_ptr<mp::Process>> workers;
    for (int i = 0; i < n_workers; ++i) {
      const std::string path = worker_path();
      workers.push_back(std::make_unique<mp::Process>(mp::Command{path, {path, url, pool_name, "1000"}}));
      mp::ChildOptions o;
      o.parent_death_signal = SIGKILL;  // never outlive the coordinator
      workers.back()->set_options(o);
      workers.back()->start();
    }
    rd::PoolOptions options;
    options.name = pool_name;
    options.max_retries = 2;
    rd::Pool pool(url, options);
    const auto t0 = std::chrono::steady_clock::now();
    while (pool.workers() < static_cast<std::size_t>(n_workers)) {
      if (std::chrono::steady_clock::now() - t0 > 20s) {
        std::fprintf(stderr, "redis_primes: the workers did not come up\n");
        return 1;
      }
      std::this_thread::sleep_for(10ms);
    }

    // 200 ranges, one job each; a worker is killed when a quarter of them are done.
    std::vector<primes::Range> ranges;
    const long step = std::max(1000L, limit / 200);
    for (long lo = 0; lo < limit; lo += step) ranges.push_back({lo, std::min(limit, lo + step)});
    pid_t killed = 0;
    auto result = pool.map_async<long>(
        "count_primes", ranges, 1, [&](std::size_t done, std::size_t total) {
          if (killed == 0 && done * 4 >= total) {
            killed = workers[0]->pid();
            std::printf("%zu of %zu ranges done: SIGKILL worker %d\n", done, total, static_cast<int>(killed));
            std::fflush(stdout);
            workers[0]->kill();
          }
        });
    auto counts = result.get_for(120s);
    if (!counts) {
      std::fprintf(stderr, "redis_primes: no result within 120 s\n");
      return 1;
    }
    const long total = std::accumulate(counts->begin(), counts->end(), 0L);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    pool.shutdown_workers();
    bool clean = true;
    for (auto& w : workers) {
      if (!w->join_for(10s)) {
        w->kill();
        w->join();
        clean = false;
      }
      const int code = w->exitcode().value_or(-1);
      if (w->pid() == killed ? code != -SIGKILL : code != 0) clean = false;
    }
    const long expected = reference(limit);
    std::printf("primes below %ld: %ld (expected %ld) in %.2f s with %d workers, one killed: %s\n", limit,
                total, expected, secs, n_workers, total == expected ? "exact" : "WRONG");
    if (!clean) std::fprintf(stderr, "redis_primes: a worker did not exit as expected\n");
    return total == expected && killed != 0 && clean ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "redis_primes: %s\n", e.what());
    return 1;
  }
}
